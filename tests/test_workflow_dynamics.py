"""Relaxation and MD: EMT lattice constant and pressure, force convergence, energy conservation
with a float64 NEMP model, thermostat temperatures, NPT volume, files and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.io import read, write

from mlcalc import NEMPCalculator
from mlcalc.cli import main
from mlcalc.workflows.dynamics import md, relax


def emt_lattice_constant() -> float:
    """EMT's fcc Cu lattice constant (Å) from a cubic fit of E(a) on a fine grid."""
    lattice = np.linspace(3.55, 3.63, 9)
    energies = []
    for a in lattice:
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    fit = np.polynomial.Polynomial.fit(lattice, energies, 3)
    roots = fit.deriv().roots()
    return float(roots[np.argmin(np.abs(roots - 3.59))].real)


def copper(a: float = 3.59, repeat: int = 1) -> Atoms:
    return bulk("Cu", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)


def test_cell_relaxation_recovers_the_emt_lattice_constant() -> None:
    strained = copper(3.59)
    strain = np.array([[1.03, 0.01, 0.0], [0.01, 0.98, -0.02], [0.0, -0.02, 1.01]])
    strained.set_cell(strained.cell[:] @ strain, scale_atoms=True)
    before = strained.get_positions()
    result = relax(strained, EMT(), cell=True, fmax=1e-3)
    assert result.converged
    lengths_and_angles = result.atoms.cell.cellpar()
    np.testing.assert_allclose(lengths_and_angles[:3], emt_lattice_constant(), atol=1e-3)
    np.testing.assert_allclose(lengths_and_angles[3:], 90.0, atol=0.02)
    np.testing.assert_allclose(result.final_stress, 0.0, atol=0.02)  # GPa
    assert result.final_volume == pytest.approx(result.atoms.get_volume())
    assert result.energies[-1] == pytest.approx(result.final_energy)
    assert result.final_energy < result.energies[0]
    assert len(result.energies) == len(result.max_forces) == result.n_steps + 1
    np.testing.assert_array_equal(strained.get_positions(), before)  # input untouched
    assert strained.calc is None


def test_cell_relaxation_under_pressure_balances_the_stress() -> None:
    """At 5 GPa the relaxed crystal's stress is −5 GPa on the diagonal (ASE: tension > 0)."""
    result = relax(copper(), EMT(), cell=True, pressure=5.0, fmax=1e-4)
    assert result.converged
    np.testing.assert_allclose(result.final_stress[:3], -5.0, atol=0.02)
    np.testing.assert_allclose(result.final_stress[3:], 0.0, atol=0.02)
    assert result.final_volume < 0.99 * result.initial_volume


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE", "LBFGS"])
def test_ion_relaxation_reaches_fmax_and_writes_files(optimizer: str, tmp_path: Path) -> None:
    rattled = copper(repeat=2)
    rattled.rattle(0.08, seed=1)
    trajectory, log = tmp_path / "relax.traj", tmp_path / "relax.log"
    log.write_text("old content\n")
    result = relax(
        rattled, EMT(), fmax=0.01, optimizer=optimizer, trajectory=trajectory, logfile=log
    )
    assert result.converged and not result.cell_relaxed
    check = result.atoms.copy()
    check.calc = EMT()
    assert np.linalg.norm(check.get_forces(), axis=1).max() < 0.01
    assert result.final_max_force < 0.01 <= result.max_forces[0]
    np.testing.assert_array_equal(result.final_cell, rattled.cell[:])
    frames = read(trajectory, ":")
    assert len(frames) == result.n_steps + 1
    np.testing.assert_allclose(frames[-1].positions, result.atoms.positions)
    lines = log.read_text().splitlines()
    assert "old content" not in lines and len(lines) == result.n_steps + 2


