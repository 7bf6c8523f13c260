"""Worker for ``bench/mace_baseline.py``, run with the MACE venv's python (never the project's).

It imports only mace-torch, torch, numpy, ase and the standard library. Two modes::

    python mace_worker.py train --budget-s 720 --status OUT/mace_budget.json -- MACE_ARGS...
    python mace_worker.py eval --model OUT/mace.model --configs TEST.xyz --out PRED.npz

``train`` is ``mace_run_train MACE_ARGS...`` (it calls ``mace.cli.run_train.main``, the
function behind that console script) with a wall-clock budget added. MACE has no time limit,
so the clock is kept here:

- it starts when MACE enters its training loop (``mace.tools.train``, which begins with a
  validation pass on the untrained model). Reading the files, neighbour lists, statistics
  (average neighbours, E0s, force scaling) and building the model come before it and are
  reported as ``setup_s``; mlcalc's trainer likewise counts only its epochs against
  ``max_time``.
- at ``--budget-s`` a SIGALRM (or a SIGTERM/SIGINT from outside) stops training wherever it
  is: the epoch or validation under way is dropped. A checkpoint being written is finished
  first (MACE deletes its previous checkpoint before writing the next, so killing it there
  would leave none).
- MACE's own code then finalises as after a normal run: it loads its latest checkpoint, which
  is the EMA model of the epoch with the lowest validation loss among those validated before
  the deadline, and saves ``NAME.model`` in ``--work_dir``. The train/validation error tables
  it would then compute are skipped (the test file is scored by ``eval``). Nothing after the
  deadline changes the weights.

The status file (JSON) gives ``budget_s``, ``setup_s``, ``train_s`` (counted against the
budget), ``finalise_s``, ``epochs_done`` (training epochs completed), ``best_epoch`` (of the
checkpoint) and ``stopped_by``.

``eval`` scores nothing: it predicts energy, forces (and stress with ``--stress``) for every
frame of ``--configs`` in file order, batched as ``mace_eval_configs`` does, and saves them to
an ``.npz``; it prints one JSON line with the parameter count and timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

STARTED = time.time()


class BudgetReached(BaseException):
    """Raised in the training loop at the deadline. A BaseException, so that MACE's
    ``except Exception`` blocks (plotting, logging) cannot swallow it."""


class Deadline:
    r"""A wall-clock budget on a training loop, shared by the peer workers: once :meth:`arm`\ed,
    a SIGALRM at the budget (or a SIGTERM/SIGINT from outside) raises :class:`BudgetReached`
    wherever the loop is, except inside :meth:`saving` (a checkpoint being written), after
    which it is raised."""

    SIGNALS = (signal.SIGALRM, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.writing = 0  # > 0 while a checkpoint is being written
        self.pending: list[str] = []  # why training must stop, once it safely can
        self.handlers: dict[int, Any] = {}

    def stop(self, signum: int, _frame: Any = None) -> None:
        """Signal handler: stop now, or after the checkpoint being written."""
        reason = "budget" if signum == signal.SIGALRM else f"signal {signal.Signals(signum).name}"
        if not self.pending:
            self.pending.append(reason)
        if not self.writing:
            raise BudgetReached(reason)

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Hold the stop while a checkpoint is written; raise it once the write is done."""
        self.writing += 1
        try:
            yield
        finally:
            self.writing -= 1
        if self.pending and not self.writing:
            raise BudgetReached(self.pending[0])

    def arm(self, budget_s: float) -> None:
        """Install the handlers and start the alarm (seconds)."""
        for signum in self.SIGNALS:
            self.handlers[signum] = signal.signal(signum, self.stop)
        signal.setitimer(signal.ITIMER_REAL, budget_s)

    def disarm(self) -> None:
        """Stop the alarm and put the previous handlers back."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)
        self.handlers = {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def train(budget_s: float, status_path: Path, mace_args: list[str]) -> int:
    import mace.cli.run_train as run_train
    import mace.tools as tools
    from mace.tools.checkpoint import CheckpointHandler

    train_module = sys.modules["mace.tools.train"]  # `mace.tools.train` is the function
    status: dict[str, Any] = {
        "budget_s": budget_s,
        "setup_s": None,
        "train_s": None,
        "finalise_s": None,
        "epochs_done": 0,
        "best_epoch": None,
        "stopped_by": None,
    }
    deadline = Deadline()
    original_save = CheckpointHandler.save

    def save(self: Any, *args: Any, **kwargs: Any) -> None:
        with deadline.saving():
            original_save(self, *args, **kwargs)
            status["best_epoch"] = kwargs.get("epochs", args[1] if len(args) > 1 else None)

    original_epoch = train_module.train_one_epoch

    def train_one_epoch(*args: Any, **kwargs: Any) -> Any:
        result = original_epoch(*args, **kwargs)
        status["epochs_done"] += 1
        return result

    original_train = tools.train

    def timed_train(*args: Any, **kwargs: Any) -> None:
        start = time.time()
        status["setup_s"] = start - STARTED
        print(f"mace_worker: training loop started, budget {budget_s:g} s", flush=True)
        deadline.arm(budget_s)
        try:
            original_train(*args, **kwargs)
            status["stopped_by"] = "MACE itself (max_num_epochs or patience)"
        except BudgetReached as reached:
            status["stopped_by"] = str(reached)
        finally:
            deadline.disarm()
            status["train_s"] = time.time() - start
        print(
            f"mace_worker: training stopped ({status['stopped_by']}) after "
            f"{status['train_s']:.0f} s, {status['epochs_done']} epochs; "
            f"best checkpoint: epoch {status['best_epoch']}",
            flush=True,
        )
        write_json(status_path, status)
        if status["best_epoch"] is None:
            raise SystemExit(
                "mace_worker: no epoch was validated within the budget, so there is no "
                "checkpoint to finalise; give a longer --max-time"
            )

    def no_error_table(**_kwargs: Any) -> str:
        return "(skipped by bench/mace_worker.py: the test file is scored separately)"

    CheckpointHandler.save = save
    train_module.train_one_epoch = train_one_epoch
    tools.train = timed_train
    run_train.create_error_table = no_error_table
    sys.argv = ["mace_run_train", *mace_args]
    run_train.main()
    status["finalise_s"] = time.time() - STARTED - status["setup_s"] - status["train_s"]
    write_json(status_path, status)
    return 0


def add_eval_command(sub: Any, model_flag: str, batched: bool = True) -> None:
    """The ``eval`` mode's arguments, shared by the peer workers: the trained model
    (``model_flag``), the frames, the output file, stress, threads (and a batch size)."""
    p_eval = sub.add_parser("eval")
    p_eval.add_argument(model_flag, type=Path, required=True)
    p_eval.add_argument("--configs", type=Path, required=True)
    p_eval.add_argument("--out", type=Path, required=True)
    if batched:
        p_eval.add_argument("--batch-size", type=int, default=16)
    p_eval.add_argument("--stress", action="store_true")
    p_eval.add_argument("--threads", type=int, default=1)


def save_predictions(
    out: Path,
    frames: Sequence[Any],
    energies: Sequence[Any],
    forces: Sequence[Any],
    stresses: Sequence[Any],
    parameters: int,
    dtype: Any,
    start: float,
) -> int:
    """Save the predictions for ``frames`` to ``out`` (``.npz``: ``energy [B]`` eV,
    ``forces [N, 3]`` eV/Å, ``num_atoms [B]``, and ``stress [B, 3, 3]`` eV/Å³ with ASE's sign
    where ``stresses`` is not empty), each list in per-batch or per-frame pieces, and print
    one JSON line: parameters, dtype, structures, ``eval_s`` since ``start``."""
    import numpy as np

    arrays = {
        "energy": np.concatenate([np.ravel(e) for e in energies]).astype(np.float64),
        "forces": np.concatenate([np.reshape(f, (-1, 3)) for f in forces]).astype(np.float64),
        "num_atoms": np.array([len(atoms) for atoms in frames]),
    }
    if stresses:
        arrays["stress"] = np.concatenate([np.reshape(s, (-1, 3, 3)) for s in stresses])
    np.savez(out, **arrays)
    info = {
        "parameters": int(parameters),
        "dtype": str(dtype).removeprefix("torch."),
        "structures": len(frames),
        "eval_s": time.time() - start,
    }
    print(json.dumps(info), flush=True)
    return 0


def evaluate(model_path: Path, configs: Path, out: Path, batch_size: int, stress: bool) -> int:
    import ase.io
    import torch
    from mace import data
    from mace.tools import torch_geometric, utils

    start = time.time()
    model = torch.load(model_path, map_location="cpu", weights_only=False)
    dtype = next(model.parameters()).dtype
    torch.set_default_dtype(dtype)
    parameters = sum(p.numel() for p in model.parameters())
    for param in model.parameters():
        param.requires_grad = False
    frames = ase.io.read(configs, index=":")
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    heads = getattr(model, "heads", None)
    dataset = [
        data.AtomicData.from_config(
            data.config_from_atoms(atoms), z_table=z_table, cutoff=float(model.r_max), heads=heads
        )
        for atoms in frames
    ]
    loader = torch_geometric.dataloader.DataLoader(
        dataset=dataset, batch_size=batch_size, shuffle=False, drop_last=False
    )
    energies, forces, stresses = [], [], []
    for batch in loader:
        output = model(batch.to_dict(), compute_stress=stress, training=False)
        energies.append(output["energy"].detach().double().numpy())
        forces.append(output["forces"].detach().double().numpy())
        if stress:
            stresses.append(output["stress"].detach().double().numpy())
    return save_predictions(out, frames, energies, forces, stresses, parameters, dtype, start)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mace_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, mace_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_train = sub.add_parser("train")
    p_train.add_argument("--budget-s", type=float, required=True)
    p_train.add_argument("--status", type=Path, required=True)
    p_train.add_argument("--threads", type=int, default=1)
    add_eval_command(sub, "--model")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "train":
        return train(args.budget_s, args.status, mace_args)
    return evaluate(args.model, args.configs, args.out, args.batch_size, args.stress)


if __name__ == "__main__":
    sys.exit(main())
