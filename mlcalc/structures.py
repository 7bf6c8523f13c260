"""Test and benchmark structures built with ASE."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io import read
from scipy.spatial.transform import Rotation

#: Number density of liquid water at 1.00 g/cm³: molecules per Å³.
WATER_MOLECULES_PER_A3 = 1.00 / 18.01528 * 6.02214076e23 * 1e-24


#: Closest intermolecular H···H and O···H distances (Å) :func:`water_box` allows, about those
#: of liquid water; closer contacts lie outside what potentials trained on water have seen.
MIN_INTERMOLECULAR = {"HH": 1.75, "OH": 1.55}


def water_box(repeats: int, seed: int = 0, jitter: float = 0.0) -> Atoms:
    """Periodic cubic box of ``repeats**3`` water molecules at 1.00 g/cm³.

    Molecules sit on a simple cubic lattice with random orientations, redrawn until no
    intermolecular H···H or O···H contact is closer than :data:`MIN_INTERMOLECULAR`, plus an
    optional Gaussian ``jitter`` (Å) on every atom: a cheap stand-in for liquid water
    (``repeats=4`` gives 192 atoms, 8 gives 1,536, 16 gives 12,288, 32 gives 98,304).
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
    centres = (grid + 0.5) * spacing
    rotations = Rotation.random(n_molecules, random_state=rng).as_matrix()
    symbols = template.get_chemical_symbols() * n_molecules
    box = Atoms(symbols, cell=[length] * 3, pbc=True)
    for _ in range(200):
        box.positions = (centres[:, None, :] + np.einsum("mab,kb->mka", rotations, local)).reshape(
            -1, 3
        )
        clashing = _clashing_molecules(box)
        if len(clashing) == 0:
            break
        rotations[clashing] = Rotation.random(len(clashing), random_state=rng).as_matrix()
    else:
        raise RuntimeError("could not orient the water molecules without close contacts")
    box.positions += rng.normal(0.0, jitter, box.positions.shape)
    return box


def liquid_water() -> Atoms:
    """Equilibrated liquid water at 300 K: 64 H2O (192 atoms) in a periodic 12.42 Å cube.

    Made with the pretrained ``water`` model (``examples/make_liquid_water.py``): a
    :func:`water_box` relaxed with FIRE, then 10 ps of Langevin NVT at 300 K. Positions and
    momenta of the last frame, so MD started from it is at 300 K from the first step;
    ``atoms.info["made_by"]`` says how it was made. A fresh copy on every call.
    """
    path = files("mlcalc") / "data" / "liquid_water_192.extxyz"
    with path.open("r") as stream:
        return read(stream, format="extxyz")


def _clashing_molecules(box: Atoms) -> np.ndarray:
    """Indices of molecules (3 atoms each) in an intermolecular contact that is too close."""
    from mlcalc.neighbors import neighbor_list

    cutoff = max(MIN_INTERMOLECULAR.values())
    i, j, _, distances = neighbor_list(box.positions, box.cell[:], box.pbc, cutoff)
    hydrogen = box.numbers == 1
    both_h = hydrogen[i] & hydrogen[j]
    limit = np.where(both_h, MIN_INTERMOLECULAR["HH"], MIN_INTERMOLECULAR["OH"])
    close = (i // 3 != j // 3) & (distances < limit)
    return np.unique(np.maximum(i[close], j[close]) // 3)
