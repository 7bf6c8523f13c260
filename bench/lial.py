"""Convert the Li–Al DFT data set (GitHub mogroupumd/Li-Al_MLIP_datasets) to extended XYZ.

    python bench/lial.py --source /work/.mirror/mogroupumd+Li-Al_MLIP_datasets/repo --out data

``--source`` is a git clone or mirror of the repository (files read with ``git show HEAD:...``)
or an extracted copy of it. Writes ``OUT/lial_train.extxyz`` and ``OUT/lial_test.extxyz``:
``info["energy"]`` (total energy of the cell, eV), ``arrays["forces"]`` ``[n, 3]`` (eV/Å),
periodic cells, plus ``info["folder"]``, ``info["label"]`` and ``info["index"]`` (the entry).

Format found: each folder holds ``poscars.zip`` (VASP 5 POSCARs ``<Index>.POSCAR.vasp``,
direct coordinates) and ``Data.json`` with parallel lists ``Energies`` (eV per cell),
``Forces`` (``[n, 3]`` per entry, eV/Å, POSCAR atom order), ``Labels`` (strings) and ``Index``
(the POSCAR number). The data hold no stress or virial, so none is written. ``Irregular`` (141
entries) has only ``Labels``/``Index``, no DFT labels, and is skipped; the other folders hold
the issue's 3,696 DFT frames (Li–Al cells of 29–240 atoms).

Mapping: train = ``Train`` + ``Retrain``, the README's two training sets (of the repository's
``MTP_train`` and ``MTP_retrain`` models; by label, ``Retrain`` has 180 perturbed "PTB" frames
instead of ``Train``'s 205 AIMD ones, and repeats 114 of ``Train``'s other frames). Test =
``Test/A-Fig1c`` + ``Test/B-Fig1d``, the README's test sets: 1,389 frames of ordered Li–Al
phases over the whole composition range, testing data, not fitted to (``Validation`` is, as
named, validation data, and only 66 frames).
``Validation``, ``Slabs``, ``Vacancy`` and ``bcc-fcc`` are read and checked but not written.
A frame identical to one already written (species, cell, positions, energy; the forces then
agree too) is skipped: 1 in ``Train``, 114 in ``Retrain`` and 4 in ``Test/A-Fig1c`` (3 of them
training frames, so the test set does not overlap the training set).

Sanity checks on the real data: the lowest energies per atom are -3.744 eV (pure Al; PBE fcc
Al is -3.74) and -1.905 eV (pure Li; PBE bcc Li is -1.91), so energies are VASP PBE totals in
eV; all frames lie in -3.74 … -0.79 eV/atom (the highest are Retrain's perturbed frames). The
net force of every frame is below 2e-7 eV/Å (forces in POSCAR order); force RMS per folder is
0.05–0.84 eV/Å, the largest component 14.8 eV/Å (Retrain).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from mlcalc.atomic import atomic_path

#: Folder -> output file stem (``None``: read and checked, not written), in writing order.
FOLDERS: dict[str, str | None] = {
    "Train": "train",
    "Retrain": "train",
    "Test/A-Fig1c": "test",
    "Test/B-Fig1d": "test",
    "Validation": None,
    "Slabs": None,
    "Vacancy": None,
    "bcc-fcc": None,
    "Irregular": None,
}


def read_blob(source: Path, path: str) -> bytes:
    """The bytes of ``path`` in an extracted copy, else at ``HEAD`` of the git repo ``source``."""
    if (source / path).is_file():
        return (source / path).read_bytes()
    command = ["git", "-C", str(source), "show", f"HEAD:{path}"]
    return subprocess.run(command, check=True, capture_output=True).stdout


def read_folder(source: Path, folder: str) -> tuple[list[Atoms], Counter[str]]:
    """The labelled frames of one folder, in ``Data.json`` order, and the skipped entries by
    reason."""
    data = json.loads(read_blob(source, f"{folder}/Data.json"))
    skipped: Counter[str] = Counter()
    if "Energies" not in data or "Forces" not in data:
        skipped["no energies or forces in Data.json"] = len(data["Index"])
        return [], skipped
    frames = []
    with zipfile.ZipFile(io.BytesIO(read_blob(source, f"{folder}/poscars.zip"))) as archive:
        names = set(archive.namelist())
        entries = zip(data["Index"], data["Labels"], data["Energies"], data["Forces"], strict=True)
        for index, label, energy, forces in entries:
            name = f"{index}.POSCAR.vasp"
            if name not in names:
                skipped["POSCAR missing from poscars.zip"] += 1
                continue
            text = archive.read(name).decode()
            atoms = read(io.StringIO(text), format="vasp")
            if energy is None or forces is None or np.shape(forces) != (len(atoms), 3):
                skipped["energy or forces missing, or forces not [n_atoms, 3]"] += 1
                continue
            atoms.pbc = True
            atoms.info.update(energy=float(energy), folder=folder, label=label, index=index)
            atoms.arrays["forces"] = np.asarray(forces, dtype=np.float64)
            frames.append(atoms)
    return frames, skipped


def frame_key(atoms: Atoms) -> bytes:
    """Identity of a frame: species, cell (Å), positions (Å) and energy (eV), rounded."""
    parts = (
        atoms.numbers.astype(np.int64),
        np.round(atoms.cell.array, 5),
        np.round(atoms.positions, 4),
        np.round([atoms.info["energy"]], 5),
    )
    return b"|".join(part.tobytes() for part in parts)


def summary(frames: Sequence[Atoms]) -> str:
    """Atoms per cell, energy per atom (eV), force RMS and largest |component| (eV/Å), largest
    |net force| of a frame (eV/Å)."""
    sizes = [len(a) for a in frames]
    per_atom = [a.info["energy"] / len(a) for a in frames]
    forces = np.concatenate([a.arrays["forces"] for a in frames])
    net = max(np.abs(a.arrays["forces"].sum(axis=0)).max() for a in frames)
    return (
        f"{min(sizes)}-{max(sizes)} atoms, E/atom {min(per_atom):.3f}…{max(per_atom):.3f} eV, "
        f"F rms {np.sqrt(np.mean(forces**2)):.3f} max {np.abs(forces).max():.2f} eV/Å, "
        f"max |ΣF| {net:.1e} eV/Å"
    )


def drop_seen(frames: Sequence[Atoms], seen: set[bytes], skipped: Counter[str]) -> list[Atoms]:
    """The frames whose :func:`frame_key` is not in ``seen`` (once each); adds their keys."""
    kept = []
    for atoms in frames:
        key = frame_key(atoms)
        if key in seen:
            skipped["identical to a frame already written"] += 1
            continue
        seen.add(key)
        kept.append(atoms)
    return kept


def convert(source: Path, out: Path) -> dict[str, int]:
    """Write ``out/lial_<stem>.extxyz`` for each stem of :data:`FOLDERS`; frames per file."""
    written: dict[str, list[Atoms]] = {}
    seen: set[bytes] = set()
    for folder, stem in FOLDERS.items():
        frames, skipped = read_folder(source, folder)
        role = "not written"
        if stem is not None:
            kept = drop_seen(frames, seen, skipped)
            written.setdefault(stem, []).extend(kept)
            role = f"{len(kept)} -> lial_{stem}"
        stats = f"; {summary(frames)}" if frames else ""
        print(f"{folder}: {len(frames)} frames, {role}{stats}")
        for reason, count in skipped.items():
            print(f"    skipped {count}: {reason}")
    for stem, frames in written.items():
        path = out / f"lial_{stem}.extxyz"
        with atomic_path(path) as temporary:
            write(temporary, frames, format="extxyz")
        sizes = [len(a) for a in frames]
        print(f"wrote {path}: {len(frames)} frames, {min(sizes)}-{max(sizes)} atoms")
    return {stem: len(frames) for stem, frames in written.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="git repo or extracted copy")
    parser.add_argument("--out", type=Path, default=Path("data"), help="folder for the files")
    args = parser.parse_args(argv)
    convert(args.source, args.out)


if __name__ == "__main__":
    main()
