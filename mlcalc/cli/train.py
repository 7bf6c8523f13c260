"""``mlcalc train CONFIG.yaml [--key value ...]``: train a model (see ``docs/training.md``).

Every configuration key is also a flag whose value is read as YAML (``--epochs 50``,
``--model '{preset: small, cutoff: 4.5}'``, ``--e0s '{H: -13.6, O: -432.0}'``); flags win over
the file. Data-parallel: ``torchrun --nproc_per_node N -m mlcalc.cli train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"not a YAML value: {text!r} ({error})") from None


def register(commands: Any) -> None:
    from mlcalc.training import TrainConfig

    parser = commands.add_parser(
        "train",
        help="train NEMP or MLANet on labelled structures",
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML training configuration")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its last completed epoch",
    )
    keys = parser.add_argument_group("configuration keys (override the file)")
    for field in dataclasses.fields(TrainConfig):
        keys.add_argument(
            f"--{field.name}",
            type=_yaml_value,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            dest=f"key_{field.name}",
        )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.training import TrainConfig, format_errors, train

    overrides = {
        name.removeprefix("key_"): value
        for name, value in vars(args).items()
        if name.startswith("key_")
    }
    if args.config is not None:
        config = TrainConfig.from_yaml(args.config, overrides)
    else:
        config = TrainConfig.from_dict(overrides)
    result = train(config, resume=args.resume)
    if not result.main_process:
        return 0
    if result.test_errors is None:
        print(f"validation: {format_errors(result.valid_errors)}")
    which = "final" if config.keep == "final" else "lowest validation loss"
    print(f"model ({which}, epoch {result.model_epoch}): {result.model_path}")
    return 0
