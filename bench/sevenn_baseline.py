"""SevenNet baselines trained on our data files with our wall-clock budget.

Usage (from the repository root, with the project's venv python)::

    python bench/sevenn_baseline.py ethanol --max-time 10m [--size default|l2] [--threads 1]
        [--out runs/sevenn-ethanol] [--config CONFIG.yaml] [--skip-setup] [--overwrite]

DATASET and ``--config`` as for ``bench/mace_baseline.py``, whose functions this reuses: the
same spec from our config (training, validation and test files, the validation split, E0s,
``batch_size``, ``epochs``, ``seed``, ``threads``, ``max_time``), the same
``OUT/data/{train,valid}.extxyz`` and the same test metrics. SevenNet runs in float32 only
and has no EMA, so ``dtype`` and ``ema_decay`` are not copied.

The model (:data:`MODEL_SIZES`, ``--size``): ``default`` is the architecture whose speed
``bench/_peer_worker.py`` measures (``PEER_CONFIGS["sevenn"]``: SevenNet's ``model_defaults``
with 32 channels, lmax 1, 3 convolutions, cutoff 5 Å, parity on, no bias in linears) and must
stay identical to it; ``l2`` is the same with lmax 2 (``PEER_CONFIGS["sevenn-l2"]`` where the
speed benchmark times that size). Training is SevenNet's own
(``sevenn train input.yaml``, ``train_v2``) with :data:`TRAINING`, the settings of SevenNet's
example input (``sevenn/presets/base.yaml``, ``sevenn preset base``): MSE loss on the energy
per atom (weight 1) and the forces (0.1), plus the stress in kbar (1e-6) where the training
data has stress labels; Adam, lr 0.005, ``exponentiallr`` with gamma 0.99 per epoch; the
checkpoint with the lowest validation ``TotalLoss`` is kept. The energy shift is our E0s per
element (the isolated-atoms file, or mlcalc's least-squares fit on the training frames where
the config says ``fit``), the scale SevenNet's default ``force_rms`` and the convolution
denominator its default ``avg_num_neigh``, both from the training frames.

Steps: set up the SevenNet venv (``bench/peers.py``); write the data and
``OUT/sevenn/input.yaml``; train with ``bench/sevenn_worker.py train`` (it keeps the budget:
only SevenNet's epoch loop counts, validations included; it validates at least every
``mlcalc.training.budget.MAX_VALID_INTERVAL`` steps, as ``mlcalc train`` does); predict the test
file with ``bench/sevenn_worker.py eval`` and score it here as ``mlcalc eval --json`` does.

Writes to ``OUT`` (default ``runs/sevenn-DATASET``; an earlier run there only with
``--overwrite``): ``test_metrics.json`` (the metrics, epochs, timings, parameter count),
``curve.json`` (``[[seconds since the epoch loop started, validation force RMSE meV/Å], ...]``,
one per validation, the RMSE per force component as MACE's and ours; the first point comes
after the first epoch or ``MAX_VALID_INTERVAL`` steps of training, none is the untrained model),
:data:`MARKER` (the run's settings) and ``sevenn_baseline.log``; SevenNet's own files
(``log.sevenn``, ``lc.csv``, checkpoints) are in ``OUT/sevenn``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mace_baseline import (  # noqa: E402  (bench/ is not a package)
    MILLI,
    atomic_energies,
    evaluate_test,
    format_metrics,
    prepare,
    run_logged,
    start_run,
)
from mace_baseline import parse_args as baseline_arguments  # noqa: E402
from mace_worker import write_json  # noqa: E402  (standard library only)

ROOT = HERE.parent
WORKER = HERE / "sevenn_worker.py"
#: Model keys of SevenNet's input.yaml per ``--size``. They must match what
#: bench/_peer_worker.py times: PEER_CONFIGS["sevenn"] (``default``) and ["sevenn-l2"] (``l2``),
#: channels, lmax and num_convolution, with the settings its builder adds to SevenNet's
#: ``model_defaults`` (:data:`MODEL_COMMON`).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "default": {"channel": 32, "lmax": 1, "num_convolution_layer": 3},
    "l2": {"channel": 32, "lmax": 2, "num_convolution_layer": 3},
}
#: Model keys shared by the sizes: as bench/_peer_worker.py (cutoff 5 Å, parity, no bias),
#: the species from the data, the convolution denominator from the training frames.
MODEL_COMMON: dict[str, Any] = {
    "chemical_species": "auto",
    "cutoff": 5.0,
    "is_parity": True,
    "use_bias_in_linear": False,
    "conv_denominator": "avg_num_neigh",
}
#: SevenNet's example training settings (sevenn/presets/base.yaml; MSE is its default loss).
TRAINING: dict[str, Any] = {
    "loss": "mse",
    "optimizer": "adam",
    "optim_param": {"lr": 0.005},
    "scheduler": "exponentiallr",
    "scheduler_param": {"gamma": 0.99},
    "force_loss_weight": 0.1,
}
#: Weight of the stress loss (stress in kbar), where the training data has stress labels.
STRESS_LOSS_WEIGHT = 1e-6
#: SevenNet's per-element tables are indexed by atomic number 0 ... 118.
NUM_ELEMENTS = 119
#: The lc.csv column of the curve: force RMSE per component (eV/Å), as MACE's and ours.
CURVE_COLUMN = "validset_Force_ComponentRMSE"
MARKER = "sevenn_baseline.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The baseline's arguments (``mace_baseline.parse_args``; SevenNet's ASE calculator scores
    the test frames one at a time, and its trainer takes no extra arguments)."""
    sizes = list(MODEL_SIZES)
    return baseline_arguments(argv, "sevenn", sizes, batched_eval=False, trainer_args=False)


