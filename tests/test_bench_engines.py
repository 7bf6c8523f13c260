"""bench/engines.py on a tiny model: the agreement stages and the resumable results file (the
timings themselves are a benchmark, not a test)."""

from __future__ import annotations

import json

import pytest
from conftest import build_model
from helpers import load_bench

pytest.importorskip("torch_sim", reason="torch-sim (torch-sim-atomistic) is not installed")
pytest.importorskip("openmmml", reason="openmmml (OpenMM-ML) is not installed")

engines = load_bench("engines")


def test_agreement_stages_of_a_tiny_run(tmp_path, capsys):
    checkpoint = tmp_path / "model.safetensors"
    build_model().save(checkpoint)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--model", str(checkpoint), "--threads", "1", "--steps", "1"]
    engines.main([*argv, "--stages", "torchsim_agreement", "openmm"])
    results = json.loads((out / "results.json").read_text())
    agreement = results["torchsim_agreement"]
    assert agreement["structures"] == 7
    assert agreement["forces_eV_per_A"] < 1e-10 and agreement["stress_eV_per_A3"] < 1e-10
    assert results["openmm"]["energy_difference_kJ_per_mol"] < 1e-6
    assert results["openmm"]["openmm_ms_per_step"] > 0
    assert "--- torchsim_agreement" in capsys.readouterr().out
    # a second call keeps what is done and runs nothing again
    engines.main([*argv, "--stages", "torchsim_agreement"])
    assert "--- " not in capsys.readouterr().out
