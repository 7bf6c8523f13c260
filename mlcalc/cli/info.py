"""``mlcalc info CHECKPOINT``: describe a checkpoint."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("info", help="describe a .safetensors checkpoint")
    parser.add_argument("checkpoint", help="path to a .safetensors checkpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
