"""bench/gpu_checks.py on the CPU (the GPU script's Python checks must run before a GPU is
lent: a device session has minutes, not time to debug)."""

from __future__ import annotations

import numpy as np
from helpers import load_bench

checks = load_bench("gpu_checks")


def test_copper_frames_are_labelled_and_varied() -> None:
    frames = checks.copper_frames(3)
    assert [len(atoms) for atoms in frames] == [32, 32, 32]
    energies = [atoms.get_potential_energy() for atoms in frames]
    assert len(set(energies)) == 3 and all(np.isfinite(energies))
    assert frames[0].get_forces().shape == (32, 3) and frames[0].get_stress().shape == (6,)


def test_evaluator_check_runs_and_reports_differences(capsys) -> None:
    checks.lammps("cpu")
    out = capsys.readouterr().out
    for label in ("periodic box", "cluster, 3 ghosts"):
        for key in ("energy", "forces", "virial", "atomic_virials"):
            assert f"{label}: {key} cpu - cpu = 0.00e+00" in out
