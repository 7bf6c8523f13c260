"""Barrier of an Au adatom hopping between hollow sites of Al(100), with EMT (ASE's tutorial).

    python examples/neb.py --plot docs/workflows/img/neb.png
    mlcalc neb initial.traj final.traj --model emt --images 5 --relax-endpoints --out neb_out

Any ASE calculator works; for an mlcalc model pass a factory, e.g.
``neb(initial, final, lambda: NEMPCalculator(model), ...)``.
"""

from __future__ import annotations

import argparse

from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import write

from mlcalc.workflows import neb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="neb.png")
    args = parser.parse_args()

    initial = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(initial, "Au", 1.7, "hollow")
    initial.center(axis=2, vacuum=4.0)
    initial.set_constraint(FixAtoms(mask=initial.get_tags() > 2))  # bottom layer
    final = initial.copy()
    final.positions[-1, 0] += final.cell[0, 0] / 2  # the next hollow site along x
    write("initial.traj", initial)
    write("final.traj", final)

    # EMT is a factory: each image gets its own EMT()
    result = neb(initial, final, EMT, n_images=5, fmax=0.02, relax_endpoints=True)
    print(
        f"converged: {result.converged} in {result.steps} steps\n"
        f"barrier {result.barrier_forward:.3f} eV (reverse {result.barrier_reverse:.3f} eV), "
        f"reaction energy {result.reaction_energy:.3f} eV\n"
        f"max force on the climbing image {result.saddle_max_force:.3f} eV/Å"
    )
    result.plot(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
