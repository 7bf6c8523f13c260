"""Cost of a committee (:class:`mlcalc.CommitteeCalculator`) against one model: E + F + S steps.

Usage::

    python bench/committee.py --threads 2 --steps 10            # 1,536 atoms of liquid water
    python bench/committee.py --model path/to/model.safetensors --repeat 1 --members 1 4

The structure is :func:`mlcalc.structures.liquid_water` (192 atoms) repeated ``--repeat`` times
along each axis (2: 1,536 atoms). Committee members are copies of ``--model`` (a registry name
or a checkpoint path) whose parameters are multiplied by ``1 + perturb * N(0, 1)`` (member 0
unperturbed): the same cost as independently trained members. A step displaces every atom by
N(0, 0.01 Å) and makes one ``calculate(atoms, ["energy", "forces", "stress"], all_changes)``
call per calculator, neighbour list included; the calculators take turns within each step so
that load from other processes hits them alike. Times are medians over ``--steps`` steps after
one warm-up step. The graph (neighbour list) is timed on its own: a committee builds it once,
so "model" = step - graph is the members' forward and backward passes.

The ``shared body`` rows time the floor of any cheaper ensemble whose K members share the whole
network up to per-atom output heads (shallow ensembles) and still return exact member forces
and stresses: one forward pass of the model and K backward passes through it, each from other
per-atom weights on the atomic energies (the heads themselves cost next to nothing), plus the
graph. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

PROPERTIES = ["energy", "forces", "stress"]
COLUMNS = {
    "calculator": "calculator",
    "members": "K",
    "median_ms": "median step (ms)",
    "min_ms": "min step (ms)",
    "graph_ms": "graph (ms)",
    "model_ms": "model (ms)",
    "ratio": "× one model",
}


def perturbed_copies(model: Any, count: int, perturb: float) -> list[Any]:
    """``count`` copies of ``model``; copy ``k > 0`` has its parameters multiplied by
    ``1 + perturb * N(0, 1)`` (seed ``k``), copy 0 is unchanged."""
    import torch

    copies = []
    for k in range(count):
        member = copy.deepcopy(model)
        if k > 0:
            generator = torch.Generator().manual_seed(k)
            with torch.no_grad():
                for parameter in member.parameters():
                    noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                    parameter.mul_(1.0 + perturb * noise)
        copies.append(member)
    return copies


def shared_body_step(model: Any, atoms: Any, members: int, dtype: Any) -> None:
    """E + F + S of ``members`` heads on one shared body: one forward pass of ``model``'s
    atomic energies on ``atoms``, then one backward pass to the edge vectors per member, each
    from its own per-atom weights, and the forces and stress of each."""
    import torch

    from mlcalc.graph import build_graph
    from mlcalc.models.physics import edge_vectors, outputs_from_edge_gradients

    graph = build_graph(atoms, model.cutoff, model.atomic_numbers, dtype=dtype)
    vectors = edge_vectors(
        graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
    ).requires_grad_(True)
    energies = model.atomic_energy_function(recompute=True)(graph, vectors)
    weights = 1.0 + 0.01 * torch.randn(members, len(atoms), dtype=energies.dtype)
    for k in range(members):
        head = energies * weights[k]
        (gradient,) = torch.autograd.grad(head.sum(), vectors, retain_graph=k < members - 1)
        outputs_from_edge_gradients(head.detach(), gradient, vectors.detach(), graph, True)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time one model and committees of ``args.members`` members; one row each."""
    import numpy as np
    import torch
    from ase.calculators.calculator import all_changes

    from mlcalc import CommitteeCalculator
    from mlcalc.calculators import CALCULATOR_FOR
    from mlcalc.graph import build_graph
    from mlcalc.pretrained import load_model
    from mlcalc.structures import liquid_water

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    atoms = liquid_water().repeat((args.repeat,) * 3)
    members = perturbed_copies(model, max(args.members), args.perturb)
    calculators: dict[tuple[str, int], Any] = {
        ("one model", 1): CALCULATOR_FOR[model.architecture](model, device="cpu", dtype=args.dtype)
    }
    for k in args.members:
        calculators[("committee", k)] = CommitteeCalculator(
            members[:k], device="cpu", dtype=args.dtype
        )
    dtype = calculators[("one model", 1)].dtype
    body = calculators[("one model", 1)].model  # the calculator's own float32/64 eval copy
    steps: dict[tuple[str, int], Any] = {
        key: functools.partial(calc.calculate, properties=PROPERTIES, system_changes=all_changes)
        for key, calc in calculators.items()
    }
    for k in args.members:
        steps[("shared body", k)] = functools.partial(
            shared_body_step, body, members=k, dtype=dtype
        )
    rng = np.random.default_rng(0)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in steps}
    graph_times: list[float] = []
    for step in range(args.steps + 1):  # step 0 is the warm-up
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        for key, run_step in steps.items():
            start = time.perf_counter()
            run_step(atoms)
            if step > 0:
                times[key].append(time.perf_counter() - start)
        start = time.perf_counter()
        build_graph(atoms, model.cutoff, model.atomic_numbers, dtype=dtype)
        if step > 0:
            graph_times.append(time.perf_counter() - start)
    graph_ms = 1e3 * statistics.median(graph_times)
    single_ms = 1e3 * statistics.median(times[("one model", 1)])
    rows = []
    for (name, k), measured in times.items():
        median_ms = 1e3 * statistics.median(measured)
        rows.append(
            {
                "calculator": name,
                "members": k,
                "atoms": len(atoms),
                "dtype": args.dtype,
                "threads": args.threads,
                "steps": len(measured),
                "median_ms": median_ms,
                "min_ms": 1e3 * min(measured),
                "graph_ms": graph_ms,
                "model_ms": median_ms - graph_ms,
                "ratio": median_ms / single_ms,
            }
        )
    return rows


def fmt(key: str, value: Any) -> str:
    if key == "ratio":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """Measured rows as a markdown table."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(k, row[k]) for k in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="water", help="registry name or checkpoint path")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4], help="K values")
    parser.add_argument("--repeat", type=int, default=2, help="liquid_water() repeats per axis")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the warm-up")
    parser.add_argument("--perturb", type=float, default=0.01, help="relative weight noise")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or min(args.members) < 1:
        parser.error("--steps and --members must be positive")
    load = os.getloadavg()[0]
    rows = measure(args)
    print(
        f"{rows[0]['atoms']:,} atoms, {args.dtype}, {args.threads} threads, median of "
        f"{args.steps} steps (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
