"""What a training run carries from step to step, and its state file ``training_state.pt``.

The state file holds everything needed to continue exactly (weights, EMA, optimiser, schedule,
position and history); it is rewritten at every validation and read back with
``torch.load(weights_only=True)``, which never runs code from the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlcalc.atomic import atomic_path
from mlcalc.models import AtomisticModel
from mlcalc.training.config import TrainConfig
from mlcalc.training.schedule import ExponentialMovingAverage, LearningRateSchedule


@dataclass
class Components:
    """The trained model, its EMA copy (validated and written), the optimiser and schedule."""

    model: AtomisticModel
    average: AtomisticModel
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    schedule: LearningRateSchedule
    dtype: torch.dtype

    def restore(self, state: dict[str, Any]) -> None:
        """Load the EMA, optimiser and schedule of a state file (the model is built from it)."""
        self.average.load_state_dict(state["ema_model"])
        self.ema.updates = int(state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])


@dataclass
class Progress:
    """Where a run stands: optimiser steps taken, the validation rows so far, the best
    validation loss and where it was met, validations since then, and seconds spent."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    best_step: int = 0
    stale: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def from_state(cls, state: dict[str, Any], steps_per_epoch: int) -> Progress:
        """The progress saved in a state file (those written before steps were counted were
        saved at the end of an epoch)."""
        return cls(
            step=int(state.get("step", (int(state["epoch"]) + 1) * steps_per_epoch)),
            history=list(state["history"]),
            best_loss=float(state["best_loss"]),
            best_epoch=int(state["best_epoch"]),
            best_step=int(state.get("best_step", 0)),
            stale=int(state.get("stale_validations", state.get("stale_epochs", 0))),
            elapsed_s=float(state["elapsed_s"]),
        )

    def record(self, row: dict[str, float]) -> bool:
        """Add a validation row (``epoch``, ``step``, ``valid_loss``...); whether it is the
        best so far."""
        self.history.append(row)
        if row["valid_loss"] < self.best_loss:
            self.best_loss, self.stale = row["valid_loss"], 0
            self.best_epoch, self.best_step = int(row["epoch"]), int(row["step"])
            return True
        self.stale += 1
        return False


def save_state(
    path: Path, config: TrainConfig, parts: Components, progress: Progress, epoch: int
) -> None:
    """Write the state file at ``path`` atomically (``epoch``: that of the last step)."""
    state = {
        "config": config.to_dict(),
        "architecture": parts.model.architecture,
        "model_config": parts.model.config.to_dict(),
        "dtype": parts.dtype,
        "model": parts.model.state_dict(),
        "ema_model": parts.average.state_dict(),
        "ema_updates": parts.ema.updates,
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "history": progress.history,
        "epoch": epoch,
        "step": progress.step,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "best_step": progress.best_step,
        "elapsed_s": progress.elapsed_s,
        "stale_validations": progress.stale,
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
