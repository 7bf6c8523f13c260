"""Where a step's time goes: torch.profiler over E + F + S steps, with achieved GFLOP/s.

Usage::

    python bench/hotspots.py --model nemp-small --atoms 1536 --threads 2 [--steps 3] [--top 15]

Builds the model and water box as ``bench/speed.py`` does (``--model`` is one of its
``MODELS``, compiled variants included), runs one warm-up step, then profiles ``--steps``
steps (neighbour list, forward and backward). It prints:

* the machine's matmul peak: the best of a few ``[2048, 2048] @ [2048, 2048]`` float32
  products on ``--threads`` threads, in GFLOP/s;
* the operators with the most self CPU time: calls, share of the step, and for the matmul
  family (``mm``, ``addmm``, ``bmm``, ``matmul``) the FLOPs the profiler counts and the
  achieved GFLOP/s, also as a share of the peak;
* totals by kind: matmuls, gathers/scatters (``index_select``, ``index_add_``, ...),
  elementwise and the rest.

Nothing here asserts on timings; the output is for reading.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import all_changes
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # bench/speed.py: the models and water boxes of the benchmarks

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"}
GATHER_SCATTER = {
    "aten::index_select",
    "aten::index_add_",
    "aten::index_add",
    "aten::scatter_add_",
    "aten::scatter_reduce",
    "aten::index",
    "aten::index_put_",
    "aten::index_copy_",
    "aten::gather",
    "aten::embedding_dense_backward",
    "aten::index_select_backward",
}
ELEMENTWISE = {
    "aten::mul",
    "aten::add",
    "aten::sub",
    "aten::div",
    "aten::silu",
    "aten::silu_backward",
    "aten::sigmoid",
    "aten::sum",
    "aten::cat",
    "aten::copy_",
    "aten::fill_",
    "aten::zero_",
    "aten::where",
    "aten::pow",
    "aten::mul_",
    "aten::add_",
    "aten::sinc",
    "aten::rsqrt",
    "aten::exp",
}


def matmul_peak_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of ``[size, size] @ [size, size]`` on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def kind_of(name: str) -> str:
    if name in MATMULS:
        return "matmul"
    if name in GATHER_SCATTER:
        return "gather/scatter"
    if name in ELEMENTWISE:
        return "elementwise"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(speed.MODELS), default="nemp-small")
    parser.add_argument("--atoms", type=int, default=1536)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    from mlcalc.structures import water_box

    peak = matmul_peak_gflops(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    calc = speed.build_calculator(args.model, args.dtype)
    atoms = water_box(speed.repeats_for(args.atoms))
    rng = np.random.default_rng(0)

    def step() -> None:
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)

    step()  # warm-up (and compilation)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(args.steps):
            step()
    wall = (time.perf_counter() - start) / args.steps

    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows) or 1.0
    by_kind: dict[str, float] = defaultdict(float)
    for r in rows:
        by_kind[kind_of(r.key)] += r.self_cpu_time_total
    print(
        f"{args.model}, {args.dtype}, {len(atoms):,} atoms, {args.threads} thread(s): "
        f"{1e3 * wall:.1f} ms/step under the profiler; matmul peak {peak:.1f} GFLOP/s "
        f"([2048]^2 float32)"
    )
    print("\n| operator | calls/step | share of step | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r.self_cpu_time_total)[: args.top]:
        share = r.self_cpu_time_total / total
        rate = ""
        if r.key in MATMULS and r.flops and r.self_cpu_time_total:
            gflops = r.flops / (r.self_cpu_time_total * 1e-6) / 1e9
            rate = f"{gflops:.1f} | {100 * gflops / peak:.0f} %"
        else:
            rate = " | "
        print(f"| `{r.key}` | {r.count / args.steps:.0f} | {100 * share:.1f} % | {rate} |")
    print("\n| kind | share of step |")
    print("|---|---|")
    for kind in ("matmul", "gather/scatter", "elementwise", "other"):
        print(f"| {kind} | {100 * by_kind[kind] / total:.1f} % |")


if __name__ == "__main__":
    main()
