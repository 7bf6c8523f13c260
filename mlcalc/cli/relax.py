"""``mlcalc relax STRUCTURE --model M``: relax atomic positions (and the cell with ``--cell``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlcalc.cli._common import add_model_arguments


def register(commands: Any) -> None:
    parser = commands.add_parser("relax", help="relax positions, or positions and cell")
    parser.add_argument("structure", help="structure file (any ASE format; last frame)")
    add_model_arguments(parser)
    parser.add_argument("--cell", action="store_true", help="relax the cell too")
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å (default: 0.01)")
    parser.add_argument("--steps", type=int, default=500, help="maximum optimiser steps")
    parser.add_argument("--optimizer", default="BFGS", choices=["BFGS", "FIRE", "LBFGS"])
    parser.add_argument(
        "--pressure", type=float, default=0.0, help="external pressure in GPa (with --cell)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import (
        calculator_from_args,
        read_structure,
        write_outputs,
        write_structures,
    )
    from mlcalc.workflows.dynamics import relax

    args.out.mkdir(parents=True, exist_ok=True)
    result = relax(
        read_structure(args.structure),
        calculator_from_args(args),
        fmax=args.fmax,
        steps=args.steps,
        cell=args.cell,
        optimizer=args.optimizer,
        trajectory=args.out / "relax.traj",
        logfile=args.out / "relax.log",
        pressure=args.pressure,
    )
    print(
        f"energy {result.energies[0]:.5f} -> {result.final_energy:.5f} eV in {result.n_steps} "
        f"steps; largest force {result.final_max_force:.2e} eV/Å"
    )
    write_outputs(result, args.out, "relax")
    relaxed = args.out / "relaxed.extxyz"
    write_structures(relaxed, result.atoms, "extxyz")
    for path in (args.out / "relax.traj", args.out / "relax.log"):
        print(f"wrote {path}")
    if not result.converged:
        print(f"mlcalc relax: not converged to fmax={args.fmax} eV/Å", file=sys.stderr)
        return 1
    return 0
