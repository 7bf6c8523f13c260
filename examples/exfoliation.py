"""Exfoliation (binding) curve of AB-stacked bilayer graphene.

The interlayer interaction is a Lennard-Jones C–C potential with Girifalco's graphite
parameters (ε = 2.39 meV, σ = 3.41 Å) from ASE: every workflow takes any ASE calculator, and
a pair potential gives a physically sensible vdW binding curve where an untrained model would
not. Pass ``--checkpoint`` to run a trained NEMP model on the same bilayer instead.

    python examples/exfoliation.py --out exfoliation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import graphene
from ase.calculators.lj import LennardJones

from mlcalc import NEMPCalculator
from mlcalc.workflows import exfoliation_curve


def bilayer_graphene(shift: tuple[float, float], distance: float = 3.4) -> Atoms:
    """Two graphene layers ``distance`` Å apart, the top one shifted by fractional ``shift``
    of the in-plane cell ((0, 0): AA, (2/3, 1/3): AB), with 20 Å of vacuum."""
    bottom = graphene(a=2.46, vacuum=10.0)
    top = bottom.copy()
    top.translate(np.asarray(shift) @ bottom.cell.array[:2] + [0.0, 0.0, distance])
    return bottom + top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained NEMP .safetensors (default: LJ)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args()

    if args.checkpoint:
        calculator = NEMPCalculator.from_checkpoint(args.checkpoint, dtype="float64")
    else:
        calculator = LennardJones(sigma=3.41, epsilon=2.39e-3, rc=10.0)
    separations = np.concatenate([np.arange(2.8, 4.4, 0.1), np.arange(4.5, 12.01, 0.5)])
    result = exfoliation_curve(
        bilayer_graphene((2 / 3, 1 / 3)), calculator, separations=separations
    )
    print(
        f"AB bilayer graphene: d = {result.equilibrium_distance:.3f} Å, binding energy "
        f"{result.binding_energy_per_atom:.2f} meV/atom = "
        f"{result.binding_energy_per_area:.3f} meV/Å² = {result.binding_energy_j_per_m2:.4f} J/m²"
    )
    result.to_json(args.out / "exfoliation.json")
    result.plot(args.out / "exfoliation.png", dpi=100)
    print(f"wrote {args.out / 'exfoliation.json'} and {args.out / 'exfoliation.png'}")


if __name__ == "__main__":
    main()
