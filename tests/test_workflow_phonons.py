"""Phonons via phonopy against analytic spring-model frequencies and an independent
finite-difference dynamical matrix of EMT copper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import write
from ase.neighborlist import neighbor_list

from mlcalc.cli import main
from mlcalc.workflows.lattice_dynamics import phonons

#: Gas constant, J/K/mol.
R_GAS = units.kB * units.mol / units.kJ * 1e3
#: EMT's lattice constant of Cu (Å), close enough for zero residual forces by symmetry.
A_CU = 3.59


class Springs(Calculator):
    """Central harmonic springs E = k/2 Σ (r - r0)² between all pairs closer than ``cutoff``."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(self, k: float, r0: float, cutoff: float) -> None:
        super().__init__()
        self.k, self.r0, self.cutoff = k, r0, cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        i, d = neighbor_list("iD", self.atoms, self.cutoff)
        r = np.linalg.norm(d, axis=1)
        stretch = r - self.r0
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, (self.k * stretch / r)[:, None] * d)
        # every bond is listed once from each end
        self.results = {"energy": 0.25 * self.k * np.sum(stretch**2), "forces": forces}


def thz(eigenvalue: np.ndarray) -> np.ndarray:
    """ω² in eV/(Å² amu) → signed frequency ν = ω/2π in THz (negative for ω² < 0)."""
    omega = np.sqrt(np.abs(eigenvalue)) * units.second  # rad/s
    return np.sign(eigenvalue) * omega / (2 * np.pi * 1e12)


