"""The ASE calculator (:mod:`mlcalc.calculators`): consistency with the model and with finite
differences, ASE caching, argument checking, input validation and use inside ASE's own
dynamics, optimisers and NEB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.verlet import VelocityVerlet
from ase.mep import NEB
from ase.optimize import BFGS
from ase.stress import full_3x3_to_voigt_6_stress

from mlcalc import MLANetCalculator, MLCalculator, NEMPCalculator
from mlcalc.graph import build_graph
from mlcalc.models import AtomisticModel, MLANet, MLANetConfig, ModelConfig
from mlcalc.models import traced as traced_module

FORCE_TOL = 1e-6  # eV/Å
STRESS_TOL = 1e-7  # eV/Å³


def attach(atoms: Atoms, calc: NEMPCalculator) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


def random_cluster(
    rng: np.random.Generator, n: int, box: float, symbols=("Al", "Ni", "Cu"), min_dist=1.9
) -> Atoms:
    """``n`` atoms at random in a periodic cubic box, no two closer than ``min_dist``."""
    positions: list[np.ndarray] = []
    cell = np.eye(3) * box
    while len(positions) < n:
        candidate = rng.uniform(0, box, 3)
        trial = Atoms("X" * (len(positions) + 1), positions=[*positions, candidate], cell=cell)
        trial.pbc = True
        if (
            len(positions) == 0
            or trial.get_distances(-1, range(len(positions)), mic=True).min() > min_dist
        ):
            positions.append(candidate)
    return Atoms(
        symbols=list(rng.choice(symbols, size=n)), positions=positions, cell=cell, pbc=True
    )


class OtherModel(AtomisticModel):
    """An mlcalc model of another architecture."""

    architecture = "other"
    config_class = ModelConfig

    def forward(self, graph, compute_forces=True, compute_stress=False, training=False):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# properties and consistency with the model


def test_implemented_properties():
    for name in ("energy", "free_energy", "energies", "forces", "stress"):
        assert name in NEMPCalculator.implemented_properties


@pytest.mark.parametrize("kind", ["triclinic_bulk", "molecule"])
def test_results_are_consistent_and_equal_a_direct_model_call(model, structures, kind):
    atoms = getattr(structures, kind)()
    calc = NEMPCalculator(model, device="cpu")
    calls = []
    calc.model.register_forward_hook(lambda *args: calls.append(1))
    atoms.calc = calc

    energy = atoms.get_potential_energy()
    free_energy = atoms.get_potential_energy(force_consistent=True)
    energies = atoms.get_potential_energies()
    forces = atoms.get_forces()
    assert isinstance(energy, float)
    assert free_energy == energy
    assert energies.shape == (len(atoms),)
    assert forces.shape == (len(atoms), 3)
    assert energies.sum() == pytest.approx(energy, rel=1e-12, abs=1e-12)

    graph = build_graph(atoms, model.cutoff, model.atomic_numbers, dtype=torch.float64)
    out = {k: v.detach().numpy() for k, v in model(graph, True, True).items()}
    assert energy == pytest.approx(float(out["energy"][0]), rel=1e-14, abs=1e-14)
    np.testing.assert_allclose(energies, out["node_energy"], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(forces, out["forces"], rtol=1e-12, atol=1e-14)
    if atoms.pbc.all():
        stress = atoms.get_stress()
        assert stress.shape == (6,)
        expected = full_3x3_to_voigt_6_stress(out["stress"][0])
        np.testing.assert_allclose(stress, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), out["stress"][0], atol=1e-15)
    assert len(calls) == 1, "energy, energies, forces and stress should come from one model call"
    assert np.abs(forces).max() > 1e-3  # the test structures are not at equilibrium


def test_forces_and_stress_match_finite_differences(model, any_structure):
    atoms = attach(any_structure, NEMPCalculator(model, device="cpu"))
    forces = atoms.get_forces()
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(forces, numerical, rtol=0, atol=FORCE_TOL)
    if atoms.pbc.all():
        stress = atoms.get_stress()
        np.testing.assert_allclose(
            stress, calculate_numerical_stress(atoms, eps=1e-5), rtol=0, atol=STRESS_TOL
        )
        assert np.abs(stress).max() > 1e-4
    else:
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()


@pytest.mark.parametrize("preset", ["medium", "fast"])
def test_every_shipped_preset_matches_finite_differences(model_factory, structures, preset):
    """The presets that shipped models use (``medium``; ``fast``, one interaction)."""
    calc = NEMPCalculator(model_factory(preset=preset), device="cpu")
    atoms = attach(structures.triclinic_bulk(), calc)
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numerical, rtol=0, atol=FORCE_TOL)
    stress = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_stress(), stress, rtol=0, atol=STRESS_TOL)


def test_slab_energy_does_not_depend_on_the_vacuum(model, structures):
    calc = NEMPCalculator(model, device="cpu")
    thin, thick = structures.slab(), structures.slab()
    thick.set_cell(thick.cell[:] * [1, 1, 3], scale_atoms=False)
    thick.positions[:, 2] += 7.0
    thin, thick = attach(thin, calc), attach(thick, NEMPCalculator(model, device="cpu"))
    assert thick.get_potential_energy() == pytest.approx(thin.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(thick.get_forces(), thin.get_forces(), atol=1e-10)


# ---------------------------------------------------------------------------------------------
# caching


def change_positions(atoms: Atoms) -> None:
    atoms.positions[1] += [0.05, -0.03, 0.02]


def change_cell(atoms: Atoms) -> None:
    atoms.set_cell(atoms.cell[:] * 1.02, scale_atoms=False)


def change_numbers(atoms: Atoms) -> None:
    atoms.numbers[0] = 28 if atoms.numbers[0] != 28 else 13


def change_pbc(atoms: Atoms) -> None:
    atoms.pbc = [True, True, False]


@pytest.mark.parametrize("change", [change_positions, change_cell, change_numbers, change_pbc])
def test_cache_is_reset_when_the_structure_changes(model, structures, change):
    atoms = attach(structures.triclinic_bulk(), NEMPCalculator(model, device="cpu"))
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.get_stress()
    change(atoms)
    new_energy, new_forces = atoms.get_potential_energy(), atoms.get_forces()
    assert new_energy != energy
    assert not np.allclose(new_forces, forces)

    fresh = attach(atoms, NEMPCalculator(model, device="cpu"))
    assert new_energy == fresh.get_potential_energy()
    np.testing.assert_array_equal(new_forces, fresh.get_forces())
    if atoms.pbc.all():
        np.testing.assert_array_equal(atoms.get_stress(), fresh.get_stress())
    else:
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()


def test_same_calculator_on_two_structures(model, structures):
    calc = NEMPCalculator(model, device="cpu")
    first, second = attach(structures.molecule(), calc), attach(structures.tiny_cell(), calc)
    e_first, e_second = first.get_potential_energy(), second.get_potential_energy()
    assert first.get_potential_energy() == e_first
    assert second.get_potential_energy() == e_second
    assert e_first != e_second


# ---------------------------------------------------------------------------------------------
# stress only for fully periodic structures


@pytest.mark.parametrize(
    "pbc",
    [
        [False, False, False],
        [True, True, False],
        [False, False, True],
        [True, False, False],
    ],
    ids=str,
)
def test_stress_needs_a_fully_periodic_structure(model, structures, pbc):
    atoms = structures.triclinic_bulk().repeat((1, 1, 1))
    atoms.set_cell(atoms.cell[:] * 3.0, scale_atoms=False)  # room around non-periodic sides
    atoms.pbc = pbc
    atoms = attach(atoms, NEMPCalculator(model, device="cpu"))
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy) and np.all(np.isfinite(forces))
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    fresh = attach(atoms, NEMPCalculator(model, device="cpu"))
    assert fresh.get_potential_energy() == energy
    np.testing.assert_array_equal(fresh.get_forces(), forces)


# ---------------------------------------------------------------------------------------------
# arguments: model, device, dtype


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "training": model.training,
        "params": {
            name: (p.dtype, p.device, p.requires_grad, p.detach().clone())
            for name, p in model.named_parameters()
        },
        "buffers": {name: (b.dtype, b.device, b.clone()) for name, b in model.named_buffers()},
    }


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["params"].keys() == after["params"].keys()
    for name, (dtype, device, requires_grad, value) in before["params"].items():
        new_dtype, new_device, new_requires_grad, new_value = after["params"][name]
        assert (new_dtype, new_device, new_requires_grad) == (dtype, device, requires_grad), name
        assert torch.equal(new_value, value), name
    for name, (dtype, device, value) in before["buffers"].items():
        new_dtype, new_device, new_value = after["buffers"][name]
        assert (new_dtype, new_device) == (dtype, device), name
        assert torch.equal(new_value, value), name


@pytest.mark.parametrize("dtype", [None, "float32", "float64", torch.float32])
def test_calculator_does_not_mutate_the_model(model, structures, dtype):
    model.train()
    before = snapshot(model)
    calc = NEMPCalculator(model, device="cpu", dtype=dtype)
    atoms = attach(structures.triclinic_bulk(), calc)
    atoms.get_forces()
    atoms.get_stress()
    assert calc.model is not model
    assert_same_snapshot(before, snapshot(model))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float64], ids=str)
def test_dtype_none_keeps_the_model_dtype(model_factory, model_dtype):
    calc = NEMPCalculator(model_factory(dtype=model_dtype), device="cpu")
    assert calc.dtype == model_dtype
    assert all(p.dtype == model_dtype for p in calc.model.parameters())


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("float64", torch.float64),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_dtype_choices(model, dtype, expected):
    calc = NEMPCalculator(model, device="cpu", dtype=dtype)
    assert calc.dtype == expected
    assert all(p.dtype == expected for p in calc.model.parameters())
    assert not calc.model.training
    assert not any(p.requires_grad for p in calc.model.parameters())


@pytest.mark.parametrize(
    "dtype", ["float16", "bfloat16", "fp64", "", "Float64", torch.float16, torch.int64, 64]
)
def test_bad_dtype_is_refused(model, dtype):
    with pytest.raises(ValueError, match="dtype"):
        NEMPCalculator(model, device="cpu", dtype=dtype)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")], ids=str)
def test_cuda_device_without_cuda_is_refused(model, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA"):
        NEMPCalculator(model, device=device)


def test_default_device_without_cuda_is_cpu(model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calc = NEMPCalculator(model)
    assert calc.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in calc.model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_matches_cpu(model, structures, dtype):
    tolerance = {"float64": 1e-9, "float32": 1e-4}[dtype]
    for atoms in (structures.triclinic_bulk(), structures.molecule()):
        cpu = attach(atoms, NEMPCalculator(model, device="cpu", dtype=dtype))
        gpu = attach(atoms, NEMPCalculator(model, device="cuda", dtype=dtype))
        assert next(gpu.calc.model.parameters()).is_cuda
        assert gpu.get_potential_energy() == pytest.approx(
            cpu.get_potential_energy(), abs=tolerance * len(atoms)
        )
        np.testing.assert_allclose(gpu.get_forces(), cpu.get_forces(), atol=10 * tolerance)
        np.testing.assert_allclose(
            gpu.get_potential_energies(), cpu.get_potential_energies(), atol=tolerance
        )
        if atoms.pbc.all():
            np.testing.assert_allclose(gpu.get_stress(), cpu.get_stress(), atol=tolerance)
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    ("thing", "name"),
    [
        (torch.nn.Linear(3, 1), "Linear"),
        ("model.safetensors", "str"),
        (None, "NoneType"),
        (OtherModel(ModelConfig(elements=["Cu"])), "OtherModel"),
    ],
    ids=["torch-module", "path-string", "none", "other-architecture"],
)
def test_wrong_model_type_is_refused(thing, name):
    with pytest.raises(TypeError, match=rf"NEMPCalculator needs a NEMP model.*\b{name}\b"):
        NEMPCalculator(thing, device="cpu")


def test_checkpoint_of_another_architecture_is_refused(tmp_path, monkeypatch):
    import mlcalc.models

    monkeypatch.setitem(mlcalc.models.ARCHITECTURES, "other", OtherModel)
    path = tmp_path / "other.safetensors"
    OtherModel(ModelConfig(elements=["Cu"])).save(path)
    with pytest.raises(TypeError, match="OtherModel"):
        NEMPCalculator.from_checkpoint(path, device="cpu")


def test_nemp_calculator_is_an_ml_calculator(model):
    assert issubclass(NEMPCalculator, MLCalculator)
    assert isinstance(NEMPCalculator(model, device="cpu"), MLCalculator)


# ---------------------------------------------------------------------------------------------
# input validation and finiteness


def test_unknown_element_is_refused(model_factory, structures):
    calc = NEMPCalculator(model_factory(elements=["Al", "Cu"]), device="cpu")
    atoms = structures.triclinic_bulk()
    atoms.numbers[2] = 28  # Ni
    atoms = attach(atoms, calc)
    with pytest.raises(KeyError, match=r"Ni.*Al, Cu"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("distance", [0.0, 0.05, 0.0999])
def test_atoms_closer_than_0_1_angstrom_are_refused(model, distance):
    atoms = Atoms("CuAlNi", positions=[[0, 0, 0], [0, 0, 2.5], [distance, 0, 2.5]])
    atoms = attach(atoms, NEMPCalculator(model, device="cpu"))
    with pytest.raises(ValueError, match=r"closer than 0\.1"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions_are_refused(model, structures, bad):
    atoms = structures.triclinic_bulk()
    atoms.positions[1, 2] = bad
    atoms = attach(atoms, NEMPCalculator(model, device="cpu"))
    with pytest.raises(ValueError, match="not finite"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="not finite"):
        atoms.get_forces()


def test_non_finite_model_output_is_never_returned(model, structures):
    """A model that produces NaN raises every time; no NaN is ever handed out from the cache."""
    calc = NEMPCalculator(model, device="cpu")
    with torch.no_grad():
        calc.model.readout.species_scale.fill_(float("nan"))
    atoms = attach(structures.molecule(), calc)
    for _ in range(2):
        with pytest.raises(FloatingPointError):
            atoms.get_potential_energy()
        with pytest.raises(FloatingPointError):
            atoms.get_forces()


def test_isolated_atom_has_its_reference_energy(model):
    """No neighbours: zero descriptor, so ``E = E0 + scale * shift`` (bias-free readout)."""
    assert not model.config.use_readout_bias
    scale = model.energy_scale
    shifts = dict(zip(model.elements, model.readout.species_shift.tolist(), strict=True))
    for symbol, e0 in model.atomic_energies.items():
        expected = e0 + scale * shifts[symbol]
        for pbc in (False, True):
            atoms = Atoms(symbol, positions=[[0.3, -1.2, 2.0]], cell=np.eye(3) * 9.0, pbc=pbc)
            atoms = attach(atoms, NEMPCalculator(model, device="cpu"))
            energy = atoms.get_potential_energy()
            assert np.isfinite(energy)
            assert energy == pytest.approx(expected, rel=1e-12, abs=1e-12)
            assert atoms.get_potential_energies() == pytest.approx([expected], rel=1e-12)
            np.testing.assert_array_equal(atoms.get_forces(), np.zeros((1, 3)))
            if pbc:
                np.testing.assert_array_equal(atoms.get_stress(), np.zeros(6))


def test_isolated_atom_energy_follows_the_reference(model_factory):
    """E0 adds, the energy scale multiplies: ``E(E0 + d, s) = E(E0, s) + d``."""
    atoms = Atoms("Cu", positions=[[0.0, 0.0, 0.0]])
    base = model_factory(energy_scale=0.5)
    shifted = model_factory(energy_scale=0.5)
    shifted.set_energy_reference(
        {s: e + 2.25 for s, e in shifted.atomic_energies.items()}, energy_scale=0.5
    )
    rescaled = model_factory(energy_scale=1.5)
    e_base = attach(atoms, NEMPCalculator(base, device="cpu")).get_potential_energy()
    e_shifted = attach(atoms, NEMPCalculator(shifted, device="cpu")).get_potential_energy()
    e_rescaled = attach(atoms, NEMPCalculator(rescaled, device="cpu")).get_potential_energy()
    e0 = base.atomic_energies["Cu"]
    assert e_shifted == pytest.approx(e_base + 2.25, abs=1e-12)
    assert e_rescaled - e0 == pytest.approx(3.0 * (e_base - e0), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("symbols", ["CuCu", "HO", "AlNi"])
@pytest.mark.parametrize("distance", [0.1001, 0.5, 3.999999, 4.0, 4.2])
def test_pairs_at_awkward_distances_stay_finite(model, symbols, distance):
    atoms = Atoms(symbols, positions=[[0.1, 0.2, 0.3], [0.1, 0.2, 0.3 + distance]])
    atoms = attach(atoms, NEMPCalculator(model, device="cpu"))
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy)
    assert np.all(np.isfinite(forces))
    assert np.all(np.isfinite(atoms.get_potential_energies()))
    np.testing.assert_allclose(forces[0], -forces[1], atol=1e-10)  # Newton's third law
    np.testing.assert_allclose(forces[:, :2], 0.0, atol=1e-10)  # along the bond
    if distance >= model.cutoff:
        isolated = sum(
            attach(atoms[[i]], NEMPCalculator(model, device="cpu")).get_potential_energy()
            for i in range(2)
        )
        assert energy == pytest.approx(isolated, abs=1e-12)
        np.testing.assert_array_equal(forces, 0.0)


def test_random_structures_never_give_nan(model):
    rng = np.random.default_rng(11)
    calc = NEMPCalculator(model, device="cpu")
    for trial in range(4):
        atoms = random_cluster(
            rng, n=6, box=4.5, symbols=("H", "O", "Al", "Ni", "Cu"), min_dist=0.3
        )
        atoms.pbc = [True, trial % 2 == 0, True]
        atoms = attach(atoms, calc)
        assert np.isfinite(atoms.get_potential_energy())
        assert np.all(np.isfinite(atoms.get_forces()))
        if atoms.pbc.all():
            assert np.all(np.isfinite(atoms.get_stress()))


# ---------------------------------------------------------------------------------------------
# precision


def test_float32_agrees_with_float64(model):
    rng = np.random.default_rng(7)
    atoms = random_cluster(rng, n=8, box=5.5)
    single = attach(atoms, NEMPCalculator(model, device="cpu", dtype="float32"))
    double = attach(atoms, NEMPCalculator(model, device="cpu", dtype="float64"))
    e32, e64 = single.get_potential_energy(), double.get_potential_energy()
    assert isinstance(e32, float)
    assert abs(e32 - e64) / len(atoms) < 1e-4
    np.testing.assert_allclose(single.get_forces(), double.get_forces(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(single.get_stress(), double.get_stress(), rtol=0, atol=1e-4)
    assert single.get_forces().dtype == np.float64


# ---------------------------------------------------------------------------------------------
# inside ASE


def test_velocity_verlet_conserves_energy(model, structures):
    atoms = attach(structures.bulk(2), NEMPCalculator(model, device="cpu"))
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()[:, None]
    velocities = rng.normal(size=(len(atoms), 3)) * np.sqrt(300 * units.kB / masses)
    velocities -= (masses * velocities).sum(0) / masses.sum()  # no centre-of-mass drift
    atoms.set_velocities(velocities)
    totals, potentials = [], []

    def record():
        potentials.append(atoms.get_potential_energy())
        totals.append(potentials[-1] + atoms.get_kinetic_energy())

    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.attach(record, interval=1)
    dyn.run(20)
    assert len(totals) == 21
    drift = np.ptp(totals)
    assert drift < 1e-4, totals  # eV; measured ~2e-6
    assert np.ptp(potentials) > 20 * drift  # real dynamics happened


def test_bfgs_on_frechet_cell_filter_relaxes_forces_and_stress(model):
    atoms = attach(bulk("Cu", "fcc", a=3.6, cubic=True), NEMPCalculator(model, device="cpu"))
    # a hydrostatic relaxation of the perfect crystal converges ...
    assert np.abs(atoms.get_stress()).max() > 1e-3
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    assert opt.run(fmax=1e-5, steps=60)
    assert np.abs(atoms.get_stress()).max() < 1e-5
    # ... and from a strained, rattled crystal near that minimum a few steps relax it further
    strain = np.array([[1.0, 0.01, -0.01], [0.01, 0.99, 0.005], [-0.01, 0.005, 1.01]])
    atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
    atoms.rattle(0.02, seed=2)
    f0, s0 = np.abs(atoms.get_forces()).max(), np.abs(atoms.get_stress()).max()
    e0 = atoms.get_potential_energy()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5, steps=6)
    assert np.abs(atoms.get_forces()).max() < 0.5 * f0
    assert np.abs(atoms.get_stress()).max() < s0
    assert atoms.get_potential_energy() < e0


def test_neb_with_one_calculator_per_image(model):
    initial = Atoms(
        "OH2H",
        positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [-0.2, -2.4, 0.3]],
    )
    final = initial.copy()
    final.positions[3] = [2.2, -1.5, -0.3]
    images = [initial, initial.copy(), final]
    for image in images:
        image.calc = NEMPCalculator(model, device="cpu")
    neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    start = images[1].positions.copy()
    opt = BFGS(neb, logfile=None)
    opt.run(fmax=1e-3, steps=3)
    assert opt.nsteps == 3
    assert not np.allclose(images[1].positions, start)
    assert np.isfinite(images[1].get_potential_energy())
    assert np.all(np.isfinite(neb.get_forces()))
    assert len({id(image.calc) for image in images}) == 3


# ---------------------------------------------------------------------------------------------
# neighbour-list reuse (Verlet skin) and batched evaluation


def assert_same_results(atoms: Atoms, reference: NEMPCalculator) -> None:
    """``atoms``' results equal a fresh neighbour-list build by ``reference`` (float64)."""
    fresh = attach(atoms, reference)
    assert atoms.get_potential_energy() == pytest.approx(
        fresh.get_potential_energy(), rel=1e-12, abs=1e-12
    )
    np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        atoms.get_potential_energies(), fresh.get_potential_energies(), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(atoms.get_stress(), fresh.get_stress(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["vesin", "matscipy"])
def test_skin_reuse_equals_a_fresh_build_along_md(model, structures, backend):
    calc = NEMPCalculator(model, device="cpu", skin=0.3, backend=backend)
    reference = NEMPCalculator(model, device="cpu", backend=backend)
    atoms = attach(structures.bulk(2), calc)
    rng = np.random.default_rng(3)
    masses = atoms.get_masses()[:, None]
    atoms.set_velocities(rng.normal(size=(len(atoms), 3)) * np.sqrt(2000 * units.kB / masses))
    evaluations = []

    def check():
        assert_same_results(atoms, reference)
        evaluations.append(calc.neighbors.builds)

    def run(steps):
        dyn = VelocityVerlet(atoms, timestep=2.0 * units.fs)
        dyn.attach(check, interval=1)
        dyn.run(steps)

    start = atoms.positions.copy()
    run(12)
    # the list was reused, and rebuilt once an atom had moved more than skin/2 = 0.15 Å
    assert 1 < evaluations[-1] < len(evaluations)
    assert np.linalg.norm(atoms.positions - start, axis=1).max() > 0.15

    builds = calc.neighbors.builds
    atoms.set_cell(atoms.cell[:] * 1.003, scale_atoms=True)  # a cell change forces a rebuild
    run(4)
    assert calc.neighbors.builds > builds

    builds = calc.neighbors.builds
    atoms += Atoms("H", positions=[[1.0, 1.0, 1.0]], cell=atoms.cell, pbc=True)
    run(4)
    assert calc.neighbors.builds > builds


def test_skin_default_and_bad_values(model):
    assert NEMPCalculator(model, device="cpu").neighbors.skin == 0.0
    with pytest.raises(ValueError, match="skin must be zero or positive"):
        NEMPCalculator(model, device="cpu", skin=-1.0)
    with pytest.raises(ValueError, match="unknown neighbour-list backend"):
        NEMPCalculator(model, device="cpu", backend="cell-list")


@pytest.mark.parametrize("max_atoms", [1, 20, 4096])
def test_calculate_batch_equals_one_at_a_time(model, structures, max_atoms):
    batch = [
        structures.molecule(),
        structures.slab(),
        structures.bulk(2),
        structures.tiny_cell(),
        structures.triclinic_bulk(),
    ]
    calc = NEMPCalculator(model, device="cpu")
    calls = []
    calc.model.register_forward_hook(lambda *args: calls.append(1))
    results = calc.calculate_batch(batch, max_atoms_per_batch=max_atoms)
    # 6 + 8 + 32 + 1 + 4 atoms: one structure per pass; [6, 8], [32] (alone, over the
    # limit), [1, 4]; or all in one pass
    assert len(calls) == {1: 5, 20: 3, 4096: 1}[max_atoms]
    assert len(results) == len(batch)
    for atoms, result in zip(batch, results, strict=True):
        single = attach(atoms, NEMPCalculator(model, device="cpu"))
        assert result["energy"] == pytest.approx(single.get_potential_energy(), abs=1e-12)
        assert result["free_energy"] == result["energy"]
        np.testing.assert_allclose(result["forces"], single.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            result["energies"], single.get_potential_energies(), rtol=0, atol=1e-12
        )
        assert ("stress" in result) == bool(atoms.pbc.all())
        if atoms.pbc.all():
            np.testing.assert_allclose(result["stress"], single.get_stress(), rtol=0, atol=1e-12)
    assert calc.calculate_batch([]) == []
    with pytest.raises(ValueError, match="max_atoms_per_batch must be positive"):
        calc.calculate_batch(batch, max_atoms_per_batch=0)


# ---------------------------------------------------------------------------------------------
# torch.compile: one traced graph of energies and edge gradients for every size


@pytest.mark.slow
def test_compiled_calculator_equals_eager_at_every_size(model, structures):
    """One compiled graph (inductor: about a minute of compiling on 2 cores) gives the eager
    results for periodic cells, a supercell, a slab and a molecule, two steps each."""
    eager = NEMPCalculator(model, device="cpu")
    compiled = NEMPCalculator(model, device="cpu", compile=True)
    systems = [structures.triclinic_bulk(), structures.triclinic_bulk() * (2, 1, 1)]
    systems += [structures.slab(), structures.molecule()]
    for atoms in systems:
        for step in range(2):
            atoms.positions += np.random.default_rng(step).normal(0.0, 0.02, atoms.positions.shape)
            names = ["energy", "forces", "energies"] + (["stress"] if atoms.pbc.all() else [])
            for name in names:
                np.testing.assert_allclose(
                    compiled.get_property(name, atoms),
                    eager.get_property(name, atoms),
                    rtol=0,
                    atol=1e-10,
                    err_msg=name,
                )
    assert compiled.compiled.num_graphs == 1 and not compiled.compiled.failed


def test_compiled_graphs_per_batch_size_and_large_systems_eager(model, structures, monkeypatch):
    monkeypatch.setattr(traced_module, "BACKEND", "aot_eager")  # inductor: tested above
    small, large = structures.triclinic_bulk(), structures.triclinic_bulk() * (3, 1, 1)
    calc = NEMPCalculator(model, device="cpu", compile=True)
    edges = build_graph(small, model.cutoff, model.atomic_numbers).num_edges
    calc.model.recompute_above_edges = 2 * edges  # the large cell has 3 times as many: eager
    eager = NEMPCalculator(model, device="cpu")
    structures_in = [small, small.copy(), large]
    single = calc.get_potential_energy(small)
    pair = calc.calculate_batch(structures_in[:2])  # one batch of two structures
    alone = calc.calculate_batch(structures_in[2:])  # too many edges: eager
    assert calc.compiled.num_graphs == 2
    assert [key.structures for key in calc.compiled.graphs] == [1, 2]
    expected = eager.calculate_batch(structures_in)
    assert single == pytest.approx(expected[0]["energy"], abs=1e-10)
    for got, want in zip(pair + alone, expected, strict=True):
        np.testing.assert_allclose(got["forces"], want["forces"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(got["stress"], want["stress"], rtol=0, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_compiled_calculator_equals_eager_on_cuda(model, structures):
    atoms = structures.triclinic_bulk() * (2, 1, 1)
    compiled = NEMPCalculator(model, device="cuda", compile=True)
    eager = NEMPCalculator(model, device="cuda")
    for name in ("energy", "forces", "stress"):
        np.testing.assert_allclose(
            compiled.get_property(name, atoms), eager.get_property(name, atoms), rtol=0, atol=1e-10
        )
    assert compiled.compiled.num_graphs == 1 and not compiled.compiled.failed


def test_a_failed_compilation_runs_eagerly(model, structures, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(traced_module.torch, "compile", no_compiler)
    atoms = structures.triclinic_bulk()
    calc = NEMPCalculator(model, device="cpu", compile=True)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*running eagerly"):
        forces = calc.get_forces(atoms)
    expected = NEMPCalculator(model, device="cpu").get_forces(atoms)
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-12)
    assert calc.compiled.failed


@pytest.mark.parametrize(
    ("torch_threads", "loop_threads", "expected"),
    [(1, None, 1), (2, None, 1), (4, None, 4), (2, 3, 3)],
)
def test_generated_loops_run_serially_on_few_threads(
    model, structures, monkeypatch, torch_threads, loop_threads, expected
):
    """The compiler's loops get one thread up to SERIAL_LOOPS_UP_TO torch threads (atomic
    scatters on two cost more than they gain), else torch's count, unless given."""
    options = {}

    def record(graph, **kwargs):
        options.update(kwargs.get("options") or {})
        return graph  # run the traced graph uncompiled

    monkeypatch.setattr(traced_module, "BACKEND", "inductor")
    monkeypatch.setattr(traced_module.torch, "compile", record)
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        compiled = traced_module.TracedEnergies(
            model, differentiable=False, fallback="running eagerly", loop_threads=loop_threads
        )
        calc = NEMPCalculator(model, device="cpu")
        calc.compiled = compiled
        forces = calc.get_forces(structures.triclinic_bulk())
    finally:
        torch.set_num_threads(threads)
    assert options == {"cpp.threads": expected}
    assert compiled.num_graphs == 1 and not compiled.failed
    expected_forces = NEMPCalculator(model, device="cpu").get_forces(structures.triclinic_bulk())
    np.testing.assert_allclose(forces, expected_forces, rtol=0, atol=1e-10)


def test_loop_threads_must_be_positive(model):
    with pytest.raises(ValueError, match="loop_threads must be at least 1"):
        traced_module.TracedEnergies(model, differentiable=False, fallback="", loop_threads=0)


def test_compile_needs_conservative_forces():
    model = MLANet(MLANetConfig(elements=["H", "O"], channels=8, force_mode="direct"))
    with pytest.raises(ValueError, match="forces are not derivatives of atomic energies"):
        MLANetCalculator(model, device="cpu", compile=True)
