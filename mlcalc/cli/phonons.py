"""``mlcalc phonons STRUCTURE --model M``: phonon bands, DOS and thermal properties (phonopy)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from mlcalc.cli._common import add_model_arguments


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "phonons", help="phonon band structure, DOS and thermal properties with phonopy"
    )
    parser.add_argument("structure", help="a relaxed crystal (any ASE format; last frame)")
    add_model_arguments(parser)
    parser.add_argument(
        "--supercell", type=int, nargs=3, default=[2, 2, 2], metavar="N", help="default: 2 2 2"
    )
    parser.add_argument(
        "--displacement", type=float, default=0.01, help="finite displacement in Å (0.01)"
    )
    parser.add_argument(
        "--primitive",
        nargs="+",
        default=["auto"],
        help="'auto' (by symmetry, default), 'none' (the input cell) or 9 numbers: the "
        "primitive matrix row by row, relative to the input cell",
    )
    parser.add_argument(
        "--mesh", type=int, nargs=3, default=[20, 20, 20], metavar="N", help="DOS q-point mesh"
    )
    parser.add_argument(
        "--band-path",
        default="auto",
        help="'auto' (standard path) or special points in ASE notation, e.g. GXWKGL,UX",
    )
    parser.add_argument(
        "--t-max", type=float, default=1000.0, help="thermal properties up to T_MAX K (1000)"
    )
    parser.add_argument("--t-step", type=float, default=10.0, help="temperature step in K (10)")
    parser.set_defaults(handler=run)


def _primitive(values: list[str]) -> str | np.ndarray | None:
    if len(values) == 1 and values[0].lower() in ("auto", "none"):
        return None if values[0].lower() == "none" else "auto"
    if len(values) != 9:
        raise ValueError(f"--primitive takes 'auto', 'none' or 9 numbers, got {values}")
    return np.array([float(value) for value in values]).reshape(3, 3)


def run(args: argparse.Namespace) -> int:
    from mlcalc.atomic import atomic_path
    from mlcalc.cli._common import calculator_from_args, read_structure, write_outputs
    from mlcalc.workflows.lattice_dynamics import phonons

    result = phonons(
        read_structure(args.structure),
        calculator_from_args(args),
        supercell=args.supercell,
        displacement=args.displacement,
        primitive=_primitive(args.primitive),
        mesh=args.mesh,
        band_path=args.band_path,
        temperatures=np.arange(0.0, args.t_max + 0.5 * args.t_step, args.t_step),
    )
    print(
        f"{result.n_atoms_primitive} atoms in the primitive cell; frequencies "
        f"{result.min_frequency:.3f} to {result.max_frequency:.3f} THz; "
        f"largest residual force {result.max_residual_force:.2e} eV/Å"
    )
    write_outputs(result, args.out, "phonons")
    params = args.out / "phonopy_params.yaml"
    with atomic_path(params) as temporary:
        result.phonopy.save(temporary)
    print(f"wrote {params}")
    if result.has_imaginary_modes:
        print(
            f"mlcalc phonons: imaginary modes, down to {result.min_frequency:.3f} THz "
            f"(negative in the plot): the structure is not a minimum of this potential",
            file=sys.stderr,
        )
    return 0
