"""OpenMM through OpenMM-ML: ``MLPotential("mlcalc", model=...)``, found by its entry point.

>>> from openmmml import MLPotential
>>> potential = MLPotential("mlcalc", model="water")          # any registry name, hf:// or path
>>> system = potential.createSystem(pdb.topology)              # the whole system by the model
>>> mixed = potential.createMixedSystem(pdb.topology, mm_system, ligand_atoms)   # ML/MM

The model runs through an ``openmm.PythonForce`` (the path OpenMM-ML 1.8 takes for MACE, ANI
and ASE), not through ``openmm-torch``: the ``TorchForce`` of openmm-torch needs the model as
TorchScript, which the e3nn tensor products and custom autograd functions of NEMP/MLANet are
not, and its PyPI wheel is built against one torch release. Each evaluation copies positions
to an :class:`~mlcalc.calculators.MLCalculator` and its energy and forces back; units are
converted once here (nm ↔ Å, kJ/mol ↔ eV).

``createSystem`` / ``createMixedSystem`` take ``precision`` (``"single"`` or ``"double"``;
default the registry entry's dtype), ``device`` (default CUDA when available), ``charge`` and
``multiplicity`` (of the ML region, as OpenMM-ML's other potentials name them), ``skin`` (Å,
neighbour-list reuse, default 1.0: results equal a fresh list to rounding) and
``dispersion`` / ``dispersion_xc`` (DFT-D3 added to the model, see
:mod:`mlcalc.dispersion`). The ML region is periodic when the topology has a box.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
import openmm
from ase import Atoms, units
from ase.data import chemical_symbols
from openmm import unit
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from mlcalc.calculators import MLCalculator, load_calculator
from mlcalc.electrons import CHARGE_KEY, SPIN_KEY
from mlcalc.pretrained import load_model

#: 1 eV in kJ/mol, and 1 eV/Å in kJ/mol/nm.
EV_IN_KJ_PER_MOL = 1.0 / (units.kJ / units.mol)
EV_PER_ANGSTROM_IN_KJ_PER_MOL_NM = 10.0 * EV_IN_KJ_PER_MOL
PRECISIONS = {"single": "float32", "double": "float64", None: None}


class MLCalcPotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`MLCalcPotentialImpl` for ``MLPotential("mlcalc", model=...)``."""

    def createImpl(self, name: str, model: str | None = None, **args: Any) -> MLPotentialImpl:
        if args:
            raise TypeError(
                f"MLPotential('mlcalc') takes model=...; got also {', '.join(sorted(args))} "
                "(precision, device, charge, multiplicity, skin and dispersion go to "
                "createSystem / createMixedSystem)"
            )
        return MLCalcPotentialImpl(name, model)


def _included_atoms(topology: openmm.app.Topology, atoms: Iterable[int] | None) -> list[Any]:
    included = list(topology.atoms())
    if atoms is not None:
        included = [included[i] for i in atoms]
    missing = [atom.index for atom in included if atom.element is None]
    if missing:
        raise ValueError(
            f"atoms {missing[:10]} of the topology have no element (virtual sites or extra "
            "particles); leave them out of the ML region"
        )
    return included


