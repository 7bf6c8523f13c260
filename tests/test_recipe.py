"""The default training recipe: its pieces one by one, and a run that uses only the defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from test_training import emt_frames  # the generated EMT data of the training tests

from mlcalc import NEMPCalculator
from mlcalc.cli import main
from mlcalc.training import TrainConfig, train
from mlcalc.training.config import DEFAULT_EPOCHS, UNLIMITED_EPOCHS
from mlcalc.training.recipe import MODEL_DEFAULTS, batch_size_for, model_fields
from mlcalc.training.schedule import (
    ExponentialMovingAverage,
    LearningRateSchedule,
    scheduled_weight,
)


def test_cosine_follows_the_epochs_or_the_budget_whichever_runs_out_first():
    schedule = LearningRateSchedule(0.01, 0.0, "cosine", epochs=10)
    assert schedule.lr_at(5) == pytest.approx(0.005)
    # half the budget spent at epoch 2: the budget is ahead of the epochs
    assert schedule.lr_at(2, budget_fraction=0.5) == pytest.approx(0.005)
    assert schedule.lr_at(5, budget_fraction=0.1) == pytest.approx(0.005)
    assert schedule.lr_at(3, budget_fraction=1.2) == pytest.approx(0.0)
    # the loss weights follow the learning rate: halfway between start and final
    assert scheduled_weight(1.0, 21.0, schedule.progress(2, 0.5)) == pytest.approx(11.0)
    warm = LearningRateSchedule(0.01, 0.0, "cosine", warmup_epochs=2, epochs=12)
    assert warm.lr_at(0, budget_fraction=0.9) == pytest.approx(0.001)  # warm-up first
    plateau = LearningRateSchedule(0.01, 0.0, "plateau")
    assert plateau.lr_at(3, budget_fraction=0.9) == 0.01  # only the cosine reads the budget


def test_epochs_default_to_the_budget_when_there_is_one():
    assert TrainConfig(train_file="x").epochs == DEFAULT_EPOCHS
    assert TrainConfig(train_file="x", max_time="5m").epochs == UNLIMITED_EPOCHS
    assert TrainConfig(train_file="x", max_time="5m", epochs=7).epochs == 7
    defaults = TrainConfig(train_file="x")
    assert (defaults.energy_weight, defaults.forces_weight) == (1.0, 100.0)
    assert defaults.energy_weight_final == 100.0  # energies weighted as the lr falls
    assert defaults.stress_weight == 100.0
    assert (defaults.scheduler, defaults.lr, defaults.batch_size) == ("cosine", 0.01, None)


def test_default_batch_size_holds_about_45_atoms():
    assert batch_size_for([9] * 10) == 5  # ethanol
    assert batch_size_for([15, 15]) == 3  # acetylacetone
    assert batch_size_for([27]) == 2  # 3BPA
    assert batch_size_for([64, 12, 96]) == 1  # bulk cells
    assert batch_size_for([192]) == 1  # liquid water
    with pytest.raises(ValueError, match="no training structures"):
        batch_size_for([])


def test_recipe_model_fields_fill_what_the_config_leaves_out():
    assert model_fields("nemp", {}) == MODEL_DEFAULTS["nemp"]
    mine = model_fields("nemp", {"cutoff": 4.5, "neighbor_norm": "smooth_count"})
    assert mine["preset"] == "medium" and mine["cutoff"] == 4.5
    assert mine["neighbor_norm"] == "smooth_count"  # the config wins
    assert model_fields("nemp", {"preset": "default"}) == {"preset": "default"}
    assert model_fields("nemp", {"preset": "small"})["preset"] == "small"  # the config wins
    assert model_fields("mlanet", {})["force_mode"] == "conservative"


def test_ema_averages_in_place_and_ramps_up():
    module = torch.nn.Linear(2, 1)
    average = torch.nn.Linear(2, 1)
    ema = ExponentialMovingAverage(module, average, decay=0.9)
    torch.testing.assert_close(average.weight, module.weight)
    start = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(1.0)  # as an optimiser step does: in place
    ema.update()  # first update: decay min(0.9, 2 / 11)
    torch.testing.assert_close(average.weight, start + 1.0 * (1 - 2 / 11))


def test_default_recipe_learns_emt_forces(tmp_path: Path):
    """A config with only the data files and an epoch count: forces R² > 0.95 on test frames."""
    write(tmp_path / "train.xyz", emt_frames(40, seed=0))
    write(tmp_path / "test.xyz", emt_frames(10, seed=1))
    config = TrainConfig(
        train_file=str(tmp_path / "train.xyz"),
        test_file=str(tmp_path / "test.xyz"),
        epochs=20,
        threads=1,
        output_dir=str(tmp_path / "run"),
    )
    train(config)
    calc = NEMPCalculator.from_checkpoint(tmp_path / "run" / "final.safetensors", device="cpu")
    reference, predicted = [], []
    for atoms in emt_frames(10, seed=1):
        reference.append(atoms.get_forces())
        atoms.calc = calc
        predicted.append(atoms.get_forces())
    reference, predicted = np.concatenate(reference), np.concatenate(predicted)
    r_squared = 1 - np.sum((predicted - reference) ** 2) / np.sum(
        (reference - reference.mean()) ** 2
    )
    assert r_squared > 0.95, r_squared
    used = TrainConfig.from_yaml(tmp_path / "run" / "config.yaml")
    assert used.model["channels"] == 16 and used.model["l_max_features"] == 2
    assert used.model["neighbor_norm"] == "constant"
    assert used.batch_size == 6  # 8-atom cells: 45 / 8 rounded


def test_data_without_forces_is_refused_when_forces_are_weighted(tmp_path: Path, capsys):
    frames = emt_frames(4)
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy())
    write(tmp_path / "energies.xyz", frames)
    config = tmp_path / "c.yaml"
    config.write_text(f"train_file: {tmp_path / 'energies.xyz'}\noutput_dir: {tmp_path / 'r'}\n")
    assert main(["train", str(config)]) == 2
    error = capsys.readouterr().err
    assert "energies.xyz, frame 0 and every other training frame: no forces" in error
    assert "forces_weight: 0" in error
    # with forces_weight 0 the same data trains
    assert main(["train", str(config), "--forces_weight", "0", "--epochs", "1"]) == 0


def test_eval_names_the_frame_with_an_element_the_model_lacks(tmp_path, model_factory, capsys):
    model = model_factory(elements=["Al", "Cu"])
    model.save(tmp_path / "model.safetensors")
    frames = emt_frames(3)
    frames[2][0].symbol = "Au"
    write(tmp_path / "test.xyz", frames)
    assert main(["eval", str(tmp_path / "model.safetensors"), str(tmp_path / "test.xyz")]) == 2
    error = capsys.readouterr().err
    assert "test.xyz, frame 2" in error and "Au" in error


def nan_on_calls(monkeypatch: pytest.MonkeyPatch, bad: set[int] | None) -> None:
    """Make the training loss NaN on the given calls of its penalty (every call if None)."""
    from mlcalc.training import steps

    real, calls = steps.penalty, [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if bad is None or calls[0] in bad else out

    monkeypatch.setattr(steps, "penalty", flaky)


def emt_config(tmp_path: Path, frames: int, epochs: int) -> TrainConfig:
    """``frames`` EMT training frames, batches of 2, one thread."""
    write(tmp_path / "train.xyz", emt_frames(frames))
    return TrainConfig(
        train_file=str(tmp_path / "train.xyz"),
        epochs=epochs,
        batch_size=2,
        threads=1,
        output_dir=str(tmp_path / "run"),
    )


def test_a_step_with_a_non_finite_loss_is_skipped(tmp_path: Path, monkeypatch, capsys):
    config = emt_config(tmp_path, frames=12, epochs=2)
    nan_on_calls(monkeypatch, {3})  # energy, forces, stress per step: the 1st step's stress
    result = train(config)
    assert (
        "epoch 0: skipped 1 of 6 steps with a non-finite loss or gradient"
        in capsys.readouterr().out
    )
    assert result.epochs == 2 and np.isfinite(result.best_valid_loss)
    calc = NEMPCalculator.from_checkpoint(result.model_path, device="cpu")
    atoms = emt_frames(1)[0]
    atoms.calc = calc
    assert np.isfinite(atoms.get_forces()).all()


def test_training_stops_after_many_non_finite_steps_in_a_row(tmp_path: Path, monkeypatch):
    config = emt_config(tmp_path, frames=50, epochs=1)
    nan_on_calls(monkeypatch, None)
    with pytest.raises(RuntimeError, match=r"training diverged: .* in 20 steps in a row"):
        train(config)
