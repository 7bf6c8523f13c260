"""Speed of NEMP and MLANet through their ASE calculators: E + F + S per MD-like step (CPU by
default, ``--device cuda`` for a GPU).

Usage::

    python bench/speed.py --sizes 192 1536 12288 --models nemp-default nemp-small \
        --dtype float32 --threads 2 --json speed.json

Each (model, dtype, size) runs in a fresh subprocess, so its peak RSS (``ru_maxrss``, a process
high-water mark) belongs to that configuration alone. A "step" displaces every atom by
N(0, 0.01 Å) and makes one ``calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)``
call, neighbour-list rebuild included. The first step is reported separately and serves as the
warm-up; the step time is the median of the timed steps after it. ``mlcalc.graph.build_graph``
is timed on its own on the same atoms to give the neighbour-list share of a step. The share of
the machine's CPU used by other processes while the steps ran is recorded too: on a shared VM it
dominates the noise (two torch threads on two busy cores slow down far more than twofold).

Models are randomly initialised (``torch.manual_seed(0)``) presets for H and O with a 5 Å cutoff
(``medium`` is the training recipe's preset, ``fast`` the one the shipped ``water`` model
uses), and the shipped ``water`` and ``water-mlanet`` models with their trained weights, on
water boxes from :func:`mlcalc.structures.water_box`. A size is skipped, with the reason
printed, when the previous size scaled linearly in the number of atoms predicts that it would
overrun ``--budget-s`` or ``--max-rss-gb``. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Benchmark name → (architecture, config overrides, calculator options). Elements H, O;
#: cutoff 5 Å. ``-compiled`` models use ``compile=True`` (one traced graph for every size,
#: torch.compile; the first step compiles, and systems above ``recompute_above_edges`` edges
#: run eagerly).
#: ``shipped-*`` are the registry's water models as users load them (trained weights, the
#: registry's dtype unless ``--dtype`` says otherwise).
MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "nemp-default": ("nemp", {"preset": "default"}, {}),
    "nemp-small": ("nemp", {"preset": "small"}, {}),
    "nemp-medium": ("nemp", {"preset": "medium"}, {}),
    "nemp-medium-compiled": ("nemp", {"preset": "medium"}, {"compile": True}),
    "shipped-water": ("registry", {"name": "water"}, {}),
    "shipped-water-mlanet": ("registry", {"name": "water-mlanet"}, {}),
    "shipped-water-compiled": ("registry", {"name": "water"}, {"compile": True}),
    "nemp-small-compiled": ("nemp", {"preset": "small"}, {"compile": True}),
    # the small preset with one interaction (bench/front.py)
    "nemp-small-t1": ("nemp", {"preset": "small", "num_interactions": 1}, {}),
    "nemp-small-t1-compiled": (
        "nemp",
        {"preset": "small", "num_interactions": 1},
        {"compile": True},
    ),
    "nemp-fast": ("nemp", {"preset": "fast"}, {}),
    "nemp-fast-compiled": ("nemp", {"preset": "fast"}, {"compile": True}),
    "nemp-default-compiled": ("nemp", {"preset": "default"}, {"compile": True}),
    "mlanet-l1-direct": ("mlanet", {"lmax": 1, "force_mode": "direct"}, {}),
    "mlanet-l1-conservative": ("mlanet", {"lmax": 1, "force_mode": "conservative"}, {}),
    "mlanet-l2-direct": ("mlanet", {"lmax": 2, "force_mode": "direct"}, {}),
    "mlanet-l2-conservative": ("mlanet", {"lmax": 2, "force_mode": "conservative"}, {}),
}
#: Our models' chunking attributes, each settable with ``--<name>`` (an edge count or ``none``).
KNOBS = ("max_edges_per_chunk", "recompute_above_edges", "max_edges_per_recomputed_chunk")
COLUMNS = {
    "model": "model",
    "dtype": "dtype",
    "atoms": "atoms",
    "params": "params",
    "edges": "edges",
    "first_step_s": "first step (s)",
    "median_ms": "median step (ms)",
    "min_ms": "min step (ms)",
    "steps": "steps timed",
    "us_per_atom": "µs/atom/step",
    "nl_ms": "neighbour list (ms)",
    "nl_share": "NL share",
    "peak_rss_mb": "peak RSS (MB)",
    "gpu_peak_mb": "GPU peak (MB)",
    "background_cpu": "other processes' CPU",
}


def repeats_for(size: int) -> int:
    """Water-box ``repeats`` for ``size`` atoms (``repeats**3`` molecules of 3 atoms)."""
    repeats = round((size / 3) ** (1 / 3))
    if 3 * repeats**3 != size:
        raise ValueError(f"{size} atoms is not a water box; use 3*n**3 (192, 1536, 12288, 98304)")
    return repeats


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, MB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine, summed over CPUs (``/proc/stat``, else NaN)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return float("nan")
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def own_cpu_s() -> float:
    """User + system CPU time of this process, s."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(model: str, dtype: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Time one configuration in this process; returns one row of results."""
    device = getattr(args, "device", "cpu")  # bench/peers.py's workers run on the CPU
    if device == "cpu":  # (CUDA maps far more address space than it uses)
        limit = int(args.max_rss_gb * 2**30)  # address space >= RSS: a runaway raises MemoryError
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    import torch
    from ase.calculators.calculator import all_changes

    from mlcalc import tune_memory_allocator
    from mlcalc.graph import build_graph
    from mlcalc.structures import water_box

    torch.set_num_threads(args.threads)
    if args.tune_malloc:
        tune_memory_allocator()
    torch.manual_seed(0)
    calc = build_calculator(model, dtype, device)
    net = calc.model
    for knob in KNOBS:
        value = getattr(args, knob, "default")  # bench/peers.py's workers do not set them
        if value != "default":
            setattr(net, knob, None if value == "none" else int(value))
    atoms = water_box(repeats_for(size))
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "atoms": size,
        "threads": args.threads,
        "device": device,
        "tuned_malloc": args.tune_malloc,
        "params": sum(p.numel() for p in net.parameters()),
        "rss_after_build_mb": peak_rss_mb(),
        "loadavg_start": os.getloadavg()[0],
    }

    def step() -> float:
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        return time.perf_counter() - start

    started = time.perf_counter()
    row["first_step_s"] = step()  # also the warm-up
    times: list[float] = []
    cpu = (time.perf_counter(), busy_cpu_s(), own_cpu_s())
    while len(times) < args.repeats and (
        not times or time.perf_counter() - started + times[-1] < args.budget_s
    ):
        times.append(step())
    # CPU used by other processes while we timed, as a share of all cores: shared-VM noise
    now = (time.perf_counter(), busy_cpu_s(), own_cpu_s())
    wall, busy, own = (b - a for a, b in zip(cpu, now, strict=True))
    row["background_cpu"] = max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))
    nl_times = []
    for _ in range(len(times) + 1):  # first call discarded
        start = time.perf_counter()
        graph = build_graph(atoms, calc.model.cutoff, calc.model.atomic_numbers, dtype=calc.dtype)
        nl_times.append(time.perf_counter() - start)
    median, nl = statistics.median(times), statistics.median(nl_times[1:])
    row["compiled"] = calc.compiled is not None and calc.compiled.runs_compiled(
        graph.to(calc.device)
    )
    row.update(
        max_edges_per_chunk=calc.model.max_edges_per_chunk,
        recompute_above_edges=calc.model.recompute_above_edges,
        max_edges_per_recomputed_chunk=calc.model.max_edges_per_recomputed_chunk,
        edges=graph.num_edges,
        median_ms=1e3 * median,
        min_ms=1e3 * min(times),
        steps=len(times),
        us_per_atom=1e6 * median / size,
        nl_ms=1e3 * nl,
        nl_share=nl / median,
        peak_rss_mb=peak_rss_mb(),
        gpu_peak_mb=torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else None,
        loadavg_end=os.getloadavg()[0],
        energy=calc.results["energy"],
    )
    return row


