"""Structures per second of `mlcalc train` on one process against `torchrun` on several.

Usage (from the repository root, with the project's venv python)::

    python bench/data_parallel.py TRAIN_FILE [--processes 1 2] [--compile false true]
        [--steps 400] [--batch-size 4] [--out runs/data-parallel]

Each run is ``mlcalc train`` with a config naming the data, ``batch_size`` (the global batch:
each of N processes takes its N-th share), ``max_steps``, one thread per process, and one
validation of 20 structures halfway and one at the end. The rate is measured on the second
half of the steps (the first holds the compilation, where ``compile: true``): structures in
those steps over the seconds of that half, as the run's ``metrics.csv`` records them.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One measured configuration."""

    processes: int
    compiled: bool
    structures_per_s: float


def rate(metrics: Path, steps_per_row: int, batch_size: int) -> float:
    """Structures per second over the last validation interval of a run's ``metrics.csv``."""
    with open(metrics) as stream:
        rows = list(csv.DictReader(stream))
    if len(rows) < 2:
        raise SystemExit(f"{metrics}: needs two validation rows, has {len(rows)}")
    return steps_per_row * batch_size / float(rows[-1]["time_s"])


def train(args: argparse.Namespace, processes: int, compiled: bool) -> Run:
    """Run one training and measure it."""
    out = Path(args.out) / f"p{processes}-{'compiled' if compiled else 'eager'}"
    config = {
        "train_file": str(Path(args.train_file).resolve()),
        "e0s": "fit",
        "batch_size": args.batch_size,
        "max_steps": args.steps,
        "valid_interval": args.steps // 2,
        "valid_subset": 20,
        "valid_fraction": 0.02,
        "compile": compiled,
        "threads": 1,
        "output_dir": str(out),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    train = ["-m", "mlcalc.cli", "train", str(path)]
    if processes == 1:
        command = [sys.executable, *train]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes), *train,
        ]  # fmt: skip
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=environment)
    steps = args.steps - args.steps // 2
    return Run(processes, compiled, rate(out / "metrics.csv", steps, args.batch_size))


def table(runs: list[Run]) -> str:
    """Markdown table: each run's rate and its ratio to one process of the same kind."""
    single = {run.compiled: run.structures_per_s for run in runs if run.processes == 1}
    lines = [
        "| processes | steps | structures/s | against one process |",
        "|---:|---|---:|---:|",
    ]
    for run in runs:
        base = single.get(run.compiled)
        ratio = f"{run.structures_per_s / base:.2f}" if base else "—"
        kind = "compiled" if run.compiled else "eager"
        lines.append(f"| {run.processes} | {kind} | {run.structures_per_s:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--compile", nargs="+", default=["false", "true"], choices=["false", "true"]
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", default="runs/data-parallel")
    args = parser.parse_args()
    runs = [
        train(args, processes, setting == "true")
        for setting in args.compile
        for processes in args.processes
    ]
    print(table(runs))


if __name__ == "__main__":
    main()
