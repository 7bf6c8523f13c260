"""Dimer scans: ``mlcalc.workflows.dimer.dimer_scan`` and ``mlcalc dimer``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from scipy.optimize import minimize_scalar

from mlcalc.cli import main
from mlcalc.workflows.dimer import dimer_scan


def emt_binding(pair: tuple[str, str], distance: float) -> float:
    """EMT E(dimer) - E(atom) - E(atom) (eV), computed directly (dimer along x)."""

    def energy(atoms: Atoms) -> float:
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    dimer = energy(Atoms(pair, positions=[[0.0, 0.0, 0.0], [distance, 0.0, 0.0]]))
    return dimer - energy(Atoms(pair[0])) - energy(Atoms(pair[1]))


def test_lennard_jones_curve_is_analytic() -> None:
    sigma, epsilon, cutoff = 2.0, 0.3, 12.0
    distances = np.linspace(1.8, 5.0, 65)
    calculator = LennardJones(sigma=sigma, epsilon=epsilon, rc=cutoff, smooth=False)
    result = dimer_scan("Ar", calculator, distances=distances)
    assert result.atomic_energies == {"Ar": 0.0}
    curve = result.curves["Ar-Ar"]

    def lj(r):
        return 4.0 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)

    shift = lj(cutoff)  # ASE shifts the pair energy to zero at rc (here -6e-6 eV)
    np.testing.assert_allclose(curve.energies, lj(distances) - shift, rtol=0, atol=1e-12)
    # the grid step is 0.05 Å: the spline refines the minimum well below it
    assert curve.r_min == pytest.approx(2 ** (1 / 6) * sigma, abs=5e-4)  # Å
    assert curve.e_min == pytest.approx(-epsilon - shift, abs=1e-5)  # eV


def test_emt_pairs_of_copper_and_nickel() -> None:
    result = dimer_scan(["Cu", "Ni", "Cu"], EMT(), distances=np.linspace(1.6, 5.0, 35))
    assert list(result.curves) == ["Cu-Cu", "Cu-Ni", "Ni-Ni"]
    for pair, curve in result.curves.items():
        elements = tuple(pair.split("-"))
        assert curve.elements == elements
        direct = [emt_binding(elements, r) for r in result.distances[::11]]
        np.testing.assert_allclose(curve.energies[::11], direct, rtol=0, atol=1e-12)
        best = minimize_scalar(
            lambda r, e=elements: emt_binding(e, r), bounds=(1.9, 2.5), options={"xatol": 1e-6}
        )
        assert curve.r_min == pytest.approx(best.x, abs=2e-3)  # Å
        assert curve.e_min == pytest.approx(best.fun, abs=1e-4)  # eV
    assert result.curves["Ni-Ni"].e_min < result.curves["Cu-Ni"].e_min < -3.0


def test_explicit_pairs_are_scanned_once_in_the_given_order() -> None:
    distances = [2.0, 2.2, 2.4, 2.6]
    result = dimer_scan([("Ni", "Cu"), ("Cu", "Ni"), ("Cu", "Cu")], EMT(), distances=distances)
    assert list(result.curves) == ["Ni-Cu", "Cu-Cu"]
    assert set(result.atomic_energies) == {"Ni", "Cu"}
    both = dimer_scan(["Cu", "Ni"], EMT(), distances=distances)
    np.testing.assert_allclose(result.curves["Ni-Cu"].energies, both.curves["Cu-Ni"].energies)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown element symbol.*'Qq'"):
        dimer_scan(["Cu", "Qq"], EMT())
    with pytest.raises(ValueError, match=r"unknown element symbol.*'X'"):
        dimer_scan([("Cu", "X")], EMT())
    with pytest.raises(ValueError, match="pairs"):
        dimer_scan([("Cu", "Ni", "Cu")], EMT())
    with pytest.raises(ValueError, match="no elements"):
        dimer_scan([], EMT())
    with pytest.raises(ValueError, match="at least 4 distinct positive"):
        dimer_scan("Cu", EMT(), distances=[2.0, 2.5, 3.0])
    with pytest.raises(ValueError, match="at least 4 distinct positive"):
        dimer_scan("Cu", EMT(), distances=[0.0, 2.0, 2.5, 3.0])


def test_any_ase_calculator_works_untrained_nemp(model_factory, calc_factory) -> None:
    """A freshly built (untrained) NEMP: the dimer energy is exactly E0(a) + E0(b) beyond the
    cutoff, where the two atoms no longer see each other."""
    cutoff = 3.0
    model = model_factory(elements=("H", "O"), cutoff=cutoff)
    distances = np.linspace(0.7, 4.0, 12)
    result = dimer_scan(["H", "O"], calc_factory(model), distances=distances)
    assert list(result.curves) == ["H-H", "H-O", "O-O"]
    for curve in result.curves.values():
        assert np.all(np.isfinite(curve.energies))
        np.testing.assert_allclose(curve.energies[distances >= cutoff], 0.0, rtol=0, atol=1e-12)
        assert np.all(np.abs(curve.energies[distances < cutoff - 0.5]) > 1e-6)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    args = ["--model", "emt", "--rmin", "1.6", "--rmax", "5.0", "--points", "35"]
    assert main(["dimer", "Cu", "Ni", *args, "--out", str(out)]) == 0
    assert "r_min" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert list(result["curves"]) == ["Cu-Cu", "Cu-Ni", "Ni-Ni"]
    assert result["distances"] == pytest.approx(np.linspace(1.6, 5.0, 35).tolist())
    assert result["curves"]["Cu-Ni"]["energies"][4] == pytest.approx(
        emt_binding(("Cu", "Ni"), 2.0), abs=1e-12
    )
    with open(out / "dimer.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 3 * 35 and rows[35]["pair"] == "Cu-Ni"
    assert (out / "dimer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["dimer", "Ni-Cu", *args, "--out", str(out)]) == 0
    assert list(json.loads((out / "result.json").read_text())["curves"]) == ["Ni-Cu"]
    assert main(["dimer", "Cu", "Cu-Ni", *args, "--out", str(out)]) == 2
    assert "either element symbols or A-B pairs" in capsys.readouterr().err
    assert main(["dimer", "Cu", "Qq", *args, "--out", str(out)]) == 2
    assert "unknown element symbol" in capsys.readouterr().err
