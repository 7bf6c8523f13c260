"""``mlcalc exfoliation FILE --model M``: binding energy of a layered slab vs layer distance."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from mlcalc.cli._common import add_model_arguments, calculator_from_args, read_structure


def add_layer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--axis``, ``--split``, ``--layer-gap`` and ``--min-vacuum`` (shared with ``sliding``)."""
    from mlcalc.workflows.layers import LAYER_GAP, MIN_VACUUM

    parser.add_argument(
        "--axis",
        type=int,
        choices=[0, 1, 2],
        help="index of the stacking cell vector (default: the non-periodic one or the one "
        "with vacuum)",
    )
    parser.add_argument(
        "--split", type=int, nargs="+", help="indices of the atoms that move (default: top layer)"
    )
    parser.add_argument(
        "--layer-gap",
        type=float,
        default=LAYER_GAP,
        help=f"a gap between atomic planes larger than this separates layers, Å "
        f"(default {LAYER_GAP})",
    )
    parser.add_argument(
        "--min-vacuum",
        type=float,
        default=MIN_VACUUM,
        help=f"smallest gap counted as vacuum along a periodic axis, Å (default {MIN_VACUUM})",
    )


def layer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`add_layer_arguments` for the workflow functions."""
    return {
        "axis": args.axis,
        "split": args.split,
        "layer_gap": args.layer_gap,
        "min_vacuum": args.min_vacuum,
    }


def separations(values: list[str] | None) -> np.ndarray | None:
    """Distances from ``--separations``: numbers, or one ``START:STOP:STEP`` (STOP included)."""
    if values is None:
        return None
    if len(values) == 1 and ":" in values[0]:
        try:
            start, stop, step = (float(part) for part in values[0].split(":"))
        except ValueError:
            raise ValueError(f"--separations {values[0]}: expected START:STOP:STEP") from None
        if step <= 0:
            raise ValueError(f"--separations {values[0]}: STEP must be positive")
        return np.arange(start, stop + 0.5 * step, step)
    return np.array([float(value) for value in values])


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "exfoliation",
        help="binding energy of a bilayer/multilayer vs interlayer distance",
        description="Rigid interlayer separation scan of the top layer of a layered slab; "
        "writes result.json, exfoliation.csv and exfoliation.png.",
    )
    parser.add_argument(
        "structure", help="slab with vacuum along the stacking axis (any ASE format)"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--separations",
        nargs="+",
        metavar="D",
        help="interlayer distances in Å, or START:STOP:STEP (default: around the input's)",
    )
    parser.add_argument(
        "--reference",
        choices=["largest", "separated"],
        default="largest",
        help="zero of the binding energy: the largest separation, or the parts computed apart",
    )
    add_layer_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.cli._common import write_outputs
    from mlcalc.workflows.layers import exfoliation_curve

    result = exfoliation_curve(
        read_structure(args.structure),
        calculator_from_args(args),
        separations=separations(args.separations),
        reference=args.reference,
        **layer_options(args),
    )
    print(
        f"equilibrium distance {result.equilibrium_distance:.3f} Å, binding energy "
        f"{result.binding_energy_per_area:.3f} meV/Å² ({result.binding_energy_j_per_m2:.4f} J/m², "
        f"{result.binding_energy_per_atom:.2f} meV/atom)"
    )
    write_outputs(result, args.out, "exfoliation")
    return 0
