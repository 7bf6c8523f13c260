"""bench/nequip_baseline.py and bench/nequip_worker.py logic that needs no NequIP venv:
arguments, the nequip-train config, E0s, the learning curve, the output-folder guard and the
worker's budget clock on a fake trainer. One end-to-end run needs the venv and skips without
it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from ase.build import molecule
from helpers import load_bench

nb = load_bench("nequip_baseline")
worker = load_bench("nequip_worker")  # standard library only at import
peer_worker = load_bench("_peer_worker")
mb = load_bench("mace_baseline")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ethanol"
VENV = Path("~/.cache/mlcalc/bench-peers/venv-nequip").expanduser()
#: The first two validations of a real run's ``nequip_budget.json`` (mlearn Si, 60 s budget).
STATUS_SAMPLE = """{"budget_s": 60.0, "setup_s": 10.2, "train_s": 60.09, "epochs_done": 0,
 "steps": 135, "val_every_batches": 19, "stopped_by": "budget", "best": null, "validations": [
 {"time_s": 8.594718933105469, "epoch": 0, "step": 19, "metrics": {
  "val0_epoch/total_energy_rmse": 9.498542265536193, "val0_epoch/total_energy_mae": 8.29006,
  "val0_epoch/per_atom_energy_mae": 0.13070562015185502,
  "val0_epoch/forces_rmse": 0.5649506542049566, "val0_epoch/forces_mae": 0.31903870681277025,
  "val0_epoch/stress_rmse": 0.03101231229748087, "val0_epoch/weighted_sum": 2.875950496111592}},
 {"time_s": 16.7, "epoch": 0, "step": 38, "metrics": {"val0_epoch/forces_rmse": 0.58584,
  "val0_epoch/weighted_sum": 2.9}}]}"""


def spec(**changes: Any) -> dict[str, Any]:
    base = {"seed": 3, "batch_size": 5, "epochs": 1000, "dtype": "float32", "ema_decay": 0.99}
    return {**base, **changes}


def test_arguments() -> None:
    args = nb.parse_args(["ethanol"])
    assert args.size == "default" and args.out == Path("runs/nequip-ethanol")
    assert args.budget_s is None and args.extra == []
    assert args.config == nb.ROOT / "examples/configs/ethanol-nemp.yaml"
    args = nb.parse_args(
        ["si", "--max-time", "2m", "--size", "l2", "--skip-setup", "--", "trainer.max_epochs=3"]
    )
    assert args.budget_s == 120.0 and args.out == Path("runs/nequip-l2-si") and args.skip_setup
    assert args.extra == ["trainer.max_epochs=3"]
    for bad in (
        ["nope"],
        ["si", "--size", "l3"],
        ["si", "--threads", "0"],
        ["si", "--max-time", "x"],
    ):
        with pytest.raises(SystemExit):
            nb.parse_args(bad)


def test_sizes_are_the_speed_workers() -> None:
    timed = peer_worker.PEER_CONFIGS["nequip"][1]
    assert nb.SIZES["default"] == timed == {"num_features": 32, "l_max": 1, "num_layers": 4}
    assert nb.SIZES["l2"] == {**timed, "l_max": 2}
    assert nb.MODEL_FIXED == {"r_max": peer_worker.CUTOFF, "num_bessels": 8}
    assert nb.describe("l2") == "NequIP 32 features, l_max 2, 4 layers, r_max 5 Å (size l2)"


def test_config_without_stress(tmp_path: Path) -> None:
    e0s = {"H": -13.6, "C": -1029.0, "O": -2041.0}
    config = nb.nequip_config(
        spec(), tmp_path / "data", tmp_path / "run", tmp_path / "s.json", e0s, False, "default", 90
    )
    data, trainer, module = config["data"], config["trainer"], config["training_module"]
    assert config["run"] == ["train"]
    assert data["train_file_path"] == str(tmp_path / "data" / "train.extxyz")
    assert data["key_mapping"]["REF_forces"] == "forces" and data["seed"] == 3
    assert data["transforms"][0]["model_type_names"] == ["H", "C", "O"]
    assert data["transforms"][1]["r_max"] == 5.0
    assert data["train_dataloader"]["batch_size"] == 5 and data["train_dataloader"]["shuffle"]
    assert data["val_dataloader"]["batch_size"] == 10
    assert trainer["max_epochs"] == 1000 and trainer["accelerator"] == "cpu"
    checkpoint, clock = trainer["callbacks"]
    assert checkpoint["monitor"] == "val0_epoch/weighted_sum" == nb.SCHEDULER["monitor"]
    assert checkpoint["filename"] == "best" and checkpoint["save_on_train_epoch_end"] is False
    assert clock == {
        "_target_": "nequip_worker.training_clock",
        "budget_s": 90,
        "status": str(tmp_path / "s.json"),
    }
    assert module["_target_"] == "nequip.train.EMALightningModule" and module["ema_decay"] == 0.99
    assert module["loss"] == {
        "_target_": "nequip.train.EnergyForceLoss",
        "per_atom_energy": True,
        "coeffs": {"total_energy": 1.0, "forces": 1.0},
    }
    assert module["val_metrics"] == module["train_metrics"]
    assert module["val_metrics"]["coeffs"] == {"total_energy_mae": 1.0, "forces_mae": 1.0}
    assert module["optimizer"] == {"_target_": "torch.optim.Adam", "lr": 0.01}
    assert module["lr_scheduler"]["scheduler"]["factor"] == 0.6
    model = module["model"]
    assert model["per_type_energy_shifts"] == e0s and model["type_names"] == ["H", "C", "O"]
    assert not model["per_type_energy_shifts_trainable"] and model["model_dtype"] == "float32"
    assert model["avg_num_neighbors"] == "${training_data_stats:num_neighbors_mean}"
    assert model["l_max"] == 1 and model["num_layers"] == 4 and model["seed"] == 3
    text = yaml.safe_dump(config, sort_keys=False)
    assert "&id" not in text and yaml.safe_load(text) == config  # no anchors, round trip


def test_config_with_stress(tmp_path: Path) -> None:
    config = nb.nequip_config(
        spec(batch_size=12), tmp_path, tmp_path, tmp_path / "s", {"Si": -5.4}, True, "l2", 60
    )
    module = config["training_module"]
    assert module["loss"]["_target_"] == "nequip.train.EnergyForceStressLoss"
    assert module["loss"]["coeffs"] == {"total_energy": 1.0, "forces": 1.0, "stress": 1.0}
    assert module["val_metrics"]["_target_"] == "nequip.train.EnergyForceStressMetrics"
    assert module["val_metrics"]["coeffs"]["stress_mae"] == 1.0
    assert module["model"]["l_max"] == 2
    assert config["data"]["val_dataloader"]["batch_size"] == 12


def test_atomic_energies_are_ours(tmp_path: Path) -> None:
    from mlcalc.training.data import LabeledStructure, fit_atomic_energies

    rng = np.random.default_rng(0)
    frames = []
    for k, name in enumerate(["H2O", "CH4", "CH3OH", "H2O", "CO2", "C2H6"]):
        atoms = molecule(name)
        energy = -1.5 * atoms.numbers.sum() + 0.1 * k
        forces = rng.normal(size=(len(atoms), 3))
        frames.append(LabeledStructure(atoms, energy, forces, None, f"fake {k}"))
    data = tmp_path / "data"
    data.mkdir()
    mb.write_labelled(frames[:5], data / "train.extxyz")
    mb.write_labelled(frames[5:], data / "valid.extxyz")
    fitted = nb.atomic_energies("fit", data)
    assert list(fitted) == ["H", "C", "O"]
    expected = fit_atomic_energies(frames[:5], ["H", "C", "O"])
    assert fitted == pytest.approx(expected, rel=1e-9)
    given = {"O": -3.0, "C": -2.0, "H": -1.0, "N": -4.0}
    assert nb.atomic_energies(given, data) == {"H": -1.0, "C": -2.0, "O": -3.0}


def test_curve_from_the_status() -> None:
    status = json.loads(STATUS_SAMPLE)
    assert nb.curve(status) == [[8.594718933105469, 564.9506542049566], [16.7, 585.84]]
    assert nb.curve({"validations": []}) == []


@pytest.mark.parametrize(
    ("batches", "seconds", "budget", "every"),
    [(180, 0.07, 1800.0, None), (180, 0.066, 60.0, 90), (193, 0.3, 60.0, 20), (10, 1.0, 5.0, 1)],
)
def test_validation_interval(
    batches: int, seconds: float, budget: float, every: int | None
) -> None:
    assert worker.validation_interval(batches, seconds, budget, 10) == every


def fake_trainer(saved: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        save_checkpoint=lambda path, *_: saved.append(path),
        lightning_module=SimpleNamespace(),
        global_step=0,
        current_epoch=0,
        num_training_batches=100,
        sanity_checking=False,
        callback_metrics={"val0_epoch/forces_rmse": 0.25, "train_loss_step/forces_mse": 1.0},
        val_check_batch=100,
    )


def test_clock_records_paces_and_stops(tmp_path: Path) -> None:
    assert issubclass(worker.BudgetReached, BaseException)
    assert not issubclass(worker.BudgetReached, Exception)
    status = tmp_path / "status.json"
    clock = worker.Clock(budget_s=3600.0, status=str(status), min_validations=10)
    saved: list[str] = []
    trainer = fake_trainer(saved)
    clock.on_train_start(trainer, None)
    try:
        assert signal.getsignal(signal.SIGALRM) == clock.deadline.stop
        for batch in range(worker.PACE_BATCHES + 1):
            trainer.global_step = batch + 1
            clock.on_train_batch_end(trainer, None, None, None, batch)
        assert trainer.val_check_batch == 100  # 100 fast batches fit in 360 s
        trainer.sanity_checking = True
        clock.on_validation_end(trainer, None)  # the sanity check is not a validation
        trainer.sanity_checking = False
        clock.on_validation_end(trainer, None)
        trainer.save_checkpoint("best.ckpt")
        assert saved == ["best.ckpt"]
        clock.on_train_epoch_end(trainer, None)
        clock.deadline.writing = 1  # a signal while a checkpoint is written waits for it
        clock.deadline.stop(signal.SIGTERM)
        assert clock.deadline.pending == ["signal SIGTERM"]
        clock.deadline.writing = 0
        with pytest.raises(worker.BudgetReached, match="SIGTERM"):
            trainer.save_checkpoint("best.ckpt")
        with pytest.raises(worker.BudgetReached, match="budget"):
            clock.deadline.stop(signal.SIGALRM)
        clock.on_exception(trainer, None, worker.BudgetReached("budget"))
    finally:
        clock.finish("test")
    assert signal.getsignal(signal.SIGALRM) != clock.deadline.stop
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    record = json.loads(status.read_text())
    assert record["stopped_by"] == "budget" and record["epochs_done"] == 1
    assert record["steps"] == worker.PACE_BATCHES + 1 and record["val_every_batches"] is None
    (point,) = record["validations"]
    assert point["metrics"] == {"val0_epoch/forces_rmse": 0.25} and point["step"] == 6
    assert record["best"] == point and 0 <= record["train_s"] < 60


def test_clock_validates_within_long_epochs(tmp_path: Path) -> None:
    clock = worker.Clock(budget_s=3600.0, status=str(tmp_path / "s.json"))
    trainer = fake_trainer([])
    clock.on_train_start(trainer, None)
    try:
        clock.on_train_batch_end(trainer, None, None, None, 0)
        clock.paced_from -= worker.PACE_BATCHES * 400.0  # 400 s a batch: 1 batch > 3600 s / 10
        clock.on_train_batch_end(trainer, None, None, None, worker.PACE_BATCHES)
        assert trainer.val_check_batch == 1 == clock.status["val_every_batches"]
    finally:
        clock.finish("test")


def test_ema_weights_are_swapped_out_for_a_save() -> None:
    calls: list[str] = []
    ema = SimpleNamespace(is_holding_ema_weights=False)
    ema.swap_parameters = lambda model: calls.append(model)
    module = SimpleNamespace(ema=ema, model="model")
    with worker.raw_weights_in_model(module):
        assert calls == ["model"]
    assert calls == ["model", "model"]
    ema.is_holding_ema_weights = True  # between validations: nothing to do
    with worker.raw_weights_in_model(module):
        pass
    with worker.raw_weights_in_model(SimpleNamespace()):  # no EMA
        pass
    assert calls == ["model", "model"]


@pytest.mark.skipif(not (VENV / "bin" / "python").exists(), reason=f"no NequIP venv at {VENV}")
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no ethanol data at {SHARED}")
def test_end_to_end_tiny_ethanol(tmp_path: Path) -> None:
    """30 ethanol frames, a 4 s budget: the files accuracy.py reads, with sane contents."""
    from ase.io import read, write

    write(tmp_path / "train.xyz", read(SHARED / "train.xyz", index=":30"))
    write(tmp_path / "test.xyz", read(SHARED / "test_MD.xyz", index=":6"))
    config = tmp_path / "data.yaml"
    config.write_text(
        f"train_file: {tmp_path / 'train.xyz'}\ntest_file: {tmp_path / 'test.xyz'}\n"
        f"e0s: {SHARED / 'isolated_atoms.xyz'}\n"
    )
    out = tmp_path / "out"
    argv = ["tiny", "--config", str(config), "--max-time", "4s", "--threads", "1"]
    assert nb.main([*argv, "--out", str(out), "--skip-setup", "--cache", str(VENV.parent)]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_structures"] == 6 and metrics["forces_rmse"] > 0
    assert metrics["parameters"] > 100_000 and metrics["dtype"] == "float32"
    assert metrics["stopped_by"] in ("budget", "max_epochs") and metrics["train_s"] < 10
    marker = json.loads((out / nb.MARKER).read_text())
    assert marker["n_train"] == 27 and marker["n_valid"] == 3
    curve = json.loads((out / "curve.json").read_text())
    assert curve and all(0 < t < 10 and rmse > 0 for t, rmse in curve)
    assert (out / "nequip_baseline.log").is_file()