def input_config(
    spec: dict[str, Any], size: str, data: Path, e0s: dict[str, float], stress: bool
) -> dict[str, Any]:
    """SevenNet's input.yaml for one run: :data:`MODEL_SIZES` ``size``, :data:`TRAINING`,
    the spec's ``batch_size``, ``epochs`` and ``seed``, the E0s (eV) as the element-wise
    energy shift, our labelled files (``REF_*`` keys) from ``data``."""
    from ase.data import atomic_numbers

    shift = [0.0] * NUM_ELEMENTS
    for symbol, energy in e0s.items():
        shift[atomic_numbers[symbol]] = float(energy)
    errors = [["Energy", "RMSE"], ["Force", "RMSE"], ["Force", "ComponentRMSE"]]
    train: dict[str, Any] = {
        "random_seed": int(spec["seed"]),
        "epoch": int(spec["epochs"]),
        **TRAINING,
        "is_train_stress": stress,
        "device": "cpu",
    }
    labels = {"energy_key": "REF_energy", "force_key": "REF_forces"}
    if stress:
        train["stress_loss_weight"] = STRESS_LOSS_WEIGHT
        errors.append(["Stress", "RMSE"])
        labels["stress_key"] = "REF_stress"
    train["error_record"] = [*errors, ["TotalLoss", "None"]]
    train["best_metric"] = "TotalLoss"
    return {
        "model": {**MODEL_COMMON, **MODEL_SIZES[size]},
        "train": train,
        "data": {
            "dtype": "single",
            "batch_size": int(spec["batch_size"]),
            "shift": shift,
            "scale": "force_rms",
            "data_format_args": {"index": ":", **labels},
            "load_trainset_path": [str(data / "train.extxyz")],
            "load_validset_path": [str(data / "valid.extxyz")],
        },
    }


def describe(size: str) -> str:
    model = {**MODEL_COMMON, **MODEL_SIZES[size]}
    return (
        f"SevenNet {model['channel']} channels, lmax {model['lmax']}, "
        f"{model['num_convolution_layer']} convolutions, cutoff {model['cutoff']:g} Å "
        f"(size {size})"
    )


def sevenn_curve(lc_csv: str, validation_s: Sequence[float]) -> list[list[float]]:
    """``[[s, validation force RMSE meV/Å], ...]``: the rows of SevenNet's ``lc.csv`` (one per
    validation) with the worker's times of them (seconds since the epoch loop started)."""
    rows = list(csv.DictReader(io.StringIO(lc_csv)))
    return [
        [float(seconds), round(MILLI * float(row[CURVE_COLUMN]), 3)]
        for seconds, row in zip(validation_s, rows, strict=False)  # the last may lack a row
    ]


