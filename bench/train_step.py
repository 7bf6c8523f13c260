"""Structures per second of training steps, eager against compiled, on a data set's own batches.

Usage (from the repository root, with the project's venv python)::

    python bench/train_step.py TRAIN_FILE [--e0s fit|FILE] [--batch-size N] [--steps 200]
        [--threads 1] [--dtype float32]

The default recipe's model for the data (``mlcalc train``'s choice, its batch size unless
``--batch-size`` is given) on the first ``--steps`` batches of a seeded epoch as ``mlcalc
train`` draws them: structures of every size and composition the data has. Each step is the
forward pass with forces (and stress where the data has it), an energy + force (+ stress)
squared-error loss, its backward pass and an Adam step. The batches run eagerly, then twice
through :class:`~mlcalc.training.compiled.CompiledTrainingForward`: the first pass compiles
(its extra time is the compilation), the second is timed. It prints structures per second of
each, their ratio, the share of steps that took a compiled graph and the graphs compiled.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mlcalc.training import TrainConfig
from mlcalc.training.compiled import CompiledTrainingForward
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.loss import residuals
from mlcalc.training.recipe import batch_size_for
from mlcalc.training.setup import initial_model, load_datasets
from mlcalc.training.steps import Processes, global_batches


@dataclass
class Pass:
    """One pass over the batches: wall time (s) and the steps that ran compiled."""

    seconds: float
    compiled_steps: int = 0


def first_batches(size: int, config: TrainConfig, steps: int) -> list[list[int]]:
    """The first ``steps`` batches of epochs 0, 1, … of a data set of ``size`` structures."""
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        batches += global_batches(size, epoch, config, Processes())
        epoch += 1
    return batches[:steps]


def timed_pass(
    forward: Callable[..., dict[str, torch.Tensor]],
    model: torch.nn.Module,
    dataset: GraphDataset,
    batches: Sequence[list[int]],
    stress: bool,
) -> Pass:
    """Train on ``batches`` once through ``forward``; time it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    compiled = forward if isinstance(forward, CompiledTrainingForward) else None
    result = Pass(0.0)
    checking = 0.0  # the check of which steps run compiled is not part of a step
    start = time.perf_counter()
    for indices in batches:
        batch = dataset.batch(indices)
        if compiled is not None:
            checked = time.perf_counter()
            result.compiled_steps += compiled.runs_compiled(batch.graph)
            checking += time.perf_counter() - checked
        outputs = forward(batch.graph, compute_forces=True, compute_stress=stress, training=True)
        loss = sum(r.square().sum() for r in residuals(outputs, batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result.seconds = time.perf_counter() - start - checking
    return result


def table(
    name: str, steps: int, structures: int, eager: Pass, first: Pass, compiled: Pass, graphs: int
) -> str:
    """The markdown table of one comparison (``steps`` batches of ``structures`` structures
    in all, in each pass)."""
    eager_rate, compiled_rate = structures / eager.seconds, structures / compiled.seconds
    steps_share = 100.0 * compiled.compiled_steps / steps
    return (
        "| data | structures | eager structures/s | compiled structures/s | ratio "
        "| steps compiled | graphs | compile (s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {name} | {structures} | {eager_rate:.1f} | {compiled_rate:.1f} | "
        f"{compiled_rate / eager_rate:.2f} | {compiled.compiled_steps} ({steps_share:.0f} %) | "
        f"{graphs} | {max(0.0, first.seconds - compiled.seconds):.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file")
    parser.add_argument("--e0s", default="fit")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fields = {"train_file": args.train_file, "e0s": args.e0s, "output_dir": "unused"}
    if args.batch_size is not None:
        fields["batch_size"] = args.batch_size
    config = TrainConfig.from_dict(fields)
    data = load_datasets(config)
    dtype = getattr(torch, args.dtype)
    model = initial_model(config, data).to(dtype)
    dataset = GraphDataset(data.train, model.cutoff, model.elements, dtype)
    if config.batch_size is None:  # the recipe's, as mlcalc train sets it
        config = dataclasses.replace(
            config, batch_size=batch_size_for([len(s) for s in data.train])
        )
    batches = first_batches(len(dataset), config, args.steps)
    structures = sum(len(b) for b in batches)
    stress = dataset.has_stress
    timed_pass(model, model, dataset, batches[:3], stress)  # warm-up
    eager = timed_pass(model, model, dataset, batches, stress)
    compiled = CompiledTrainingForward(model, config.batch_size)
    first = timed_pass(compiled, model, dataset, batches, stress)
    second = timed_pass(compiled, model, dataset, batches, stress)
    print(
        table(args.train_file, len(batches), structures, eager, first, second, compiled.num_graphs)
    )


if __name__ == "__main__":
    main()
