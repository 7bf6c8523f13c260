"""Milliseconds per training step, eager against compiled, on the most frequent batch shape.

Usage (from the repository root, with the project's venv python)::

    python bench/train_step.py TRAIN_FILE [--e0s fit|FILE] [--batch-size 1] [--steps 40]
        [--threads 1]

The default recipe's model for the data (``mlcalc train``'s choice), float32, on the batches
of the data set's most frequent shape (:func:`mlcalc.training.compiled.batch_shapes`): each
step is the forward pass with forces (and stress where the data has it), an energy + force
(+ stress) squared-error loss, its backward pass and an Adam step. It prints the medians of
``--steps`` steps, eager and through :class:`~mlcalc.training.compiled.CompiledTrainingForward`,
and how long the first compiled step (the compilation) took.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mlcalc.training import TrainConfig
from mlcalc.training.compiled import (
    BatchShape,
    CompiledTrainingForward,
    batch_shapes,
    structure_shape,
)
from mlcalc.training.data import GraphDataset
from mlcalc.training.loss import residuals
from mlcalc.training.setup import initial_model, load_datasets


def shape_batches(
    dataset: GraphDataset, batch_size: int, num_species: int, steps: int
) -> tuple[BatchShape, float, int, list[list[int]]]:
    """The most frequent batch shape of ``dataset`` (its share of the batches, its edge
    capacity) and ``steps`` batches (structure indices) of that shape, repeated as needed."""
    shapes = batch_shapes(dataset, batch_size, num_species)
    if not shapes:
        raise SystemExit(f"batches of {batch_size} structures of this data have no fixed shape")
    shape, (share, capacity) = next(iter(shapes.items()))
    one = BatchShape(
        shape.atoms // batch_size, tuple(n // batch_size for n in shape.species_counts)
    )
    members = [
        k for k, graph in enumerate(dataset.graphs) if structure_shape(graph, num_species) == one
    ]
    batches = [
        members[k : k + batch_size] for k in range(0, len(members) - batch_size + 1, batch_size)
    ]
    return shape, share, capacity, (batches * (1 + steps // len(batches)))[:steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file")
    parser.add_argument("--e0s", default="fit")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.from_dict(
        {"train_file": args.train_file, "e0s": args.e0s, "output_dir": "unused"}
    )
    data = load_datasets(config)
    model = initial_model(config, data).float()
    dataset = GraphDataset(data.train, model.cutoff, model.elements, torch.float32)
    shape, share, capacity, batches = shape_batches(
        dataset, args.batch_size, len(model.elements), args.steps
    )
    stress = dataset.has_stress
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step_times(forward, indices_list) -> list[float]:
        times = []
        for indices in indices_list:
            batch = dataset.batch(indices)
            start = time.perf_counter()
            outputs = forward(
                batch.graph, compute_forces=True, compute_stress=stress, training=True
            )
            loss = sum(r.square().sum() for r in residuals(outputs, batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        return times

    step_times(model, batches[:3])  # warm-up
    eager = statistics.median(step_times(model, batches))
    compiled = CompiledTrainingForward(model, {shape: capacity}, batch_size=args.batch_size)
    compile_seconds = step_times(compiled, batches[:1])[0]
    fast = statistics.median(step_times(compiled, batches))
    print(
        f"| data | atoms per batch | share of batches | edge capacity | eager ms | compiled ms "
        f"| ratio | first compiled step (s) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {args.train_file} | {shape.atoms} | {100 * share:.0f} % | {capacity} | "
        f"{1000 * eager:.1f} | {1000 * fast:.1f} | {eager / fast:.2f} | {compile_seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
