"""bench/md_stability.py on a short run of a small model: the record it reports."""

from __future__ import annotations

import json

from ase.io import write
from conftest import water_dimer
from helpers import load_bench

stability = load_bench("md_stability")


def test_short_nvt_and_nve_run_reports_distances_temperature_and_drift(tmp_path, model_factory):
    model_factory(elements=["H", "O"]).save(tmp_path / "model.safetensors")
    write(tmp_path / "start.xyz", water_dimer())
    out = tmp_path / "record.json"
    code = stability.main([str(tmp_path / "model.safetensors"), str(tmp_path / "start.xyz"),
                           "--temperature", "100", "--nvt-ps", "0.02", "--nve-ps", "0.01",
                           "--json", str(out)])  # fmt: skip
    record = json.loads(out.read_text())
    assert code == 0 and record["finite"] and not record["collapsed"]
    assert record["atoms"] == 6 and record["frames"].endswith("start.xyz@0")
    assert 0.5 < record["closest_pair_A"] < 1.2  # an O-H bond
    assert record["largest_nearest_neighbour_A"] >= record["closest_pair_A"]  # random weights
    assert record["nvt_mean_temperature_K"] > 0 and record["nve_drift_meV_per_atom"] >= 0


def test_pair_extremes_of_a_molecule_that_lost_an_atom():
    atoms = water_dimer()
    atoms.positions[0] += [0.0, 0.0, 20.0]  # an O atom far away
    closest, loneliest = stability.pair_extremes(atoms)
    assert closest < 1.2 and loneliest > 15.0
