"""Optimiser steps of a training run, and the run's place among data-parallel processes."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mlcalc.training.compiled import CompiledTrainingForward
from mlcalc.training.config import TrainConfig
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.loss import penalty, residuals
from mlcalc.training.schedule import ExponentialMovingAverage

#: Consecutive steps with a non-finite loss or gradient after which training stops.
MAX_SKIPPED_IN_A_ROW = 20


@dataclass
class Processes:
    """This process's place in a data-parallel run (``rank 0 of 1`` without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Processes:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def global_batches(
    size: int, epoch: int, config: TrainConfig, processes: Processes
) -> list[list[int]]:
    """Epoch ``epoch``'s batches of structure indices ``< size``: a seeded shuffle cut into
    ``batch_size`` pieces, each with at least one structure per process."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    batches = [order[k : k + config.batch_size] for k in range(0, size, config.batch_size)]
    # every process needs at least one structure of each batch
    return [b for b in batches if len(b) >= processes.world_size]


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each trainable parameter's gradient by its sum over the data-parallel processes
    (a missing gradient counts as zero), in one all-reduce."""
    trainable = [p for p in parameters if p.requires_grad]
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in trainable]
    )
    dist.all_reduce(flat)
    pieces = flat.split([p.numel() for p in trainable])
    for parameter, gradient in zip(trainable, pieces, strict=True):
        parameter.grad = gradient.view_as(parameter)


class OptimiserSteps:
    """Takes optimiser steps on batches of ``dataset``.

    ``forward`` computes the outputs in place of ``model``'s own call (a compiled step,
    :class:`mlcalc.training.compiled.CompiledTrainingForward`); ``model`` is what is trained.

    A step whose loss or gradients are not finite (float32 overflow, a singular gradient) is
    skipped: no optimiser or EMA update, so one bad step cannot turn the weights into NaN. After
    :data:`MAX_SKIPPED_IN_A_ROW` skipped steps in a row the run stops with an error.

    Attributes:
        loss_sum, taken, skipped: summed loss of the steps taken and the counts of steps taken
            and skipped since the last :meth:`reset`.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: GraphDataset,
        optimizer: torch.optim.Optimizer,
        ema: ExponentialMovingAverage,
        device: torch.device,
        config: TrainConfig,
        processes: Processes,
        forward: Callable[..., dict[str, torch.Tensor]] | None = None,
    ) -> None:
        self.model, self.dataset, self.optimizer, self.ema = model, dataset, optimizer, ema
        self.device, self.config, self.processes = device, config, processes
        self.forward = forward or model
        self.max_norm = math.inf if config.clip_grad is None else config.clip_grad
        self.in_a_row = 0
        self.model.train()  # validation scores the EMA copy, so this model stays in training
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.taken, self.skipped = 0.0, 0, 0

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.taken)

    def take(self, indices: list[int], weights: dict[str, float], where: str) -> bool:
        """One step on the structures ``indices`` (the global batch; this process takes its
        share) with loss ``weights`` per label; ``where`` names the step in errors. Returns
        whether the step compiled a graph (its time says nothing of the next steps')."""
        traced = self._graphs_traced()
        self._step(indices, weights, where)
        return self._graphs_traced() > traced

    def _graphs_traced(self) -> int:
        forward = self.forward
        return forward.num_graphs if isinstance(forward, CompiledTrainingForward) else 0

    def _step(self, indices: list[int], weights: dict[str, float], where: str) -> None:
        dataset, processes, config = self.dataset, self.processes, self.config
        global_counts = dataset.label_counts(indices)
        local = dataset.batch(indices[processes.rank :: processes.world_size]).to(self.device)
        outputs = self.forward(
            local.graph,
            compute_forces=dataset.has_forces and weights["forces"] > 0,
            compute_stress=dataset.has_stress and weights["stress"] > 0,
            training=True,
        )
        loss = outputs["energy"].new_zeros(())
        for label, residual in residuals(outputs, local).items():
            if global_counts[label] and weights[label] > 0:
                term = penalty(residual, config.loss, config.huber_delta).sum()
                loss = loss + weights[label] * term / global_counts[label]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # each process holds a part of the global batch's loss
        if processes.distributed:
            sum_gradients(self.model.parameters())
        # the same on every process: gradients are already summed over them
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm, foreach=True)
        value = loss.detach()
        if processes.distributed:
            dist.all_reduce(value)
        if math.isfinite(float(value)) and math.isfinite(float(norm)):
            self.optimizer.step()
            self.ema.update()
            self.loss_sum += float(value)
            self.taken, self.in_a_row = self.taken + 1, 0
            return
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        if self.in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise RuntimeError(
                f"training diverged: loss {float(value)}, gradient norm {float(norm)} in "
                f"{self.in_a_row} steps in a row ({where}); lower lr or check the data"
            )
