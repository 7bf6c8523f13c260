"""A large, mixed-size data set for training at scale: EMT-labelled Cu–Au cells of 1–256 atoms.

Usage (from the repository root)::

    python bench/scale.py --train 20000 --test 1000 --out data     # writes data/cuau_*.extxyz
    python bench/accuracy.py --datasets cuau --budgets 30m 2h --models nemp mace

Structures: fcc Cu–Au alloys, every composition from pure Cu to pure Au, as the primitive
cell (1 atom) or the cubic cell (4 atoms) repeated 1–4 times along each axis (up to 256
atoms), each with a random share of Au on random sites, a lattice parameter from Vegard's law
(3.61–4.08 Å) scaled by ±4 % and sheared by up to 3 %, and atoms rattled by 0.02–0.15 Å;
energy, forces and stress from ASE's EMT. Seeded: the same command gives the same files.
Prints the size distribution and the seconds EMT took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

#: Lattice parameters (Å) of the pure metals, for Vegard's law.
LATTICE = {"Cu": 3.61, "Au": 4.08}
#: Repeats of the 4-atom cubic cell: every (a, b, c) with 1 <= a <= b <= c <= 4.
REPEATS = [(a, b, c) for a in range(1, 5) for b in range(a, 5) for c in range(b, 5)]


def structure(rng: np.random.Generator) -> Atoms:
    """One random Cu–Au cell with EMT labels."""
    au_share = rng.uniform(0.0, 1.0)
    a = (1 - au_share) * LATTICE["Cu"] + au_share * LATTICE["Au"]
    if rng.random() < 0.1:
        atoms = bulk("Cu", "fcc", a=a)  # primitive: 1 atom
    else:
        repeat = REPEATS[rng.integers(len(REPEATS))]
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    gold = rng.random(len(atoms)) < au_share
    atoms.symbols[gold] = "Au"
    deformation = np.eye(3) * rng.uniform(0.96, 1.04) + rng.uniform(-0.03, 0.03, (3, 3))
    atoms.set_cell(atoms.cell[:] @ deformation, scale_atoms=True)
    atoms.rattle(rng.uniform(0.02, 0.15), seed=int(rng.integers(2**31)))
    atoms.calc = EMT()
    labels = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }
    atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, count in (("train", args.train), ("test", args.test)):
        started = time.perf_counter()
        frames = [structure(rng) for _ in range(count)]
        elapsed = time.perf_counter() - started
        path = args.out / f"cuau_{name}.extxyz"
        temporary = path.with_suffix(".extxyz.tmp")
        write(temporary, frames, format="extxyz")
        temporary.replace(path)
        sizes = np.array([len(f) for f in frames])
        print(
            f"{path}: {count} structures, {sizes.sum()} atoms, sizes {sizes.min()}–{sizes.max()} "
            f"(median {np.median(sizes):.0f}, mean {sizes.mean():.1f}); EMT {elapsed:.0f} s"
        )


if __name__ == "__main__":
    main()
