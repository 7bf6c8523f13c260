"""Phonons of fcc copper with ASE's EMT potential: relax the cell, then phonopy.

    python examples/phonons.py --plot phonons.png

Swap ``EMT()`` for any ASE calculator, e.g. ``NEMPCalculator.from_checkpoint(...)`` (use
float64 for phonons).
"""

from __future__ import annotations

import argparse

from ase.build import bulk
from ase.calculators.emt import EMT

from mlcalc.workflows import phonons, relax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="phonons.png", help="figure file (default: phonons.png)")
    args = parser.parse_args()

    crystal = relax(bulk("Cu", "fcc", a=3.7), EMT(), cell=True, fmax=1e-4).atoms
    print(f"relaxed lattice constant {crystal.cell.cellpar()[0] * 2**0.5:.4f} Å")
    result = phonons(crystal, EMT(), supercell=(4, 4, 4))
    print(f"Γ frequencies (THz): {result.gamma_frequencies.round(4)}")
    print(
        f"highest frequency {result.max_frequency:.2f} THz; imaginary modes: "
        f"{'yes' if result.has_imaginary_modes else 'none'}"
    )
    index = list(result.temperatures).index(300.0)
    print(
        f"at 300 K: F = {result.free_energy[index]:.3f} kJ/mol, "
        f"S = {result.entropy[index]:.2f} J/K/mol, C_V = {result.heat_capacity[index]:.2f} J/K/mol"
    )
    result.plot(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
