"""Optimiser steps of a training run, and the run's place among data-parallel processes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mlcalc.progress import progress_bar
from mlcalc.training.config import TrainConfig
from mlcalc.training.data import GraphDataset
from mlcalc.training.loss import penalty, residuals
from mlcalc.training.schedule import ExponentialMovingAverage


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


def train_epoch(
    model: nn.Module,
    dataset: GraphDataset,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage,
    weights: dict[str, float],
    epoch: int,
    device: torch.device,
    config: TrainConfig,
    processes: Processes,
) -> float:
    """One epoch of optimiser steps on ``dataset`` with loss ``weights`` per label; returns the
    mean loss per step."""
    compute_forces = dataset.has_forces and weights["forces"] > 0
    compute_stress = dataset.has_stress and weights["stress"] > 0
    batches = global_batches(len(dataset), epoch, config, processes)
    progress = progress_bar(
        desc=f"epoch {epoch:4d}",
        unit="batches",
        total=len(batches),
        enabled=None if processes.main else False,
        leave=False,
    )
    total_loss = 0.0
    model.train()
    for step, indices in enumerate(batches):
        global_counts = dataset.label_counts(indices)
        local = dataset.batch(indices[processes.rank :: processes.world_size]).to(device)
        outputs = model(
            local.graph,
            compute_forces=compute_forces,
            compute_stress=compute_stress,
            training=True,
        )
        loss = outputs["energy"].new_zeros(())
        for label, residual in residuals(outputs, local).items():
            if global_counts[label] and weights[label] > 0:
                term = penalty(residual, config.loss, config.huber_delta).sum()
                loss = loss + weights[label] * term / global_counts[label]
        optimizer.zero_grad(set_to_none=True)
        # DDP averages gradients over processes; each process holds a part of the sum
        (loss * processes.world_size).backward()
        if config.clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad, foreach=True)
        optimizer.step()
        ema.update()
        value = loss.detach()
        if processes.distributed:
            dist.all_reduce(value)
        if not math.isfinite(float(value)):
            raise RuntimeError(
                f"training diverged: the loss is {float(value)} in epoch {epoch}, step "
                f"{step}; lower lr or check the data"
            )
        total_loss += float(value)
        progress.set_postfix_str(f"loss {total_loss / (step + 1):.4e}", refresh=False)
        progress.update()
    progress.close()
    return total_loss / max(1, len(batches))
