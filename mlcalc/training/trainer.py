"""The training loop behind ``mlcalc train``: one process or several, data-parallel.

The learning rate and the loss-weight ramps move every optimiser step, by whichever runs out
first: ``epochs``, ``max_steps`` or the ``max_time`` budget (:mod:`mlcalc.training.budget`), so
a run anneals within its budget however long an epoch is. Every ``valid_interval`` steps (by
default every epoch, or every 2,000 steps) the EMA weights are validated on a fixed subset of
the validation set and written.

Outputs in ``output_dir`` (all written atomically, by process 0):

* ``final.safetensors``: the EMA weights at the last validation (the last step), and
  ``best.safetensors``: those with the lowest validation loss, both ready for the calculators;
  ``keep`` says which one is the run's model (scored on the whole validation and test sets);
* ``training_state.pt``: everything needed to continue exactly, mid-epoch included
  (:mod:`mlcalc.training.state`), rewritten at every validation;
* ``config.yaml``: the configuration as used (model config resolved);
* ``metrics.csv``: one row per validation; ``test_metrics.json`` at the end when there is a
  test set.

Data-parallel runs (``torchrun --nproc_per_node N mlcalc train ...``) split every global batch
of ``batch_size`` structures between the processes, normalise the loss by the counts of the
global batch and sum the weight gradients over the processes (one all-reduce a step,
:mod:`mlcalc.training.steps`), so N processes follow the same trajectory as one (to rounding),
compiled steps included.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.distributed as dist

from mlcalc.atomic import write_text_atomic
from mlcalc.models import DTYPES, AtomisticModel, save_checkpoint
from mlcalc.progress import progress_bar
from mlcalc.training.budget import MAX_VALID_INTERVAL, Budget, validation_subset
from mlcalc.training.compiled import training_forward
from mlcalc.training.config import TrainConfig
from mlcalc.training.graphs import GraphDataset, graphs_summary
from mlcalc.training.loss import LABELS
from mlcalc.training.metrics import (
    ERROR_UNITS,
    ErrorSums,
    evaluate,
    write_metrics_csv,
)
from mlcalc.training.recipe import batch_size_for
from mlcalc.training.results import BEST_FILE, FINAL_FILE, TrainResult, score_run
from mlcalc.training.schedule import (
    ExponentialMovingAverage,
    LearningRateSchedule,
    scheduled_weight,
)
from mlcalc.training.setup import initial_model, load_datasets, model_from_state
from mlcalc.training.state import Components, Progress, save_state
from mlcalc.training.steps import OptimiserSteps, Processes, global_batches

STATE_FILE = "training_state.pt"


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
        memory = config.graph_memory_bytes()
        train_set = GraphDataset(data.train, model.cutoff, elements, dtype, memory)
        left = None if memory is None else memory - train_set.kept_bytes
        valid_set = GraphDataset(data.valid, model.cutoff, elements, dtype, left)
        self._say(
            f"{model.architecture}: {model.num_parameters():,} parameters, "
            f"{len(train_set)} training / {len(valid_set)} validation structures, "
            f"{self.processes.world_size} process(es) on {device}"
        )
        self._say(graphs_summary(train_set, valid_set))
        average = copy.deepcopy(model).eval()
        parts = Components(
            model,
            average,
            ExponentialMovingAverage(model, average, config.ema_decay),
            torch.optim.AdamW(
                model.parameters(),
                lr=config.lr,
                weight_decay=config.weight_decay,
                amsgrad=config.amsgrad,
                fused=True,  # one kernel for all parameters: ~1 ms less per step than the loop
            ),
            LearningRateSchedule(
                config.lr,
                config.lr_min,
                config.scheduler,
                config.warmup_epochs,
                config.warmup_factor,
                config.lr_factor,
                config.lr_patience,
                config.epochs,
            ),
            dtype,
        )
        steps_per_epoch = len(global_batches(len(train_set), 0, config, self.processes))
        if steps_per_epoch == 0:
            raise ValueError(
                f"no batch of {config.batch_size} structures has one for each of the "
                f"{self.processes.world_size} processes; use fewer processes"
            )
        progress = Progress()
        if state is not None:
            parts.restore(state)
            progress = Progress.from_state(state, steps_per_epoch)
            self._say(f"resuming after step {progress.step} from {self.state_path}")
        processes = self.processes
        forward, how = training_forward(
            model, train_set, config, processes.rank, processes.world_size
        )
        self._say(how)
        stepper = OptimiserSteps(
            model, train_set, parts.optimizer, parts.ema, device, config, self.processes, forward
        )
        clock = Budget(
            config.max_time_seconds(), progress.elapsed_s, len(valid_set), config.batch_size
        )
        stop_reason = self._train(parts, progress, stepper, valid_set, steps_per_epoch, clock)
        self._say(f"stopped: {stop_reason}")
        if self.processes.distributed:
            dist.barrier()
        return score_run(
            config, self.processes, self._say, data, valid_set, device, progress,
            steps_per_epoch, stop_reason, clock,
        )  # fmt: skip

    def _train(
        self,
        parts: Components,
        progress: Progress,
        stepper: OptimiserSteps,
        valid_set: GraphDataset,
        steps_per_epoch: int,
        clock: Budget,
    ) -> str:
        """Optimiser steps with the schedule moving every step and a validation row every
        ``valid_interval`` steps, until the steps, the budget or the schedule run out;
        returns why it stopped."""
        config, device = self.config, stepper.device
        interval = config.valid_interval or min(steps_per_epoch, MAX_VALID_INTERVAL)
        total_steps = int(config.epochs) * steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        subset = validation_subset(len(valid_set), config.valid_subset, config.seed)
        if len(subset) < len(valid_set):
            self._say(
                f"validating {len(subset)} of {len(valid_set)} structures every {interval} "
                "steps (all of them at the end)"
            )
        shared_on = device if self.processes.distributed else None
        batches: list[list[int]] = []
        batches_epoch, bar, row_started = -1, None, time.perf_counter()
        stop_reason: str | None = None
        while progress.step < total_steps and stop_reason is None:
            epoch, k = divmod(progress.step, steps_per_epoch)
            if epoch != batches_epoch:
                batches = global_batches(len(stepper.dataset), epoch, config, self.processes)
                batches_epoch = epoch
            if bar is None:
                bar = self._bar(epoch, min(interval - progress.step % interval,
                                           total_steps - progress.step))  # fmt: skip
            position, fraction = progress.step / steps_per_epoch, clock.fraction()
            if config.max_steps is not None:  # the last step runs at the schedule's end
                fraction = max(fraction, progress.step / max(1, config.max_steps - 1))
            lr = parts.schedule.lr_at(position, fraction)
            for group in parts.optimizer.param_groups:
                group["lr"] = lr
            weights = self._loss_weights(parts.schedule.progress(position, fraction))
            started = time.perf_counter()
            compiled = stepper.take(batches[k], weights, f"epoch {epoch}, step {k}")
            clock.record_step(time.perf_counter() - started, compiled)
            progress.step += 1
            bar.set_postfix_str(f"loss {stepper.mean_loss:.4e}", refresh=False)
            bar.update()
            if clock.exhausted(shared_on):
                stop_reason = f"max_time {config.max_time} reached"
            elif progress.step % interval and progress.step < total_steps:
                continue
            bar.close()
            bar = None
            if stepper.skipped:
                self._say(
                    f"epoch {epoch}: skipped {stepper.skipped} of "
                    f"{stepper.taken + stepper.skipped} steps with a non-finite loss or gradient"
                )
            started = time.perf_counter()
            valid = self._validate(parts.average, valid_set, device, subset)
            clock.record_validation(time.perf_counter() - started, len(subset))
            valid_loss = self._weighted(valid, self._loss_weights(1.0))
            parts.schedule.step(position, valid_loss)
            errors = valid.errors()
            row = {
                "epoch": epoch,
                "step": progress.step,
                "lr": lr,
                "train_loss": stepper.mean_loss,
                "valid_loss": valid_loss,
                **{f"valid_{k}": v for k, v in errors.items() if k.endswith(("mae", "rmse"))},
                "time_s": time.perf_counter() - row_started,
            }
            row_started = time.perf_counter()
            stepper.reset()
            improved = progress.record(row)
            progress.elapsed_s = clock.elapsed()
            self._report(row, improved)
            if self.processes.main:
                if improved:
                    save_checkpoint(parts.average, self.output_dir / BEST_FILE)
                save_checkpoint(parts.average, self.output_dir / FINAL_FILE)
                write_metrics_csv(self.output_dir / "metrics.csv", progress.history)
                save_state(self.state_path, config, parts, progress, epoch)
            if parts.schedule.exhausted:
                stop_reason = f"learning rate fell below lr_min {config.lr_min}"
            patience = config.early_stopping_patience
            if patience is not None and progress.stale >= patience:
                stop_reason = f"no better validation loss for {patience} validations"
        if stop_reason is not None:
            return stop_reason
        if config.max_steps is not None and progress.step >= config.max_steps:
            return f"max_steps {config.max_steps} reached"
        return f"reached {config.epochs} epochs"

    def _check_resumable(self, state: dict[str, Any]) -> None:
        saved = dict(state["config"])
        current = self.config.to_dict()
        free = {"epochs", "max_time", "max_steps", "device", "threads", "output_dir"}
        free.add("early_stopping_patience")
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

    # ---------------------------------------------------------------------------- steps
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
        self,
        model: AtomisticModel,
        dataset: GraphDataset,
        device: torch.device,
        subset: list[int],
    ) -> ErrorSums:
        """Error sums of ``model`` on the structures ``subset`` of ``dataset``, over all
        processes."""
        processes = self.processes
        indices = subset[processes.rank :: processes.world_size]
        sums = ErrorSums(self.config.loss, self.config.huber_delta)
        evaluate(model, dataset, device, self.config.eval_batch_atoms, indices, sums)
        if processes.distributed:
            sums.all_reduce()
        return sums

    def _report(self, row: dict[str, float], improved: bool) -> None:
        parts = [
            f"epoch {int(row['epoch']):4d}",
            f"step {int(row['step']):7d}",
            f"lr {row['lr']:.2e}",
            f"loss {row['train_loss']:.4e}",
            f"valid {row['valid_loss']:.4e}",
        ]
        for label, unit in ERROR_UNITS.items():
            if f"valid_{label}_mae" in row:
                parts.append(f"{label[0].upper()} MAE {row[f'valid_{label}_mae']:.2f} {unit}")
        parts.append(f"{row['time_s']:.1f} s" + (" *" if improved else ""))
        self._say("  ".join(parts))

    def _bar(self, epoch: int, steps: int) -> Any:
        """The progress bar of the steps up to the next validation (stderr, when a terminal,
        process 0)."""
        return progress_bar(
            desc=f"epoch {epoch:4d}",
            unit="steps",
            total=steps,
            enabled=None if self.processes.main else False,
            leave=False,
        )

    # ----------------------------------------------------------------------- persistence


def train(config: TrainConfig, resume: bool = False, log: TextIO | None = None) -> TrainResult:
    """Train a model as ``config`` says; see :class:`Trainer`."""
    return Trainer(config, resume=resume, log=log).run()
