"""NequIP baselines trained on our data files with our wall-clock budget.

Usage (from the repository root, with the project's venv python)::

    python bench/nequip_baseline.py ethanol --max-time 10m [--size l2] [--threads 1] [--out DIR]
    python bench/nequip_baseline.py si --max-time 15m -- training_module.optimizer.lr=0.005

The counterpart of ``bench/mace_baseline.py``, whose functions read our config (``--config``,
default ``examples/configs/DATASET-nemp.yaml``), write our split to ``OUT/data`` and score the
test predictions. Arguments after ``--`` are hydra overrides for ``nequip-train``.

The model is NequIP 0.19's ``NequIPGNNModel`` as ``bench/_peer_worker.py`` times it:
:data:`SIZES` takes its ``PEER_CONFIGS["nequip"]`` (32 features, l_max 1, 4 layers; ``l2``:
l_max 2), r_max 5 Å, 8 Bessel functions and the builder's defaults (parity, one radial layer of
128, polynomial cutoff p = 6, no ZBL). The energy shift per element is our E0 (the isolated
atoms, or the least-squares fit of ``mlcalc train``), fixed; ``avg_num_neighbors`` and the
per-type energy scales are NequIP's training-set statistics (``num_neighbors_mean``,
``per_type_forces_rms``), as its tutorial config recommends. From NequIP's
``configs/tutorial.yaml``: per-atom energy MSE + force MSE 1:1 (+ stress MSE 1:1:1 where the
training data has stress), Adam lr 0.01, ReduceLROnPlateau (factor 0.6, patience 5, threshold
0.2, min_lr 1e-6) on the validation ``weighted_sum`` of the energy, force (and stress) MAEs,
which also picks the best checkpoint, ``EMALightningModule`` (with our EMA decay); not its early
stopping. The model runs in our dtype (float32); NequIP keeps data and metrics in float64.

The worker (``bench/nequip_worker.py``, see there) trains with ``nequip-train`` on
``OUT/nequip.yaml`` (output in ``OUT/nequip``), counting the training loop, validation
included, against ``--max-time``, and predicts the test file with the best checkpoint's EMA
weights. OUT (default ``runs/nequip-DATASET``, ``runs/nequip-l2-DATASET``) gets
``test_metrics.json``, ``curve.json`` (``[[s since the training loop started, validation
force RMSE meV/Å], ...]``, one per validation, none for the untrained model),
``nequip_budget.json`` (the worker's status), ``nequip_baseline.log`` and the marker
``nequip_baseline.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _peer_worker import CUTOFF, PEER_CONFIGS  # noqa: E402  (standard library only at import)
from mace_baseline import (  # noqa: E402  (bench/ is not a package)
    atomic_energies,
    evaluate_test,
    format_metrics,
    prepare,
    run_logged,
    start_run,
)
from mace_baseline import parse_args as baseline_arguments  # noqa: E402
from mace_worker import write_json  # noqa: E402  (standard library only)
from nequip_worker import FORCES_RMSE  # noqa: E402  (standard library only at import)

WORKER = HERE / "nequip_worker.py"
#: ``NequIPGNNModel`` size per ``--size``. They must be the speed worker's: the default is
#: ``bench/_peer_worker.py``'s ``PEER_CONFIGS["nequip"]`` itself (32 features, l_max 1, 4 layers).
SIZES: dict[str, dict[str, Any]] = {
    "default": dict(PEER_CONFIGS["nequip"][1]),
    "l2": {**PEER_CONFIGS["nequip"][1], "l_max": 2},
}
#: What the speed worker passes besides the size (the rest: the builder's defaults there too).
MODEL_FIXED = {"r_max": CUTOFF, "num_bessels": 8}
#: Written into OUT first; ``--overwrite`` only clears a folder that holds it.
MARKER = "nequip_baseline.json"
MONITOR = "val0_epoch/weighted_sum"
#: NequIP's configs/tutorial.yaml (0.19): optimiser and learning-rate schedule.
OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 0.01}
SCHEDULER = {
    "scheduler": {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "factor": 0.6,
        "patience": 5,
        "threshold": 0.2,
        "min_lr": 1e-6,
    },
    "monitor": MONITOR,
    "interval": "epoch",
    "frequency": 1,
}
#: Validation batches hold at least this many structures (MACE's default valid_batch_size).
VALID_BATCH = 10
#: Our label keys in OUT/data -> NequIP's fields.
KEY_MAPPING = {"REF_energy": "total_energy", "REF_forces": "forces", "REF_stress": "stress"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The baseline's arguments (``mace_baseline.parse_args``; after ``--``: hydra overrides)."""
    return baseline_arguments(argv, "nequip", sizes=list(SIZES))


