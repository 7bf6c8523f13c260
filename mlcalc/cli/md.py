"""``mlcalc md STRUCTURE --model M``: molecular dynamics (NVE, NVT, NPT) with ASE."""

from __future__ import annotations

import argparse
from typing import Any

from mlcalc.cli._common import add_model_arguments


def register(commands: Any) -> None:
    parser = commands.add_parser("md", help="molecular dynamics: trajectory, log and summary")
    parser.add_argument("structure", help="structure file (any ASE format; last frame)")
    add_model_arguments(parser)
    parser.add_argument(
        "--ensemble",
        default="nve",
        help="nve (default), nvt-langevin, nvt-nose-hoover, npt (MTK: cell volume and "
        "shape) or npt-isotropic (volume only)",
    )
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default: 300)")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs (default: 1)")
    parser.add_argument("--steps", type=int, default=1000, help="default: 1000")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin, 1/fs (0.01)")
    parser.add_argument("--tdamp", type=float, default=100.0, help="Nosé–Hoover, fs (100)")
    parser.add_argument("--pdamp", type=float, default=1000.0, help="barostat, fs (1000)")
    parser.add_argument("--pressure", type=float, default=0.0, help="NPT, GPa (default: 0)")
    parser.add_argument(
        "--interval", type=int, default=10, help="steps between samples and frames (10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="velocities and Langevin noise")
    parser.add_argument(
        "--keep-velocities",
        action="store_true",
        help="start from the file's momenta instead of Maxwell–Boltzmann at --temperature",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import (
        calculator_from_args,
        read_structure,
        write_outputs,
        write_structures,
    )
    from mlcalc.workflows.dynamics import md

    args.out.mkdir(parents=True, exist_ok=True)
    result = md(
        read_structure(args.structure),
        calculator_from_args(args),
        ensemble=args.ensemble,
        temperature_K=args.temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        friction=args.friction,
        tdamp=args.tdamp,
        pdamp=args.pdamp,
        pressure=args.pressure,
        thermalize=not args.keep_velocities,
        trajectory=args.out / "md.traj",
        logfile=args.out / "md.log",
        interval=args.interval,
        seed=args.seed,
        progress=not args.no_progress,
    )
    drift = "" if result.energy_drift is None else f"; drift {result.energy_drift:.2e} eV/atom/ps"
    print(f"T = {result.temperature_mean:.1f} ± {result.temperature_std:.1f} K{drift}")
    write_outputs(result, args.out, "md")
    final = args.out / "final.extxyz"
    write_structures(final, result.atoms, "extxyz")
    for path in (args.out / "md.traj", args.out / "md.log"):
        print(f"wrote {path}")
    return 0
