"""Partial and total g(r) of Cu3Au (L1_2) at about 800 K, from a short EMT molecular dynamics.

The RDF needs no calculator: it analyses frames; EMT only makes the trajectory here.

    python examples/rdf.py --plot docs/workflows/img/rdf.png
    mlcalc rdf cu3au_md.extxyz --rmax 7 --out rdf_out      # the same from the command line
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from ase.md import thermalize_momenta  # ASE >= 3.29
from ase.md.verlet import VelocityVerlet

from mlcalc.workflows import rdf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectory", default="cu3au_md.extxyz")
    parser.add_argument("--plot", default="rdf.png")
    args = parser.parse_args()

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms.symbols[0] = "Au"  # L1_2 Cu3Au
    atoms = atoms.repeat(3)  # 108 atoms, cell 11.25 Å wide
    atoms.calc = EMT()
    # twice the target temperature: equipartition halves it in NVE
    thermalize_momenta(atoms, temperature_K=1600, rng=np.random.default_rng(0))
    frames = []
    with VelocityVerlet(atoms, timestep=2.0 * units.fs) as dynamics:
        dynamics.attach(lambda: frames.append(atoms.copy()), interval=10)
        dynamics.run(500)
    frames = frames[10:]  # skip the first 200 fs
    print(f"{len(frames)} frames, T = {atoms.get_temperature():.0f} K at the end")
    write(args.trajectory, frames)

    # rmax 7 Å exceeds half the cell width (5.6 Å): periodic images are counted
    result = rdf(args.trajectory, rmax=7.0, nbins=140)
    for key, r_min in result.first_minimum.items():
        print(
            f"{key:>6}: first minimum {r_min:.2f} Å, "
            f"coordination {result.first_shell_coordination[key]:.2f}"
        )
    result.plot(args.plot, dpi=100)
    print(f"wrote {args.trajectory} and {args.plot}")


if __name__ == "__main__":
    main()
