"""Exfoliation curves and sliding PES against direct sums of Lennard-Jones pair energies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.io import write

from mlcalc.cli import main
from mlcalc.workflows.layers import exfoliation_curve
from mlcalc.workflows.sliding import sliding_pes

ROOT = Path(__file__).resolve().parents[1]
SIGMA, EPSILON, CUTOFF = 3.0, 0.01, 7.5  # Å, eV, Å
A = 3.4  # in-plane lattice constant of the triangular layers, Å
IN_PLANE = A * np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3.0) / 2.0, 0.0]])
AREA = A**2 * np.sqrt(3.0) / 2.0
HOLLOW, BRIDGE = (1 / 3, 1 / 3), (1 / 2, 0.0)


def lj() -> LennardJones:
    return LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=CUTOFF)


def layers(stackings: list[tuple[float, float]], distance: float, pbc_z: bool = False) -> Atoms:
    """Triangular one-atom layers at the given fractional in-plane offsets, ``distance`` apart
    along z (the first at z = 5 Å) in a 20 Å high cell."""
    offsets = np.asarray(stackings) @ IN_PLANE[:, :2]
    heights = 5.0 + distance * np.arange(len(stackings))
    positions = np.column_stack([offsets, heights])
    cell = np.vstack([IN_PLANE, [0.0, 0.0, 20.0]])
    return Atoms(f"Ar{len(stackings)}", positions=positions, cell=cell, pbc=[True, True, pbc_z])


def pair_sum(lower: np.ndarray, upper: np.ndarray) -> float:
    """Σ of ASE's shifted LJ pair energy u(r) - u(rc), r ≤ rc, between every atom of ``lower``
    and every in-plane periodic image of every atom of ``upper`` (positions in Å)."""
    n = np.arange(-6, 7)
    images = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2) @ IN_PLANE
    vectors = upper[None, :, None] + images[None, None] - lower[:, None, None]
    r = np.linalg.norm(vectors, axis=-1)
    u = 4 * EPSILON * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6)
    u_cut = 4 * EPSILON * ((SIGMA / CUTOFF) ** 12 - (SIGMA / CUTOFF) ** 6)
    return float(np.where(r <= CUTOFF, u - u_cut, 0.0).sum())


def interlayer(shift: tuple[float, float], distance: float) -> float:
    """Direct LJ energy (eV) of two one-atom layers at fractional ``shift`` and ``distance``."""
    top = np.append(np.asarray(shift) @ IN_PLANE[:, :2], distance)
    return pair_sum(np.zeros((1, 3)), top[None])


# ---------------------------------------------------------------------------------------------
# exfoliation


@pytest.mark.parametrize("reference", ["largest", "separated"])
def test_exfoliation_curve_equals_the_direct_pair_sum(reference: str) -> None:
    structure = layers([(0, 0), HOLLOW], distance=3.1)
    before = structure.copy()
    separations = [2.4, 2.6, 2.8, 3.0, 3.2, 3.6, 4.5, 6.0, 8.0]  # the last beyond the cutoff
    result = exfoliation_curve(structure, lj(), separations=separations, reference=reference)
    direct = np.array([interlayer(HOLLOW, d) for d in separations])
    assert interlayer(HOLLOW, 8.0) == 0.0
    np.testing.assert_allclose(result.separations, separations)
    np.testing.assert_allclose(result.binding_per_atom, 1e3 * direct / 2, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.binding_per_area, 1e3 * direct / AREA, rtol=0, atol=1e-9)
    assert result.area == pytest.approx(AREA, rel=1e-12)
    assert (result.axis, result.moving, result.n_atoms) == (2, [1], 2)
    # the caller's structure is untouched
    np.testing.assert_array_equal(structure.positions, before.positions)
    assert structure.calc is None


def test_equilibrium_is_the_minimum_of_the_direct_curve() -> None:
    structure = layers([(0, 0), HOLLOW], distance=3.0)
    result = exfoliation_curve(structure, lj(), separations=[*np.arange(2.5, 4.01, 0.1), 8.0])
    fine = np.arange(2.5, 2.9, 1e-4)
    direct = np.array([interlayer(HOLLOW, d) for d in fine])
    assert result.equilibrium_distance == pytest.approx(fine[np.argmin(direct)], abs=2e-3)
    assert result.binding_energy_per_area == pytest.approx(1e3 * direct.min() / AREA, rel=1e-3)
    assert result.binding_energy_per_atom == pytest.approx(1e3 * direct.min() / 2, rel=1e-3)
    # 1 meV/Å² = 16.02 mJ/m²
    assert result.binding_energy_j_per_m2 == pytest.approx(
        result.binding_energy_per_area * 0.0160217663, rel=1e-8
    )


def test_periodic_stacking_axis_with_vacuum_and_a_wrapped_layer() -> None:
    """Fully periodic, stacking along the first cell vector, the top layer wrapped to the
    bottom of the cell: the same curve as the plain slab."""
    plain = layers([(0, 0), HOLLOW], distance=3.1)
    wrapped = layers([(0, 0), HOLLOW], distance=3.1, pbc_z=True)
    # 8.9 Å of vacuum: more than the cutoff only if the cell grows with the separation
    wrapped.set_cell(np.vstack([IN_PLANE, [0.0, 0.0, 12.0]]))
    wrapped.translate([0.0, 0.0, 5.0])  # the top layer at z = 13.1 Å: outside the cell
    wrapped.wrap()
    assert wrapped.positions[1, 2] < wrapped.positions[0, 2]
    # z → x, x → y, y → z (a rotation): the stacking vector becomes the first cell vector
    wrapped = Atoms(
        wrapped.numbers,
        positions=wrapped.positions[:, [2, 0, 1]],
        cell=wrapped.cell.array[[2, 0, 1]][:, [2, 0, 1]],
        pbc=True,
    )
    separations = [2.4, 2.6, 3.0, 3.4, 4.0, 8.0]
    reference = exfoliation_curve(plain, lj(), separations=separations)
    result = exfoliation_curve(wrapped, lj(), separations=separations)
    assert result.axis == 0
    np.testing.assert_allclose(result.binding_per_atom, reference.binding_per_atom, atol=1e-9)
    # a cell too short for the vacuum needed is refused, even when the axis is named
    with pytest.raises(ValueError, match="no vacuum along the periodic stacking axis 0"):
        exfoliation_curve(wrapped, lj(), axis=0, min_vacuum=20.0)


def test_multilayer_moves_the_top_layer_or_the_split() -> None:
    stackings = [(0, 0), HOLLOW, (2 / 3, 2 / 3)]  # ABC
    structure = layers(stackings, distance=3.0)
    separations = [2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.6, 8.0]
    positions = structure.positions

    def direct(fixed: slice, moving: slice) -> np.ndarray:
        return np.array(
            [pair_sum(positions[fixed], positions[moving] + [0, 0, d - 3.0]) for d in separations]
        )

    top = exfoliation_curve(structure, lj(), separations=separations, reference="separated")
    assert top.moving == [2]
    expected = 1e3 * direct(slice(0, 2), slice(2, 3)) / 3
    np.testing.assert_allclose(top.binding_per_atom, expected, atol=1e-9)
    two = exfoliation_curve(
        structure, lj(), separations=separations, split=[1, 2], reference="separated"
    )
    assert two.moving == [1, 2]
    expected = 1e3 * direct(slice(0, 1), slice(1, 3)) / 3
    np.testing.assert_allclose(two.binding_per_atom, expected, atol=1e-9)


def test_bad_layered_input_is_refused() -> None:
    bulk = layers([(0, 0), HOLLOW], distance=3.0, pbc_z=True)
    bulk.set_cell(np.vstack([IN_PLANE, [0, 0, 6.0]]))  # stacked AB bulk: no vacuum
    with pytest.raises(ValueError, match="no vacuum axis"):
        exfoliation_curve(bulk, lj())
    with pytest.raises(ValueError, match="no vacuum axis"):
        sliding_pes(bulk, lj())
    with pytest.raises(ValueError, match="fewer than 2 layers"):
        exfoliation_curve(layers([(0, 0)], distance=3.0), lj())
    molecule = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.5]])
    with pytest.raises(ValueError, match="two periodic in-plane directions"):
        exfoliation_curve(molecule, lj())
    slab = layers([(0, 0), HOLLOW], distance=3.0)
    with pytest.raises(ValueError, match="above the fixed ones"):
        exfoliation_curve(slab, lj(), split=[0])
    with pytest.raises(ValueError, match="edge of the scan"):
        exfoliation_curve(slab, lj(), separations=[3.5, 4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="at least 4 distinct positive"):
        exfoliation_curve(slab, lj(), separations=[3.0, 4.0])
    with pytest.raises(ValueError, match="needs mode='flexible'"):
        sliding_pes(slab, lj(), relax_atoms=True)
    with pytest.raises(ValueError, match="grid must be two positive integers"):
        sliding_pes(slab, lj(), grid=(0, 3))


# ---------------------------------------------------------------------------------------------
# sliding


@pytest.fixture(scope="module")
def rigid() -> object:
    """Rigid 6×6 PES of an AA-stacked bilayer at d = 3.0 Å."""
    path = {"AA": (0, 0), "AB": HOLLOW, "BA": (2 / 3, 2 / 3)}
    return sliding_pes(layers([(0, 0), (0, 0)], 3.0), lj(), grid=(6, 6), path=path)


def test_rigid_sliding_equals_the_direct_pair_sum(rigid) -> None:
    shifts = rigid.shifts.reshape(-1, 2)
    direct = np.array([interlayer(tuple(shift), 3.0) for shift in shifts]).reshape(6, 6)
    expected = 1e3 * (direct - direct.min()) / AREA
    np.testing.assert_allclose(rigid.relative_per_area, expected, rtol=0, atol=1e-9)
    assert rigid.corrugation == pytest.approx(expected.max(), abs=1e-9)
    np.testing.assert_allclose(rigid.distances, 3.0)
    energies = rigid.energies
    assert energies[0, 0] > energies[2, 2] + 1e-3  # atop (AA) well above hollow for LJ
    assert energies[2, 2] == pytest.approx(energies[4, 4], abs=1e-10)  # AB and BA
    bridges = [energies[3, 0], energies[0, 3], energies[3, 3]]
    np.testing.assert_allclose(bridges, energies[3, 0], rtol=0, atol=1e-10)
    assert rigid.relative_per_area[2, 2] == 0.0


def test_sliding_is_periodic_over_the_in_plane_cell(rigid) -> None:
    moved = layers([(0, 0), (0, 0)], 3.0)
    moved.positions[1] += IN_PLANE[0] - 2 * IN_PLANE[1]  # a lattice vector: the same stacking
    again = sliding_pes(moved, lj(), grid=(6, 6))
    np.testing.assert_allclose(again.energies, rigid.energies, rtol=0, atol=1e-10)
    # a 2×1 supercell: shifts over twice the cell repeat with the primitive period
    supercell = sliding_pes(layers([(0, 0), (0, 0)], 3.0).repeat((2, 1, 1)), lj(), grid=(6, 3))
    primitive = sliding_pes(layers([(0, 0), (0, 0)], 3.0), lj(), grid=(3, 3))
    np.testing.assert_allclose(
        supercell.energies, 2 * np.tile(primitive.energies, (2, 1)), rtol=0, atol=1e-9
    )


def test_line_cut_goes_through_the_grid(rigid, tmp_path: Path) -> None:
    cut = rigid.line_cut("AA", "AB", points=7)  # every third point lies on the 6×6 grid
    assert cut.labels == ["AA", "AB"]
    np.testing.assert_allclose(cut.fractional[[0, 3, 6]], [[0, 0], [1 / 6, 1 / 6], HOLLOW])
    grid = rigid.relative_per_area[[0, 1, 2], [0, 1, 2]]
    np.testing.assert_allclose(cut.relative_per_area[[0, 3, 6]], grid, atol=1e-9)
    assert cut.stops[-1] == pytest.approx(A / np.sqrt(3.0), rel=1e-12)
    # between grid points: Fourier interpolation against the direct sum, 0.5% of the corrugation
    direct = np.array([interlayer(tuple(shift), 3.0) for shift in cut.fractional])
    hollow = interlayer(HOLLOW, 3.0)
    expected = 1e3 * (direct - hollow) / AREA
    np.testing.assert_allclose(cut.relative_per_area, expected, atol=0.005 * rigid.corrugation)
    full = rigid.line_cut()
    assert full.labels == ["AA", "AB", "BA"] and len(full.path_length) == 2 * 59 + 1
    with pytest.raises(ValueError, match="unknown stackings"):
        rigid.line_cut("AA", "SP")
    cut.to_csv(tmp_path / "cut.csv")
    assert len((tmp_path / "cut.csv").read_text().splitlines()) == 1 + 7
    cut.plot(tmp_path / "cut.png")
    rigid.plot(tmp_path / "pes.png")
    assert (tmp_path / "cut.png").stat().st_size > 1000
    assert (tmp_path / "pes.png").stat().st_size > 1000


def test_flexible_sliding_relaxes_the_distance(rigid) -> None:
    structure = layers([(0, 0), (0, 0)], 3.0)
    flexible = sliding_pes(structure, lj(), grid=(6, 6), mode="flexible")
    assert np.all(flexible.energies <= rigid.energies + 1e-12)
    fine = np.arange(2.6, 3.6, 1e-3)
    for index in [(0, 0), (2, 2), (3, 0)]:
        shift = tuple(flexible.shifts[index])
        direct = np.array([interlayer(shift, d) for d in fine])
        assert flexible.distances[index] == pytest.approx(fine[np.argmin(direct)], abs=2e-3)
        lowered = flexible.energies[index] - rigid.energies[index]
        assert lowered == pytest.approx(direct.min() - interlayer(shift, 3.0), abs=1e-6)
    assert flexible.distances[0, 0] > flexible.distances[2, 2] + 0.1  # AA sits farther apart
    # one-atom layers: relaxing every atom along the normal finds the same minimum
    relaxed = sliding_pes(
        structure, lj(), grid=(2, 2), mode="flexible", relax_atoms=True, fmax=1e-4
    )
    np.testing.assert_allclose(relaxed.energies, flexible.energies[::3, ::3], atol=1e-8)
    np.testing.assert_allclose(relaxed.distances, flexible.distances[::3, ::3], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# command line


def bilayer() -> Atoms:
    atoms = fcc111("Cu", size=(1, 1, 2), vacuum=5.0)
    del atoms.info["adsorbate_info"]  # not writable to extxyz
    return atoms


@pytest.fixture
def copper_bilayer(tmp_path: Path) -> Path:
    """Two Cu(111) monolayers (fcc stacking, 2.08 Å apart) with vacuum, as extxyz."""
    path = tmp_path / "bilayer.extxyz"
    write(path, bilayer())
    return path


def test_cli_exfoliation_writes_the_curve(copper_bilayer: Path, tmp_path: Path) -> None:
    out = tmp_path / "exfoliation"
    code = main(
        [
            *("exfoliation", str(copper_bilayer), "--model", "emt"),
            *("--layer-gap", "1.5", "--out", str(out)),
        ]
    )
    assert code == 0
    data = json.loads((out / "result.json").read_text())
    expected = exfoliation_curve(bilayer(), EMT(), layer_gap=1.5)
    assert data["equilibrium_distance"] == pytest.approx(expected.equilibrium_distance, abs=1e-9)
    assert 1.9 < data["equilibrium_distance"] < 2.2
    assert len((out / "exfoliation.csv").read_text().splitlines()) == len(data["separations"]) + 1
    assert (out / "exfoliation.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_sliding_writes_the_pes(copper_bilayer: Path, tmp_path: Path) -> None:
    out = tmp_path / "sliding"
    args = ["sliding", str(copper_bilayer), "--model", "emt", "--layer-gap", "1.5"]
    args += ["--grid", "3", "3", "--path", "fcc=0,0", "top=2/3,2/3", "--out", str(out)]
    assert main(args) == 0
    data = json.loads((out / "result.json").read_text())
    assert data["path"] == {"fcc": [0.0, 0.0], "top": [2 / 3, 2 / 3]}
    relative = np.array(data["relative_per_area"])
    assert relative.shape == (3, 3)
    assert relative[2, 2] == relative.max() and relative[0, 0] < relative[2, 2]  # atop is worst
    assert (out / "sliding.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "sliding.csv").read_text().splitlines()) == 10


def test_cli_refuses_a_bilayer_without_vacuum(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "bulk.extxyz"
    bulk = fcc111("Cu", size=(1, 1, 3), periodic=True)
    del bulk.info["adsorbate_info"]
    write(path, bulk)
    assert main(["exfoliation", str(path), "--model", "emt", "--out", str(tmp_path)]) == 2
    assert "no vacuum axis" in capsys.readouterr().err


@pytest.mark.slow
def test_examples_run(tmp_path: Path) -> None:
    for script, extra, outputs in [
        ("exfoliation.py", [], ["exfoliation.json", "exfoliation.png"]),
        ("sliding_pes.py", ["--grid", "4"], ["sliding_flexible.json", "sliding_pes.png"]),
    ]:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / script), "--out", str(tmp_path), *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert all((tmp_path / name).stat().st_size > 0 for name in outputs)
    data = json.loads((tmp_path / "exfoliation.json").read_text())
    assert 3.3 < data["equilibrium_distance"] < 3.5  # graphite-like spacing from Girifalco LJ
