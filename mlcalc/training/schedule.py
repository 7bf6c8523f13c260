"""Learning-rate schedule, loss weights that follow it, and an EMA of the weights.

Positions in the schedule are in epochs, fractional: the trainer asks for the learning rate of
every optimiser step (step / steps per epoch).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class LearningRateSchedule:
    """Warm-up, then plateau / cosine / constant, at a (fractional) epoch position.

    Args:
        lr: the learning rate after warm-up.
        lr_min: the floor; a plateau schedule reports :attr:`exhausted` below it.
        kind: ``"plateau"``, ``"cosine"`` or ``"constant"``.
        warmup_epochs: linear ramp from ``warmup_factor * lr`` to ``lr``.
        factor, patience: plateau reduction factor and validations without improvement.
        epochs: length of the cosine schedule; with a time budget the cosine follows whichever
            runs out first, the epochs or the budget (``budget_fraction`` of :meth:`lr_at`).
    """

    def __init__(
        self,
        lr: float,
        lr_min: float,
        kind: str,
        warmup_epochs: int = 0,
        warmup_factor: float = 0.1,
        factor: float = 0.5,
        patience: int = 10,
        epochs: int = 100,
    ) -> None:
        self.lr_start, self.lr_min, self.kind = lr, lr_min, kind
        self.warmup_epochs, self.warmup_factor = warmup_epochs, warmup_factor
        self.factor, self.patience, self.epochs = factor, patience, epochs
        self.plateau_lr = lr
        self.best = math.inf
        self.bad_epochs = 0

    def lr_at(self, epoch: float, budget_fraction: float = 0.0) -> float:
        """Learning rate at position ``epoch`` (fractional, from 0); ``budget_fraction`` is the
        part of the budget spent (0 without a budget)."""
        if epoch < self.warmup_epochs:
            fraction = epoch / self.warmup_epochs
            return self.lr_start * (self.warmup_factor + (1 - self.warmup_factor) * fraction)
        if self.kind == "cosine":
            span = max(1, self.epochs - self.warmup_epochs)
            progress = min(1.0, max((epoch - self.warmup_epochs) / span, budget_fraction))
            return self.lr_min + 0.5 * (self.lr_start - self.lr_min) * (
                1 + math.cos(math.pi * progress)
            )
        if self.kind == "plateau":
            return self.plateau_lr
        return self.lr_start

    def progress(self, epoch: float, budget_fraction: float = 0.0) -> float:
        """1 at the start learning rate (and during warm-up), 0 at ``lr_min``."""
        if epoch < self.warmup_epochs or self.lr_start == self.lr_min:
            return 1.0
        lr = self.lr_at(epoch, budget_fraction)
        value = (lr - self.lr_min) / (self.lr_start - self.lr_min)
        return min(1.0, max(0.0, value))

    def step(self, epoch: float, validation_loss: float) -> None:
        """Record a validation loss at position ``epoch`` (plateau bookkeeping)."""
        if self.kind != "plateau" or epoch < self.warmup_epochs:
            return
        if validation_loss < self.best:
            self.best, self.bad_epochs = validation_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.plateau_lr *= self.factor
            self.bad_epochs = 0

    @property
    def exhausted(self) -> bool:
        return self.kind == "plateau" and self.plateau_lr < self.lr_min

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_lr": self.plateau_lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_lr = float(state["plateau_lr"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def scheduled_weight(start: float, final: float | None, progress: float) -> float:
    """A loss weight at schedule ``progress`` (1 at the start, 0 at the end)."""
    return start if final is None else final + progress * (start - final)


class ExponentialMovingAverage:
    """EMA of a module's floating-point parameters and buffers in a copy of it.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so early
    weights are not frozen into the average. The pairs of tensors are looked up once: move
    both modules to their device and dtype before building the average.
    """

    def __init__(self, module: nn.Module, average: nn.Module, decay: float) -> None:
        self.module, self.average, self.decay = module, average, decay
        self.updates = 0
        self.average.requires_grad_(False)
        mine = dict(self.average.state_dict(keep_vars=True))
        pairs = [
            (mine[name], value.detach())
            for name, value in self.module.state_dict(keep_vars=True).items()
            if value.is_floating_point()
        ]
        self._averages = [average for average, _ in pairs]
        self._values = [value for _, value in pairs]
        self.copy_from_module()

    def copy_from_module(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self._averages, self._values)

    @torch.no_grad()
    def update(self) -> None:
        if self.decay == 0:
            self.copy_from_module()
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._averages, self._values, 1 - decay)
