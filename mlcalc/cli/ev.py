"""``mlcalc ev STRUCTURE...``: E–V curves and equation-of-state fits of bulk structures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcalc.cli._common import (
    add_model_arguments,
    calculator_from_args,
    read_structure,
    write_outputs,
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "ev", help="E–V curve and equation-of-state fit (V0, E0, B0, B′) of bulk structures"
    )
    parser.add_argument(
        "structures",
        nargs="+",
        help="periodic structure files (any ASE format, last frame), plotted together and "
        "labelled by file name",
    )
    parser.add_argument(
        "--strain", type=float, default=0.03, help="largest linear strain (default 0.03)"
    )
    parser.add_argument("--points", type=int, default=9, help="number of volumes (default 9)")
    parser.add_argument(
        "--eos",
        default="birchmurnaghan",
        help="ase.eos equation of state (default Birch–Murnaghan)",
    )
    parser.add_argument(
        "--relax-ions", action="store_true", help="relax atomic positions at each volume"
    )
    parser.add_argument(
        "--fmax", type=float, default=0.01, help="force threshold of --relax-ions (eV/Å)"
    )
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.workflows.eos import ev_curve

    structures = [read_structure(path) for path in args.structures]
    labels = [Path(path).stem for path in args.structures]
    if len(set(labels)) < len(labels):
        labels = list(args.structures)
    result = ev_curve(
        structures,
        calculator_from_args(args),
        strains=args.strain,
        num_points=args.points,
        relax_ions=args.relax_ions,
        fmax=args.fmax,
        eos=args.eos,
        labels=labels,
    )
    width = max(len(label) for label in result.fits)
    print(f"{'':<{width}}  V0 (Å³/atom)  E0 (eV/atom)  B0 (GPa)     B′")
    for label, fit in result.fits.items():
        print(
            f"{label:<{width}}  {fit.v0_per_atom:12.4f}  {fit.e0_per_atom:12.5f}  "
            f"{fit.b0:8.2f}  {fit.bprime:5.2f}"
        )
    write_outputs(result, args.out, "ev")
    return 0
