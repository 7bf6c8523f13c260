"""Training steps through one compiled graph of the energy *and* its edge gradients.

A force loss needs the gradient of the forces with respect to the weights, a double backward
pass, which ``torch.compile`` cannot run (torch 2.13). :class:`mlcalc.models.traced.TracedEnergies`
traces the atomic energies together with their edge gradients into one graph of first-order
operations, kept differentiable in the weights, with symbolic numbers of atoms and edges: one
compiled graph serves the structures of every size and composition of a data set, without
padding. What a graph fixes is the number of structures per batch, the dtype and the device
(and the size relations its trace met: one-atom cells run eagerly); batches that fit none of
:data:`~mlcalc.models.traced.MAX_GRAPHS` graphs run eagerly.
"""

from __future__ import annotations

import torch

from mlcalc.graph import AtomicGraph
from mlcalc.models import AtomisticModel
from mlcalc.models.traced import TracedEnergies, untraceable_reason
from mlcalc.training.config import TrainConfig
from mlcalc.training.graphs import GraphDataset

#: ``compile: auto`` compiles where ``max_time`` is at least this (s) or, without one, where a
#: run has at least :data:`AUTO_MIN_STEPS` steps: compiling costs one to three minutes on one
#: CPU thread (3,000–3,500 eager steps of ethanol), which a 5-minute run does not win back
#: (docs/training.md).
AUTO_MIN_SECONDS = 600.0
AUTO_MIN_STEPS = 20_000


class CompiledTrainingForward:
    """``model(graph, compute_forces, compute_stress, training=True)`` for training steps,
    through compiled graphs with symbolic numbers of atoms and edges (see the module).

    Args:
        model: a model for which :func:`~mlcalc.models.traced.untraceable_reason` is ``None``.
        batch_size: structures of the batches that are compiled (``None``: any); the shorter
            last batch of an epoch runs eagerly rather than costing a compilation.

    The outputs are the eager model's to float rounding. If tracing or compiling fails (no C++
    compiler, an unsupported operation), a warning names the error and every later step runs
    eagerly.
    """

    def __init__(self, model: AtomisticModel, batch_size: int | None = None) -> None:
        reason = untraceable_reason(model)
        if reason is not None:
            raise ValueError(
                f"cannot compile training steps of this {model.architecture}: {reason}"
            )
        self.model = model
        self.batch_size = batch_size
        self.traced = TracedEnergies(model, differentiable=True, fallback="training eagerly")

    @property
    def num_graphs(self) -> int:
        """Graphs traced so far."""
        return self.traced.num_graphs

    @property
    def failed(self) -> bool:
        """Whether tracing or compiling failed (every step then runs eagerly)."""
        return self.traced.failed

    def runs_compiled(self, graph: AtomicGraph) -> bool:
        """Whether a step on ``graph`` takes a compiled graph (compiling one if it needs to)."""
        return self._compiles(graph) and self.traced.runs_compiled(graph)

    def _compiles(self, graph: AtomicGraph) -> bool:
        """Whether batches like ``graph`` are compiled at all: it holds :attr:`batch_size`
        structures (when one is set)."""
        return self.batch_size in (None, graph.num_graphs)

    def __call__(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = True,
    ) -> dict[str, torch.Tensor]:
        if training and compute_forces and self._compiles(graph):
            outputs = self.traced.outputs(graph, compute_stress)
            if outputs is not None:
                return outputs
        return self.model(graph, compute_forces, compute_stress, training)


def training_forward(
    model: AtomisticModel,
    dataset: GraphDataset,
    config: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[CompiledTrainingForward | None, str]:
    """The compiled forward pass of ``config``'s training steps (``None``: eager) and a line
    saying why.

    ``compile: true`` asks for it (an error where it cannot be had); ``"auto"`` compiles only
    where it pays: a traceable model, and ``max_time`` of at least
    :data:`AUTO_MIN_SECONDS` or, without ``max_time``, at least :data:`AUTO_MIN_STEPS` steps.
    In a data-parallel run (process ``rank`` of ``world_size``), this process's share of each
    full batch is compiled.
    """
    setting = config.compile
    if setting is False:
        return None, "training steps run eagerly (compile: false)"
    reason = untraceable_reason(model)
    if reason is not None:
        if setting is True:
            raise ValueError(f"compile: true cannot be had: {reason}")
        return None, f"training steps run eagerly: {reason}"
    batch_size = int(config.batch_size or 1)
    if setting == "auto":
        budget = config.max_time_seconds()
        steps = int(config.epochs or 0) * -(-len(dataset) // batch_size)
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        if budget is not None and budget < AUTO_MIN_SECONDS:
            return None, f"training steps run eagerly: max_time under {AUTO_MIN_SECONDS:.0f} s"
        if budget is None and steps < AUTO_MIN_STEPS:
            return None, f"training steps run eagerly: fewer than {AUTO_MIN_STEPS} steps"
    # this process's share of a full batch: structures rank, rank + world, ... of it
    share = len(range(rank, batch_size, world_size))
    forward = CompiledTrainingForward(model, share)
    return forward, (
        f"training steps compiled (batches of {batch_size}, every structure size; the first "
        "step compiles)"
    )
