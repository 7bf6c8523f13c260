"""Worker for ``bench/nequip_baseline.py``, run with the NequIP venv's python (never the
project's).

It imports only nequip (with its hydra, Lightning and torch), numpy, ase and the standard
library, and these only inside the functions: at import it is standard library only, so the
project's tests can read :class:`Clock` and :func:`validation_interval`. Two modes::

    python nequip_worker.py train --config OUT/nequip.yaml --run-dir OUT/nequip [-- OVERRIDES]
    python nequip_worker.py eval --checkpoint OUT/nequip/best.ckpt --configs TEST.xyz \\
        --out PRED.npz [--stress]

``train`` is ``nequip-train`` (``nequip.scripts.train.main``, the function behind that console
script) on the config the driver wrote, hydra's output in ``--run-dir``; arguments after ``--``
are hydra overrides. The wall-clock budget is kept by the config's ``trainer.callbacks`` entry
``nequip_worker.training_clock`` (a Lightning callback, :class:`Clock`):

- the clock starts at Lightning's ``on_train_start``: reading the files, NequIP's training-set
  statistics, building the model and Lightning's two-batch sanity check come before it
  (``setup_s``). Neighbour lists are built per batch by NequIP's data transforms, inside the
  loop, so they count;
- at ``budget_s`` a SIGALRM (or a SIGTERM/SIGINT from outside) raises :class:`BudgetReached`
  wherever training is: the batch or validation under way is dropped. A checkpoint being
  written is finished first. Lightning then stops the run (``on_exception``), and nothing after
  the deadline changes the weights;
- the best checkpoint (``ModelCheckpoint`` on the validation ``weighted_sum``, written after a
  validation that improved it) holds the EMA weights that ``eval`` loads;
- validation runs once per epoch, or, where an epoch is longer than ``budget_s /
  MIN_VALIDATIONS`` (timed on batches 2 to ``PACE_BATCHES + 1`` of the first epoch), every so
  many batches of an epoch that at least about ``MIN_VALIDATIONS`` validations fit in the
  budget (:func:`validation_interval`, set as Lightning's ``val_check_batch``). The best
  checkpoint is written at the end of a validation, with the EMA weights where NequIP keeps
  them between validations (:func:`raw_weights_in_model`).

The status file (JSON, rewritten after every epoch and validation) gives ``budget_s``,
``setup_s``, ``train_s`` (counted against the budget), ``epochs_done`` (complete epochs),
``steps`` (optimiser steps), ``val_every_batches`` (``null``: once per epoch), ``validations``
(one per validation: seconds since the clock started, epoch (0-based, as Lightning and MACE
count), step, NequIP's validation metrics in eV, Å units), ``best`` (the validation of the
checkpoint) and ``stopped_by``.

``eval`` scores nothing: it loads the best checkpoint with NequIP's ``load_saved_model`` (EMA
weights), predicts energy, forces (and stress with ``--stress``) for every frame of
``--configs`` in file order, in batches, and saves them to an ``.npz``; it prints one JSON
line with the parameter count, dtype and timing.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mace_worker import (  # bench/ is on sys.path (the script's folder); standard library only
    BudgetReached,
    Deadline,
    add_eval_command,
    save_predictions,
    write_json,
)

STARTED = time.time()
#: About this many validations fit in the budget at least (where epochs are long).
MIN_VALIDATIONS = 10
#: Training batches timed (after the first) to decide how often to validate.
PACE_BATCHES = 5
#: The validation metric of the learning curve (eV/Å), as NequIP logs it.
FORCES_RMSE = "val0_epoch/forces_rmse"


def validation_interval(
    batches: int, seconds_per_batch: float, budget_s: float, min_validations: int
) -> int | None:
    """Training batches between validations: ``None`` (once per epoch) where an epoch of
    ``batches`` fits in ``budget_s / min_validations`` seconds, else the epoch split evenly into
    the fewest pieces that do (Lightning validates after every that many batches of an epoch)."""
    window = budget_s / min_validations
    if batches * seconds_per_batch <= window:
        return None
    fit = max(1, int(window / seconds_per_batch))
    return math.ceil(batches / math.ceil(batches / fit))


@contextlib.contextmanager
def raw_weights_in_model(module: Any) -> Iterator[None]:
    """Hold NequIP's EMA module in its between-validations state (raw weights in the model,
    EMA weights in ``module.ema``) inside the block.

    ``ModelCheckpoint`` saves at the end of a validation, before ``EMALightningModule`` swaps
    the EMA weights back out of the model (NequIP saves at the end of an epoch, after it); a
    checkpoint written then would hold them the wrong way round, and NequIP refuses to load it.
    """
    ema = getattr(module, "ema", None)
    swap = ema is not None and not ema.is_holding_ema_weights
    if swap:
        ema.swap_parameters(module.model)
    try:
        yield
    finally:
        if swap:
            ema.swap_parameters(module.model)


class Clock:
    """The budget and the record of one training run, as Lightning callback hooks (the
    callback itself is :func:`training_clock`).

    Args:
        budget_s: seconds of training loop (validation included) before it is stopped.
        status: the JSON status file.
        min_validations: see :func:`validation_interval`.
    """

    def __init__(self, budget_s: float, status: str, min_validations: int = MIN_VALIDATIONS):
        self.budget_s = float(budget_s)
        self.path = Path(status)
        self.min_validations = min_validations
        self.status: dict[str, Any] = {
            "budget_s": self.budget_s,
            "setup_s": None,
            "train_s": None,
            "epochs_done": 0,
            "steps": 0,
            "val_every_batches": None,
            "validations": [],
            "best": None,
            "stopped_by": None,
        }
        self.start: float | None = None
        self.paced_from: float | None = None
        self.deadline = Deadline()

    def elapsed(self) -> float:
        assert self.start is not None
        return time.time() - self.start

    def on_train_start(self, trainer: Any, _module: Any) -> None:
        self.start = time.time()
        self.status["setup_s"] = self.start - STARTED
        save = trainer.save_checkpoint

        def guarded_save(*args: Any, **kwargs: Any) -> None:
            with self.deadline.saving():
                with raw_weights_in_model(trainer.lightning_module):
                    save(*args, **kwargs)
                self.status["best"] = self.status["validations"][-1]

        trainer.save_checkpoint = guarded_save
        print(f"nequip_worker: training loop started, budget {self.budget_s:g} s", flush=True)
        self.deadline.arm(self.budget_s)

    def on_train_batch_end(
        self, trainer: Any, _module: Any, _outputs: Any, _batch: Any, batch_idx: int
    ) -> None:
        self.status["steps"] = int(trainer.global_step)
        if trainer.current_epoch != 0 or batch_idx not in (0, PACE_BATCHES):
            return
        if batch_idx == 0:
            self.paced_from = time.time()
            return
        assert self.paced_from is not None
        per_batch = (time.time() - self.paced_from) / PACE_BATCHES
        every = validation_interval(
            int(trainer.num_training_batches), per_batch, self.budget_s, self.min_validations
        )
        if every is not None:
            trainer.val_check_batch = every
            self.status["val_every_batches"] = every
            print(
                f"nequip_worker: {per_batch:.3f} s per batch, {trainer.num_training_batches} "
                f"batches per epoch: validating every {every} batches",
                flush=True,
            )

    def on_validation_end(self, trainer: Any, _module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val")
        }
        point = {
            "time_s": self.elapsed(),
            "epoch": int(trainer.current_epoch),
            "step": int(trainer.global_step),
            "metrics": metrics,
        }
        self.status["validations"].append(point)
        print(
            f"nequip_worker: validation at {point['time_s']:.1f} s, epoch {point['epoch']}, "
            f"step {point['step']}: forces RMSE {1000 * metrics[FORCES_RMSE]:.2f} meV/Å",
            flush=True,
        )
        write_json(self.path, self.status)

    def on_train_epoch_end(self, _trainer: Any, _module: Any) -> None:
        self.status["epochs_done"] += 1
        write_json(self.path, self.status)

    def finish(self, stopped_by: str) -> None:
        """Stop the clock and its signals; write the status."""
        self.deadline.disarm()
        if self.start is not None and self.status["train_s"] is None:
            self.status["train_s"] = self.elapsed()
            self.status["stopped_by"] = stopped_by
        write_json(self.path, self.status)

    def on_train_end(self, _trainer: Any, _module: Any) -> None:
        self.finish("max_epochs")

    def on_exception(self, _trainer: Any, _module: Any, exception: BaseException) -> None:
        reason = str(exception) if isinstance(exception, BudgetReached) else repr(exception)
        self.finish(reason)


def training_clock(budget_s: float, status: str, min_validations: int = MIN_VALIDATIONS) -> Any:
    """The Lightning callback of the config (``_target_: nequip_worker.training_clock``)."""
    from lightning.pytorch.callbacks import Callback

    kind = type("TrainingClock", (Clock, Callback), {})
    return kind(budget_s, status, min_validations)


def train(config: Path, run_dir: Path, overrides: list[str]) -> int:
    from nequip.scripts.train import main

    sys.argv = [
        "nequip-train",
        f"--config-path={config.parent.resolve()}",
        f"--config-name={config.stem}",
        f"hydra.run.dir={run_dir.resolve()}",
        "hydra.job.chdir=False",
        *overrides,
    ]
    try:
        main()
    except BudgetReached as reached:
        print(f"nequip_worker: training stopped ({reached})", flush=True)
    return 0


def evaluate(checkpoint: Path, configs: Path, out: Path, batch_size: int, stress: bool) -> int:
    import ase.io
    from ase import Atoms
    from nequip.data import AtomicDataDict, from_ase
    from nequip.integrations.utils import basic_transforms
    from nequip.model.saved_models.load_utils import load_saved_model
    from nequip.nn import graph_model
    from nequip.utils.global_state import set_global_state

    start = time.time()
    set_global_state(allow_tf32=False)
    model = load_saved_model(str(checkpoint))  # EMA weights where the run kept them
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    parameters = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    type_names = model.metadata[graph_model.TYPE_NAMES_KEY].split(" ")
    r_max = float(model.metadata[graph_model.R_MAX_KEY])
    transforms = basic_transforms(model.metadata, r_max, type_names, {t: t for t in type_names})
    frames = ase.io.read(configs, index=":")
    energies, forces, stresses = [], [], []
    for first in range(0, len(frames), batch_size):
        graphs = []
        for atoms in frames[first : first + batch_size]:
            # positions, numbers and cell only: no label reaches the model
            bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            graph = from_ase(bare)
            for transform in transforms:
                graph = transform(graph)
            graphs.append(graph)
        output = model(AtomicDataDict.batched_from_list(graphs))
        energies.append(output[AtomicDataDict.TOTAL_ENERGY_KEY].detach().double().numpy())
        forces.append(output[AtomicDataDict.FORCE_KEY].detach().double().numpy())
        if stress:
            stresses.append(output[AtomicDataDict.STRESS_KEY].detach().double().numpy())
    return save_predictions(out, frames, energies, forces, stresses, parameters, dtype, start)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_train = sub.add_parser("train")
    p_train.add_argument("--config", type=Path, required=True)
    p_train.add_argument("--run-dir", type=Path, required=True)
    p_train.add_argument("--threads", type=int, default=1)
    add_eval_command(sub, "--checkpoint")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "train":
        return train(args.config, args.run_dir, overrides)
    return evaluate(args.checkpoint, args.configs, args.out, args.batch_size, args.stress)


if __name__ == "__main__":
    # the config names `nequip_worker.training_clock`: let hydra find this module, not a copy
    sys.modules.setdefault("nequip_worker", sys.modules[__name__])
    sys.exit(main())
