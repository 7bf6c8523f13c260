"""The committee calculator (:mod:`mlcalc.committee`): identical members are the single model,
the statistics against numpy, batches, the ASE cache with charge and spin, refused members,
direct-force MLANet members, MD and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.langevin import Langevin
from conftest import build_model
from helpers import tiny_mlanet

from mlcalc import CommitteeCalculator, MLANetCalculator, NEMPCalculator
from mlcalc.workflows.dynamics import md

MEAN_KEYS = ("energy", "free_energy", "forces", "energies", "stress")
STD_KEYS = ("energy_std", "forces_std", "stress_std")
E0 = {"H": -1.0, "O": -2.0, "Al": -3.0, "Ni": -4.0, "Cu": -5.0}


def attach(atoms: Atoms, calc) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


def single_results(model, atoms: Atoms, calculator_class=NEMPCalculator) -> dict:
    calc = calculator_class(model, device="cpu")
    calc.calculate(atoms.copy(), ["energy", "forces"] + ["stress"] * bool(atoms.pbc.all()))
    return calc.results


@pytest.mark.parametrize("k", [1, 3])
def test_identical_members_are_exactly_the_single_model(model, structures, k):
    calc = CommitteeCalculator([model] * k, device="cpu")
    assert calc.num_members == k
    for atoms in (structures.molecule(), structures.triclinic_bulk(), structures.slab()):
        single = single_results(model, atoms)
        calc.calculate(atoms.copy(), ["energy"])
        results = calc.results
        n = len(atoms)
        for key in MEAN_KEYS:
            assert (key in results) == (key in single)
            if key in single:
                assert np.array_equal(results[key], single[key]), key
        assert results["energy_std"] == 0.0
        assert results["forces_std"].shape == (n,) and not results["forces_std"].any()
        assert ("stress_std" in results) == bool(atoms.pbc.all())
        if atoms.pbc.all():
            assert results["stress_std"].shape == (6,) and not results["stress_std"].any()
        assert np.array_equal(results["member_energies"], [single["energy"]] * k)
        assert results["member_forces"].shape == (k, n, 3)
        assert all(np.array_equal(f, single["forces"]) for f in results["member_forces"])


def test_statistics_of_different_members_match_numpy(structures):
    models = [build_model(seed=seed) for seed in range(3)]
    calc = CommitteeCalculator(models, device="cpu")
    for atoms in (structures.molecule(), structures.triclinic_bulk()):
        singles = [single_results(model, atoms) for model in models]
        energies = np.array([s["energy"] for s in singles])
        forces = np.stack([s["forces"] for s in singles])
        atoms = attach(atoms, calc)
        assert atoms.get_potential_energy() == pytest.approx(energies.mean(), abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), forces.mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            atoms.get_potential_energies(),
            np.mean([s["energies"] for s in singles], axis=0),
            rtol=0,
            atol=1e-12,
        )
        results = calc.results
        assert results["energy_std"] == pytest.approx(np.std(energies), rel=1e-9)
        assert results["energy_std"] > 1e-6
        # per atom: root mean square over x, y, z of the population std over the members
        forces_std = np.sqrt(np.mean(np.std(forces, axis=0, ddof=0) ** 2, axis=1))
        np.testing.assert_allclose(results["forces_std"], forces_std, rtol=1e-9, atol=1e-14)
        assert atoms.calc.get_property("forces_std", atoms).shape == (len(atoms),)
        np.testing.assert_array_equal(results["member_energies"], energies)
        np.testing.assert_array_equal(results["member_forces"], forces)
        if atoms.pbc.all():
            stresses = np.stack([s["stress"] for s in singles])
            np.testing.assert_allclose(atoms.get_stress(), stresses.mean(0), rtol=0, atol=1e-12)
            np.testing.assert_allclose(
                results["stress_std"], np.std(stresses, axis=0), rtol=1e-9, atol=1e-15
            )


def test_stress_std_for_periodic_structures_only(structures):
    calc = CommitteeCalculator([build_model(seed=0), build_model(seed=1)], device="cpu")
    molecule = attach(structures.molecule(), calc)
    molecule.get_forces()
    assert "stress" not in calc.results and "stress_std" not in calc.results
    with pytest.raises(PropertyNotImplementedError, match="stress_std needs a structure"):
        calc.get_property("stress_std", molecule)
    with pytest.raises(PropertyNotImplementedError, match="stress needs a structure"):
        molecule.get_stress()
    bulk = attach(structures.bulk(2), calc)
    assert calc.get_property("stress_std", bulk).shape == (6,)
    assert np.all(calc.results["stress_std"] > 0)


@pytest.mark.parametrize("max_atoms", [20, 4096])
def test_calculate_batch_equals_one_at_a_time(structures, max_atoms):
    calc = CommitteeCalculator([build_model(seed=0), build_model(seed=1)], device="cpu")
    batch = [
        structures.molecule(),
        structures.slab(),
        structures.bulk(2),
        structures.tiny_cell(),
        structures.triclinic_bulk(),
    ]
    results = calc.calculate_batch(batch, max_atoms_per_batch=max_atoms)
    assert len(results) == len(batch)
    for atoms, result in zip(batch, results, strict=True):
        calc.calculate(atoms.copy(), ["energy"])
        assert set(result) == set(calc.results)
        assert ("stress_std" in result) == bool(atoms.pbc.all())
        for key, value in calc.results.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    assert calc.calculate_batch([]) == []
    with pytest.raises(ValueError, match="max_atoms_per_batch must be positive"):
        calc.calculate_batch(batch, max_atoms_per_batch=0)


def test_charge_and_spin_invalidate_the_cache_as_for_one_model():
    models = [build_model(seed=seed, charge_embedding=True) for seed in range(2)]
    calc = CommitteeCalculator(models, device="cpu")
    atoms = attach(Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]), calc)
    neutral = atoms.get_potential_energy()
    assert calc.check_state(atoms) == []
    atoms.info["charge"] = 1
    assert "charge" in calc.check_state(atoms)
    cation = atoms.get_potential_energy()
    assert abs(cation - neutral) > 1e-6
    atoms.info["spin"] = 4
    assert calc.check_state(atoms) == ["spin"]
    quartet = atoms.get_potential_energy()
    assert abs(quartet - cation) > 1e-6
    single = attach(atoms, NEMPCalculator(models[0], device="cpu"))
    assert calc.results["member_energies"][0] == single.get_potential_energy()
    del atoms.info["charge"], atoms.info["spin"]
    assert atoms.get_potential_energy() == neutral


def test_mismatched_members_are_refused(model):
    def refused(other, message: str, error=ValueError) -> None:
        with pytest.raises(error, match=message):
            CommitteeCalculator([model, other], device="cpu")

    refused(build_model(elements=["H", "O"]), r"share their elements: member 0 has \['H'")
    refused(build_model(cutoff=3.5), "share their cutoff: member 0 has 4.0, member 1 has 3.5")
    refused(tiny_mlanet(E0, "conservative"), "share their architecture: member 0 has 'nemp'")
    refused(object(), "committee member 1 is a object", TypeError)
    with pytest.raises(ValueError, match="share their force mode"):
        CommitteeCalculator([tiny_mlanet(E0, "direct"), tiny_mlanet(E0, "conservative")])
    with pytest.raises(ValueError, match="a committee needs at least one model"):
        CommitteeCalculator([])
    with pytest.raises(TypeError, match="must be a sequence"):
        CommitteeCalculator(model)


@pytest.mark.parametrize("force_mode", ["direct", "conservative"])
def test_mlanet_members(structures, force_mode):
    models = [tiny_mlanet(E0, force_mode, seed=seed) for seed in range(2)]
    calc = CommitteeCalculator(models, device="cpu")
    for atoms in (structures.molecule(), structures.triclinic_bulk()):
        singles = [single_results(m, atoms, MLANetCalculator) for m in models]
        atoms = attach(atoms, calc)
        np.testing.assert_allclose(
            atoms.get_forces(), np.mean([s["forces"] for s in singles], 0), atol=1e-12
        )
        assert calc.results["energy_std"] > 0 and calc.results["forces_std"].all()
        assert ("stress_std" in calc.results) == bool(atoms.pbc.all())
        if force_mode == "direct":  # direct heads: no atomic energies
            with pytest.raises(PropertyNotImplementedError):
                atoms.get_potential_energies()
        else:
            assert atoms.get_potential_energies().shape == (len(atoms),)


def test_langevin_md_and_the_md_workflow(structures):
    calc = CommitteeCalculator([build_model(seed=0), build_model(seed=1)], skin=1.0)
    atoms = attach(structures.bulk(2), calc)
    spread = []
    dynamics = Langevin(
        atoms,
        1.0 * units.fs,
        temperature_K=300,
        friction=0.01,
        fixcm=False,
        rng=np.random.default_rng(0),
    )
    dynamics.attach(lambda: spread.append(calc.results["forces_std"].max()))
    dynamics.run(3)
    assert len(spread) == 4 and all(np.isfinite(spread)) and min(spread) > 0
    assert calc.neighbors.builds == 1
    result = md(structures.bulk(2), calc, ensemble="nvt-langevin", steps=3, interval=1)
    assert len(result.potential_energy) == 4 and np.all(np.isfinite(result.potential_energy))


def test_from_checkpoints_and_mixed_sources(tmp_path):
    models = [build_model(seed=seed) for seed in range(2)]
    paths = [tmp_path / f"member{k}.safetensors" for k in range(2)]
    for model, path in zip(models, paths, strict=True):
        model.save(path)
    atoms = Atoms("CuAl", positions=[[0, 0, 0], [2.3, 0.1, 0.2]])
    reference = CommitteeCalculator(models, device="cpu").get_property("forces_std", atoms)
    loaded = CommitteeCalculator.from_checkpoints(paths, device="cpu", dtype="float64")
    assert loaded.num_members == 2
    np.testing.assert_array_equal(loaded.get_property("forces_std", atoms), reference)
    mixed = CommitteeCalculator([str(paths[0]), models[1]], device="cpu")
    np.testing.assert_array_equal(mixed.get_property("forces_std", atoms), reference)
    single = CommitteeCalculator.from_checkpoints(paths[:1], device="cpu", dtype="float32")
    assert single.dtype == torch.float32
    assert single.get_property("energy_std", atoms) == 0.0
    assert single.models[0].elements == models[0].elements
