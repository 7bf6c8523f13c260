"""The training loop behind ``mlcalc train``: single process or torch DistributedDataParallel.

Outputs in ``output_dir`` (all written atomically, by process 0):

* ``final.safetensors``: the EMA weights after the last completed epoch, and
  ``best.safetensors``: those with the lowest validation loss, both ready for the calculators;
  ``keep`` says which one is the run's model (scored on the test set);
* ``training_state.pt``: everything needed to continue exactly (weights, EMA, optimiser,
  schedule, epoch, history), rewritten after every epoch; read back with
  ``torch.load(weights_only=True)``, which never runs code from the file;
* ``config.yaml``: the configuration as used (model config resolved);
* ``metrics.csv``: one row per epoch; ``test_metrics.json`` at the end when there is a test set.

Data-parallel runs (``torchrun --nproc_per_node N mlcalc train ...``) split every global batch
of ``batch_size`` structures between the processes and normalise the loss by the counts of
the global batch, so N processes follow the same trajectory as one (to rounding).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.distributed as dist
from torch import nn

from mlcalc.atomic import atomic_path, write_text_atomic
from mlcalc.models import DTYPES, AtomisticModel, save_checkpoint
from mlcalc.training.compiled import training_forward
from mlcalc.training.config import TrainConfig
from mlcalc.training.data import GraphDataset
from mlcalc.training.loss import LABELS
from mlcalc.training.metrics import (
    ERROR_UNITS,
    ErrorSums,
    evaluate,
    format_errors,
    write_metrics_csv,
)
from mlcalc.training.recipe import batch_size_for
from mlcalc.training.schedule import (
    ExponentialMovingAverage,
    LearningRateSchedule,
    scheduled_weight,
)
from mlcalc.training.setup import Datasets, initial_model, load_datasets, model_from_state
from mlcalc.training.steps import Processes, train_epoch

STATE_FILE = "training_state.pt"
BEST_FILE = "best.safetensors"
FINAL_FILE = "final.safetensors"


def typical_epoch_time(history: list[dict[str, float]]) -> float:
    """Seconds the next epoch is expected to take: the mean of the epochs after the first
    (which also compiles the training steps and warms up), else the first's."""
    times = [row["epoch_time_s"] for row in history]
    return sum(times[1:]) / (len(times) - 1) if len(times) > 1 else times[0]


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    output_dir: Path
    epochs: int
    best_epoch: int
    best_valid_loss: float
    stop_reason: str
    train_time_s: float
    valid_errors: dict[str, float | int]
    test_errors: dict[str, float | int] | None
    model_path: Path
    model_epoch: int
    main_process: bool = True


