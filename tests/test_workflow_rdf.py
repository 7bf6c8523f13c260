"""RDF workflow: g(r) against ASE, fcc shells, image counting, file input, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry.rdf import get_rdf
from ase.io import write

from mlcalc.cli import main
from mlcalc.workflows.pair_distribution import BIN_WIDTH, rdf

A_CU = 3.615  # Å; fcc shells at a/√2, a, a√(3/2), a√2 fall inside 0.01 Å bins, not on edges


def cu_au_frames(repeat: int = 3, n_frames: int = 3) -> list[Atoms]:
    """Rattled fcc Cu with every fifth atom Au, the lattice constant changing per frame."""
    frames = []
    for k in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.03 * k, cubic=True).repeat(repeat)
        atoms.symbols[::5] = "Au"
        atoms.rattle(0.1, seed=k)
        frames.append(atoms)
    return frames


def sheared_cells(n_frames: int = 3) -> list[Atoms]:
    """Rattled 4-atom Cu3Au cells, triclinic, 3.5-3.8 Å wide: far smaller than 2·rmax."""
    frames = []
    for k in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
        atoms.symbols[0] = "Au"
        shear = np.array([[1.0, 0.05, 0.0], [0.02, 1.0, -0.04], [0.0, 0.03, 1.0]]) * (1 + 0.01 * k)
        atoms.set_cell(atoms.cell[:] @ shear, scale_atoms=True)
        atoms.rattle(0.1, seed=10 + k)
        frames.append(atoms)
    return frames


def test_partial_and_total_g_agree_with_ase() -> None:
    """Same normalisation as ase.geometry.rdf.get_rdf (ASE >= 3.27, LAMMPS convention), with
    the volume changing between frames; ASE's bins are (r, r+dr], ours [r, r+dr): rattled
    frames put no distance on an edge, so the histograms must agree to rounding."""
    frames = cu_au_frames()
    result = rdf(frames, rmax=5.0, nbins=100)
    assert list(result.g) == ["total", "Cu-Cu", "Cu-Au", "Au-Au"]
    assert result.n_frames == 3
    r_ase = get_rdf(frames, 5.0, 100)[1]
    np.testing.assert_allclose(result.r, r_ase, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        result.g["total"], get_rdf(frames, 5.0, 100, no_dists=True), rtol=0, atol=1e-10
    )
    for key in ("Cu-Cu", "Cu-Au", "Au-Au"):
        expected = get_rdf(frames, 5.0, 100, elements=key.split("-"), no_dists=True)
        np.testing.assert_allclose(result.g[key], expected, rtol=0, atol=1e-10, err_msg=key)
    # g = Σ c_a c_b g_ab over ordered pairs; n = Σ_a c_a Σ_b n_ab with n_AuCu = n_CuAu c_Cu/c_Au
    c_au = np.mean(frames[0].symbols == "Au")  # the same in every frame
    c_cu = 1.0 - c_au
    g, n = result.g, result.coordination
    np.testing.assert_allclose(
        g["total"], c_cu**2 * g["Cu-Cu"] + 2 * c_cu * c_au * g["Cu-Au"] + c_au**2 * g["Au-Au"]
    )
    np.testing.assert_allclose(
        n["total"], c_cu * n["Cu-Cu"] + 2 * c_cu * n["Cu-Au"] + c_au * n["Au-Au"]
    )


def test_fcc_shells_peak_positions_and_coordination() -> None:
    """A perfect fcc crystal in its 1-atom primitive cell (2.56 Å wide, rmax 5.5 Å: every
    neighbour is a periodic image of the one atom): g(r) is non-zero exactly in the bins of the
    shells a/√2, a, a√(3/2), a√2 holding 12, 6, 24, 12 atoms."""
    atoms = bulk("Cu", "fcc", a=A_CU)
    result = rdf([atoms], rmax=5.5, nbins=550)
    shells = A_CU * np.sqrt([0.5, 1.0, 1.5, 2.0])
    occupied = result.r[result.g["total"] > 0]
    np.testing.assert_allclose(occupied, shells, atol=0.005)
    # g integrates to the shell populations: g · 4π r² dr · ρ per bin
    dr = 0.01
    volumes = 4.0 / 3.0 * np.pi * ((result.r + dr / 2) ** 3 - (result.r - dr / 2) ** 3)
    counts = result.g["total"] * volumes / atoms.get_volume()
    np.testing.assert_allclose(counts[result.g["total"] > 0], [12, 6, 24, 12], rtol=1e-12)
    plateaus = [result.coordination["total"][np.searchsorted(result.r, s + 0.1)] for s in shells]
    np.testing.assert_allclose(plateaus, [12, 18, 42, 54], rtol=1e-12)
    assert shells[0] < result.first_minimum["total"] < shells[1]
    assert result.first_shell_coordination["total"] == pytest.approx(12.0, abs=1e-12)
    assert result.first_shell_coordination["Cu-Cu"] == pytest.approx(12.0, abs=1e-12)


def test_rattled_fcc_first_shell_holds_12_neighbours() -> None:
    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    result = rdf(frames, rmax=5.0, nbins=250)
    peak = result.r[np.argmax(result.g["total"])]
    assert peak == pytest.approx(A_CU / np.sqrt(2), abs=0.03)
    assert A_CU / np.sqrt(2) + 0.2 < result.first_minimum["total"] < A_CU - 0.2
    assert result.first_shell_coordination["total"] == pytest.approx(12.0, abs=1e-12)


def test_rmax_beyond_half_the_cell_counts_images() -> None:
    """rmax = 6 Å in cells 3.5-3.8 Å wide equals ASE's g(r) of the same frames repeated
    4×4×4 (15 Å wide), where ASE's own requirement rmax < width/2 holds."""
    frames = sheared_cells()
    result = rdf(frames, rmax=6.0, nbins=120)
    repeated = [atoms.repeat(4) for atoms in frames]
    np.testing.assert_allclose(
        result.g["total"], get_rdf(repeated, 6.0, 120, no_dists=True), rtol=0, atol=1e-10
    )
    for key in ("Cu-Cu", "Cu-Au", "Au-Au"):
        expected = get_rdf(repeated, 6.0, 120, elements=key.split("-"), no_dists=True)
        np.testing.assert_allclose(result.g[key], expected, rtol=0, atol=1e-10, err_msg=key)


