"""The ``mlcalc`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mlcalc._version import __version__


def _info(args: argparse.Namespace) -> int:
    from mlcalc.models import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    summary = {
        "architecture": model.architecture,
        "elements": model.elements,
        "cutoff": model.cutoff,
        "parameters": model.num_parameters(),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "atomic_energies": model.atomic_energies,
        "energy_scale": model.energy_scale,
        "config": model.config.to_dict(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        if key != "config":
            print(f"{key:<{width}}  {value}")
    print("config:")
    for key, value in summary["config"].items():
        print(f"  {key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcalc", description="Fast equivariant ML interatomic potentials for ASE."
    )
    parser.add_argument("--version", action="version", version=f"mlcalc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="describe a .safetensors checkpoint")
    info.add_argument("checkpoint", help="path to a .safetensors checkpoint")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except (ValueError, KeyError, FileNotFoundError, TypeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mlcalc {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