def describe(size: str) -> str:
    """The model in words, e.g. ``NequIP 32 features, l_max 1, 4 layers, r_max 5 Å``."""
    model = {**SIZES[size], **MODEL_FIXED}
    return (
        f"NequIP {model['num_features']} features, l_max {model['l_max']}, "
        f"{model['num_layers']} layers, r_max {model['r_max']:g} Å (size {size})"
    )


def nequip_config(
    spec: dict[str, Any],
    data: Path,
    run_dir: Path,
    status: Path,
    e0s: dict[str, float],
    stress: bool,
    size: str,
    budget_s: float,
) -> dict[str, Any]:
    """The ``nequip-train`` config of one run (``spec``: :func:`load_spec`'s, with the batch
    size set; ``e0s``: symbol -> eV for every element, in atomic-number order). No object
    appears twice in it, so that its YAML has no anchors."""
    types = list(e0s)
    kind = "nequip.train.EnergyForceStress" if stress else "nequip.train.EnergyForce"
    loss_coeffs = {"total_energy": 1.0, "forces": 1.0, **({"stress": 1.0} if stress else {})}

    def metrics() -> dict[str, Any]:
        """The tutorial's validation (and training) metrics: the MAEs in ``weighted_sum``."""
        coeffs = {"total_energy_mae": 1.0, "forces_mae": 1.0}
        if stress:
            coeffs["stress_mae"] = 1.0
        return {"_target_": f"{kind}Metrics", "coeffs": coeffs}

    loader = {"_target_": "torch.utils.data.DataLoader", "num_workers": 0}
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": spec["seed"],
            "train_file_path": str(data / "train.extxyz"),
            "val_file_path": str(data / "valid.extxyz"),
            "key_mapping": dict(KEY_MAPPING),
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": list(types),
                },
                {
                    "_target_": "nequip.data.transforms.NeighborListTransform",
                    "r_max": MODEL_FIXED["r_max"],
                },
            ],
            "train_dataloader": {**loader, "batch_size": spec["batch_size"], "shuffle": True},
            "val_dataloader": {**loader, "batch_size": max(spec["batch_size"], VALID_BATCH)},
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "dataloader_kwargs": {"batch_size": VALID_BATCH},
                "type_names": list(types),
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": spec["epochs"],
            "enable_progress_bar": False,
            "log_every_n_steps": 20,
            "logger": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": str(run_dir),
                "name": "",
                "version": "",
            },
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "monitor": MONITOR,
                    "dirpath": str(run_dir),
                    "filename": "best",
                    "save_last": False,
                    # at every validation: Lightning's default, the epoch's end, would pair
                    # the last validation's score with later weights when validating mid-epoch
                    "save_on_train_epoch_end": False,
                },
                {
                    "_target_": "nequip_worker.training_clock",
                    "budget_s": budget_s,
                    "status": str(status),
                },
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": spec["ema_decay"],
            "loss": {
                "_target_": f"{kind}Loss",
                "per_atom_energy": True,
                "coeffs": loss_coeffs,
            },
            "val_metrics": metrics(),
            "train_metrics": metrics(),
            "optimizer": dict(OPTIMIZER),
            "lr_scheduler": {**SCHEDULER, "scheduler": dict(SCHEDULER["scheduler"])},
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": spec["seed"],
                "model_dtype": spec["dtype"],
                "type_names": list(types),
                **MODEL_FIXED,
                **SIZES[size],
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
                "per_type_energy_shifts": dict(e0s),
                "per_type_energy_scales_trainable": False,
                "per_type_energy_shifts_trainable": False,
            },
        },
    }


