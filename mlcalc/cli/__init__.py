"""The ``mlcalc`` command line: a thin layer over the library.

Every module of this package whose name does not start with ``_`` is a subcommand: it defines
``register(commands)``, which adds its parser to the subparsers ``commands`` and sets
``handler`` (a function of the parsed arguments returning an exit code) as a default.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from mlcalc._version import __version__
from mlcalc.performance import tune_memory_allocator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcalc", description="Fast equivariant ML interatomic potentials for ASE."
    )
    parser.add_argument("--version", action="version", version=f"mlcalc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    tune_memory_allocator()  # this process is ours: keep per-step buffers (mlcalc.performance)
    try:
        return args.handler(args)
    except (
        ValueError,
        KeyError,
        FileNotFoundError,
        FileExistsError,
        TypeError,
        RuntimeError,
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mlcalc {args.command}: error: {message}", file=sys.stderr)
        return 2
