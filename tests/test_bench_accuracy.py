"""bench/accuracy.py logic that trains nothing: MACE log parsing, the learning-curve reader,
the data-only configs, arguments and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import load_bench

acc = load_bench("accuracy")

MACE_LOG = """\
2025-06-01 10:00:00.000 INFO: Using gradient clipping with tolerance=10.000
mace_worker: training loop started, budget 60 s
2025-06-01 10:00:05.250 INFO: Initial: head: Default, loss=   1.23456789, \
RMSE_E_per_atom=  250.00 meV, RMSE_F=  900.50 meV / A
2025-06-01 10:00:15.250 INFO: Epoch 0: head: Default, loss=   0.12345678, \
RMSE_E_per_atom=   20.00 meV, RMSE_F=  120.25 meV / A
2025-06-01 10:00:25.750 INFO: Epoch 1: head: Default, loss=   0.02345678, \
RMSE_E_per_atom=    9.00 meV, RMSE_F=   80.00 meV / A, RMSE_stress=    1.50 meV / A^3
"""


def test_mace_curve_from_log_timestamps() -> None:
    assert acc.mace_curve(MACE_LOG) == [[0.0, 900.5], [10.0, 120.25], [20.5, 80.0]]
    assert acc.mace_curve("no validation lines\n") == []


def test_ours_curve_is_cumulative_epoch_time(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,lr,valid_forces_rmse,epoch_time_s\n0,0.01,300.0,1.5\n1,0.01,,2.0\n2,0.01,100.0,2.5\n"
    )
    assert acc.ours_curve(path) == [[1.5, 300.0], [6.0, 100.0]]
    path.write_text(
        "epoch,step,lr,valid_forces_rmse,time_s\n0,5,0.01,300.0,1.5\n0,10,0.01,90.0,2\n"
    )
    assert acc.ours_curve(path) == [[1.5, 300.0], [3.5, 90.0]]


@pytest.mark.parametrize(
    ("model", "keys"),
    [
        ("nemp", ["train_file", "test_file", "e0s"]),
        ("mlanet", ["train_file", "test_file", "e0s", "architecture"]),
    ],
)
def test_config_names_only_the_data(tmp_path: Path, model: str, keys: list[str]) -> None:
    path = tmp_path / "data.yaml"
    acc.write_config("ethanol", model, path)
    config = yaml.safe_load(path.read_text())
    assert list(config) == keys
    assert Path(config["train_file"]).is_absolute() and config["e0s"].endswith("isolated_atoms.xyz")
    acc.write_config("si", model, path)
    assert yaml.safe_load(path.read_text())["e0s"] == "fit"


def test_variant_config_adds_only_model_fields(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    acc.write_config("ethanol", "nemp-small", path)
    config = yaml.safe_load(path.read_text())
    assert list(config) == ["train_file", "test_file", "e0s", "architecture", "model"]
    assert config["model"] == {"preset": "small"}


def test_arguments() -> None:
    args = acc.parse_args(["--datasets", "acac", "li", "--budgets", "90s", "1h"])
    assert args.budget_s == {"90s": 90.0, "1h": 3600.0} and args.models == ["nemp", "mace"]
    for argv in (["--datasets", "benzene"], ["--budgets", "soon"], ["--parallel", "0"]):
        with pytest.raises(SystemExit):
            acc.parse_args(argv)


def test_unknown_dataset_lists_the_known(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        acc.parse_args(["--datasets", "benzene"])
    known = "known: water, cuau, lial, 3bpa, 3bpa-hot, acac, ethanol, si, li, ge"
    assert known in capsys.readouterr().err


def test_table_and_ratio() -> None:
    common = {"dataset": "ethanol", "budget": "5m", "budget_s": 300.0, "test_stress_rmse": None}
    records = [
        {
            **common,
            "model": "nemp",
            "parameters": 557894,
            "epochs": 12,
            "n_train": 900,
            "train_s": 290.2,
            "test_energy_rmse": 1.234,
            "test_forces_rmse": 30.0,
        },
        {
            **common,
            "model": "mace",
            "parameters": 100000,
            "epochs": 8,
            "train_s": 300.0,
            "test_energy_rmse": 2.0,
            "test_forces_rmse": 40.0,
        },
    ]
    lines = acc.format_table(records).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| set | budget | model |")
    assert (
        lines[2] == "| ethanol | 5m | nemp | 557,894 | 12 | 290 | 1.23 | 30.0 | — | 0.75 | 37.2 |"
    )
    assert lines[3].endswith("| 40.0 | — | — | — |")  # MACE: no ratio, no training count


def test_per_epoch_table_compares_at_mace_s_epoch_count() -> None:
    common = {"dataset": "acac", "budget": "5m"}
    ours = {
        **common,
        "model": "nemp",
        "epochs": 4,
        "train_s": 8.0,
        "curve": [[2.0, 90.0], [4.0, 70.0], [6.0, 60.0], [8.0, 55.0]],
    }
    mace = {**common, "model": "mace", "epochs": 2, "train_s": 20.0,
            "curve": [[0.0, 900.0], [10.0, 50.0], [20.0, 40.0]]}  # fmt: skip
    lines = acc.format_per_epoch([ours, mace]).splitlines()
    # MACE validated 2 epochs: ours after its 2nd epoch (70) against MACE's after its 2nd (40)
    assert lines[2] == "| acac | 5m | nemp | 2 | 70.0 / 40.0 | 2.0 / 10.0 |"
    assert len(lines) == 3


@pytest.mark.parametrize(
    ("model", "script", "size"),
    [
        ("mace", "mace_baseline.py", None),
        ("nequip", "nequip_baseline.py", "default"),
        ("sevenn-l2", "sevenn_baseline.py", "l2"),
    ],
)
def test_peer_runs_call_their_baseline_with_its_size(
    tmp_path: Path, model: str, script: str, size: str | None
) -> None:
    run = {"dataset": "ethanol", "model": model, "budget_s": 1800.0, "folder": str(tmp_path)}
    command = acc.run_command(run, tmp_path / "data.yaml", tmp_path / "cache")
    assert Path(command[1]).name == script and command[2] == "ethanol"
    assert command[command.index("--max-time") + 1] == "1800"
    assert ("--size" in command) == (size is not None)
    if size is not None:
        assert command[command.index("--size") + 1] == size
    assert Path(command[command.index("--out") + 1]).name == ("mace" if model == "mace" else "peer")


def test_collect_reads_a_peer_s_curve_and_marker(tmp_path: Path) -> None:
    folder = tmp_path / "ethanol" / "30m" / "nequip"
    (folder / "peer").mkdir(parents=True)
    run = {"dataset": "ethanol", "budget": "30m", "budget_s": 1800.0, "model": "nequip"}
    run.update(folder=str(folder), returncode=0)
    (folder / "run.json").write_text(json.dumps(run))
    metrics = {"parameters": 12345, "epochs": 7, "train_s": 1799.0, "forces_rmse": 21.5}
    (folder / "peer" / "test_metrics.json").write_text(json.dumps(metrics))
    (folder / "peer" / "nequip_baseline.json").write_text(json.dumps({"n_train": 900}))
    (folder / "peer" / "curve.json").write_text(json.dumps([[0.0, 900.0], [250.0, 40.0]]))
    records, failed = acc.collect(tmp_path)
    assert failed == []
    (record,) = records
    assert record["parameters"] == 12345 and record["epochs"] == 7 and record["n_train"] == 900
    assert record["curve"] == [[0.0, 900.0], [250.0, 40.0]]
    assert record["test_forces_rmse"] == 21.5
    assert "| ethanol | 30m | nequip | 12,345 | 7 |" in acc.format_table(records)
