"""``mlcalc eval MODEL DATA``: errors of a model on labelled structures.

Energy errors are per atom (meV/atom), forces per component (meV/Å), stress per component of
the 3x3 tensor (meV/Å³, also shown in GPa).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: 1 meV/Å³ in GPa.
MEV_PER_A3_IN_GPA = 0.1602176634


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="MAE and RMSE of a model on a data file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a .safetensors checkpoint or a registry name")
    parser.add_argument("data", help="ASE-readable file with reference labels")
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--stress-key", default="stress")
    parser.add_argument("--virial-key", default="virial")
    parser.add_argument(
        "--charge-key", default="charge", help="info key of the total charge, e (default 0)"
    )
    parser.add_argument(
        "--spin-key",
        default="spin",
        help="info key of the spin multiplicity 2S+1 (default: 1 for an even electron count, "
        "2 for odd)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "float64"], help="default: the model's"
    )
    parser.add_argument("--batch-atoms", type=int, default=2048, help="atoms per forward pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write a parity plot (PNG)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mlcalc.training.evaluation import evaluate_file, parity_figure
    from mlcalc.training.metrics import ERROR_UNITS

    errors, sums = evaluate_file(
        args.model,
        args.data,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
        virial_key=args.virial_key,
        charge_key=args.charge_key,
        spin_key=args.spin_key,
        device=args.device,
        dtype=args.dtype,
        batch_atoms=args.batch_atoms,
        keep_values=args.plot is not None,
    )
    if args.json:
        print(json.dumps(errors))
    else:
        print(f"{errors['n_structures']} structures, {errors['n_atoms']} atoms")
        print(f"{'':8}{'MAE':>12}{'RMSE':>12}  unit")
        for label, unit in ERROR_UNITS.items():
            if f"{label}_mae" in errors:
                mae, rmse = errors[f"{label}_mae"], errors[f"{label}_rmse"]
                print(f"{label:<8}{mae:12.3f}{rmse:12.3f}  {unit}")
                if label == "stress":
                    gpa = MEV_PER_A3_IN_GPA
                    print(f"{'':<8}{mae * gpa:12.4f}{rmse * gpa:12.4f}  GPa")
    if args.plot is not None:
        from mlcalc.atomic import atomic_path

        with atomic_path(args.plot) as temporary:
            parity_figure(sums).savefig(temporary, format="png", dpi=120)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
