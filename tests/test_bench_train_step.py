"""bench/train_step.py's choice of batches (the timing itself is a benchmark, not a test):
the most frequent batch shape, and only batches of exactly that shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlcalc.training.compiled import BatchShape
from mlcalc.training.data import GraphDataset, LabeledStructure

BENCH = Path(__file__).resolve().parents[1] / "bench"
_spec = importlib.util.spec_from_file_location("bench_train_step", BENCH / "train_step.py")
assert _spec is not None and _spec.loader is not None
train_step = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_step)


def cell(aluminium: list[int], repeat: int = 1) -> LabeledStructure:
    """An 8-atom Cu cell (×``repeat`` along a) with Al on the sites ``aluminium``."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
    atoms.symbols[aluminium] = "Al"
    atoms = atoms * (repeat, 1, 1)
    n = len(atoms)
    return LabeledStructure(atoms, 0.0, np.zeros((n, 3)), None, f"{atoms.symbols}")


def dataset(frames: list[LabeledStructure]) -> GraphDataset:
    return GraphDataset(frames, 4.0, ["Al", "Cu"], torch.float32)


def test_batches_of_the_most_frequent_shape_only() -> None:
    # Cu6Al2 at 0, 2 and 4; Cu7Al (the same size) at 1; a 16-atom Cu12Al4 at 3
    frames = [cell([1, 6]), cell([7]), cell([1, 6]), cell([1, 6], repeat=2), cell([0, 3])]
    shape, share, capacity, batches = train_step.shape_batches(dataset(frames), 1, 2, 7)
    assert shape == BatchShape(8, (2, 6)) and share == pytest.approx(0.6)
    assert capacity == max(dataset(frames).graphs[k].num_edges for k in (0, 2, 4))
    assert batches == [[0], [2], [4], [0], [2], [4], [0]]


def test_batches_of_several_structures() -> None:
    frames = [cell([1, 6]) for _ in range(5)]
    shape, share, _, batches = train_step.shape_batches(dataset(frames), 2, 2, 3)
    assert shape == BatchShape(16, (4, 12)) and share == 1.0
    assert batches == [[0, 1], [2, 3], [0, 1]]  # full batches only
    with pytest.raises(SystemExit, match="batches of 2 structures of this data have no fixed"):
        train_step.shape_batches(dataset([*frames, cell([7])]), 2, 2, 3)