def test_relax_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="periodic in all three directions"):
        relax(molecule("H2O"), EMT(), cell=True)
    with pytest.raises(ValueError, match="pressure needs cell=True"):
        relax(copper(), EMT(), pressure=1.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        relax(copper(), EMT(), optimizer="GPMin")


def test_nve_with_a_float64_nemp_model_conserves_energy(model_factory) -> None:
    calculator = NEMPCalculator(model_factory(elements=["Cu"]), device="cpu", dtype="float64")
    atoms = bulk("Cu", "fcc", a=3.61) * (3, 3, 3)
    result = md(atoms, calculator, ensemble="nve", temperature_K=50, steps=120, interval=1)
    per_atom = 1.0 / len(atoms)
    assert np.ptp(result.total_energy) * per_atom < 1e-5  # eV/atom, i.e. 0.01 meV/atom
    assert np.ptp(result.potential_energy) * per_atom > 1e-3  # while energy is exchanged
    assert abs(result.energy_drift) < 1e-3  # eV/atom/ps
    np.testing.assert_allclose(result.conserved_energy, result.total_energy)
    assert len(result.time) == 121 and result.time[-1] == pytest.approx(0.120)


@pytest.mark.parametrize("ensemble", ["nvt-langevin", "nvt-nose-hoover", "nve"])
def test_thermostats_reach_the_target_temperature(ensemble: str) -> None:
    """Velocities drawn at 300 K on a perfect lattice: equipartition halves the initial
    temperature in NVE; the thermostats bring it back to 300 K (±15 %, about 3σ for 32
    atoms)."""
    result = md(
        copper(repeat=2),
        EMT(),
        ensemble=ensemble,
        temperature_K=300,
        timestep_fs=2.0,
        steps=400,
        interval=5,
        friction=0.02,
        tdamp=40.0,
        seed=3,
    )
    assert result.temperature[0] == pytest.approx(300, rel=0.3)
    expected = result.temperature[0] / 2 if ensemble == "nve" else 300.0
    assert result.temperature_mean == pytest.approx(expected, rel=0.15)
    assert (result.conserved_energy is None) == (ensemble == "nvt-langevin")
    if ensemble == "nvt-nose-hoover":
        assert abs(result.energy_drift) < 1e-3  # the extended system's energy is conserved


@pytest.mark.parametrize("ensemble", ["npt", "npt-isotropic"])
def test_npt_compresses_towards_the_relaxed_volume_at_pressure(ensemble: str) -> None:
    start = copper(repeat=2)
    reference = relax(copper(), EMT(), cell=True, pressure=10.0, fmax=1e-4).final_volume * 8
    result = md(
        start,
        EMT(),
        ensemble=ensemble,
        temperature_K=300,
        timestep_fs=2.0,
        steps=150,
        interval=2,
        pressure=10.0,
        tdamp=50.0,
        pdamp=100.0,
    )
    mean_volume = result.volume[len(result.volume) // 2 :].mean()
    assert result.volume[0] == pytest.approx(start.get_volume())
    assert mean_volume < 0.96 * start.get_volume()
    # a little thermal expansion at 300 K on top of the 0 K volume at 10 GPa
    assert mean_volume == pytest.approx(reference, rel=0.03)
    assert result.atoms.get_volume() != pytest.approx(start.get_volume())


def test_md_files_samples_seed_and_input(tmp_path: Path) -> None:
    atoms = copper()
    trajectory, log = tmp_path / "md.traj", tmp_path / "md.log"
    run = md(
        atoms,
        EMT(),
        ensemble="nvt-langevin",
        timestep_fs=2.0,
        steps=20,
        interval=5,
        trajectory=trajectory,
        logfile=log,
        seed=7,
    )
    np.testing.assert_allclose(run.time, [0.0, 0.01, 0.02, 0.03, 0.04])
    frames = read(trajectory, ":")
    assert len(frames) == 5
    np.testing.assert_allclose(frames[-1].positions, run.atoms.positions)
    lines = log.read_text().splitlines()
    assert lines[0].split()[0] == "Time[ps]" and len(lines) == 6
    np.testing.assert_allclose(
        [float(line.split()[4]) for line in lines[1:]], run.temperature, atol=0.1
    )
    again = md(atoms, EMT(), ensemble="nvt-langevin", timestep_fs=2.0, steps=20, interval=5, seed=7)
    other = md(atoms, EMT(), ensemble="nvt-langevin", timestep_fs=2.0, steps=20, interval=5, seed=8)
    np.testing.assert_array_equal(again.temperature, run.temperature)
    assert not np.allclose(other.temperature, run.temperature)
    assert atoms.calc is None and not atoms.has("momenta")


def test_md_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="periodic in all three directions"):
        md(molecule("H2O"), EMT(), ensemble="npt")
    with pytest.raises(ValueError, match="ensemble must be one of"):
        md(copper(), EMT(), ensemble="nvt")
    with pytest.raises(ValueError, match="steps >= 1"):
        md(copper(), EMT(), steps=0)


def test_md_on_a_molecule_has_no_volume() -> None:
    result = md(molecule("CH4"), EMT(), steps=10, interval=5, progress=False)
    assert result.volume is None
    assert "volume_A3" not in result.table()[0]


def test_cli_relax_and_md_write_their_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    structure = tmp_path / "cu.extxyz"
    write(structure, copper(3.65))
    out = tmp_path / "relax"
    assert main(["relax", str(structure), "--model", "emt", "--cell", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["converged"] and result["cell_relaxed"] and "atoms" not in result
    for name in ("relax.csv", "relax.png", "relax.traj", "relax.log", "relaxed.extxyz"):
        assert (out / name).stat().st_size > 0
    relaxed = read(out / "relaxed.extxyz")
    assert relaxed.cell.cellpar()[0] == pytest.approx(3.59, abs=0.01)

    out = tmp_path / "md"
    argv = ["md", str(out.parent / "relax" / "relaxed.extxyz"), "--model", "emt"]
    argv += ["--ensemble", "nvt-langevin", "--steps", "20", "--interval", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "20/20 steps" in captured.err  # the progress bar
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 20 and len(result["temperature"]) == 5
    for name in ("md.csv", "md.png", "md.traj", "md.log", "final.extxyz"):
        assert (out / name).stat().st_size > 0
    assert len(read(out / "md.traj", ":")) == 5
    assert main(["md", str(structure), "--model", "emt", "--ensemble", "nvx"]) == 2
    assert "ensemble must be one of" in capsys.readouterr().err