class Trainer:
    """One training run; :meth:`run` trains and returns a :class:`TrainResult`.

    Args:
        config: the run's configuration.
        resume: continue from ``output_dir/training_state.pt`` (same data order, epochs and
            result as a run that was never stopped).
        log: where the epoch lines and summaries go (process 0 only); the bar of each epoch's
            batches is on stderr, when it is a terminal.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, log: TextIO | None = None):
        self.config = config
        self.processes = Processes.from_environment()
        self.log = log if log is not None else sys.stdout
        self.output_dir = Path(config.output_dir)
        self.state_path = self.output_dir / STATE_FILE
        if resume and not self.state_path.is_file():
            raise FileNotFoundError(
                f"nothing to resume: {self.state_path} does not exist (start without --resume)"
            )
        if not resume and self.state_path.exists():
            raise FileExistsError(
                f"{self.output_dir} already holds a training run; continue it with --resume "
                "or choose another output_dir"
            )
        self.resume = resume

    # ----------------------------------------------------------------------------- set-up
    def _setup_device(self) -> torch.device:
        from mlcalc.calculators import resolve_device

        device = resolve_device(self.config.device)
        if self.processes.distributed:
            if device.type == "cuda":
                device = torch.device("cuda", self.processes.local_rank)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if self.config.threads is not None:
            torch.set_num_threads(int(self.config.threads))
        return device

    def _say(self, text: str) -> None:
        if self.processes.main:
            print(text, file=self.log, flush=True)

    def run(self) -> TrainResult:
        device = self._setup_device()
        dtype = DTYPES[self.config.dtype]
        data = load_datasets(self.config)
        if self.config.batch_size is None:
            batch_size = batch_size_for([len(s) for s in data.train])
            self.config = dataclasses.replace(self.config, batch_size=batch_size)
        config = self.config
        state = torch.load(self.state_path, weights_only=True) if self.resume else None
        if state is not None:
            self._check_resumable(state)
            model = model_from_state(state)
        else:
            model = initial_model(config, data).to(dtype=dtype)
        model = model.to(device)
        resolved = TrainConfig.from_dict(
            {**config.to_dict(), "model": {} if config.init_from else model.config.to_dict()}
        )
        if self.processes.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.output_dir / "config.yaml", resolved.to_yaml())

        elements = model.elements
        train_set = GraphDataset(data.train, model.cutoff, elements, dtype)
        valid_set = GraphDataset(data.valid, model.cutoff, elements, dtype)
        self._say(
            f"{model.architecture}: {model.num_parameters():,} parameters, "
            f"{len(train_set)} training / {len(valid_set)} validation structures, "
            f"{self.processes.world_size} process(es) on {device}"
        )
        average = copy.deepcopy(model).eval()
        ema = ExponentialMovingAverage(model, average, config.ema_decay)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.lr,
            weight_decay=config.weight_decay,
            amsgrad=config.amsgrad,
            fused=True,  # one kernel for all parameters: ~1 ms less per step than the loop
        )
        schedule = LearningRateSchedule(
            config.lr,
            config.lr_min,
            config.scheduler,
            config.warmup_epochs,
            config.warmup_factor,
            config.lr_factor,
            config.lr_patience,
            config.epochs,
        )
        history: list[dict[str, float]] = []
        start_epoch, best_loss, best_epoch, elapsed, stale = 0, math.inf, -1, 0.0, 0
        if state is not None:
            average.load_state_dict(state["ema_model"])
            ema.updates = int(state["ema_updates"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
            elapsed, stale = float(state["elapsed_s"]), int(state["stale_epochs"])
            self._say(f"resuming at epoch {start_epoch} from {self.state_path}")

        trained = model
        if self.processes.distributed:
            trained = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        forward, how = training_forward(model, train_set, config, self.processes.distributed)
        self._say(how)
        budget = config.max_time_seconds()
        stop_reason = f"reached {config.epochs} epochs"
        epoch = start_epoch - 1
        for epoch in range(start_epoch, config.epochs):
            budget_fraction = 0.0 if budget is None else elapsed / budget
            if budget is not None and history:
                if elapsed + typical_epoch_time(history) > budget:
                    stop_reason = f"max_time {config.max_time} reached"
                    epoch -= 1
                    break
            started = time.perf_counter()
            lr = schedule.lr_at(epoch, budget_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            weights = self._loss_weights(schedule.progress(epoch, budget_fraction))
            steps = train_epoch(
                trained,
                train_set,
                optimizer,
                ema,
                weights,
                epoch,
                device,
                config,
                self.processes,
                forward,
            )
            train_loss = steps.mean_loss
            if steps.skipped:
                self._say(
                    f"epoch {epoch}: skipped {steps.skipped} of {steps.taken + steps.skipped} "
                    "steps with a non-finite loss or gradient"
                )
            valid = self._validate(average, valid_set, device)
            valid_loss = self._weighted(valid, self._loss_weights(1.0))
            schedule.step(epoch, valid_loss)
            improved = valid_loss < best_loss
            if improved:
                best_loss, best_epoch, stale = valid_loss, epoch, 0
            else:
                stale += 1
            duration = time.perf_counter() - started
            elapsed += duration
            errors = valid.errors()
            history.append(
                {
                    "epoch": epoch,
                    "lr": lr,
                    "train_loss": train_loss,
                    "valid_loss": valid_loss,
                    **{f"valid_{k}": v for k, v in errors.items() if k.endswith(("mae", "rmse"))},
                    "epoch_time_s": duration,
                }
            )
            self._report(history[-1], improved)
            if self.processes.main:
                if improved:
                    save_checkpoint(average, self.output_dir / BEST_FILE)
                save_checkpoint(average, self.output_dir / FINAL_FILE)
                write_metrics_csv(self.output_dir / "metrics.csv", history)
                self._save_state(
                    model,
                    average,
                    ema,
                    optimizer,
                    schedule,
                    history,
                    epoch,
                    best_loss,
                    best_epoch,
                    elapsed,
                    stale,
                    dtype,
                )
            if schedule.exhausted:
                stop_reason = f"learning rate fell below lr_min {config.lr_min}"
                break
            patience = config.early_stopping_patience
            if patience is not None and stale >= patience:
                stop_reason = f"no better validation loss for {patience} epochs"
                break
        self._say(f"stopped: {stop_reason}")
        if self.processes.distributed:
            dist.barrier()
        return self._finish(
            data, elements, dtype, device, epoch, best_epoch, best_loss, stop_reason, elapsed
        )

    def _check_resumable(self, state: dict[str, Any]) -> None:
        saved = dict(state["config"])
        current = self.config.to_dict()
        free = {"epochs", "max_time", "device", "threads", "output_dir", "early_stopping_patience"}
        free.add("keep")  # which written model is scored: not part of the trajectory
        # keys added to TrainConfig after the run started count as their defaults
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        changed = sorted(
            k for k in current if k not in free and current[k] != saved.get(k, defaults[k])
        )
        if changed:
            raise ValueError(
                "cannot resume with a different configuration; changed: " + ", ".join(changed)
            )

    # --------------------------------------------------------------------------- epochs
    def _loss_weights(self, progress: float) -> dict[str, float]:
        c = self.config
        return {
            "energy": scheduled_weight(c.energy_weight, c.energy_weight_final, progress),
            "forces": scheduled_weight(c.forces_weight, c.forces_weight_final, progress),
            "stress": scheduled_weight(c.stress_weight, c.stress_weight_final, progress),
        }

    def _weighted(self, sums: ErrorSums, weights: dict[str, float]) -> float:
        total = 0.0
        for label in LABELS:
            value = sums.mean_penalty(label)
            if value is not None:
                total += weights[label] * value
        return total

    def _validate(
        self, model: AtomisticModel, dataset: GraphDataset, device: torch.device
    ) -> ErrorSums:
        processes = self.processes
        indices = list(range(processes.rank, len(dataset), processes.world_size))
        sums = ErrorSums(self.config.loss, self.config.huber_delta)
        evaluate(model, dataset, device, self.config.eval_batch_atoms, indices, sums)
        if processes.distributed:
            sums.all_reduce()
        return sums

    def _report(self, row: dict[str, float], improved: bool) -> None:
        parts = [
            f"epoch {int(row['epoch']):4d}",
            f"lr {row['lr']:.2e}",
            f"loss {row['train_loss']:.4e}",
            f"valid {row['valid_loss']:.4e}",
        ]
        for label, unit in ERROR_UNITS.items():
            if f"valid_{label}_mae" in row:
                parts.append(f"{label[0].upper()} MAE {row[f'valid_{label}_mae']:.2f} {unit}")
        parts.append(f"{row['epoch_time_s']:.1f} s" + (" *" if improved else ""))
        self._say("  ".join(parts))

    # ----------------------------------------------------------------------- persistence
    def _save_state(
        self,
        model: AtomisticModel,
        average: AtomisticModel,
        ema: ExponentialMovingAverage,
        optimizer: torch.optim.Optimizer,
        schedule: LearningRateSchedule,
        history: list[dict[str, float]],
        epoch: int,
        best_loss: float,
        best_epoch: int,
        elapsed: float,
        stale: int,
        dtype: torch.dtype,
    ) -> None:
        state = {
            "config": self.config.to_dict(),
            "architecture": model.architecture,
            "model_config": model.config.to_dict(),
            "dtype": dtype,
            "model": model.state_dict(),
            "ema_model": average.state_dict(),
            "ema_updates": ema.updates,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": history,
            "epoch": epoch,
            "best_loss": best_loss,
            "best_epoch": best_epoch,
            "elapsed_s": elapsed,
            "stale_epochs": stale,
        }
        with atomic_path(self.state_path) as temporary:
            torch.save(state, temporary)

    def _finish(
        self,
        data: Datasets,
        elements: list[str],
        dtype: torch.dtype,
        device: torch.device,
        last_epoch: int,
        best_epoch: int,
        best_loss: float,
        stop_reason: str,
        elapsed: float,
    ) -> TrainResult:
        from mlcalc.models import load_checkpoint

        final = self.config.keep == "final"
        model_path = self.output_dir / (FINAL_FILE if final else BEST_FILE)
        model_epoch = last_epoch if final else best_epoch
        kept = load_checkpoint(model_path, device=device)
        valid_errors = evaluate(
            kept,
            GraphDataset(data.valid, kept.cutoff, elements, dtype),
            device,
            self.config.eval_batch_atoms,
        ).errors()
        test_errors = None
        if data.test:
            test_set = GraphDataset(data.test, kept.cutoff, elements, dtype)
            test_errors = evaluate(kept, test_set, device, self.config.eval_batch_atoms).errors()
            if self.processes.main:
                summary = {
                    "model": model_path.name,
                    "model_epoch": model_epoch,
                    "best_epoch": best_epoch,
                    "train_time_s": elapsed,
                    **test_errors,
                }
                write_text_atomic(
                    self.output_dir / "test_metrics.json", json.dumps(summary, indent=2) + "\n"
                )
                self._say("test set: " + format_errors(test_errors))
        if self.processes.distributed:
            dist.destroy_process_group()
        return TrainResult(
            self.output_dir,
            last_epoch + 1,
            best_epoch,
            best_loss,
            stop_reason,
            elapsed,
            valid_errors,
            test_errors,
            model_path,
            model_epoch,
            self.processes.main,
        )


def train(config: TrainConfig, resume: bool = False, log: TextIO | None = None) -> TrainResult:
    """Train a model as ``config`` says; see :class:`Trainer`."""
    return Trainer(config, resume=resume, log=log).run()