def cesium_chloride(a: float = 3.0) -> Atoms:
    """B2 (CsCl) crystal: one Cs and one Cl per simple-cubic cell, 8 nearest neighbours."""
    return Atoms("CsCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[a] * 3, pbc=True)


@pytest.mark.parametrize("k", [2.0, -2.0])
def test_spring_crystal_matches_the_analytic_frequencies(k: float) -> None:
    """B2 with nearest-neighbour central springs k: the 8 bond directions n give Σ n nᵀ = 8/3;
    at Γ the optical ω² = 8k/3 (1/m1 + 1/m2); at R = (½, ½, ½) and X = (½, 0, 0) the A–B
    coupling Σ n nᵀ exp(iq·d) vanishes, leaving ω² = 8k/3m1 and 8k/3m2 (each threefold).
    k < 0 makes the optical modes imaginary: they must come out negative and be flagged."""
    atoms = cesium_chloride()
    masses = atoms.get_masses()
    r0 = np.sqrt(3) / 2 * 3.0
    result = phonons(atoms, Springs(k, r0, cutoff=2.8), supercell=(2, 2, 2), primitive=None)

    optical = thz(8 * k / 3 * (1 / masses[0] + 1 / masses[1]))
    gamma = np.sort(result.gamma_frequencies)
    expected = np.sort([0.0] * 3 + [optical] * 3)
    np.testing.assert_allclose(gamma, expected, rtol=1e-4, atol=1e-4)
    boundary = np.sort(np.repeat(thz(8 * k / 3 / masses), 3))
    for q in ([0.5, 0.5, 0.5], [0.5, 0.0, 0.0]):
        computed = np.sort(result.phonopy.run_qpoints([q]).frequencies[0])
        np.testing.assert_allclose(computed, boundary, rtol=1e-4)
    assert result.has_imaginary_modes == (k < 0)
    if k < 0:
        assert result.min_frequency == pytest.approx(optical, rel=1e-4)
    assert result.tick_labels == ["Γ", "X", "M", "Γ", "R", "X|M", "R"]


def independent_x_frequencies(atoms: Atoms, h: float = 0.01) -> np.ndarray:
    """Frequencies (THz) of a one-atom crystal at X from central finite differences in a
    2×2×2 supercell (exact for the commensurate X point), without phonopy."""
    supercell = atoms * (2, 2, 2)
    supercell.calc = EMT()
    constants = np.zeros((3, len(supercell), 3))  # Φ[α of atom 0, atom j, β]
    for alpha in range(3):
        forces = []
        for sign in (1, -1):
            displaced = supercell.copy()
            displaced.calc = EMT()
            displaced.positions[0, alpha] += sign * h
            forces.append(displaced.get_forces())
        constants[alpha] = -(forces[0] - forces[1]) / (2 * h)
    q = 2 * np.pi * np.array([0.5, 0.0, 0.5]) @ atoms.cell.reciprocal()
    phases = np.exp(1j * (supercell.positions - supercell.positions[0]) @ q)
    dynamical = np.einsum("ajb,j->ab", constants, phases) / atoms.get_masses()[0]
    return np.sort(thz(np.linalg.eigvalsh(dynamical)))


def test_emt_copper_agrees_with_an_independent_dynamical_matrix() -> None:
    atoms = bulk("Cu", "fcc", a=A_CU)
    result = phonons(atoms, EMT(), supercell=(2, 2, 2), primitive=None, mesh=(12, 12, 12))
    at_x = np.sort(result.phonopy.run_qpoints([[0.5, 0.0, 0.5]]).frequencies[0])
    np.testing.assert_allclose(at_x, independent_x_frequencies(atoms), rtol=2e-4)
    np.testing.assert_allclose(result.gamma_frequencies, 0.0, atol=1e-3)
    assert not result.has_imaginary_modes and result.min_frequency > -1e-3
    assert 6.0 < result.max_frequency < 9.0  # experiment 7.2 THz, EMT a little stiffer
    assert result.max_residual_force < 1e-10
    assert result.tick_labels[:3] == ["Γ", "X", "W"]
    assert atoms.calc is None  # the input was not touched


def test_auto_primitive_and_classical_heat_capacity() -> None:
    """From the 4-atom cubic cell phonopy finds the 1-atom primitive cell; the X frequencies
    match the primitive-cell run, and C_V (per mole of primitive cells) → 3R at high T."""
    cubic = bulk("Cu", "fcc", a=A_CU, cubic=True)
    result = phonons(cubic, EMT(), supercell=(2, 2, 2), temperatures=[10.0, 300.0, 2000.0])
    assert result.n_atoms_primitive == 1
    np.testing.assert_allclose(result.primitive_matrix, (np.ones((3, 3)) - np.eye(3)) / 2)
    primitive = phonons(bulk("Cu", "fcc", a=A_CU), EMT(), supercell=(2, 2, 2), primitive=None)
    x_cubic = result.phonopy.run_qpoints([[0.5, 0.0, 0.5]]).frequencies[0]
    x_primitive = primitive.phonopy.run_qpoints([[0.5, 0.0, 0.5]]).frequencies[0]
    np.testing.assert_allclose(np.sort(x_cubic), np.sort(x_primitive), rtol=1e-3)
    heat_capacity = result.heat_capacity / result.n_atoms_primitive
    assert heat_capacity[-1] == pytest.approx(3 * R_GAS, rel=3e-3)
    assert heat_capacity[0] < 0.01 * 3 * R_GAS  # Debye T³ regime
    assert result.free_energy[0] > 0  # the zero-point energy
    assert np.all(np.diff(result.entropy) > 0)


def test_explicit_band_path_and_bad_input() -> None:
    atoms = bulk("Cu", "fcc", a=A_CU)
    result = phonons(
        atoms, EMT(), band_path="GXQ,LG", special_points={"Q": [0.25, 0.0, 0.25]}, mesh=(4, 4, 4)
    )
    assert result.tick_labels == ["Γ", "X", "Q|L", "Γ"]
    np.testing.assert_allclose(result.band_qpoints[1][-1], [0.25, 0.0, 0.25])
    np.testing.assert_allclose(result.band_qpoints[2][0], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="at least two points"):
        phonons(atoms, EMT(), band_path="GX,L")
    with pytest.raises(ValueError, match=r"\['Z'\] are not special points"):
        phonons(atoms, EMT(), band_path="GZ")
    with pytest.raises(ValueError, match="periodic in all three directions"):
        phonons(molecule("H2O"), EMT())
    slab = atoms.copy()
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match="pbc=\\[True, True, False\\]"):
        phonons(slab, EMT())
    with pytest.raises(ValueError, match="displacement"):
        phonons(atoms, EMT(), displacement=0.0)


def test_cli_writes_results_plot_and_phonopy_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    structure = tmp_path / "cu.extxyz"
    write(structure, bulk("Cu", "fcc", a=A_CU))
    out = tmp_path / "out"
    argv = ["phonons", str(structure), "--model", "emt", "--supercell", "2", "2", "2"]
    assert main([*argv, "--mesh", "8", "8", "8", "--t-max", "500", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["n_atoms_primitive"] == 1 and not result["has_imaginary_modes"]
    assert result["temperatures"][-1] == 500.0
    assert "phonopy" not in result
    for name in ("phonons.csv", "phonons.png", "phonopy_params.yaml"):
        assert (out / name).stat().st_size > 0
    assert "imaginary" not in capsys.readouterr().err
    assert main([*argv, "--primitive", "1", "2", "--out", str(out)]) == 2
    assert "--primitive takes" in capsys.readouterr().err
