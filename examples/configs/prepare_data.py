"""Write the train/test split files the configs in this folder read.

    python examples/configs/prepare_data.py ../shared/data data

Only the two splits that are not already separate files need writing; the other data sets
are read in place (the configs name ``../shared/data/...`` relative to the repository root):

* ``water_train.extxyz`` / ``water_test.extxyz``: ``water-pbe0`` frames whose
  ``info["source"]`` starts with ``data_3`` are the test set (80), the other 320 train;
* ``3bpa_test_mixedT.xyz``: the frames of ``3bpa/train_mixedT.xyz`` that are not in
  ``3bpa/train_300K.xyz`` (matched on positions);
* ``3bpa_train_hot.xyz`` / ``3bpa_test_hot.xyz``: the same unseen frames (300, 600 and
  1200 K, not labelled) halved, stratified by temperature: sorted by their RMS force, each
  consecutive pair split at random (seed 0). The training file also holds all of
  ``train_300K.xyz``, so a model trained on it has seen hot frames (the shipped ``3bpa``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.io import read, write

from mlcalc.atomic import atomic_path


def _write(path: Path, frames: list) -> None:
    with atomic_path(path) as temporary:
        write(temporary, frames, format="extxyz")
    print(f"wrote {path} ({len(frames)} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out", type=Path, help="folder for the split files")
    args = parser.parse_args()

    water = read(args.source / "water-pbe0" / "water.extxyz", ":")
    test = [a for a in water if str(a.info["source"]).startswith("data_3")]
    train = [a for a in water if not str(a.info["source"]).startswith("data_3")]
    _write(args.out / "water_train.extxyz", train)
    _write(args.out / "water_test.extxyz", test)

    known = read(args.source / "3bpa" / "train_300K.xyz", ":")
    mixed = read(args.source / "3bpa" / "train_mixedT.xyz", ":")
    seen = [a.positions for a in known]
    unseen = [a for a in mixed if not any(np.allclose(a.positions, p, atol=1e-6) for p in seen)]
    _write(args.out / "3bpa_test_mixedT.xyz", unseen)
    by_force = np.argsort([np.sqrt(np.mean(a.get_forces() ** 2)) for a in unseen])
    flips = np.random.default_rng(0).integers(0, 2, size=len(unseen) // 2)
    to_test = {int(by_force[2 * k + flip]) for k, flip in enumerate(flips)}
    hot_train = [a for k, a in enumerate(unseen) if k not in to_test]
    _write(args.out / "3bpa_train_hot.xyz", known + hot_train)
    _write(args.out / "3bpa_test_hot.xyz", [a for k, a in enumerate(unseen) if k in to_test])


if __name__ == "__main__":
    main()
