"""``mlcalc learn CONFIG.yaml [--key value ...]``: a fast potential from any reference method.

Active learning with a committee (see ``docs/learn.md``): label rattled copies of the start
structures with the teacher, train a committee, run MD with it, label the frames it is least
sure of, retrain, until the label, round or time budget is spent or fresh exploration is
certain. Every configuration key is also a flag read as YAML (``--teacher xtb``,
``--teacher_options '{method: GFN1-xTB}'``, ``--temperatures '[300, 600]'``); flags win over
the file. ``--resume`` continues a stopped or killed run without repeating a teacher call.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlcalc.cli._common import add_config_flags, config_overrides


def register(commands: Any) -> None:
    from mlcalc.learn import LearnConfig

    parser = commands.add_parser(
        "learn",
        help="active learning / distillation from any ASE calculator (emt, xtb, sevennet...)",
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML learn configuration")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir where it stopped (no teacher call is repeated)",
    )
    add_config_flags(parser, LearnConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.learn import LearnConfig, learn

    overrides = config_overrides(args)
    if args.config is not None:
        config = LearnConfig.from_yaml(args.config, overrides)
    else:
        config = LearnConfig.from_dict(overrides)
    result = learn(config, resume=args.resume)
    print(
        f"{result.labels} labels in {result.rounds} rounds ({result.failed} failed teacher "
        f"calls); model: {result.model_path}; committee: {result.output_dir / 'committee'}; "
        f"card: {result.output_dir / 'card.md'}"
    )
    return 0
