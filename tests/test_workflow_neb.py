"""NEB workflow: the EMT barrier of Au hopping on Al(100), calculators, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms, FixedPlane
from ase.io import read, write
from ase.optimize import BFGS

from mlcalc.cli import main
from mlcalc.workflows.reaction_path import NEBResult, neb

FMAX = 0.02  # eV/Å


def au_on_al100() -> Atoms:
    """Au adatom in a hollow site of a 2×2×3 Al(100) slab, bottom layer fixed (the ASE
    diffusion tutorial)."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=slab.get_tags() > 2))
    return slab


def end_points() -> tuple[Atoms, Atoms]:
    """Unrelaxed hollow sites, the second one surface lattice constant further along x."""
    initial, final = au_on_al100(), au_on_al100()
    final.positions[-1, 0] += final.cell[0, 0] / 2
    return initial, final


@pytest.fixture(scope="module")
def hop() -> tuple[Atoms, Atoms, NEBResult]:
    initial, final = end_points()
    before = initial.positions.copy(), final.positions.copy()
    result = neb(initial, final, EMT, n_images=3, fmax=FMAX, relax_endpoints=True)
    np.testing.assert_array_equal(initial.positions, before[0])  # callers' atoms untouched
    np.testing.assert_array_equal(final.positions, before[1])
    assert initial.calc is None and final.calc is None
    return initial, final, result


def bridge_barrier(relaxed_initial: Atoms) -> float:
    """Independent saddle energy: by symmetry the saddle of the hop is the bridge site, the
    minimum of the plane halfway between the hollows. Relax the adatom within that plane (and
    the slab freely) and compare with the relaxed hollow site."""
    initial = relaxed_initial.copy()
    initial.calc = EMT()
    saddle = relaxed_initial.copy()
    saddle.positions[-1, 0] += saddle.cell[0, 0] / 4
    adatom = len(saddle) - 1
    saddle.set_constraint(
        [FixAtoms(mask=saddle.get_tags() > 2), FixedPlane(adatom, direction=[1, 0, 0])]
    )
    saddle.calc = EMT()
    with BFGS(saddle, logfile=None) as relaxation:
        assert relaxation.run(fmax=0.005, steps=200)
    return saddle.get_potential_energy() - initial.get_potential_energy()


def test_barrier_of_au_hopping_on_al100(hop) -> None:
    _, _, result = hop
    assert result.converged and result.steps > 0
    assert result.max_force < FMAX
    # the climbing image is the middle one, at the saddle: its true force is below fmax
    assert result.climbing_image == 2
    assert result.saddle_max_force < FMAX
    # against the constrained bridge-site relaxation (0.368 eV; the ASE tutorial's ~0.37 eV)
    expected = bridge_barrier(result.images[0])
    assert result.barrier_forward == pytest.approx(expected, abs=0.005)
    assert result.energies[2] - result.energies[0] == pytest.approx(expected, abs=0.005)
    # equivalent hollow sites: no reaction energy, equal forward and reverse barriers
    assert result.reaction_energy == pytest.approx(0.0, abs=1e-6)
    assert result.barrier_reverse == pytest.approx(result.barrier_forward, abs=1e-6)
    # the spline is as symmetric as the hop (a band continuous across the periodic boundary)
    # and peaks at the climbing image
    np.testing.assert_allclose(result.fit_energies, result.fit_energies[::-1], atol=2e-3)
    assert result.fit_path[0] == 0.0 and result.fit_path[-1] == pytest.approx(result.path[-1])
    assert result.path[2] == pytest.approx(result.path[-1] / 2, rel=1e-3)
    assert result.fit_path[np.argmax(result.fit_energies)] == pytest.approx(
        result.path[2], abs=0.05
    )
    assert len(result.images) == 5
    np.testing.assert_allclose(
        [atoms.get_potential_energy() for atoms in result.images], result.energies
    )


def test_shared_calculator_and_restart_from_a_band(hop) -> None:
    initial, final, result = hop
    with pytest.raises(ValueError, match="need their own calculators"):
        neb(initial, final, EMT(), n_images=3)
    shared = neb(
        result.images[0],
        result.images[-1],
        EMT(),
        n_images=3,
        fmax=FMAX,
        allow_shared_calculator=True,
    )
    assert shared.barrier_forward == pytest.approx(result.barrier_forward, abs=1e-8)
    # a converged band given as images is already converged: no step taken, same numbers
    again = neb(None, None, EMT, images=result.images, fmax=FMAX)
    assert again.converged and again.steps == 0
    np.testing.assert_allclose(again.energies, result.energies, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="not both"):
        neb(initial, final, EMT, images=result.images)


def test_mismatched_end_points_are_refused() -> None:
    initial, final = end_points()
    with pytest.raises(ValueError, match="final has 12 atoms but initial has 13"):
        neb(initial, final[:-1], EMT)
    swapped = final[[*range(len(final) - 2), len(final) - 1, len(final) - 2]]
    with pytest.raises(ValueError, match="same atoms in a different order \\(atom 11 is Au"):
        neb(initial, swapped, EMT)
    silver = final.copy()
    silver.symbols[-1] = "Ag"
    with pytest.raises(ValueError, match="different composition"):
        neb(initial, silver, EMT)
    stretched = final.copy()
    stretched.set_cell(final.cell[:] * [1.02, 1.0, 1.0])
    with pytest.raises(ValueError, match="different cells"):
        neb(initial, stretched, EMT)
    molecule = final.copy()
    molecule.pbc = False
    with pytest.raises(ValueError, match="final has pbc=\\[False, False, False\\]"):
        neb(initial, molecule, EMT)
    with pytest.raises(ValueError, match="interpolation must be"):
        neb(initial, final, EMT, interpolation="spline")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        neb(initial, final, EMT, optimizer="Newton")


def test_cli_writes_result_and_plot(hop, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, _, result = hop
    write(tmp_path / "initial.traj", result.images[0])
    write(tmp_path / "final.traj", result.images[-1])
    out = tmp_path / "out"
    argv = ["neb", str(tmp_path / "initial.traj"), str(tmp_path / "final.traj"), "--model", "emt"]
    assert main([*argv, "--images", "3", "--fmax", str(FMAX), "--out", str(out)]) == 0
    assert "barrier 0.36" in capsys.readouterr().out
    data = json.loads((out / "result.json").read_text())
    assert data["converged"] is True and "images" not in data
    assert data["barrier_forward"] == pytest.approx(result.barrier_forward, abs=1e-3)
    assert (out / "neb.png").read_bytes().startswith(b"\x89PNG")
    assert len((out / "neb.csv").read_text().splitlines()) == 1 + 5
    band = read(out / "band.traj", ":")
    assert len(band) == 5
    assert band[2].get_potential_energy() == pytest.approx(data["energies"][2])
    write(tmp_path / "short.traj", result.images[-1][:-1])
    assert main(["neb", str(tmp_path / "initial.traj"), str(tmp_path / "short.traj"),
                 "--model", "emt"]) == 2  # fmt: skip
    assert "final has 12 atoms but initial has 13" in capsys.readouterr().err
