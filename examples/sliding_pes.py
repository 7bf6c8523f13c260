"""Sliding potential-energy surface of bilayer graphene, rigid and with relaxed distance.

Same Lennard-Jones C–C potential as ``examples/exfoliation.py`` (ASE's ``LennardJones`` with
Girifalco's graphite parameters; pass ``--checkpoint`` for a trained NEMP model). A pair
potential underestimates the real corrugation several-fold but gets its shape: AA highest,
AB/BA lowest, the saddle point SP between them.

    python examples/sliding_pes.py --out sliding
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.calculators.lj import LennardJones

from mlcalc import NEMPCalculator
from mlcalc.workflows import sliding_pes

# run from anywhere: the bilayer builder lives next to this script
from exfoliation import bilayer_graphene  # isort: skip

#: Named stackings of the AA-built bilayer, as fractional shifts of the top layer.
STACKINGS = {"AA": (0.0, 0.0), "AB": (2 / 3, 1 / 3), "SP": (1 / 2, 1 / 2), "BA": (1 / 3, 2 / 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained NEMP .safetensors (default: LJ)")
    parser.add_argument("--grid", type=int, default=12, help="shifts per in-plane direction")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args()

    if args.checkpoint:
        calculator = NEMPCalculator.from_checkpoint(args.checkpoint, dtype="float64")
    else:
        calculator = LennardJones(sigma=3.41, epsilon=2.39e-3, rc=10.0)
    structure = bilayer_graphene((0.0, 0.0), distance=3.4)
    grid = (args.grid, args.grid)
    for mode in ("rigid", "flexible"):
        result = sliding_pes(structure, calculator, grid=grid, mode=mode, path=STACKINGS)
        aa, ab, sp = result.interpolate([STACKINGS["AA"], STACKINGS["AB"], STACKINGS["SP"]])
        print(
            f"{mode:8s}: E(AA) - E(AB) = {aa - ab:.4f} meV/Å², sliding barrier E(SP) - E(AB) = "
            f"{sp - ab:.4f} meV/Å², d(AA) = {result.distances[0, 0]:.3f} Å"
        )
        result.to_json(args.out / f"sliding_{mode}.json")
    result.plot(args.out / "sliding_pes.png", dpi=100)  # the flexible PES with its line cut
    print(f"wrote sliding_rigid.json, sliding_flexible.json and sliding_pes.png in {args.out}")


if __name__ == "__main__":
    main()