def build_calculator(model: str, dtype: str, device: str = "cpu") -> Any:
    """The calculator of benchmark model ``model`` (``MODELS``) on ``device``: random weights
    (call ``torch.manual_seed`` first), elements H and O, cutoff 5 Å; or a shipped model."""
    from mlcalc.calculators import CALCULATOR_FOR, load_calculator
    from mlcalc.models import NEMP, MLANet, MLANetConfig, NEMPConfig

    architecture, options, calculator_options = MODELS[model]
    if architecture == "registry":
        return load_calculator(options["name"], device=device, dtype=dtype, **calculator_options)
    if architecture == "nemp":
        fields = {k: v for k, v in options.items() if k != "preset"}
        net = NEMP(NEMPConfig.preset(options["preset"], elements=["H", "O"], cutoff=5.0, **fields))
    else:
        net = MLANet(MLANetConfig(elements=["H", "O"], cutoff=5.0, **options))
    return CALCULATOR_FOR[architecture](net, device=device, dtype=dtype, **calculator_options)


def skip_reason(previous: dict[str, Any] | None, size: int, args: argparse.Namespace) -> str:
    """Why ``size`` should not run, from the previous size of the same model and dtype."""
    if previous is None:
        return ""
    if "skipped" in previous or "error" in previous:
        return f"{previous['atoms']} atoms did not run"
    scale = size / previous["atoms"]
    # a compiled model's first step is mostly compiling, which does not grow with the size
    first = previous["median_ms"] / 1e3 if previous.get("compiled") else previous["first_step_s"]
    seconds = scale * (first + previous["median_ms"] / 1e3)
    base = previous["rss_after_build_mb"]
    rss_gb = (base + scale * (previous["peak_rss_mb"] - base)) / 1024
    # our models recompute their edge chunks above recompute_above_edges edges, where memory
    # grows far slower than a linear extrapolation from a size without: leave it to the guard
    threshold = previous.get("recompute_above_edges")
    starts_recomputing = (
        threshold is not None and previous["edges"] <= threshold < previous["edges"] * scale
    )
    reasons = []
    if seconds > args.budget_s:
        reasons.append(
            f"predicted {seconds:.0f} s for the first two steps > budget {args.budget_s:g} s"
        )
    if rss_gb > args.max_rss_gb and not starts_recomputing:
        reasons.append(f"predicted peak RSS {rss_gb:.1f} GB > guard {args.max_rss_gb:g} GB")
    return "; ".join(reasons)


