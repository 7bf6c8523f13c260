"""Relax a strained, rattled copper crystal (ions and cell) with ASE's EMT potential.

    python examples/relax.py --plot relax.png

Swap ``EMT()`` for any ASE calculator, e.g. ``NEMPCalculator.from_checkpoint(...)``.
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from mlcalc.workflows import relax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="relax.png", help="figure file (default: relax.png)")
    parser.add_argument("--trajectory", default=None, help="optional ASE .traj of every step")
    args = parser.parse_args()

    crystal = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    crystal.set_cell(crystal.cell[:] @ np.diag([1.03, 0.98, 1.01]), scale_atoms=True)
    crystal.rattle(0.05, seed=0)
    result = relax(crystal, EMT(), cell=True, fmax=1e-3, trajectory=args.trajectory)
    lengths = result.atoms.cell.cellpar()[:3] / 2
    print(f"converged: {result.converged} in {result.n_steps} steps")
    print(f"energy {result.energies[0]:.4f} -> {result.final_energy:.4f} eV")
    print(f"cubic lattice constants {lengths.round(4)} Å (EMT: 3.5898 Å)")
    print(f"final stress (GPa) {result.final_stress.round(4)}")
    result.plot(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
