"""Test and benchmark structures built with ASE."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

#: Number density of liquid water at 1.00 g/cm³: molecules per Å³.
WATER_MOLECULES_PER_A3 = 1.00 / 18.01528 * 6.02214076e23 * 1e-24


def water_box(repeats: int, seed: int = 0, jitter: float = 0.05) -> Atoms:
    """Periodic cubic box of ``repeats**3`` water molecules at 1.00 g/cm³.

    Molecules sit on a simple cubic lattice with random orientations and a Gaussian jitter of
    ``jitter`` Å on every atom: a cheap stand-in for liquid water (``repeats=4`` gives 192
    atoms, 8 gives 1,536, 16 gives 12,288, 32 gives 98,304).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    n_molecules = repeats**3
    length = (n_molecules / WATER_MOLECULES_PER_A3) ** (1.0 / 3.0)
    spacing = length / repeats
    template = molecule("H2O")
    local = template.positions - template.get_center_of_mass()
    grid = np.stack(np.meshgrid(*[np.arange(repeats)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rotations = Rotation.random(n_molecules, random_state=rng).as_matrix()
    positions = (grid[:, None, :] + 0.5) * spacing + np.einsum("mab,kb->mka", rotations, local)
    positions = positions.reshape(-1, 3) + rng.normal(0.0, jitter, (3 * n_molecules, 3))
    symbols = template.get_chemical_symbols() * n_molecules
    return Atoms(symbols, positions=positions, cell=[length] * 3, pbc=True)
