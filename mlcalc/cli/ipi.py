"""``mlcalc ipi --model M --address unix:NAME --structure FILE``: serve forces to i-PI."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlcalc.cli._common import add_model_arguments


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "ipi",
        help="serve energy, forces and virial to a running i-PI server (path integrals, REMD)",
        description="Connect to an i-PI server and evaluate every structure it sends until it "
        "says exit. i-PI sends positions and cell only: --structure names the atoms, in "
        "i-PI's order (give the file i-PI initialises from). Start several drivers on the "
        "same address to spread the beads over processes.",
    )
    add_model_arguments(parser, out=False)
    parser.add_argument(
        "--address",
        required=True,
        help="unix:NAME for <ffsocket mode='unix'><address>NAME</address> (socket "
        "/tmp/ipi_NAME), or HOST:PORT for mode='inet'",
    )
    parser.add_argument(
        "--structure",
        required=True,
        help="the atoms i-PI simulates, in its order (any ASE format; first frame)",
    )
    parser.add_argument(
        "--skin", type=float, default=1.0, help="neighbour-list skin, Å (default: 1.0)"
    )
    parser.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the server (60)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import calculator_from_args, read_structure
    from mlcalc.ipi import serve

    template = read_structure(args.structure, index=0)
    calculator = calculator_from_args(args, skin=args.skin)
    print(f"mlcalc ipi: {len(template)} atoms, model {args.model}, waiting for {args.address}")
    if not template.pbc.all():
        print(
            f"mlcalc ipi: the structure is not periodic in all directions (pbc="
            f"{template.pbc.tolist()}): the virial sent is zero, so i-PI's barostats cannot be "
            "used with it"
        )
    sys.stdout.flush()
    evaluations = serve(calculator, template, args.address, wait_s=args.wait)
    print(f"mlcalc ipi: the server said exit after {evaluations} evaluations")
    return 0
