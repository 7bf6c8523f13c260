"""bench/bilayer.py end to end at toy size: benzene dimer, 8 xTB frames, one epoch per variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from helpers import load_bench

pytest.importorskip("tblite", reason="bench/bilayer.py labels with tblite: pip install tblite")
pytest.importorskip("dftd3", reason='bench/bilayer.py needs simple-dftd3: pip install "mlcalc[d3]"')

bil = load_bench("bilayer")

CUTOFF = 5.0
CURVE = [3.4, 6.0, 9.0, 20.0]


def test_flakes_have_their_formula_and_bond_lengths() -> None:
    for name, formula, bonds in (("benzene", "C6H6", 12), ("coronene", "C24H12", 42)):
        atoms = bil.flake(name)
        distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        assert atoms.get_chemical_formula() == formula and not atoms.pbc.any()
        assert np.isclose(distances.min(), bil.CH) and np.sum(distances < 1.5) == bonds


def test_toy_run_writes_every_variant_and_the_tails(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bilayer"
    argv = ["--monomer", "benzene", "--frames", "8", "--epochs", "1", "--out", str(out)]
    bil.main([*argv, "--cutoff", str(CUTOFF), "--curve", *map(str, CURVE)])
    monomer = read(out / "benzene.extxyz")
    assert np.linalg.norm(monomer.get_forces(), axis=1).max() < 0.01  # eV/Å: relaxed
    assert np.ptp(monomer.positions[:, 2]) < 1e-6  # Å: planar, in the xy plane
    frames = read(out / "data.extxyz", index=":")
    assert len(frames) == 8 and all(not f.pbc.any() and f.info["charge"] == 0 for f in frames)
    assert all(3.0 <= f.info["spacing"] <= 8.0 for f in frames)
    results = json.loads((out / "results.json").read_text())
    assert set(bil.VARIANTS) <= set(results) and results["distances"] == CURVE
    assert results["atoms"] == 24 and sum(results["frames"].values()) == 8
    gaps = [bil.closest(bil.dimer(monomer, d)) for d in CURVE]
    assert np.allclose(gaps, CURVE)  # AA stacking: the closest atoms are d apart
    for name in bil.REFERENCES:
        assert np.isfinite([*results[name]["curve"], results[name]["monomer"]]).all(), name
    for name in bil.VARIANTS:
        row = results[name]
        values = [*row["errors"].values(), *row["curve"], row["monomer"]]
        assert len(values) == 3 + len(CURVE) and np.isfinite(values).all(), name
    beyond = np.array(CURVE) > CUTOFF
    local = bil.interaction(results, "local")[beyond]
    assert np.abs(local).max() < 1e-6  # eV: a local model sees two separate monomers
    assert np.ptp(bil.interaction(results, "local + D3")[beyond]) > 1e-3  # eV: D3 reaches on
    printed = capsys.readouterr().out
    assert "| local + D3 |" in printed and "MAD vs xTB" in printed and "| 6* |" in printed
    figure = tmp_path / "curve.png"
    bil.main(["--report", "--out", str(out), "--figure", str(figure)])
    assert figure.stat().st_size > 0