class MLCalcPotentialImpl(MLPotentialImpl):
    """An mlcalc model (NEMP or conservative MLANet) as an OpenMM-ML potential.

    Args:
        name: ``"mlcalc"``.
        model: a registry name (``mlcalc models list``), an ``hf://`` reference or a
            ``.safetensors`` checkpoint path.
    """

    def __init__(self, name: str, model: str | None) -> None:
        if not model:
            raise ValueError(
                "MLPotential('mlcalc') needs model=...: a registry name (mlcalc models list), "
                "an hf:// reference or a .safetensors checkpoint"
            )
        self.name = name
        self.model = str(model)

    def getMLLongRange(self) -> bool:
        """Whether the model has a long-range term (``long_range="coulomb"``): ML/MM
        embeddings then leave the ML region's periodic images to the model."""
        return load_model(self.model).config.long_range is not None

    def calculator(
        self,
        precision: str | None = None,
        device: Any = None,
        skin: float = 1.0,
        dispersion: str | None = None,
        dispersion_xc: str = "pbe",
    ) -> MLCalculator:
        """The ASE calculator that evaluates the ML region."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
        calculator = load_calculator(
            self.model,
            device=device,
            dtype=PRECISIONS[precision],
            skin=skin,
            dispersion=dispersion,
            dispersion_xc=dispersion_xc,
        )
        if not calculator.model.has_atomic_energies:
            raise ValueError(
                f"model {self.model!r} computes forces directly (force_mode='direct'); OpenMM "
                "integrates forces as derivatives of the energy: use a conservative model"
            )
        return calculator

    def addForces(
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Iterable[int] | None,
        forceGroup: int,
        precision: str | None = None,
        device: Any = None,
        charge: int = 0,
        multiplicity: int | None = None,
        skin: float = 1.0,
        dispersion: str | None = None,
        dispersion_xc: str = "pbe",
        **args: Any,
    ) -> None:
        """Add a ``PythonForce`` evaluating the model on ``atoms`` (all when ``None``)."""
        if args:
            raise TypeError(f"unknown argument(s) for MLPotential('mlcalc'): {sorted(args)}")
        included = _included_atoms(topology, atoms)
        calculator = self.calculator(precision, device, skin, dispersion, dispersion_xc)
        numbers = np.array([atom.element.atomic_number for atom in included])
        unknown = sorted(set(numbers.tolist()) - set(calculator.model.atomic_numbers))
        if unknown:
            raise ValueError(
                f"element(s) {', '.join(chemical_symbols[z] for z in unknown)} of the topology "
                f"are not supported by model {self.model!r}; it was trained on: "
                f"{', '.join(calculator.model.elements)}"
            )
        periodic = topology.getPeriodicBoxVectors() is not None
        region = Atoms(numbers=numbers, pbc=periodic, calculator=calculator)
        region.info[CHARGE_KEY] = charge
        if multiplicity is not None:
            region.info[SPIN_KEY] = multiplicity
        force = openmm.PythonForce(partial(_compute, region=region, periodic=periodic))
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(list(atoms))
        system.addForce(force)


def topology_from_atoms(atoms: Atoms) -> tuple[openmm.app.Topology, np.ndarray]:
    """An OpenMM topology (one chain, one residue ``MOL``, no bonds) and positions (nm) for an
    ASE structure; periodic structures get its box, which OpenMM wants in reduced form
    (first vector along x, second in the xy plane: ``atoms.cell.standard_form()``)."""
    topology = openmm.app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for index, number in enumerate(atoms.numbers):
        element = openmm.app.Element.getByAtomicNumber(int(number))
        topology.addAtom(f"{element.symbol}{index}", element, residue)
    if atoms.pbc.any():
        if not atoms.pbc.all():
            raise ValueError(
                f"OpenMM boxes are periodic in all three directions; pbc={atoms.pbc.tolist()}"
            )
        cell = atoms.cell[:]
        if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 1e-10:
            raise ValueError(
                "OpenMM needs the box in reduced form (a along x, b in the xy plane); use "
                "atoms.set_cell(atoms.cell.standard_form()[0], scale_atoms=True) first"
            )
        topology.setPeriodicBoxVectors(cell * 0.1)
    return topology, atoms.get_positions() * 0.1


def _compute(state: openmm.State, region: Atoms, periodic: bool) -> tuple[float, np.ndarray]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) of the ML region in an OpenMM state."""
    region.set_positions(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    if periodic:
        region.set_cell(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom))
    energy = region.get_potential_energy()
    forces = region.get_forces()
    return energy * EV_IN_KJ_PER_MOL, forces * EV_PER_ANGSTROM_IN_KJ_PER_MOL_NM
