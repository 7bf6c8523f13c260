"""``mlcalc neb INITIAL FINAL --model M``: climbing-image NEB barrier between two structures."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlcalc.cli._common import add_model_arguments


def register(commands: Any) -> None:
    parser = commands.add_parser("neb", help="nudged elastic band: barrier and energy profile")
    parser.add_argument("initial", help="initial state (any ASE format; last frame)")
    parser.add_argument("final", help="final state (same atoms in the same order)")
    add_model_arguments(parser)
    parser.add_argument("--images", type=int, default=5, help="interior images (default: 5)")
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å (default: 0.05)")
    parser.add_argument("--steps", type=int, default=500, help="maximum optimiser steps")
    parser.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS", "MDMin"])
    parser.add_argument("--interpolation", default="idpp", choices=["idpp", "linear"])
    parser.add_argument("--no-climb", action="store_true", help="no climbing image")
    parser.add_argument(
        "--relax-endpoints", action="store_true", help="relax both end points first"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import (
        calculator_from_args,
        read_structure,
        write_outputs,
        write_structures,
    )
    from mlcalc.workflows.reaction_path import neb

    initial = read_structure(args.initial)
    final = read_structure(args.final)
    # one calculator for all images: those from --model recompute whenever positions change
    result = neb(
        initial,
        final,
        calculator_from_args(args),
        n_images=args.images,
        climb=not args.no_climb,
        fmax=args.fmax,
        steps=args.steps,
        optimizer=args.optimizer,
        interpolation=args.interpolation,
        relax_endpoints=args.relax_endpoints,
        allow_shared_calculator=True,
        logfile="-",
    )
    print(
        f"barrier {result.barrier_forward:.4f} eV (reverse {result.barrier_reverse:.4f} eV), "
        f"reaction energy {result.reaction_energy:.4f} eV, {result.steps} steps"
    )
    write_outputs(result, args.out, "neb")
    band = args.out / "band.traj"
    write_structures(band, result.images, "traj")
    if not result.converged:
        print(f"mlcalc neb: not converged to fmax={args.fmax} eV/Å", file=sys.stderr)
        return 1
    return 0
