"""The result of a training run: the kept model scored on the validation and test sets."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mlcalc.atomic import write_text_atomic
from mlcalc.models import DTYPES, load_checkpoint
from mlcalc.training.budget import Budget
from mlcalc.training.config import TrainConfig
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.metrics import evaluate, format_errors
from mlcalc.training.setup import Datasets
from mlcalc.training.state import Progress
from mlcalc.training.steps import Processes

BEST_FILE = "best.safetensors"
FINAL_FILE = "final.safetensors"


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
    steps: int = 0
    model_step: int = 0


def score_run(
    config: TrainConfig,
    processes: Processes,
    say: Callable[[str], None],
    data: Datasets,
    valid_set: GraphDataset,
    device: torch.device,
    progress: Progress,
    steps_per_epoch: int,
    stop_reason: str,
    clock: Budget,
) -> TrainResult:
    """The result of a finished run: the kept model (``keep``) scored on the whole validation
    set ``valid_set`` (inside the budget) and on the test set (outside it, written to
    ``test_metrics.json``)."""
    dtype = DTYPES[config.dtype]
    final = config.keep == "final"
    last_epoch = (progress.step - 1) // steps_per_epoch
    model_path = Path(config.output_dir) / (FINAL_FILE if final else BEST_FILE)
    model_epoch = last_epoch if final else progress.best_epoch
    model_step = progress.step if final else progress.best_step
    kept = load_checkpoint(model_path, device=device)
    valid_errors = evaluate(kept, valid_set, device, config.eval_batch_atoms).errors()
    elapsed = clock.elapsed()
    say(f"trained and validated in {elapsed:.0f} s; validation set: " + format_errors(valid_errors))
    test_errors = None
    if data.test:
        test_set = GraphDataset(data.test, kept.cutoff, kept.elements, dtype)
        test_errors = evaluate(kept, test_set, device, config.eval_batch_atoms).errors()
        if processes.main:
            summary = {
                "model": model_path.name,
                "model_epoch": model_epoch,
                "model_step": model_step,
                "best_epoch": progress.best_epoch,
                "steps": progress.step,
                "train_time_s": elapsed,
                **test_errors,
            }
            write_text_atomic(
                Path(config.output_dir) / "test_metrics.json", json.dumps(summary, indent=2) + "\n"
            )
            say("test set: " + format_errors(test_errors))
    if processes.distributed:
        dist.destroy_process_group()
    return TrainResult(
        Path(config.output_dir),
        last_epoch + 1,
        progress.best_epoch,
        progress.best_loss,
        stop_reason,
        elapsed,
        valid_errors,
        test_errors,
        model_path,
        model_epoch,
        processes.main,
        progress.step,
        model_step,
    )
