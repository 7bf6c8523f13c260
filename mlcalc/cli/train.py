"""``mlcalc train CONFIG.yaml [--key value ...]``: train a model (see ``docs/training.md``).

Every configuration key is also a flag whose value is read as YAML (``--epochs 50``,
``--model '{preset: small, cutoff: 4.5}'``, ``--e0s '{H: -13.6, O: -432.0}'``); flags win over
the file. Data-parallel: ``torchrun --nproc_per_node N -m mlcalc.cli train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlcalc.cli._common import add_config_flags, config_overrides


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
    add_config_flags(parser, TrainConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.training import TrainConfig, format_errors, train

    overrides = config_overrides(args)
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
