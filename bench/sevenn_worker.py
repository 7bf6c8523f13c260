"""Worker for ``bench/sevenn_baseline.py``, run with the SevenNet venv's python (never the
project's). It imports only sevenn, torch, numpy, ase and the standard library (and
``bench/mace_worker.py``, standard library only at import). Two modes::

    python sevenn_worker.py train INPUT.yaml --workdir DIR --budget-s 720 --status STATUS.json
        [--valid-every STEPS] [--threads 1]
    python sevenn_worker.py eval --checkpoint DIR/checkpoint_best.pth --configs TEST.xyz
        --out PRED.npz [--stress] [--threads 1]

``train`` is ``sevenn train INPUT.yaml -w DIR -s`` (``sevenn.main.sevenn.main``, which runs
``sevenn.scripts.train.train_v2``) with three changes:

- a wall-clock budget. SevenNet has no time limit, so the clock is kept here: it starts when
  SevenNet enters its epoch loop (``processing_epoch_v2``); reading the files, building the
  graphs, the statistics (shift, scale, average neighbours) and the model come before it
  (``setup_s``). At ``--budget-s`` a SIGALRM (or a SIGTERM/SIGINT from outside) stops the loop
  wherever it is: the training or validation under way is dropped, a checkpoint being written
  is finished first. ``DIR/checkpoint_best.pth`` then holds the weights of the validation with
  the lowest ``TotalLoss`` before the deadline; nothing after it changes them.
- validations at least every ``--valid-every`` optimiser steps: the training loader is cut
  into pieces of at most that many batches (:class:`Pieces`, never spanning two epochs) and
  SevenNet's loop takes each piece for an epoch (train, validate, log a row of ``lc.csv``,
  keep the best checkpoint). The learning-rate schedule still steps once per full epoch. Where
  an epoch has no more batches than that (every data set of ours but the largest), this is
  SevenNet's loop unchanged.
- our labels: SevenNet's ``stress_key`` wants the 6 Voigt values (ASE's order and sign);
  ``bench/mace_baseline.py`` writes ``REF_stress`` as 3x3, so frames are converted as they
  are read (a frame without stress gets NaN, which SevenNet's losses skip).

The status file (JSON) gives ``budget_s``, ``setup_s``, ``train_s`` (counted against the
budget), ``epochs_done`` (full epochs of training), ``steps``, ``steps_per_epoch``, ``validation_s``
(seconds since the loop started at the end of each validation), ``best_epoch`` (epochs of
training behind the best checkpoint) and ``stopped_by``.

``eval`` scores nothing: it predicts energy, forces (and stress with ``--stress``, ASE's sign,
eV/Å³) for every frame of ``--configs`` in file order with SevenNet's ASE calculator and
saves them to an ``.npz``; it prints one JSON line with the parameter count and timing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mace_worker import (  # bench/ is on sys.path (script folder)
    BudgetReached,
    Deadline,
    add_eval_command,
    save_predictions,
    write_json,
)

STARTED = time.time()


class Pieces:
    """A training loader in pieces of at most ``size`` batches, taken in turn; a piece ends
    where a pass over the loader ends, so every epoch is a full (shuffled) pass."""

    def __init__(self, loader: Iterable[Any], size: int) -> None:
        self.loader = loader
        self.steps_per_epoch = len(loader)  # type: ignore[arg-type]
        self.size = min(size, self.steps_per_epoch)
        self.per_epoch = math.ceil(self.steps_per_epoch / self.size)
        self.steps = 0
        self.epoch_ended = False
        self._batches: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self._batches is None:
            self._batches = iter(self.loader)
        left = self.steps_per_epoch - self.steps % self.steps_per_epoch
        for _ in range(min(self.size, left)):
            yield next(self._batches)
            self.steps += 1
        self.epoch_ended = self.steps % self.steps_per_epoch == 0
        if self.epoch_ended:
            self._batches = None


def read_voigt_stress(stress_key: str | None, atoms_list: list[Any]) -> None:
    """``stress_key`` of each frame as the 6 Voigt values SevenNet reads (NaN where absent)."""
    import numpy as np
    from ase.stress import full_3x3_to_voigt_6_stress

    if stress_key is None:
        return
    for atoms in atoms_list:
        tensor = atoms.info.get(stress_key)
        atoms.info[stress_key] = (
            np.full(6, np.nan)
            if tensor is None
            else full_3x3_to_voigt_6_stress(np.reshape(tensor, (3, 3)))
        )


def train(input_yaml: Path, workdir: Path, budget_s: float, status_path: Path, every: int) -> int:
    import sevenn.main.sevenn as cli
    import sevenn.scripts.processing_epoch as loop_module
    import sevenn.train.dataload as dataload

    status: dict[str, Any] = {
        "budget_s": budget_s,
        "setup_s": None,
        "train_s": None,
        "epochs_done": 0,
        "steps": 0,
        "steps_per_epoch": None,
        "validation_s": [],
        "best_epoch": None,
        "stopped_by": None,
    }
    deadline = Deadline()

    set_labels = dataload._set_atoms_y

    def set_atoms_y(
        atoms_list: list[Any],
        energy_key: str | None = None,
        force_key: str | None = None,
        stress_key: str | None = None,
    ) -> list[Any]:
        read_voigt_stress(stress_key, atoms_list)
        return set_labels(atoms_list, energy_key, force_key, stress_key)

    epoch_loop = loop_module.processing_epoch_v2

    def timed_loop(
        config: dict[str, Any], trainer: Any, loaders: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        start = time.time()
        status["setup_s"] = start - STARTED
        pieces = Pieces(loaders["trainset"], every)
        status["steps_per_epoch"] = pieces.steps_per_epoch
        scheduler_step, write_checkpoint = trainer.scheduler_step, trainer.write_checkpoint

        def validated(metric: float | None = None) -> None:  # SevenNet's call after a validation
            status["validation_s"].append(time.time() - start)
            if pieces.epoch_ended:
                scheduler_step(metric)

        def write(path: str, **extra: Any) -> None:
            with deadline.saving():
                write_checkpoint(path, **extra)
                if path.endswith("checkpoint_best.pth"):
                    status["best_epoch"] = round(pieces.steps / pieces.steps_per_epoch, 3)

        trainer.scheduler_step, trainer.write_checkpoint = validated, write
        total = config["epoch"] * pieces.per_epoch
        print(f"sevenn_worker: epoch loop started, budget {budget_s:g} s", flush=True)
        deadline.arm(budget_s)
        try:
            epoch_loop(
                config,
                trainer,
                {**loaders, "trainset": pieces},
                *args,
                total_epoch=total,
                per_epoch=total,  # no periodic snapshots: checkpoint_best.pth is what counts
                **kwargs,
            )
            status["stopped_by"] = "SevenNet itself (epoch)"
        except BudgetReached as reached:
            status["stopped_by"] = str(reached)
        finally:
            deadline.disarm()
            status["train_s"] = time.time() - start
            status["steps"] = pieces.steps
            status["epochs_done"] = pieces.steps // pieces.steps_per_epoch
        print(
            f"sevenn_worker: training stopped ({status['stopped_by']}) after "
            f"{status['train_s']:.0f} s, {status['epochs_done']} epochs, {status['steps']} "
            f"steps, {len(status['validation_s'])} validations; best checkpoint after "
            f"{status['best_epoch']} epochs",
            flush=True,
        )
        write_json(status_path, status)
        if status["best_epoch"] is None:
            raise SystemExit(
                "sevenn_worker: no validation finished within the budget, so there is no "
                "best checkpoint; give a longer --max-time"
            )
        return trainer

    dataload._set_atoms_y = set_atoms_y
    loop_module.processing_epoch_v2 = timed_loop
    sys.argv = ["sevenn", "train", str(input_yaml), "-w", str(workdir), "-s"]
    cli.main()
    return 0


def evaluate(checkpoint: Path, configs: Path, out: Path, stress: bool) -> int:
    import ase.io
    import numpy as np
    from ase.calculators.calculator import all_changes
    from ase.stress import voigt_6_to_full_3x3_stress
    from sevenn.calculator import SevenNetCalculator

    start = time.time()
    calc = SevenNetCalculator(model=str(checkpoint), device="cpu")
    parameters = sum(p.numel() for p in calc.model.parameters())
    dtype = next(calc.model.parameters()).dtype
    frames = ase.io.read(configs, index=":")
    properties = ["energy", "forces", *(["stress"] if stress else [])]
    energies, forces, stresses = [], [], []
    for atoms in frames:
        calc.calculate(atoms, properties, all_changes)
        energies.append(float(calc.results["energy"]))
        forces.append(np.asarray(calc.results["forces"], dtype=np.float64))
        if stress:  # SevenNet's calculator gives ASE's Voigt stress (sign and order), eV/Å³
            stresses.append(voigt_6_to_full_3x3_stress(calc.results["stress"]))
    return save_predictions(out, frames, energies, forces, stresses, parameters, dtype, start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_train = sub.add_parser("train")
    p_train.add_argument("input", type=Path, help="SevenNet's input.yaml")
    p_train.add_argument("--workdir", type=Path, required=True)
    p_train.add_argument("--budget-s", type=float, required=True)
    p_train.add_argument("--status", type=Path, required=True)
    p_train.add_argument("--valid-every", type=int, default=sys.maxsize, help="steps at most")
    p_train.add_argument("--threads", type=int, default=1)
    add_eval_command(sub, "--checkpoint", batched=False)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "train":
        return train(args.input, args.workdir, args.budget_s, args.status, args.valid_every)
    return evaluate(args.checkpoint, args.configs, args.out, args.stress)


if __name__ == "__main__":
    sys.exit(main())
