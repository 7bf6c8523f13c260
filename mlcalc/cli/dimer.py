"""``mlcalc dimer ELEMENT... | PAIR...``: energy vs distance of isolated element pairs."""

from __future__ import annotations

import argparse
from typing import Any

from mlcalc.cli._common import add_model_arguments, calculator_from_args, write_outputs


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dimer", help="dimer curves of element pairs relative to the isolated atoms"
    )
    parser.add_argument(
        "species",
        nargs="+",
        help="element symbols (all pairs among them) or pairs written A-B (e.g. Cu-Ni)",
    )
    parser.add_argument("--rmin", type=float, default=0.5, help="shortest distance (Å)")
    parser.add_argument("--rmax", type=float, default=6.0, help="longest distance (Å)")
    parser.add_argument("--points", type=int, default=111, help="number of distances")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mlcalc.workflows.dimer import dimer_scan

    is_pair = ["-" in item for item in args.species]
    if any(is_pair) and not all(is_pair):
        raise ValueError(f"give either element symbols or A-B pairs, not both: {args.species}")
    species = [tuple(item.split("-")) for item in args.species] if any(is_pair) else args.species
    distances = np.linspace(args.rmin, args.rmax, args.points)
    result = dimer_scan(species, calculator_from_args(args), distances=distances)
    width = max(len(pair) for pair in result.curves)
    print(f"{'':<{width}}  r_min (Å)  E_min (eV)")
    for pair, curve in result.curves.items():
        print(f"{pair:<{width}}  {curve.r_min:9.4f}  {curve.e_min:10.5f}")
    write_outputs(result, args.out, "dimer")
    return 0
