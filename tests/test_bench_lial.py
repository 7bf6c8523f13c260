"""bench/lial.py on a tiny synthetic copy of the Li–Al data set (Data.json + poscars.zip)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write
from helpers import load_bench

from mlcalc.training import read_structures

lial = load_bench("lial")

FOLDERS = {"Train": "train", "Test/A-Fig1c": "test", "Irregular": None}


def li2al2() -> Atoms:
    """A 4-atom Li2Al2 cell with a tilted c axis (Å)."""
    cell = [[4.0, 0.0, 0.0], [0.0, 4.1, 0.0], [-1.2, 0.0, 4.3]]
    scaled = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.1, 0.5, 0.5]]
    return Atoms("Li2Al2", scaled_positions=scaled, cell=cell, pbc=True)


def forces_of(n: int, seed: int) -> list[list[float]]:
    """``[n, 3]`` forces (eV/Å) of both signs."""
    return np.random.default_rng(seed).normal(0.0, 0.5, (n, 3)).round(8).tolist()


def make_folder(root: Path, folder: str, frames: list[Atoms], data: dict) -> None:
    """``root/folder/Data.json`` and ``poscars.zip`` with ``frames`` as ``<i>.POSCAR.vasp``."""
    path = root / folder
    path.mkdir(parents=True)
    with zipfile.ZipFile(path / "poscars.zip", "w") as archive:
        for index, atoms in zip(data["Index"], frames, strict=True):
            text = io.StringIO()
            write(text, atoms, format="vasp", direct=True)
            archive.writestr(f"{index}.POSCAR.vasp", text.getvalue())
    (path / "Data.json").write_text(json.dumps(data))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Train: Li2Al2 and Al4; test: Li2 and a copy of Train's Li2Al2; Irregular: unlabelled."""
    root = tmp_path / "src"
    al4 = bulk("Al", "fcc", a=4.04, cubic=True)
    li2 = bulk("Li", "bcc", a=3.44, cubic=True)
    train_forces = [forces_of(4, 0), forces_of(4, 1)]
    train = {"Energies": [-10.5, -14.9], "Forces": train_forces, "Labels": ["AIMD", "relax"]}
    make_folder(root, "Train", [li2al2(), al4], {**train, "Index": [1, 2]})
    test = {"Energies": [-3.8, -10.5], "Forces": [forces_of(2, 2), train_forces[0]]}
    test |= {"Labels": ["Im3m-Li", "copy"], "Index": [2, 1]}
    make_folder(root, "Test/A-Fig1c", [li2, li2al2()], test)
    irregular = {"Labels": ["large-force", "large-energy"], "Index": [1, 2]}
    make_folder(root, "Irregular", [al4, li2], irregular)
    return root


def test_conversion(source: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(lial, "FOLDERS", FOLDERS)
    out = tmp_path / "out"
    assert lial.convert(source, out) == {"train": 2, "test": 1}
    printed = capsys.readouterr().out
    assert "Test/A-Fig1c: 2 frames, 1 -> lial_test" in printed
    assert "skipped 1: identical to a frame already written" in printed
    assert "skipped 2: no energies or forces in Data.json" in printed

    train = read(out / "lial_train.extxyz", ":")
    assert [a.get_chemical_formula() for a in train] == ["Al2Li2", "Al4"]
    first = train[0]
    np.testing.assert_allclose(first.cell.array, li2al2().cell.array, atol=1e-6)
    np.testing.assert_allclose(first.positions, li2al2().positions, atol=1e-5)
    assert first.pbc.all()
    assert first.get_potential_energy() == pytest.approx(-10.5)
    np.testing.assert_allclose(first.get_forces(), forces_of(4, 0))
    assert (first.info["folder"], first.info["label"], first.info["index"]) == ("Train", "AIMD", 1)

    (test,) = read(out / "lial_test.extxyz", ":")
    assert test.get_chemical_symbols() == ["Li", "Li"]
    assert test.get_potential_energy() == pytest.approx(-3.8)
    np.testing.assert_allclose(test.get_forces(), forces_of(2, 2))

    structures = read_structures(out / "lial_train.extxyz")
    assert len(structures) == 2
    assert structures[1].energy == pytest.approx(-14.9)
    assert all(s.stress is None for s in structures)  # the data hold no stress


def test_reads_git_head(source: Path, tmp_path: Path, monkeypatch):
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "data"], check=True)
    for folder in ("Train", "Test", "Irregular"):
        shutil.rmtree(source / folder)  # only HEAD has the files now
    monkeypatch.setattr(lial, "FOLDERS", FOLDERS)
    assert lial.convert(source, tmp_path / "out") == {"train": 2, "test": 1}
