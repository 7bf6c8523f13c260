"""``mlcalc rdf TRAJECTORY``: partial and total g(r) and coordination numbers of a trajectory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rdf",
        help="radial distribution functions of a periodic trajectory (no model needed)",
    )
    parser.add_argument("trajectory", help="trajectory file (any ASE format: .traj, extxyz...)")
    parser.add_argument("--rmax", type=float, required=True, help="largest distance, Å")
    parser.add_argument(
        "--nbins", type=int, default=None, help="number of bins (default: rmax / 0.02 Å)"
    )
    parser.add_argument(
        "--pairs",
        nargs="*",
        default=None,
        metavar="A-B",
        help="element pairs such as Cu-Au (default: all; give none for the total only)",
    )
    parser.add_argument("--start", type=int, default=0, help="first frame (default: 0)")
    parser.add_argument("--stop", type=int, default=None, help="stop before this frame")
    parser.add_argument("--step", type=int, default=1, help="use every STEP-th frame")
    parser.add_argument("--out", default=".", type=Path, help="output folder (created)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import write_outputs
    from mlcalc.workflows.pair_distribution import TOTAL, rdf

    result = rdf(
        args.trajectory,
        rmax=args.rmax,
        nbins=args.nbins,
        pairs=args.pairs,
        start=args.start,
        stop=args.stop,
        step=args.step,
    )
    print(f"{result.n_frames} frames")
    for key, r_min in result.first_minimum.items():
        if r_min is not None:
            coordination = result.first_shell_coordination[key]
            print(f"{key:>8}: first minimum {r_min:.3f} Å, coordination {coordination:.3f}")
        elif key == TOTAL:
            print(f"{key:>8}: no first minimum within rmax")
    write_outputs(result, args.out, "rdf")
    return 0
