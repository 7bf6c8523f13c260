"""Structures and helpers shared by the test files."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule
from scipy.spatial.transform import Rotation

from mlcalc.graph import build_graph
from mlcalc.models import AtomisticModel, MLANet, MLANetConfig

#: The benchmark scripts (not a package).
BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """``bench/NAME.py`` as the module ``bench_NAME`` (registered, so that its dataclasses can
    look their module up)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def evaluate(model: AtomisticModel, structures, stress: bool = False) -> dict[str, np.ndarray]:
    """Model outputs (forces always, stress on request) as numpy arrays."""
    graph = build_graph(structures, model.cutoff, model.atomic_numbers)
    out = model(graph, compute_forces=True, compute_stress=stress)
    return {k: v.detach().numpy() for k, v in out.items()}


def random_orthogonal(seed: int, improper: bool) -> np.ndarray:
    """A random rotation matrix, times -1 (inversion included) when ``improper``."""
    rotation = Rotation.random(random_state=seed).as_matrix()
    return -rotation if improper else rotation


def crystal(seed: int = 0) -> Atoms:
    """Triclinic 4-atom C/O cell, shorter than a 4 Å cutoff, rattled."""
    atoms = bulk("C", "diamond", a=3.6) * (2, 1, 1)
    atoms.symbols[[1, 3]] = "O"
    cell = atoms.cell[:] + np.random.default_rng(seed).normal(0.0, 0.2, (3, 3))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def ethanol() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    return atoms


def tiny_mlanet(
    energy_reference: Mapping[str, float], force_mode: str = "direct", seed: int = 0
) -> MLANet:
    """A one-layer float64 MLANet (8 channels, lmax 1, cutoff 4 Å) for the elements of
    ``energy_reference`` (E0s in eV), with energy scale 0.7 eV; the global RNG is untouched."""
    config = MLANetConfig(
        elements=list(energy_reference),
        cutoff=4.0,
        channels=8,
        lmax=1,
        num_heads=2,
        num_interactions=1,
        readout_channels=8,
        energy_mlp_hidden=[8],
        force_mode=force_mode,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLANet(config).double()
    model.set_energy_reference(dict(energy_reference), energy_scale=0.7)
    return model
