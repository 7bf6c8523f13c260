"""bench/learn.py: its structures and its results table (the benchmark itself runs for hours)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_bench

bench = load_bench("learn")


def test_liquid_silicon_has_no_close_pairs_and_the_density_asked_for():
    atoms = bench.liquid_silicon(count=32, density=2.5, seed=1)
    distances = atoms.get_all_distances(mic=True) + 10 * np.eye(len(atoms))
    assert distances.min() > 2.1
    grams_per_cm3 = 32 * 28.0855 / 0.602214 / atoms.get_volume()
    assert abs(grams_per_cm3 - 2.5) < 1e-9


def test_molecule_grid_keeps_the_copies_apart():
    grid = bench.molecule_grid("H2O", 27, 6.0)
    assert len(grid) == 81 and not grid.pbc.any()
    oxygen = grid.positions[grid.numbers == 8]
    spacing = np.linalg.norm(oxygen[:, None] - oxygen[None], axis=-1) + 100 * np.eye(27)
    assert np.isclose(spacing.min(), 6.0)


def test_table_reports_labels_to_reach_random_and_the_ratios():
    curve = [
        {"labels": 10, "test_forces_rmse": 90.0},
        {"labels": 20, "test_forces_rmse": 40.0},
        {"labels": 30, "test_forces_rmse": 30.0, "spearman": 0.7},
    ]
    random = [{"labels": 10, "test_forces_rmse": 95.0}, {"labels": 30, "test_forces_rmse": 45.0}]
    results = {
        "uncertainty": curve,
        "dense": {"labels": 300, "test_forces_rmse": 25.0, "test_energy_rmse": 1.0},
        "random": random,
        "speed": {"atoms": 1000, "student_s": 0.5, "teacher_s": 60.0},
        "md": {"picoseconds": 100, "temperature": 600, "closest_pair": 0.91},
        "rdf": {
            "student": {"peak_r": 2.40, "peak_g": 2.5},
            "teacher": {"peak_r": 2.42, "peak_g": 2.6},
        },
    }
    rows = dict(bench.summary_rows(results))
    assert rows["labels active needs for random's final error"] == "20 of 30"
    assert bench.labels_to_reach(curve, 20.0) is None
    assert rows["one model on 300 teacher MD frames: test F RMSE"].endswith("this: 1.20)")
    assert rows["calibration (Spearman, final committee)"] == "0.70"
    assert rows["speed at 1000 atoms (s per E+F call)"].endswith("120×")
    assert "no collapse" in rows["student MD 100 ps at 600 K"]
    assert rows["RDF first peak r (Å) / g, student vs teacher"] == "2.400 / 2.50 vs 2.420 / 2.60"


def test_config_overrides_are_read_as_yaml():
    assert bench.parse_overrides(["candidate_pool=3", "temperatures=[300, 600]"]) == {
        "candidate_pool": 3,
        "temperatures": [300, 600],
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides(["candidate_pool"])
