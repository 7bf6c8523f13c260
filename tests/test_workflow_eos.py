"""E–V curves: ``mlcalc.workflows.eos.ev_curve`` and ``mlcalc ev`` against direct EMT fits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.io import write
from scipy.optimize import curve_fit

from mlcalc.cli import main
from mlcalc.workflows.eos import ev_curve


def birch_murnaghan(volume, e0, b0, bprime, v0):
    """Third-order Birch–Murnaghan E(V), written out here independently of ``ase.eos``."""
    x = (v0 / volume) ** (2.0 / 3.0) - 1.0
    return e0 + 9.0 * v0 * b0 / 16.0 * (x**3 * bprime + x**2 * (6.0 - 4.0 * (x + 1.0)))


@pytest.fixture(scope="module")
def direct_fit() -> dict[str, float]:
    """EMT fcc Cu from its primitive cell on a lattice-constant grid of its own, fitted here."""
    lattice = np.linspace(3.52, 3.66, 11)
    crystals = [bulk("Cu", "fcc", a=a) for a in lattice]
    for atoms in crystals:
        atoms.calc = EMT()
    energies = np.array([atoms.get_potential_energy() for atoms in crystals])
    volumes = lattice**3 / 4.0
    (e0, b0, bprime, v0), _ = curve_fit(birch_murnaghan, volumes, energies, p0=[0, 0.8, 4, 11.6])
    return {"a0": (4.0 * v0) ** (1 / 3), "v0": v0, "e0": e0, "b0": b0 / units.GPa, "bp": bprime}


def test_emt_copper_agrees_with_a_direct_fit(direct_fit: dict[str, float]) -> None:
    cubic = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms: per-atom values must still agree
    fit = ev_curve(cubic, EMT()).fits["Cu4"]
    assert fit.num_atoms == 4
    assert (4.0 * fit.v0_per_atom) ** (1 / 3) == pytest.approx(direct_fit["a0"], abs=1e-3)  # Å
    assert fit.v0 == pytest.approx(4.0 * fit.v0_per_atom, rel=1e-12)
    assert fit.e0_per_atom == pytest.approx(direct_fit["e0"], abs=5e-5)  # eV/atom
    assert fit.e0 == pytest.approx(4.0 * fit.e0_per_atom, rel=1e-12)
    assert fit.b0 == pytest.approx(direct_fit["b0"], rel=0.01)  # GPa (EMT Cu: about 134)
    assert fit.bprime == pytest.approx(direct_fit["bp"], abs=0.1)
    np.testing.assert_allclose(fit.volumes, 3.6**3 * (1.0 + np.linspace(-0.03, 0.03, 9)) ** 3)


def test_bprime_of_equations_of_state_without_a_bprime_parameter() -> None:
    atoms = bulk("Cu", "fcc", a=3.6)
    fits = {eos: ev_curve(atoms, EMT(), eos=eos).fits["Cu"] for eos in ("birchmurnaghan", "sj")}
    taylor = ev_curve(atoms, EMT(), eos="taylor").fits["Cu"]
    # Taylor: E = E0 + β/2 (V-V0)²/V0 + α/6 (V-V0)³/V0, so B′ = -1 - V0 α / β analytically
    _, beta, alpha, v0 = taylor.equation_of_state.eos_parameters
    assert taylor.bprime == pytest.approx(-1.0 - v0 * alpha / beta, rel=1e-5)
    assert fits["sj"].bprime == pytest.approx(fits["birchmurnaghan"].bprime, abs=0.1)
    assert fits["sj"].b0 == pytest.approx(fits["birchmurnaghan"].b0, rel=0.01)


def test_fcc_copper_is_below_bcc() -> None:
    structures = [bulk("Cu", "fcc", a=3.6), bulk("Cu", "bcc", a=2.87)]
    result = ev_curve(structures, EMT())
    assert list(result.fits) == ["Cu #1", "Cu #2"]
    fcc, bcc = result.fits.values()
    assert fcc.e0_per_atom < bcc.e0_per_atom - 0.02  # EMT: about 33 meV/atom apart
    for atoms, fit in zip(structures, (fcc, bcc), strict=True):
        # the fitted minimum is a real EMT energy at the fitted volume
        at_v0 = atoms.copy()
        at_v0.set_cell(atoms.cell[:] * (fit.v0 / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
        at_v0.calc = EMT()
        assert at_v0.get_potential_energy() == pytest.approx(fit.e0, abs=1e-4)
        assert fit.e0 <= fit.energies.min() + 1e-6


def test_relaxed_ions_recover_the_perfect_crystal() -> None:
    perfect = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    rattled = perfect.copy()
    rattled.rattle(0.05, seed=1)
    before = rattled.copy()
    relaxed = ev_curve(rattled, EMT(), strains=0.02, num_points=5, relax_ions=True).fits["Cu8"]
    ideal = ev_curve(perfect, EMT(), strains=0.02, num_points=5).fits["Cu8"]
    frozen = ev_curve(rattled, EMT(), strains=0.02, num_points=5).fits["Cu8"]
    np.testing.assert_allclose(relaxed.energies, ideal.energies, atol=1e-4)  # eV per 8 atoms
    assert np.all(frozen.energies > ideal.energies + 0.01)
    assert relaxed.b0 == pytest.approx(ideal.b0, rel=0.01)
    assert rattled.calc is None  # the caller's structure is left alone
    np.testing.assert_array_equal(rattled.positions, before.positions)
    np.testing.assert_array_equal(rattled.cell[:], before.cell[:])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="periodic in all three directions"):
        ev_curve(molecule("H2O"), EMT())
    with pytest.raises(ValueError, match="periodic in all three directions"):
        ev_curve(fcc111("Cu", size=(1, 1, 3), vacuum=5.0), EMT())
    cu = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(ValueError, match=r"^H2O: an E–V curve needs a cell"):
        ev_curve([cu, molecule("H2O")], EMT())
    with pytest.raises(ValueError, match="at least 5 distinct volumes"):
        ev_curve(cu, EMT(), num_points=4)
    with pytest.raises(ValueError, match="at least 5 distinct volumes"):
        ev_curve(cu, EMT(), strains=[-0.01, 0.0, 0.0, 0.01, 0.01])
    with pytest.raises(ValueError, match="num_points only"):
        ev_curve(cu, EMT(), strains=[-0.02, -0.01, 0.0, 0.01, 0.02], num_points=5)
    with pytest.raises(ValueError, match="unknown equation of state"):
        ev_curve(cu, EMT(), eos="birch-murnaghan")
    with pytest.raises(ValueError, match="one distinct label"):
        ev_curve([cu, cu], EMT(), labels=["a", "a"])
    with pytest.raises(ValueError, match="outside the scanned"):
        ev_curve(bulk("Cu", "fcc", a=3.3), EMT(), strains=0.02)


def test_outputs_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write(tmp_path / "fcc.xyz", bulk("Cu", "fcc", a=3.6))
    write(tmp_path / "bcc.xyz", bulk("Cu", "bcc", a=2.87))
    out = tmp_path / "out"
    args = ["ev", str(tmp_path / "fcc.xyz"), str(tmp_path / "bcc.xyz"), "--model", "emt"]
    assert main([*args, "--points", "7", "--out", str(out)]) == 0
    assert "B0 (GPa)" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["eos"] == "birchmurnaghan" and len(result["strains"]) == 7
    assert list(result["fits"]) == ["fcc", "bcc"]
    direct = ev_curve(bulk("Cu", "fcc", a=3.6), EMT(), num_points=7).fits["Cu"]
    assert result["fits"]["fcc"]["b0"] == pytest.approx(direct.b0, rel=1e-10)
    assert "equation_of_state" not in result["fits"]["fcc"]
    with open(out / "ev.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 14 and rows[7]["label"] == "bcc"
    assert float(rows[0]["energy_eV"]) == pytest.approx(direct.energies[0], rel=1e-12)
    assert (out / "ev.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    write(tmp_path / "water.xyz", molecule("H2O"))
    assert main(["ev", str(tmp_path / "water.xyz"), "--model", "emt", "--out", str(out)]) == 2
    assert "periodic in all three directions" in capsys.readouterr().err
