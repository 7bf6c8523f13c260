"""Long-range electrostatics (``long_range="coulomb"``): Ewald sums, latent charges, physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError

from mlcalc.calculators import MLANetCalculator, NEMPCalculator
from mlcalc.graph import build_graph
from mlcalc.models import NEMP, MLANet, MLANetConfig, NEMPConfig
from mlcalc.models.electrostatics import (
    COULOMB_CONSTANT,
    LatentCoulomb,
    direct_coulomb_energies,
    ewald_alpha,
    ewald_energies,
)
from mlcalc.models.physics import edge_vectors

#: Madelung constant of rock salt, per ion pair and nearest-neighbour distance.
MADELUNG_NACL = 1.747564594633


def _ewald(atoms: Atoms, charges: torch.Tensor, cutoff: float, alpha: float | None = None):
    """Total Ewald energy (eV) of point ``charges`` in ``atoms`` with pairs within ``cutoff``."""
    graph = build_graph(atoms, cutoff)
    vectors = edge_vectors(graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch)
    alpha = ewald_alpha(cutoff, 1e-10) if alpha is None else alpha
    centre, neighbor = graph.edge_index
    return ewald_energies(
        charges, graph.positions, graph.cell[0], centre, vectors, charges[neighbor], alpha, 1e-10
    ).sum()


def _rock_salt() -> tuple[Atoms, torch.Tensor]:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    charges = torch.tensor([1.0 if z == 11 else -1.0 for z in atoms.numbers], dtype=torch.float64)
    return atoms, charges


def _random_cell(n: int = 8, seed: int = 0) -> tuple[Atoms, torch.Tensor]:
    rng = np.random.default_rng(seed)
    cell = np.array([[6.0, 0.3, 0.0], [0.2, 6.5, 0.1], [0.0, 0.4, 7.0]])
    atoms = Atoms(f"H{n}", scaled_positions=rng.uniform(size=(n, 3)), cell=cell, pbc=True)
    charges = torch.tensor(rng.normal(size=n))
    return atoms, charges - charges.mean()


@pytest.mark.parametrize("cutoff", [6.0, 10.0])
def test_madelung_constant_of_rock_salt(cutoff):
    atoms, charges = _rock_salt()
    energy = _ewald(atoms, charges, cutoff)
    nearest = 5.64 / 2
    madelung = -float(energy) * nearest / (4 * COULOMB_CONSTANT)  # 4 ion pairs in the cell
    assert madelung == pytest.approx(MADELUNG_NACL, abs=1e-9)
    assert madelung == pytest.approx(1.747565, abs=1e-6)


@pytest.mark.parametrize("net_charge", [0.0, 1.0])
def test_ewald_is_independent_of_the_splitting(net_charge):
    atoms, charges = _random_cell()
    charges = charges + net_charge / len(charges)  # a charged cell: neutralising background
    energies = [float(_ewald(atoms, charges, 12.0, alpha)) for alpha in (0.4, 0.5, 0.6)]
    assert max(energies) - min(energies) < 1e-7


def test_ewald_matches_torch_pme():
    torchpme = pytest.importorskip("torchpme")
    atoms, charges = _random_cell()
    graph = build_graph(atoms, 10.0)
    vectors = edge_vectors(graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch)
    calculator = torchpme.EwaldCalculator(
        torchpme.CoulombPotential(smearing=1.0), lr_wavelength=0.5, full_neighbor_list=True
    ).double()
    potentials = calculator(
        charges[:, None],
        graph.cell[0],
        graph.positions,
        graph.edge_index.T,
        torch.linalg.norm(vectors, dim=1),
    )
    reference = COULOMB_CONSTANT * float((charges[:, None] * potentials).sum())
    assert float(_ewald(atoms, charges, 10.0)) == pytest.approx(reference, abs=1e-8)


def test_far_ions_interact_as_point_charges():
    """Two ions far beyond the cutoff: ``E = k_e q1 q2 / r``, through the model's module."""
    torch.manual_seed(0)
    module = LatentCoulomb(2, 2, cutoff=4.0, smearing=1.0).double().requires_grad_(False)
    for distance in (10.0, 30.0):
        atoms = Atoms("NaCl", positions=[[0, 0, 0], [distance, 0, 0]])
        graph = build_graph(atoms, 4.0)
        features = torch.eye(2, dtype=torch.float64)  # distinct features: distinct charges
        q = module.charges(features, graph)
        assert float(q.sum()) == pytest.approx(0.0, abs=1e-12)
        energy = module(
            features, graph, graph.edge_index[0], graph.edge_index[1], torch.zeros(0, 3)
        )
        expected = COULOMB_CONSTANT * float(q[0] * q[1]) / distance
        assert float(energy.sum()) == pytest.approx(expected, rel=1e-12)
    positions = torch.tensor([[0.0] * 3, [50.0, 0, 0]], dtype=torch.float64)
    pair = direct_coulomb_energies(torch.tensor([1.0, -1.0], dtype=torch.float64), positions)
    assert float(pair.sum()) == pytest.approx(-14.399645 / 50.0, rel=1e-7)


def _model(architecture: str = "nemp", **overrides):
    torch.manual_seed(0)
    if architecture == "nemp":
        config = NEMPConfig.preset(
            "small", elements=["Na", "Cl"], cutoff=3.5, long_range="coulomb", **overrides
        )
        return NEMP(config).double(), NEMPCalculator
    config = MLANetConfig.preset(
        "small",
        elements=["Na", "Cl"],
        cutoff=3.5,
        num_interactions=1,
        force_mode="conservative",
        long_range="coulomb",
        **overrides,
    )
    return MLANet(config).double(), MLANetCalculator


