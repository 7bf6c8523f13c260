"""OpenMM through OpenMM-ML: the entry point, agreement with the ASE calculator (unit-converted)
on molecules and periodic cells, MD and ML/MM runs, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from conftest import alloy_slab, build_model, small_bulk, tiny_cell, triclinic_alloy, water_dimer

from mlcalc import MLANetCalculator, NEMPCalculator
from mlcalc.models import MLANet, MLANetConfig

openmm = pytest.importorskip("openmm", reason="openmm is not installed")
openmmml = pytest.importorskip("openmmml", reason="openmmml (OpenMM-ML) is not installed")
from openmm import app, unit  # noqa: E402

from mlcalc.openmm import topology_from_atoms  # noqa: E402

KJ_PER_MOL = units.kJ / units.mol


def _periodic(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.pbc = True
    atoms.set_cell(atoms.cell.standard_form()[0], scale_atoms=True)
    return atoms


ZOO = {
    "molecule": water_dimer,
    "triclinic_bulk": lambda: _periodic(triclinic_alloy()),
    "slab_with_vacuum": lambda: _periodic(alloy_slab()),
    "tiny_cell": tiny_cell,
    "bulk": lambda: _periodic(small_bulk()),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("openmm") / "model.safetensors"
    build_model().save(path)
    return str(path)


def _context(system, positions):
    integrator = openmm.VerletIntegrator(0.0005)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context, integrator


def _energy_forces(context):
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_system_equals_the_ase_calculator(name, checkpoint):
    atoms = ZOO[name]()
    topology, positions = topology_from_atoms(atoms)
    system = openmmml.MLPotential("mlcalc", model=checkpoint).createSystem(
        topology, precision="double", device="cpu"
    )
    energy, forces = _energy_forces(_context(system, positions)[0])
    atoms.calc = NEMPCalculator(build_model(), device="cpu")
    expected = atoms.get_potential_energy() / KJ_PER_MOL
    assert energy == pytest.approx(expected, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(forces, atoms.get_forces() * 10 / KJ_PER_MOL, rtol=1e-12, atol=1e-9)


def test_registry_model_in_single_precision_and_a_short_nve_run():
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.8, 0.3, 0.0]
    topology, positions = topology_from_atoms(atoms)
    potential = openmmml.MLPotential("mlcalc", model="water")
    assert potential._impl.getMLLongRange() is False
    system = potential.createSystem(
        topology, removeCMMotion=False, precision="single", device="cpu"
    )
    force = next(f for f in system.getForces() if isinstance(f, openmm.PythonForce))
    assert not force.usesPeriodicBoundaryConditions()
    context, integrator = _context(system, positions)
    context.setVelocitiesToTemperature(100 * unit.kelvin, 1)
    start = context.getState(getEnergy=True)
    integrator.step(20)
    end = context.getState(getEnergy=True, getPositions=True)
    total = [
        (s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)
        for s in (start, end)
    ]
    assert abs(total[1] - total[0]) < 0.2  # kJ/mol over 10 fs (measured: 0.05)
    moved = end.getPositions(asNumpy=True).value_in_unit(unit.nanometer) - positions
    assert np.abs(moved).max() > 0


def test_ml_mm_water_in_classical_water(checkpoint):
    solute = molecule("H2O")
    topology = app.Topology()
    residue = topology.addResidue("HOH", topology.addChain())
    oxygen, h1, h2 = (
        topology.addAtom(name, app.Element.getBySymbol(name[0]), residue)
        for name in ("O", "H1", "H2")
    )
    topology.addBond(oxygen, h1)
    topology.addBond(oxygen, h2)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(topology, solute.positions * 0.1)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(1.6, 1.6, 1.6))
    classical = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7, rigidWater=False
    )
    potential = openmmml.MLPotential("mlcalc", model=checkpoint)
    mixed = potential.createMixedSystem(modeller.topology, classical, [0, 1, 2], device="cpu")
    python_forces = [f for f in mixed.getForces() if isinstance(f, openmm.PythonForce)]
    assert len(python_forces) == 1 and python_forces[0].usesPeriodicBoundaryConditions()
    context, integrator = _context(mixed, modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, maxIterations=20)
    integrator.step(10)
    state = context.getState(getEnergy=True)
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def test_conservative_mlanet_works_and_direct_is_refused(tmp_path):
    torch.manual_seed(0)
    paths = {}
    for mode in ("conservative", "direct"):
        config = MLANetConfig.preset(
            "small", elements=["H", "O"], cutoff=4.0, num_interactions=1, force_mode=mode
        )
        paths[mode] = tmp_path / f"{mode}.safetensors"
        MLANet(config).double().save(paths[mode])
    atoms = water_dimer()
    topology, positions = topology_from_atoms(atoms)
    system = openmmml.MLPotential("mlcalc", model=str(paths["conservative"])).createSystem(
        topology, device="cpu"
    )
    energy, _ = _energy_forces(_context(system, positions)[0])
    atoms.calc = MLANetCalculator.from_checkpoint(paths["conservative"], device="cpu")
    assert energy == pytest.approx(atoms.get_potential_energy() / KJ_PER_MOL, rel=1e-12)
    potential = openmmml.MLPotential("mlcalc", model=str(paths["direct"]))
    with pytest.raises(ValueError, match=r"computes forces directly .* use a conservative model"):
        potential.createSystem(topology, device="cpu")


def test_bad_input_gives_our_errors(checkpoint):
    with pytest.raises(ValueError, match=r"needs model="):
        openmmml.MLPotential("mlcalc")
    with pytest.raises(TypeError, match=r"go to createSystem"):
        openmmml.MLPotential("mlcalc", model=checkpoint, precision="double")
    potential = openmmml.MLPotential("mlcalc", model=checkpoint)
    silicon, _ = topology_from_atoms(Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]]))
    with pytest.raises(ValueError, match=r"element.*Si of the topology are not supported"):
        potential.createSystem(silicon, device="cpu")
    atoms = water_dimer()
    topology, positions = topology_from_atoms(atoms)
    with pytest.raises(ValueError, match=r"precision must be 'single' or 'double'"):
        potential.createSystem(topology, precision="half")
    with pytest.raises(TypeError, match=r"unknown argument.*temperature"):
        potential.createSystem(topology, temperature=300)
    positions[1] = positions[0] + 0.0005
    context, _ = _context(potential.createSystem(topology, device="cpu"), positions)
    with pytest.raises(openmm.OpenMMException, match=r"atoms 0 and 1 are 0.0087 Å apart"):
        context.getState(getEnergy=True)
