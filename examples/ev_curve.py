"""E–V curves of fcc and bcc copper with ASE's EMT potential, on one plot.

    python examples/ev_curve.py --out ev_out

Prints V0, E0, B0 and B′ per polymorph (Birch–Murnaghan fit) and writes ``ev_curve.json``,
``ev_curve.csv`` and ``ev_curve.png`` into ``--out``. Swap ``EMT()`` for any ASE calculator
(e.g. ``NEMPCalculator.from_checkpoint(...)``) to compare potentials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.build import bulk
from ase.calculators.emt import EMT

from mlcalc.workflows import ev_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args()

    polymorphs = {
        "fcc": bulk("Cu", "fcc", a=3.59),
        "bcc": bulk("Cu", "bcc", a=2.86),
    }
    result = ev_curve(list(polymorphs.values()), EMT(), strains=0.04, labels=list(polymorphs))
    for label, fit in result.fits.items():
        print(
            f"{label}: V0 = {fit.v0_per_atom:.3f} Å³/atom, E0 = {fit.e0_per_atom:+.4f} eV/atom, "
            f"B0 = {fit.b0:.1f} GPa, B′ = {fit.bprime:.2f}"
        )
    result.to_json(args.out / "ev_curve.json")
    result.to_csv(args.out / "ev_curve.csv")
    result.plot(args.out / "ev_curve.png", dpi=100)
    print(f"wrote {args.out / 'ev_curve.png'}")


if __name__ == "__main__":
    main()
