"""Memory per training structure, graphs kept against graphs built per batch (``graph_memory``).

Usage (from the repository root, with the project's venv python)::

    python bench/graph_memory.py TRAIN_FILE [--copies 5] [--cutoff 5.0] [--batches 200]

Reads ``TRAIN_FILE`` once and repeats its structures ``--copies`` times (copies, not
references) to reach a large set, then, in a fresh process per setting, builds the training
graphs (float32, the model's cutoff) with every graph kept and with none kept
(``graph_memory: 0``). For each it prints the resident memory after reading and after
building (``/proc/self/status``), the memory per structure that each adds, the seconds the
build took, and the median milliseconds to collate a batch of one structure (a kept graph, or
one built again).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def resident_gib() -> float:
    """Resident memory of this process, GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(path: str, copies: int, cutoff: float, kept: bool, batches: int) -> dict:
    """One setting, in this process."""
    import copy

    import torch

    from mlcalc.training.data import elements_of, read_structures
    from mlcalc.training.graphs import GraphDataset

    torch.set_num_threads(1)
    base = resident_gib()
    once = read_structures(path)
    structures = [copy.deepcopy(s) for s in once for _ in range(copies - 1)] + once
    read = resident_gib()
    start = time.perf_counter()
    dataset = GraphDataset(
        structures, cutoff, elements_of(structures), torch.float32, None if kept else 0
    )
    build = time.perf_counter() - start
    built = resident_gib()
    rng = np.random.default_rng(0)
    times = []
    for index in rng.integers(0, len(dataset), batches):
        start = time.perf_counter()
        dataset.batch([int(index)])
        times.append(time.perf_counter() - start)
    return {
        "structures": len(structures),
        "kept": dataset.num_kept,
        "read_gib": read - base,
        "graphs_gib": built - read,
        "kept_gib": dataset.kept_bytes / 2**30,
        "build_s": build,
        "batch_ms": 1000 * statistics.median(times),
    }


def table(rows: list[dict]) -> str:
    """Markdown table of the settings' measurements."""
    lines = [
        "| structures | graphs kept | memory of the structures (GiB) | of the graphs (GiB) "
        "| per structure (kB): structures + graphs | build (s) | batch of one (ms) |",
        "|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        n = row["structures"]
        per_structure = 2**20 * row["read_gib"] / n, 2**20 * row["graphs_gib"] / n
        lines.append(
            f"| {n:,} | {row['kept']:,} | {row['read_gib']:.2f} | {row['graphs_gib']:.2f} "
            f"| {per_structure[0]:.1f} + {per_structure[1]:.1f} | {row['build_s']:.0f} "
            f"| {row['batch_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file")
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--kept", choices=["all", "none"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kept is not None:  # one setting, in this (fresh) process
        row = measure(args.train_file, args.copies, args.cutoff, args.kept == "all", args.batches)
        print(json.dumps(row))
        return
    rows = []
    for kept in ("all", "none"):
        command = [sys.executable, __file__, *sys.argv[1:], "--kept", kept]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.splitlines()[-1]))
    print(table(rows))


if __name__ == "__main__":
    main()
