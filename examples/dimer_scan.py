"""Dimer curves of every pair of Al, Ni and Cu with ASE's EMT potential, on one plot.

    python examples/dimer_scan.py --out dimer_out

Prints the position (Å) and depth (eV) of each well, relative to the two isolated atoms, and
writes ``dimer_scan.json``, ``dimer_scan.csv`` and ``dimer_scan.png`` into ``--out``. Swap
``EMT()`` for any ASE calculator to compare potentials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.calculators.emt import EMT

from mlcalc.workflows import dimer_scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args()

    result = dimer_scan(["Al", "Ni", "Cu"], EMT(), distances=np.linspace(1.5, 6.0, 91))
    for pair, curve in result.curves.items():
        print(f"{pair}: minimum {curve.e_min:.3f} eV at {curve.r_min:.3f} Å")
    result.to_json(args.out / "dimer_scan.json")
    result.to_csv(args.out / "dimer_scan.csv")
    result.plot(args.out / "dimer_scan.png", dpi=100)
    print(f"wrote {args.out / 'dimer_scan.png'}")


if __name__ == "__main__":
    main()
