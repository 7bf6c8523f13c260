"""i-PI: `mlcalc ipi` serving a real i-PI server (path integrals) on a local socket, the forces
it received against the calculator, and bad input."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from string import Template

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read, write
from conftest import alloy_slab, build_model, tiny_cell, triclinic_alloy, water_dimer

from mlcalc import NEMPCalculator
from mlcalc.cli import main
from mlcalc.ipi import parse_address, serve

pytest.importorskip("ipi", reason="i-PI (ipi) is not installed")

BIN = Path(sys.executable).parent
TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "ipi" / "water-pimd.xml"
_names = itertools.count()


def _water_box() -> Atoms:
    """Three rattled water molecules in a periodic 7 Å box."""
    atoms = Atoms(cell=[7.0, 7.0, 7.0], pbc=True)
    for shift in ([0, 0, 0], [2.9, 0.4, 0.2], [0.3, 2.8, 1.1]):
        water = molecule("H2O")
        water.positions += np.array(shift) + 1.0
        atoms += water
    atoms.rattle(0.02, seed=0)
    return atoms


@pytest.fixture
def ipi_run(tmp_path):
    """Start an i-PI server for the examples' input (``beads``, ``steps``) on a fresh unix
    socket; yields ``(folder, address, server)`` and stops the server at the end."""
    servers = []

    def start(atoms: Atoms, beads: int, steps: int):
        address = f"mlcalc-test-{os.getpid()}-{next(_names)}"
        write(tmp_path / "start.extxyz", atoms)
        xml = Template(TEMPLATE.read_text()).substitute(
            prefix="sim",
            stride=1,
            steps=steps,
            address=address,
            beads=beads,
            structure="start.extxyz",
        )
        (tmp_path / "input.xml").write_text(xml)
        log = open(tmp_path / "server.log", "w")  # closed with the server
        server = subprocess.Popen(
            [str(BIN / "i-pi"), "input.xml"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        servers.append((server, log))
        return tmp_path, f"unix:{address}", server

    yield start
    for server, log in servers:
        if server.poll() is None:
            server.kill()
        server.wait()
        log.close()


def _last(path: Path, quantity: str) -> np.ndarray:
    frame = read(path, index=-1, format="extxyz")
    if quantity == "positions":
        return frame.positions
    return frame.get_forces() if quantity == "forces" else frame.arrays[quantity]


def test_addresses():
    assert parse_address("unix:water") == {"unixsocket": "water"}
    assert parse_address("localhost:31415") == {"host": "localhost", "port": 31415}
    for bad in ("water", "unix:", "localhost:port"):
        with pytest.raises(ValueError, match="neither unix:NAME"):
            parse_address(bad)


def test_path_integral_run_through_a_real_ipi_server(ipi_run, tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    model = build_model()
    model.save(checkpoint)
    atoms = _water_box()
    folder, address, server = ipi_run(atoms, beads=4, steps=3)
    driver = subprocess.run(
        [
            str(BIN / "mlcalc"),
            "ipi",
            "--model",
            str(checkpoint),
            "--address",
            address,
            "--structure",
            "start.extxyz",
            "--device",
            "cpu",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert driver.returncode == 0, driver.stderr
    assert "the server said exit after 16 evaluations" in driver.stdout  # 4 beads x (1 + 3)
    assert server.wait(timeout=60) == 0
    calculator = NEMPCalculator(model, device="cpu")
    bead_forces = []
    for bead in range(4):
        image = atoms.copy()
        image.positions = _last(folder / f"sim.pos_{bead}.extxyz", "positions")
        image.calc = calculator
        bead_forces.append(image.get_forces())
        received = _last(folder / f"sim.frc_{bead}.extxyz", "forces")
        # i-PI writes positions to 1e-8 Å, which moves forces by ~1e-7 eV/Å
        np.testing.assert_allclose(received, bead_forces[-1], rtol=0, atol=1e-5)
    centroid = _last(folder / "sim.fcentroid.extxyz", "f_centroid")
    np.testing.assert_allclose(centroid, np.mean(bead_forces, axis=0), rtol=0, atol=1e-5)
    properties = np.loadtxt(folder / "sim.out", ndmin=2)
    assert properties.shape[0] == 4 and np.all(np.isfinite(properties))
    assert np.all(properties[:, 6] > 0)  # centroid-virial kinetic energy of H


def _in_a_box(atoms: Atoms) -> Atoms:
    """A molecule with a cell for i-PI (which always has one), still non-periodic for us."""
    atoms = atoms.copy()
    atoms.cell = [12.0, 12.0, 12.0]
    atoms.positions += 6.0 - atoms.positions.mean(axis=0)
    return atoms


@pytest.mark.parametrize(
    "make",
    [lambda: _in_a_box(water_dimer()), alloy_slab, triclinic_alloy, tiny_cell],
    ids=["molecule", "slab", "triclinic_bulk", "tiny_cell"],
)
def test_every_kind_of_structure_gets_the_calculators_forces(make, ipi_run):
    atoms = make()
    atoms.info.clear()  # fcc111's adsorbate_info cannot go to extxyz
    model = build_model()
    folder, address, server = ipi_run(atoms, beads=2, steps=1)
    assert serve(NEMPCalculator(model, device="cpu"), atoms, address, wait_s=60) == 4
    assert server.wait(timeout=60) == 0
    calculator = NEMPCalculator(model, device="cpu")
    for bead in range(2):
        # i-PI's frame: it turns a general cell into its upper-triangular form
        written = read(folder / f"sim.pos_{bead}.extxyz", index=-1, format="extxyz")
        image = Atoms(atoms.numbers, positions=written.positions, cell=written.cell, pbc=atoms.pbc)
        image.calc = calculator
        received = _last(folder / f"sim.frc_{bead}.extxyz", "forces")
        np.testing.assert_allclose(received, image.get_forces(), rtol=0, atol=1e-5)


def test_a_template_of_other_atoms_is_refused(ipi_run, tmp_path):
    build_model().save(tmp_path / "model.safetensors")
    folder, address, _ = ipi_run(_water_box(), beads=1, steps=1)
    write(folder / "wrong.extxyz", _water_box()[:6])
    driver = subprocess.run(
        [
            str(BIN / "mlcalc"),
            "ipi",
            "--model",
            "model.safetensors",
            "--address",
            address,
            "--structure",
            "wrong.extxyz",
            "--device",
            "cpu",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert driver.returncode == 2
    assert "different number of atoms than the template (6 atoms)" in driver.stderr
    assert "Traceback" not in driver.stderr


def test_bad_structures_are_refused_before_connecting(tmp_path, capsys):
    build_model().save(tmp_path / "model.safetensors")
    silicon = tmp_path / "si.extxyz"
    write(silicon, Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[6] * 3, pbc=True))
    crowded = tmp_path / "crowded.extxyz"
    water = _water_box()
    water.positions[1] = water.positions[0] + 0.01
    write(crowded, water)
    arguments = ["ipi", "--model", str(tmp_path / "model.safetensors"), "--device", "cpu"]
    arguments += ["--address", "unix:nobody-listens", "--wait", "0"]
    for structure, message in (
        (silicon, "element(s) Si not supported"),
        (crowded, "atoms 0 and 1 are 0.0173 Å apart"),
        (tmp_path / "water.extxyz", "no i-PI server listening at unix:nobody-listens"),
    ):
        if structure.name == "water.extxyz":
            write(structure, _water_box())
        assert main([*arguments, "--structure", str(structure)]) == 2
        assert message in capsys.readouterr().err
    slab = alloy_slab()
    slab.info.clear()
    write(tmp_path / "slab.extxyz", slab)
    assert main([*arguments, "--structure", str(tmp_path / "slab.extxyz")]) == 2
    assert "the virial sent is zero, so i-PI's barostats cannot" in capsys.readouterr().out
