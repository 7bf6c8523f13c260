"""Write a LAMMPS data file of liquid-density water for the inputs in this folder.

Usage::

    python make_water_data.py --repeats 4 --out water.data   # 64 H2O, 192 atoms

Atom types are 1 = H and 2 = O (so ``pair_coeff * * H O``), metal units, ``atom_style
atomic``; the box is :func:`mlcalc.structures.water_box`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.io import write

from mlcalc.structures import water_box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="molecules per box edge")
    parser.add_argument("--out", type=Path, default=Path("water.data"))
    args = parser.parse_args()
    atoms = water_box(args.repeats, jitter=0.02)
    write(
        args.out,
        atoms,
        format="lammps-data",
        specorder=["H", "O"],
        masses=True,
        units="metal",
        atom_style="atomic",
    )
    print(f"wrote {args.out}: {len(atoms)} atoms, {atoms.cell.lengths()[0]:.2f} Å cube")


if __name__ == "__main__":
    main()