def run_child(model: str, dtype: str, size: int, argv: list[str]) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and parse its JSON line."""
    spec = json.dumps({"model": model, "dtype": dtype, "size": size})
    proc = subprocess.run(
        [sys.executable, __file__, *argv, "--worker", spec], capture_output=True, text=True
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": model, "dtype": dtype, "atoms": size, "error": tail[:200]}
    return json.loads(lines[-1])


def fmt(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if key in ("nl_share", "background_cpu"):
            return f"{100 * value:.0f} %"
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """Measured rows as a markdown table; skipped or failed rows as a list below it."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    notes = []
    for row in rows:
        if "median_ms" in row:
            lines.append("| " + " | ".join(fmt(k, row.get(k)) for k in COLUMNS) + " |")
        else:
            why = row.get("skipped") or f"failed: {row.get('error')}"
            notes.append(f"- {row['model']} {row['dtype']} {row['atoms']:,} atoms: {why}")
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 1536, 12288, 98304])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32"])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps after the warm-up")
    parser.add_argument("--budget-s", type=float, default=300.0, help="per configuration")
    parser.add_argument("--max-rss-gb", type=float, default=20.0, help="memory guard")
    parser.add_argument(
        "--tune-malloc",
        action="store_true",
        help="call mlcalc.tune_memory_allocator() in each worker (keeps big blocks in the heap)",
    )
    for knob in KNOBS:
        parser.add_argument(
            f"--{knob.replace('_', '-')}",
            default="default",
            help=f"set our models' {knob} (an edge count or 'none')",
        )
    parser.add_argument("--json", type=Path, help="write all rows to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(spec["model"], spec["dtype"], spec["size"], args)))
        return

    shared = [
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--repeats",
        str(args.repeats),
        "--budget-s",
        str(args.budget_s),
        "--max-rss-gb",
        str(args.max_rss_gb),
    ]
    for knob in KNOBS:
        shared += [f"--{knob.replace('_', '-')}", getattr(args, knob)]
    rows = []
    for model in args.models:
        for dtype in args.dtype:
            previous = None
            for size in sorted(args.sizes):
                reason = skip_reason(previous, size, args)
                if reason:
                    row = {"model": model, "dtype": dtype, "atoms": size, "skipped": reason}
                    print(f"skip {model} {dtype} {size}: {reason}", flush=True)
                else:
                    start = time.perf_counter()
                    row = run_child(model, dtype, size, shared)
                    row["wall_s"] = time.perf_counter() - start
                    print(json.dumps(row), flush=True)
                rows.append(row)
                previous = row
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
