"""Shared fixtures: tiny NEMP models with non-zero reference energies, and test structures.

Models are the ``"small"`` preset with a short cutoff, built under a fixed seed without
touching the caller's global RNG, so that every test gets the same weights and stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.data import atomic_numbers

from mlcalc import NEMPCalculator
from mlcalc.models import NEMP, NEMPConfig

#: Elements of the default test model (sorted by Z inside the model: H, O, Al, Ni, Cu).
ELEMENTS = ("H", "O", "Al", "Ni", "Cu")
CUTOFF = 4.0
ENERGY_SCALE = 0.7


def pytest_configure(config: pytest.Config) -> None:
    # The test models are tiny: extra intra-op threads cost far more than they save, and on a
    # busy 2-core machine OpenMP's spinning makes each evaluation about 100 times slower.
    torch.set_num_threads(1)


def reference_energy(symbol: str) -> float:
    """A distinct, non-zero E0 (eV) per element, small enough not to hurt finite differences."""
    return -1.0 - 0.05 * atomic_numbers[symbol]


def build_model(
    elements: Sequence[str] = ELEMENTS,
    cutoff: float = CUTOFF,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    energy_scale: float = ENERGY_SCALE,
    atomic_energies: dict[str, float] | None = None,
    preset: str = "small",
    **overrides,
) -> NEMP:
    """A small NEMP with E0s and energy scale set; the global torch RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NEMP(NEMPConfig.preset(preset, elements=list(elements), cutoff=cutoff, **overrides))
        # a non-trivial per-species affine readout, so that it is exercised too
        with torch.no_grad():
            model.readout.species_scale.uniform_(0.5, 1.5)
            model.readout.species_shift.uniform_(-0.3, 0.3)
    model = model.to(dtype=dtype)
    if atomic_energies is None:
        atomic_energies = {symbol: reference_energy(symbol) for symbol in model.elements}
    model.set_energy_reference(atomic_energies, energy_scale=energy_scale)
    return model


@pytest.fixture
def model_factory() -> Callable[..., NEMP]:
    """``model_factory(elements=..., cutoff=..., seed=..., dtype=..., **config_overrides)``."""
    return build_model


@pytest.fixture
def model() -> NEMP:
    """The default float64 test model (elements H, O, Al, Ni, Cu; cutoff 4 Å)."""
    return build_model()


@pytest.fixture
def calc_factory() -> Callable[..., NEMPCalculator]:
    """``calc_factory(model, **kwargs)``: a CPU calculator unless ``device`` is given."""

    def make(model: NEMP, **kwargs) -> NEMPCalculator:
        kwargs.setdefault("device", "cpu")
        return NEMPCalculator(model, **kwargs)

    return make


# ---------------------------------------------------------------------------------------------
# structures (all deterministic)


def water_dimer() -> Atoms:
    """Two slightly distorted water molecules, non-periodic."""
    first = molecule("H2O")
    second = molecule("H2O")
    second.rotate(70, "x")
    second.translate([2.9, 0.2, 0.1])
    atoms = first + second
    atoms.rattle(0.05, seed=1)
    return atoms


def triclinic_alloy() -> Atoms:
    """A rattled, sheared 4-atom Cu3Al cell: fully periodic, triclinic, two elements."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.numbers[[1]] = atomic_numbers["Al"]
    cell = atoms.cell[:] @ np.array([[1.0, 0.04, -0.03], [0.05, 0.97, 0.02], [-0.06, 0.03, 1.02]])
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.08, seed=2)
    return atoms


def alloy_slab(vacuum: float = 4.0) -> Atoms:
    """A rattled Cu(111) slab with one Al and one Ni, periodic in x and y only."""
    atoms = fcc111("Cu", size=(2, 2, 2), a=3.65, vacuum=vacuum)
    atoms.numbers[[0]] = atomic_numbers["Al"]
    atoms.numbers[[5]] = atomic_numbers["Ni"]
    atoms.rattle(0.07, seed=3)
    return atoms


def tiny_cell() -> Atoms:
    """One Ni atom in a triclinic cell much smaller than the cutoff (many self-images)."""
    cell = [[2.3, 0.0, 0.0], [0.6, 2.4, 0.0], [0.4, -0.5, 2.5]]
    return Atoms("Ni", positions=[[0.3, 0.2, 0.1]], cell=cell, pbc=True)


def small_bulk(repeat: int = 2) -> Atoms:
    """A rattled fcc Cu/Al/Ni crystal, cubic cell repeated ``repeat`` times per direction."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat((repeat,) * 3)
    rng = np.random.default_rng(4)
    others = rng.choice(len(atoms), size=len(atoms) // 3, replace=False)
    atoms.numbers[others[::2]] = atomic_numbers["Al"]
    atoms.numbers[others[1::2]] = atomic_numbers["Ni"]
    atoms.rattle(0.05, seed=5)
    return atoms


STRUCTURES: dict[str, Callable[[], Atoms]] = {
    "molecule": water_dimer,
    "triclinic_bulk": triclinic_alloy,
    "slab": alloy_slab,
    "tiny_cell": tiny_cell,
}


@pytest.fixture(params=sorted(STRUCTURES))
def any_structure(request: pytest.FixtureRequest) -> Atoms:
    """Each of the test structures in turn (molecule, triclinic bulk, slab, tiny cell)."""
    return STRUCTURES[request.param]()


@pytest.fixture
def structures() -> SimpleNamespace:
    """Builders of fresh test structures: ``molecule``, ``triclinic_bulk``, ``slab``,
    ``tiny_cell`` and ``bulk`` (``bulk(repeat)``)."""
    return SimpleNamespace(**STRUCTURES, bulk=small_bulk)
