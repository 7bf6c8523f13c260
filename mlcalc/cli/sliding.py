"""``mlcalc sliding FILE --model M``: sliding potential-energy surface of a layered slab."""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any

from mlcalc.cli._common import add_model_arguments, calculator_from_args, read_structure
from mlcalc.cli.exfoliation import add_layer_arguments, layer_options


def stacking(text: str) -> tuple[str, tuple[float, float]]:
    """``NAME=A,B`` with fractional shifts such as ``AB=1/3,1/3``."""
    name, _, shift = text.partition("=")
    try:
        values = tuple(float(Fraction(part)) for part in shift.split(","))
    except ValueError:
        values = ()
    if not name or len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=A,B, e.g. AB=1/3,1/3")
    return name, values


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sliding",
        help="sliding PES of the top layer of a bilayer/multilayer",
        description="In-plane shifts of the top layer on a grid over the in-plane cell, at fixed "
        "or relaxed interlayer distance; writes result.json, sliding.csv and sliding.png.",
    )
    parser.add_argument(
        "structure", help="slab with vacuum along the stacking axis (any ASE format)"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--grid", type=int, nargs=2, default=[6, 6], metavar=("N", "M"), help="default 6 6"
    )
    parser.add_argument(
        "--distance", type=float, help="interlayer distance in Å (default: the input's)"
    )
    parser.add_argument(
        "--mode",
        choices=["rigid", "flexible"],
        default="rigid",
        help="flexible: minimise over the interlayer distance at each shift",
    )
    parser.add_argument(
        "--relax-atoms",
        action="store_true",
        help="flexible mode: also relax all atoms along the stacking normal",
    )
    parser.add_argument(
        "--path",
        type=stacking,
        nargs="+",
        metavar="NAME=A,B",
        help="named stackings for the line cut, e.g. AA=0,0 AB=1/3,1/3",
    )
    add_layer_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import write_outputs
    from mlcalc.workflows.sliding import sliding_pes

    result = sliding_pes(
        read_structure(args.structure),
        calculator_from_args(args),
        grid=tuple(args.grid),
        distance=args.distance,
        mode=args.mode,
        relax_atoms=args.relax_atoms,
        path=dict(args.path or []),
        **layer_options(args),
    )
    print(f"corrugation {result.corrugation:.3f} meV/Å² ({args.mode}, grid {args.grid})")
    write_outputs(result, args.out, "sliding")
    return 0
