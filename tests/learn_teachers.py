"""Teachers for tests/test_learn.py, importable as ``learn_teachers:<factory>`` by the loop's
worker processes (tests/ is on their path)."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
from ase.calculators.emt import EMT


def structure_key(atoms) -> str:
    """A short hash of the positions and cell (identifies a structure across processes)."""
    data = np.round(np.concatenate([atoms.positions.ravel(), atoms.cell[:].ravel()]), 8)
    return hashlib.sha1(data.tobytes()).hexdigest()[:16]


class CountingEMT(EMT):
    """EMT that appends the key of every structure it finishes to ``count_file`` (after an
    optional ``delay`` in seconds per call)."""

    def __init__(self, count_file: str, delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.count_file, self.delay = count_file, delay

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes)
        with open(self.count_file, "a") as stream:
            stream.write(structure_key(self.atoms) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def counting_emt(count_file: str, delay: float = 0.0) -> CountingEMT:
    return CountingEMT(count_file, delay)


class FlakyEMT(EMT):
    """EMT that raises on some structures and returns NaN energies on others (chosen by the
    structure's key, so the same ones fail in every process)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        kind = int(structure_key(self.atoms), 16) % 5
        if kind == 0:
            raise RuntimeError("SCF did not converge")
        if kind == 1:
            self.results["energy"] = float("nan")


def flaky_emt() -> FlakyEMT:
    return FlakyEMT()


class BrokenEMT(EMT):
    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        raise RuntimeError("licence server unreachable")


def broken_emt() -> BrokenEMT:
    return BrokenEMT()
