"""Optional DFT-D3 dispersion (``dispersion="d3-bj"``) on top of a model, by simple-dftd3."""

from __future__ import annotations

import copy
import pickle
import sys
from importlib.util import find_spec

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from conftest import alloy_slab, triclinic_alloy, water_dimer

from mlcalc import NEMPCalculator
from mlcalc.dispersion import D3Dispersion

needs_d3 = pytest.mark.skipif(
    find_spec("dftd3") is None, reason='simple-dftd3 is not installed: pip install "mlcalc[d3]"'
)

STRUCTURES = {"triclinic_bulk": triclinic_alloy, "molecule": water_dimer, "slab": alloy_slab}


def _results(atoms: Atoms, calc) -> dict[str, np.ndarray | float]:
    """Energy, forces and (if fully periodic) stress of ``atoms`` with ``calc``."""
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
    return out


@needs_d3
@pytest.mark.parametrize(
    ("name", "damping", "xc"),
    [
        ("triclinic_bulk", "d3-bj", "pbe"),
        ("molecule", "d3-bj", "pbe"),
        ("slab", "d3-bj", "pbe"),
        ("triclinic_bulk", "d3-zero", "pbe0"),
    ],
)
def test_equals_model_plus_dftd3_ase_calculator(
    model_factory, calc_factory, name, damping, xc
) -> None:
    from dftd3.ase import DFTD3

    atoms = STRUCTURES[name]()
    model = model_factory()
    total = _results(atoms, calc_factory(model, dispersion=damping, dispersion_xc=xc))
    alone = _results(atoms, calc_factory(model))
    d3 = _results(atoms, DFTD3(method=xc, damping=damping.replace("-", "")))
    assert total.keys() == alone.keys() == d3.keys()
    assert abs(d3["energy"]) > 1e-3  # the correction is not negligible here
    for key in total:
        np.testing.assert_allclose(total[key], alone[key] + d3[key], rtol=1e-10, atol=1e-12)


@needs_d3
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_per_atom_energies_and_batch_include_d3(model_factory, calc_factory, name) -> None:
    atoms = STRUCTURES[name]()
    calc = calc_factory(model_factory(), dispersion="d3-bj")
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    energies = atoms.get_potential_energies()
    alone = calc_factory(model_factory()).get_potential_energies(atoms.copy())
    assert energies.sum() == pytest.approx(energy, rel=1e-12)
    assert not np.allclose(energies, alone)
    (batched,) = calc.calculate_batch([atoms])
    np.testing.assert_allclose(batched["energies"], energies, rtol=1e-12)
    for key in ("energy", "free_energy", "forces", "stress"):
        if key in calc.results:
            np.testing.assert_allclose(batched[key], calc.results[key], rtol=1e-10, atol=1e-12)


@needs_d3
def test_forces_and_stress_are_derivatives_of_the_total_energy(model_factory, calc_factory):
    atoms = triclinic_alloy()
    atoms.calc = calc_factory(model_factory(), dispersion="d3-bj")
    forces, stress = atoms.get_forces(), atoms.get_stress()
    numeric_forces = calculate_numerical_forces(atoms, eps=1e-4)
    numeric_stress = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(forces, numeric_forces, atol=1e-6)
    np.testing.assert_allclose(stress, numeric_stress, atol=1e-7)


@needs_d3
def test_d3_gives_the_long_range_tail_a_local_model_lacks(model_factory, calc_factory) -> None:
    """Two water molecules far beyond the model's 4 Å cutoff: the model alone sees no
    interaction, D3 an attraction falling off as about -C6/r^6 (BJ damping is negligible)."""
    model = model_factory()

    def interaction(calc, distance: float) -> float:
        first, second = molecule("H2O"), molecule("H2O")
        second.translate([distance, 0.0, 0.0])
        pair = first + second
        return calc.get_potential_energy(pair) - 2 * calc.get_potential_energy(first)

    alone, total = calc_factory(model), calc_factory(model, dispersion="d3-bj")
    near, far = interaction(total, 10.0), interaction(total, 20.0)
    assert abs(interaction(alone, 10.0)) < 1e-10
    assert near < far < 0
    assert 55 < near / far < 75  # 2^6 = 64 for a pure r^-6 tail; C8/r^8 adds a little


def test_dispersion_none_leaves_the_model_unchanged(model_factory, calc_factory) -> None:
    model = model_factory()
    calc = calc_factory(model, dispersion=None)
    assert calc.dispersion is None
    for atoms in (triclinic_alloy(), water_dimer()):
        atoms.calc = calc
        atoms.get_forces()
        default = calc_factory(model)
        default.calculate(atoms.copy(), ["energy", "forces", "energies"])
        assert calc.results.keys() == default.results.keys()
        for key, value in default.results.items():
            np.testing.assert_array_equal(calc.results[key], value)


@needs_d3
def test_from_checkpoint_takes_the_dispersion_options(tmp_path, model_factory) -> None:
    path = tmp_path / "model.safetensors"
    model_factory().save(path)
    calc = NEMPCalculator.from_checkpoint(
        path, device="cpu", dispersion="d3-zero", dispersion_xc="b3lyp", dispersion_cutoff=25.0
    )
    assert isinstance(calc.dispersion, D3Dispersion)
    assert (calc.dispersion.damping, calc.dispersion.xc) == ("d3-zero", "b3lyp")
    assert calc.dispersion.cutoff == 25.0


@needs_d3
def test_calculator_with_dispersion_can_be_copied_and_pickled(model_factory, calc_factory):
    atoms = triclinic_alloy()
    calc = calc_factory(model_factory(), dispersion="d3-bj", dispersion_xc="r2scan")
    energy = calc.get_potential_energy(atoms)
    for clone in (copy.deepcopy(calc), pickle.loads(pickle.dumps(calc))):
        clone.reset()
        assert clone.dispersion.xc == "r2scan"
        assert clone.get_potential_energy(atoms.copy()) == pytest.approx(energy, rel=1e-12)


@needs_d3
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dispersion": "d3"}, r"one of \['d3-bj', 'd3-zero'\], got 'd3'"),
        ({"dispersion": "d3-bj", "dispersion_xc": "pbe-d3"}, r"'pbe-d3'.*b3lyp.*pbe0.*wb97x"),
        ({"dispersion": "d3-zero", "dispersion_xc": "wb97m"}, r"no d3-zero parameters"),
        ({"dispersion": "d3-bj", "dispersion_cutoff": 0.0}, "must be positive"),
    ],
)
def test_bad_options_are_refused_with_the_choices(model_factory, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        NEMPCalculator(model_factory(), device="cpu", **options)


def test_missing_backend_says_how_to_install_it(model_factory, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dftd3", None)  # import dftd3 now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "mlcalc\[d3\]"'):
        NEMPCalculator(model_factory(), device="cpu", dispersion="d3-bj")