def test_default_bins_are_0_02_angstrom_wide() -> None:
    frames = cu_au_frames(repeat=2, n_frames=1)
    result = rdf(frames, rmax=5.0)
    assert len(result.r) == 250
    assert np.diff(result.r) == pytest.approx(np.full(249, BIN_WIDTH)) and BIN_WIDTH == 0.02
    assert result.g["total"] == pytest.approx(rdf(frames, rmax=5.0, nbins=250).g["total"])
    assert len(rdf(frames, rmax=0.005).r) == 1  # at least one bin


def test_file_input_and_slicing_equal_in_memory(tmp_path: Path) -> None:
    frames = sheared_cells(5)
    path = tmp_path / "frames.extxyz"
    write(path, frames)
    for selection in ({}, {"start": 1, "stop": 5, "step": 2}, {"start": -2}):
        from_file = rdf(path, rmax=4.0, nbins=40, pairs=["Au-Cu"], **selection)
        in_memory = rdf(frames, rmax=4.0, nbins=40, pairs=[("Au", "Cu")], **selection)
        assert from_file.n_frames == in_memory.n_frames
        assert list(from_file.g) == ["total", "Au-Cu"]
        for key in from_file.g:
            np.testing.assert_allclose(from_file.g[key], in_memory.g[key], rtol=1e-12)
            np.testing.assert_allclose(
                from_file.coordination[key], in_memory.coordination[key], rtol=1e-12
            )
    assert rdf(path, rmax=4.0, nbins=40, start=1, stop=5, step=2).n_frames == 2


def test_coordination_direction_and_json(tmp_path: Path) -> None:
    """n_CuAu (Au around Cu) and n_AuCu (Cu around Au) differ by N_Au/N_Cu; g does not."""
    frames = sheared_cells()
    result = rdf(frames, rmax=4.0, nbins=40, pairs=["Cu-Au", "Au-Cu"])
    np.testing.assert_allclose(result.g["Cu-Au"], result.g["Au-Cu"])
    np.testing.assert_allclose(result.coordination["Au-Cu"], 3 * result.coordination["Cu-Au"])
    result.to_json(tmp_path / "result.json")
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["n_frames"] == 3 and len(data["r"]) == 40
    assert data["g"]["Cu-Au"] == pytest.approx(result.g["Cu-Au"].tolist())


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="g\\(r\\) needs a density"):
        rdf([molecule("H2O")], rmax=3.0, nbins=10)
    slab = bulk("Cu", cubic=True).repeat(2)
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="frame 0 is not periodic in all three"):
        rdf([slab], rmax=3.0, nbins=10)
    with pytest.raises(ValueError, match="no frames"):
        rdf([], rmax=3.0, nbins=10)
    with pytest.raises(ValueError, match="no frames"):
        rdf(sheared_cells(2), rmax=3.0, nbins=10, start=5)
    copper, alloy = bulk("Cu", cubic=True), sheared_cells(1)[0]
    with pytest.raises(ValueError, match="frame 1 has no Au atoms"):
        rdf([alloy, copper], rmax=3.0, nbins=10, pairs=["Cu-Au"])
    with pytest.raises(ValueError, match="frame 1 has elements \\['Cu'\\]"):
        rdf([alloy, copper], rmax=3.0, nbins=10)
    with pytest.raises(ValueError, match="frame 3 has elements \\['Cu'\\]"):
        rdf([alloy, alloy, copper, copper], rmax=3.0, nbins=10, start=1, step=2)
    assert list(rdf([alloy, copper], rmax=3.0, nbins=10, pairs=[]).g) == ["total"]
    with pytest.raises(ValueError, match="not two element symbols"):
        rdf([copper], rmax=3.0, nbins=10, pairs=["Cu-Xx"])
    with pytest.raises(ValueError, match="rmax must be positive"):
        rdf([copper], rmax=0.0, nbins=10)
    with pytest.raises(FileNotFoundError, match="trajectory file not found"):
        rdf(tmp_path / "missing.traj", rmax=3.0, nbins=10)


def test_cli_writes_result_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    trajectory = tmp_path / "md.traj"
    write(trajectory, cu_au_frames(repeat=2, n_frames=2))
    out = tmp_path / "out"
    assert main(["rdf", str(trajectory), "--rmax", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 frames" in printed and "first minimum" in printed
    data = json.loads((out / "result.json").read_text())
    expected = rdf(trajectory, rmax=6.0)  # the CLI's default bins are the library's
    assert len(data["r"]) == len(expected.r) == 300
    assert data["first_shell_coordination"] == pytest.approx(expected.first_shell_coordination)
    assert (out / "rdf.png").read_bytes().startswith(b"\x89PNG")
    header = (out / "rdf.csv").read_text().splitlines()[0]
    assert header == "r_angstrom,g_total,g_Cu-Cu,g_Cu-Au,g_Au-Au,n_total,n_Cu-Cu,n_Cu-Au,n_Au-Au"
    assert main(["rdf", str(tmp_path / "missing.traj"), "--rmax", "6"]) == 2
    assert "not found" in capsys.readouterr().err
