"""bench/lammps.py's table and on-paper arithmetic (the LAMMPS runs themselves are a
benchmark, not a test; tests/test_lammps.py runs the pair style)."""

from __future__ import annotations

import argparse

import pytest
from helpers import load_bench

bench = load_bench("lammps")


def test_cases_parse_and_bad_ones_are_refused() -> None:
    assert bench.parse_case("lammps:4:1:layers") == ("lammps", 4, 1, "layers")
    assert bench.parse_case("ase:1:2") == ("ase", 1, 2, "auto")
    for bad in ("lammps:4", "gromacs:1:1", "lammps:1:1:x:y"):
        with pytest.raises(argparse.ArgumentTypeError, match="engine:ranks:threads"):
            bench.parse_case(bad)


def test_ghost_ratio_counts_split_directions_only() -> None:
    atoms = 1e6
    side = (atoms / bench.DENSITY) ** (1 / 3)
    assert bench.ghost_ratio(atoms, (1, 1, 1), 6.0) == 1.0
    assert bench.ghost_ratio(atoms, (2, 1, 1), 6.0) == pytest.approx((side / 2 + 12) / (side / 2))
    grid, ratio = bench.best_grid(atoms, 8, 6.0)
    assert grid[0] * grid[1] * grid[2] == 8 and ratio == bench.ghost_ratio(atoms, grid, 6.0)
    # splitting two directions beats three here (the thin shell costs less than a third cut)
    assert (
        ratio < bench.ghost_ratio(atoms, (2, 2, 2), 6.0) < bench.ghost_ratio(atoms, (8, 1, 1), 6.0)
    )


def test_efficiency_and_ghost_cost_from_cpu_time() -> None:
    one = {"engine": "lammps", "ranks": 1, "step_s": 1.0, "cpu_step_s": 1.0}
    # two ranks, each with as many ghost atoms as owned ones costing 0.25 of an owned atom
    two = {"engine": "lammps", "ranks": 2, "step_s": 0.625, "cpu_step_s": 0.625}
    two["ghost_per_owned"] = 1.0
    row = bench.with_efficiency(dict(two), one)
    assert row["efficiency"] == pytest.approx(0.8) and row["cpu_efficiency"] == pytest.approx(0.8)
    assert row["ghost_cost"] == pytest.approx(0.25) and row["bound"] == pytest.approx(0.5)
    # weak scaling: each of the two ranks owns the baseline's box
    weak = {**two, "step_s": 1.25, "cpu_step_s": 1.25, "weak": True}
    row = bench.with_efficiency(weak, one)
    assert row["efficiency"] == pytest.approx(0.8) and row["ghost_cost"] == pytest.approx(0.25)
    assert "efficiency" not in bench.with_efficiency(dict(one), one)
    assert "efficiency" not in bench.with_efficiency(dict(two), None)


def test_on_paper_uses_each_schemes_shell_and_cost() -> None:
    rows = bench.on_paper(cutoff=5.0, hops=3, ghost_costs={"receptive": 1.0, "layers": 0.2})
    assert [(r["ranks"], r["scheme"]) for r in rows] == [
        (64, "receptive"),
        (64, "layers"),
        (512, "receptive"),
        (512, "layers"),
    ]
    for row in rows:
        shell = 3 * 5.0 + bench.SKIN if row["scheme"] == "receptive" else 5.0 + bench.SKIN
        assert row["shell_A"] == shell
        cost = 1.0 if row["scheme"] == "receptive" else 0.2
        assert row["efficiency"] == pytest.approx(1 / (1 + cost * row["ghost_per_owned"]))
    layers = {r["ranks"]: r for r in rows if r["scheme"] == "layers"}
    assert layers[64]["efficiency"] > layers[512]["efficiency"]


def test_table_row_has_every_column() -> None:
    row = {
        "engine": "lammps",
        "scheme": "layers",
        "ranks": 2,
        "threads": 1,
        "atoms": 1536,
        "step_s": 0.5,
        "ghost_per_owned": 1.0,
        "load_before": 1.0,
        "load_after": 1.2,
    }
    line = bench.format_row(row)
    assert line.count("|") == 13 and "1,536" in line and "| 0.500 |" in line
