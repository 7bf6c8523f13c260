"""Budgets in steps and in seconds shorter than an epoch: the schedule anneals within them,
validation runs on a fixed subset at a fixed interval, and the run ends on time."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from ase.io import write
from test_training import config_for, emt_frames

from mlcalc.training import train


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    write(folder / "train.xyz", emt_frames(400, seed=2))
    write(folder / "test.xyz", emt_frames(4, seed=3))
    return folder


def test_a_step_budget_shorter_than_an_epoch_anneals_to_lr_min(many_frames, tmp_path):
    # 300 training structures, one per step: an epoch is 300 steps, the budget 12
    config = config_for(
        many_frames, tmp_path / "run", batch_size=1, epochs=None, max_steps=12,
        valid_interval=4, valid_subset=10, scheduler="cosine", lr_min=1e-4, test_file=None,
    )  # fmt: skip
    result = train(config)
    assert result.stop_reason == "max_steps 12 reached"
    assert (result.steps, result.epochs) == (12, 1)
    rows = _rows(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 0]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(1e-4)
    # the validation rows score the subset; the run's model is scored on all 100
    assert result.valid_errors["n_structures"] == 100


def test_a_time_budget_shorter_than_an_epoch_is_kept(many_frames, tmp_path):
    config = config_for(
        many_frames, tmp_path / "run", batch_size=1, epochs=None, max_time=4,
        valid_interval=25, valid_subset=10, scheduler="cosine", lr_min=1e-4, test_file=None,
    )  # fmt: skip
    result = train(config)
    assert result.stop_reason == "max_time 4 reached"
    assert 0 < result.steps < 300 and result.epochs == 1
    # ends on time: the final validation pass included, not more than a step or two late
    assert 3.0 <= result.train_time_s <= 4.6
    rows = _rows(tmp_path / "run")
    assert int(rows[-1]["step"]) == result.steps
    assert float(rows[-1]["lr"]) < 0.1 * config.lr  # annealed within the budget


def test_a_step_that_compiles_does_not_end_a_timed_run(many_frames, tmp_path, monkeypatch):
    # the first step traces and compiles (seconds; a step takes milliseconds): were its time
    # taken as a step's, the predicted final validation (100 structures) would overrun at once
    from mlcalc.models import traced

    trace = traced.TracedEnergies._trace

    def slow_trace(self, inputs):
        time.sleep(2.0)  # a compiler's seconds, without running one
        return trace(self, inputs)

    monkeypatch.setattr(traced.TracedEnergies, "_trace", slow_trace)
    monkeypatch.setattr(traced.torch, "compile", lambda graph, **options: graph)
    config = config_for(
        many_frames, tmp_path / "run", batch_size=1, epochs=None, max_time=15, compile=True,
        valid_interval=50, valid_subset=10, scheduler="cosine", lr_min=1e-4, test_file=None,
    )  # fmt: skip
    result = train(config)
    assert result.stop_reason == "max_time 15 reached"
    assert result.steps > 50 and result.train_time_s <= 16.0