def curve(status: dict[str, Any]) -> list[list[float]]:
    """``[[seconds since the training loop started, validation forces RMSE meV/Å], ...]``
    from the worker's status (NequIP's metric is in eV/Å)."""
    return [
        [point["time_s"], 1000.0 * point["metrics"][FORCES_RMSE]]
        for point in status["validations"]
        if math.isfinite(point["metrics"].get(FORCES_RMSE, math.nan))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    import peers  # bench/peers.py: the NequIP venv
    import yaml

    def log(message: str) -> None:
        print(f"nequip_baseline: {message}", file=sys.stderr, flush=True)

    run = start_run(args, "nequip", MARKER, log)
    spec, out, budget_s, threads = run.spec, run.out, run.budget_s, run.threads
    peer, record = run.peer, run.record

    data = prepare(spec, out / "data")
    spec["batch_size"] = data["batch_size"]
    e0s = atomic_energies(spec["e0s"], out / "data")
    status_path, run_dir = out / "nequip_budget.json", out / "nequip"
    config = nequip_config(
        spec, out / "data", run_dir, status_path, e0s, data["stress"], args.size, budget_s
    )
    (out / "nequip.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    record.update(
        batch_size=data["batch_size"], n_train=data["train"], n_valid=data["valid"], e0s=e0s
    )
    write_json(out / MARKER, record)
    log(f"{data['train']} training / {data['valid']} validation structures; budget {budget_s:g} s")

    env = peers.child_env(threads)
    python, logfile = peer["python"], out / "nequip_baseline.log"
    train = [python, str(WORKER), "train", f"--config={out / 'nequip.yaml'}"]
    train += [f"--run-dir={run_dir}", f"--threads={threads}", "--", *args.extra]
    code = run_logged(train, env, logfile, budget_s + max(3600.0, budget_s))
    checkpoint = run_dir / "best.ckpt"
    if code != 0 or not status_path.is_file():
        raise SystemExit(f"nequip-train failed (exit {code}); see {logfile}")
    status = json.loads(status_path.read_text())
    write_json(out / "curve.json", curve(status))
    if not checkpoint.is_file():
        raise SystemExit(
            f"no validation finished within the {budget_s:g} s budget, so there is no "
            f"checkpoint; give a longer --max-time (see {logfile})"
        )

    predictions = out / "test_predictions.npz"
    evaluate = [python, str(WORKER), "eval", f"--checkpoint={checkpoint}"]
    evaluate += [f"--configs={spec['test_file']}", f"--out={predictions}", f"--threads={threads}"]
    evaluate.append(f"--batch-size={args.eval_batch_size}")
    if data["test_stress"]:
        evaluate.append("--stress")
    metrics, info = evaluate_test(evaluate, data, env, logfile, predictions)
    best = status["best"] or {}
    metrics.update(
        {
            "dataset": args.dataset,
            "model": describe(args.size),
            "size": args.size,
            "test_file": str(spec["test_file"]),
            "epochs": status["epochs_done"],
            "steps": status["steps"],
            "best_epoch": best.get("epoch"),
            "best_step": best.get("step"),
            "validations": len(status["validations"]),
            "val_every_batches": status["val_every_batches"],
            "stopped_by": status["stopped_by"],
            "budget_s": budget_s,
            "train_s": status["train_s"],
            "setup_s": status["setup_s"],
            "eval_s": info["eval_s"],
            "wall_s": time.perf_counter() - started,
            "parameters": info["parameters"],
            "dtype": info["dtype"],
            "threads": threads,
            "nequip": peer["versions"].get("nequip"),
        }
    )
    write_json(out / "test_metrics.json", metrics)
    print(format_metrics(metrics))
    print(
        f"{metrics['model']}: {metrics['parameters']:,} parameters; {metrics['epochs']} epochs "
        f"({metrics['steps']} steps) in {metrics['train_s']:.0f} s of a {budget_s:g} s budget "
        f"(stopped by {metrics['stopped_by']}; best: epoch {metrics['best_epoch']}, step "
        f"{metrics['best_step']}); setup {metrics['setup_s']:.0f} s, test "
        f"{metrics['eval_s']:.0f} s, wall {metrics['wall_s']:.0f} s"
    )
    print(f"wrote {out / 'test_metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
