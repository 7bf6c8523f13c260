"""torch-sim model interface: torch-sim's own validator, agreement with the ASE calculator on
molecules and periodic cells, charge and spin, real torch-sim runs, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.stress import full_3x3_to_voigt_6_stress
from conftest import alloy_slab, build_model, small_bulk, tiny_cell, triclinic_alloy, water_dimer

from mlcalc import MLANetCalculator, NEMPCalculator
from mlcalc.models import MLANet, MLANetConfig

ts = pytest.importorskip("torch_sim", reason="torch-sim (torch-sim-atomistic) is not installed")
from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from mlcalc.torchsim import MLCalcModel  # noqa: E402


def _periodic_zoo() -> list[Atoms]:
    """A triclinic bulk, a slab with vacuum (torch-sim: periodic in all directions), a cell
    smaller than the cutoff and a larger rattled crystal."""
    slab = alloy_slab()
    slab.pbc = True
    return [triclinic_alloy(), slab, tiny_cell(), small_bulk()]


def _molecules() -> list[Atoms]:
    water = water_dimer()
    water.positions += 5.0
    hydroxide = molecule("OH")
    return [water, hydroxide]


def _mlanet(force_mode: str = "conservative", **overrides) -> MLANet:
    torch.manual_seed(0)
    config = MLANetConfig.preset(
        "small",
        elements=["H", "O", "Al", "Ni", "Cu"],
        cutoff=4.0,
        num_interactions=1,
        force_mode=force_mode,
        **overrides,
    )
    return MLANet(config).double()


def _assert_agrees(model, calculator, structures, tolerance=1e-10):
    state = ts.io.atoms_to_state(structures, model.device, model.dtype)
    out = model(state)
    assert out["energy"].shape == (len(structures),)
    assert out["forces"].shape == (sum(len(a) for a in structures), 3)
    start = 0
    for b, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = calculator
        forces = out["forces"][start : start + len(atoms)].numpy()
        start += len(atoms)
        energy = atoms.get_potential_energy()
        assert abs(float(out["energy"][b]) - energy) <= tolerance * max(1.0, abs(energy))
        np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=tolerance)
        if atoms.pbc.all():
            stress = full_3x3_to_voigt_6_stress(out["stress"][b].numpy())
            np.testing.assert_allclose(stress, atoms.get_stress(), rtol=0, atol=tolerance)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_passes_torch_sims_own_validator(dtype):
    model = MLCalcModel(build_model(elements=["Si", "Fe"]), device="cpu", dtype=dtype)
    validate_model_outputs(model, torch.device("cpu"), dtype)


@pytest.mark.parametrize("architecture", ["nemp", "mlanet"])
def test_periodic_batch_equals_the_ase_calculator(architecture):
    if architecture == "nemp":
        model, calculator = build_model(), NEMPCalculator(build_model(), device="cpu")
    else:
        model, calculator = _mlanet(), MLANetCalculator(_mlanet(), device="cpu")
    wrapped = MLCalcModel(model, device="cpu", dtype="float64")
    out = _assert_agrees(wrapped, calculator, _periodic_zoo())
    assert out["stress"].shape == (4, 3, 3)


def test_molecule_batch_equals_the_ase_calculator_and_has_no_stress():
    model = build_model()
    out = _assert_agrees(
        MLCalcModel(model, device="cpu"), NEMPCalculator(model, device="cpu"), _molecules()
    )
    assert "stress" not in out


def test_skin_reuses_lists_and_changes_nothing():
    model = build_model()
    plain = MLCalcModel(model, device="cpu")
    skinned = MLCalcModel(model, device="cpu", skin=1.0)
    state = ts.io.atoms_to_state([small_bulk(), triclinic_alloy()], "cpu", torch.float64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        state.positions += 0.02 * torch.randn(
            state.positions.shape, generator=generator, dtype=torch.float64
        )
        expected, got = plain(state), skinned(state)
        for name in ("energy", "forces", "stress"):
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-12)
    assert [cache.builds for cache in skinned._neighbors] == [1, 1]


def test_charge_and_spin_come_from_the_state():
    model = build_model(charge_embedding=True)
    calculator = NEMPCalculator(model, device="cpu")
    cation, neutral = molecule("H2O"), molecule("H2O")
    neutral.positions += 6.0
    state = ts.io.atoms_to_state([cation, neutral], "cpu", torch.float64)
    state.charge = torch.tensor([1, 0])
    state.spin = torch.tensor([2, 3])
    out = MLCalcModel(model, device="cpu")(state)
    cation.info.update(charge=1, spin=2)
    neutral.info.update(spin=3)
    for b, atoms in enumerate([cation, neutral]):
        atoms.calc = calculator
        assert float(out["energy"][b]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    plain = MLCalcModel(model, device="cpu")(ts.io.atoms_to_state([cation], "cpu", torch.float64))
    assert abs(float(plain["energy"][0]) - float(out["energy"][0])) > 1e-6
    state.spin = torch.tensor([2, 2])  # a triplet-impossible count for 10 electrons
    with pytest.raises(ValueError, match=r"structure 1: .*impossible for 10 electrons"):
        MLCalcModel(model, device="cpu")(state)


def test_from_pretrained_and_a_short_nvt_run():
    model = MLCalcModel.from_pretrained("water", device="cpu", dtype="float64", skin=1.0)
    assert model.dtype == torch.float64 and model.cutoff == pytest.approx(5.0)
    waters = []
    for shift in range(2):
        water = molecule("H2O")
        water.positions += 4.0 * shift
        waters.append(water)
    box = waters[0] + waters[1]
    box.cell = [8.0, 8.0, 8.0]
    box.pbc = True
    final = ts.integrate(
        system=[box, box.copy()],
        model=model,
        integrator=ts.nvt_langevin,
        n_steps=5,
        temperature=300.0,
        timestep=0.0005,
    )
    assert final.n_systems == 2 and torch.isfinite(final.positions).all()
    assert not torch.equal(final.positions[:6], torch.tensor(box.positions))


@pytest.mark.filterwarnings("ignore:Optimize has reached max steps")  # 20 steps, on purpose
def test_relaxation_with_a_cell_filter_lowers_the_energy():
    model = MLCalcModel(build_model(), device="cpu")
    start = ts.io.atoms_to_state([small_bulk()], "cpu", torch.float64)
    before = float(model(start)["energy"][0])
    final = ts.optimize(system=start, model=model, optimizer=ts.frechet_cell_fire, max_steps=20)
    assert float(model(final)["energy"][0]) < before
    assert not torch.allclose(final.cell, start.cell)


def test_direct_force_models_are_refused():
    with pytest.raises(ValueError, match=r"computes forces directly .* use a conservative model"):
        MLCalcModel(_mlanet("direct"), device="cpu")


def test_unknown_elements_stop_the_run_with_our_error():
    model = MLCalcModel(build_model(), device="cpu")
    silicon = bulk("Si", "diamond", a=5.43)
    with pytest.raises(KeyError, match=r"structure 1: element.*Si not supported"):
        ts.integrate(
            system=[small_bulk(), silicon],
            model=model,
            integrator=ts.nvt_langevin,
            n_steps=2,
            temperature=300.0,
            timestep=0.001,
        )


def test_atoms_on_top_of_each_other_stop_the_run_with_our_error():
    model = MLCalcModel(build_model(), device="cpu")
    crowded = small_bulk()
    crowded.positions[1] = crowded.positions[0] + 0.01
    with pytest.raises(ValueError, match=r"structure 0: atoms 0 and 1 are 0.0173 Å apart"):
        ts.integrate(
            system=crowded,
            model=model,
            integrator=ts.nvt_langevin,
            n_steps=2,
            temperature=300.0,
            timestep=0.001,
        )