def main(argv: Sequence[str] | None = None) -> int:
    import peers  # bench/peers.py: the SevenNet venv

    from mlcalc.training.budget import MAX_VALID_INTERVAL

    args = parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"sevenn_baseline: {message}", file=sys.stderr, flush=True)

    run = start_run(args, "sevenn", MARKER, log)
    spec, out, budget_s, threads = run.spec, run.out, run.budget_s, run.threads
    peer, record = run.peer, run.record

    data = prepare(spec, out / "data")
    spec["batch_size"] = data["batch_size"]
    e0s = atomic_energies(spec["e0s"], out / "data")
    work = out / "sevenn"
    work.mkdir()
    config = input_config(spec, args.size, out / "data", e0s, data["stress"])
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    (work / "input.yaml").write_text(text)
    record.update(
        batch_size=data["batch_size"], n_train=data["train"], n_valid=data["valid"], e0s_eV=e0s
    )
    write_json(out / MARKER, record)
    log(f"{data['train']} training / {data['valid']} validation structures; budget {budget_s:g} s")

    env = peers.child_env(threads)
    env["TQDM_DISABLE"] = "1"  # no progress bars in the log
    python = peer["python"]
    status_path = out / "sevenn_budget.json"
    train = [python, str(WORKER), "train", str(work / "input.yaml"), f"--workdir={work}"]
    train += [f"--budget-s={budget_s}", f"--status={status_path}", f"--threads={threads}"]
    train.append(f"--valid-every={MAX_VALID_INTERVAL}")
    code = run_logged(train, env, out / "sevenn_baseline.log", budget_s + max(3600.0, budget_s))
    checkpoint = work / "checkpoint_best.pth"
    if code != 0 or not checkpoint.is_file():
        raise SystemExit(
            f"SevenNet training failed (exit {code}); see {out / 'sevenn_baseline.log'}"
        )
    status = json.loads(status_path.read_text())
    curve = sevenn_curve((work / "lc.csv").read_text(), status["validation_s"])
    write_json(out / "curve.json", curve)

    predictions = out / "test_predictions.npz"
    evaluate = [python, str(WORKER), "eval", f"--checkpoint={checkpoint}"]
    evaluate += [f"--configs={spec['test_file']}", f"--out={predictions}", f"--threads={threads}"]
    if data["test_stress"]:
        evaluate.append("--stress")
    metrics, info = evaluate_test(evaluate, data, env, out / "sevenn_baseline.log", predictions)
    metrics.update(
        {
            "dataset": args.dataset,
            "model": describe(args.size),
            "size": args.size,
            "test_file": str(spec["test_file"]),
            "epochs": status["epochs_done"],
            "steps": status["steps"],
            "steps_per_epoch": status["steps_per_epoch"],
            "validations": len(curve),
            "best_epoch": status["best_epoch"],
            "stopped_by": status["stopped_by"],
            "budget_s": budget_s,
            "train_s": status["train_s"],
            "setup_s": status["setup_s"],
            "eval_s": info["eval_s"],
            "wall_s": time.perf_counter() - started,
            "parameters": info["parameters"],
            "dtype": info["dtype"],
            "threads": threads,
            "sevenn": peer["versions"].get("sevenn"),
        }
    )
    write_json(out / "test_metrics.json", metrics)
    print(format_metrics(metrics))
    print(
        f"SevenNet ({args.size}) {metrics['parameters']:,} parameters; {metrics['epochs']} "
        f"epochs ({metrics['steps']} steps, {metrics['validations']} validations) in "
        f"{metrics['train_s']:.0f} s of a {budget_s:g} s budget (stopped by "
        f"{metrics['stopped_by']}; best at epoch {metrics['best_epoch']}); setup "
        f"{metrics['setup_s']:.0f} s, test {metrics['eval_s']:.0f} s, wall "
        f"{metrics['wall_s']:.0f} s"
    )
    print(f"wrote {out / 'test_metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