def _rattled_cell() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=4.6) * (2, 1, 1)
    atoms.rattle(0.1, seed=1)
    atoms.set_cell(atoms.cell[:] + np.array([[0.0, 0.2, 0.1], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    return atoms


def _cluster() -> Atoms:
    atoms = Atoms("Na2Cl2", positions=[[0, 0, 0], [2.9, 0.3, 0], [0, 2.7, 0.4], [6.0, 1.0, 0.2]])
    atoms.info["charge"] = 1
    return atoms


@pytest.mark.parametrize("architecture", ["nemp", "mlanet"])
def test_forces_and_stress_equal_finite_differences(architecture):
    model, calculator_class = _model(architecture, charge_embedding=True)
    calc = calculator_class(model, device="cpu", dtype="float64")
    h = 1e-5  # central differences: error ~h², about 1e-8 eV/Å here
    for atoms in (_rattled_cell(), _cluster()):
        atoms.calc = calc
        forces = atoms.get_forces()
        numeric = np.zeros_like(forces)
        for a in range(len(atoms)):
            for x in range(3):
                energies = []
                for sign in (1, -1):
                    displaced = atoms.copy()
                    displaced.positions[a, x] += sign * h
                    displaced.calc = calc
                    energies.append(displaced.get_potential_energy())
                numeric[a, x] = -(energies[0] - energies[1]) / (2 * h)
        assert np.abs(forces - numeric).max() < 1e-7
    atoms = _rattled_cell()
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
                strained.calc = calc
                energies.append(strained.get_potential_energy())
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    assert np.abs(stress - 0.5 * (numeric + numeric.T)).max() < 1e-7


def test_energy_is_invariant_under_rotation():
    model, calculator_class = _model()
    calc = calculator_class(model, device="cpu", dtype="float64")
    rotation = torch.linalg.matrix_exp(
        torch.tensor([[0.0, 0.3, -0.5], [-0.3, 0.0, 0.7], [0.5, -0.7, 0.0]], dtype=torch.float64)
    ).numpy()
    for atoms in (_rattled_cell(), _cluster()):
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ rotation.T
        rotated.set_cell(atoms.cell[:] @ rotation.T)
        energies = []
        for structure in (atoms, rotated):
            structure.calc = calc
            energies.append(structure.get_potential_energy())
        assert energies[0] == pytest.approx(energies[1], abs=1e-9)


def test_far_apart_ions_in_the_model_follow_one_over_r():
    """A Na–Cl pair beyond the cutoff: ``E(r) = E(∞) + B / r`` with the latent charges."""
    model, calculator_class = _model()
    with torch.no_grad():  # isolated atoms: only the element tells the charges apart
        model.coulomb.species_charge.copy_(torch.tensor([0.4, -0.3], dtype=torch.float64))
    calc = calculator_class(model, device="cpu", dtype="float64")
    energies = {}
    for distance in (10.0, 20.0, 40.0):
        atoms = Atoms("NaCl", positions=[[0, 0, 0], [distance, 0, 0]])
        atoms.calc = calc
        energies[distance] = atoms.get_potential_energy()
    first, second = energies[10.0] - energies[20.0], energies[20.0] - energies[40.0]
    assert abs(first) > 1e-4  # the pair still interacts, 6x the cutoff apart
    assert first == pytest.approx(2.0 * second, rel=1e-9)
    assert first == pytest.approx(-COULOMB_CONSTANT * 0.35**2 * (1 / 10 - 1 / 20), rel=1e-9)


def test_calculator_reports_latent_charges_summing_to_the_total_charge():
    model, calculator_class = _model()
    calc = calculator_class(model, device="cpu", dtype="float64")
    cluster, cell = _cluster(), _rattled_cell()
    for atoms, total in ((cluster, 1), (cell, 0)):
        atoms.calc = calc
        charges = atoms.get_charges()
        assert charges.shape == (len(atoms),)
        assert charges.sum() == pytest.approx(total, abs=1e-12)
        assert np.ptp(charges) > 0
    batched = calc.calculate_batch([cluster, cell])
    np.testing.assert_allclose(batched[0]["charges"], cluster.get_charges(), atol=1e-12)
    local = NEMPCalculator(NEMP(NEMPConfig.preset("small", elements=["Na", "Cl"])))
    cell.calc = local
    with pytest.raises(PropertyNotImplementedError):
        cell.get_charges()


def test_partially_periodic_structures_are_refused():
    model, calculator_class = _model()
    atoms = _rattled_cell()
    atoms.pbc = [True, True, False]
    atoms.calc = calculator_class(model, device="cpu")
    with pytest.raises(ValueError, match="slabs and wires"):
        atoms.get_potential_energy()


def test_long_range_needs_conservative_forces_and_no_compile():
    with pytest.raises(ValueError, match="force_mode='conservative'"):
        MLANetConfig(elements=["Na"], long_range="coulomb")
    with pytest.raises(ValueError, match="long_range must be None or 'coulomb'"):
        NEMPConfig(elements=["Na"], long_range="ewald")
    model, calculator_class = _model()
    with pytest.raises(ValueError, match=r"compile=True cannot compile.*long-range"):
        calculator_class(model, device="cpu", compile=True)
