"""Arguments and helpers shared by the workflow subcommands."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from ase import Atoms
from ase.calculators.calculator import Calculator


def add_model_arguments(parser: argparse.ArgumentParser, out: bool = True) -> None:
    """``--model``, ``--device``, ``--dtype`` and (with ``out``) ``--out``."""
    parser.add_argument(
        "--model",
        required=True,
        help="a registry name (mlcalc models list), an hf:// reference, a .safetensors "
        "checkpoint, or 'emt' for ASE's EMT potential",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="default: float64"
    )
    if out:
        parser.add_argument("--out", default=".", type=Path, help="output folder (created)")


def calculator_from_args(args: argparse.Namespace, **options: Any) -> Calculator:
    """The ASE calculator named by ``--model`` (registry name, ``hf://`` reference, checkpoint
    path, or ``emt``); ``options`` (``skin``...) go to mlcalc calculators."""
    if args.model.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from mlcalc.calculators import load_calculator

    return load_calculator(args.model, device=args.device, dtype=args.dtype, **options)


def read_structure(path: str | Path, index: Any = -1) -> Atoms:
    """One structure from any ASE-readable file (the last frame by default)."""
    from ase.io import read

    if not Path(path).is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    return read(path, index=index)


def write_structures(path: Path, images: Atoms | list[Atoms], format: str) -> None:
    """Write one or many structures to ``path`` atomically (ASE ``format``) and say so."""
    from ase.io import write

    from mlcalc.atomic import atomic_path

    with atomic_path(path) as temporary:
        write(temporary, images, format=format)
    print(f"wrote {path}")


def write_outputs(result: Any, out: Path, stem: str) -> list[Path]:
    """``result.json``, ``STEM.csv`` and ``STEM.png`` in ``out``; returns the paths."""
    paths = [out / "result.json", out / f"{stem}.csv", out / f"{stem}.png"]
    result.to_json(paths[0])
    result.to_csv(paths[1])
    result.plot(paths[2])
    for path in paths:
        print(f"wrote {path}")
    return paths


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"not a YAML value: {text!r} ({error})") from None


def add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """A ``--key VALUE`` flag (read as YAML) for every field of the dataclass
    ``config_class``; :func:`config_overrides` collects the ones given."""
    keys = parser.add_argument_group("configuration keys (override the file)")
    for field in dataclasses.fields(config_class):
        keys.add_argument(
            f"--{field.name}",
            type=_yaml_value,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            dest=f"key_{field.name}",
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys given as flags (see :func:`add_config_flags`)."""
    return {
        name.removeprefix("key_"): value
        for name, value in vars(args).items()
        if name.startswith("key_")
    }
