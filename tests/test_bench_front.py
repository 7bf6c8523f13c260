"""bench/front.py: joining trained models' errors with their architectures' speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import front


def accuracy_file(path: Path) -> Path:
    runs = [
        {"dataset": "ethanol", "budget": "30m", "model": "nemp", "test_forces_rmse": 10.0},
        {"dataset": "ethanol", "budget": "30m", "model": "nemp-small", "test_forces_rmse": 20.0},
        {"dataset": "ethanol", "budget": "30m", "model": "sevenn", "test_forces_rmse": 15.0},
        {"dataset": "ethanol", "budget": "30m", "model": "nequip", "test_forces_rmse": 8.0},
        {"dataset": "ethanol", "budget": "5m", "model": "nemp", "test_forces_rmse": 30.0},
        {"dataset": "si", "budget": "30m", "model": "mace", "test_forces_rmse": 80.0},
    ]
    path.write_text(json.dumps({"runs": runs}))
    return path


def speed_file(path: Path) -> Path:
    times = {
        "nemp-medium": 400.0,
        "nemp-medium-compiled": 300.0,
        "nemp-small": 200.0,
        "nemp-small-compiled": 100.0,
        "sevenn": 600.0,
        "nequip": 1200.0,
    }
    rows = [
        {"model": name, "atoms": atoms, "dtype": "float32", "us_per_atom": t * scale}
        for name, t in times.items()
        for atoms, scale in ((1536, 1.0), (12288, 1.5))
    ]
    rows.append({"model": "mace-64", "atoms": 1536, "dtype": "float32", "us_per_atom": None})
    path.write_text(json.dumps({"meta": {}, "rows": rows}))
    return path


def test_points_join_each_training_with_every_timing_of_its_architecture(tmp_path: Path) -> None:
    records = front.load_accuracy([accuracy_file(tmp_path / "a.json")], "30m")
    speed = front.load_speed([speed_file(tmp_path / "s.json")])
    found = front.points(records, speed, [1536, 12288])
    names = sorted((p["model"], p["timed_as"]) for p in found)
    # the 5m run is another budget; MACE has no measured time
    assert names == [
        ("nemp", "nemp-medium"),
        ("nemp", "nemp-medium-compiled"),
        ("nemp-small", "nemp-small"),
        ("nemp-small", "nemp-small-compiled"),
        ("nequip", "nequip"),
        ("sevenn", "sevenn"),
    ]
    compiled = next(p for p in found if p["timed_as"] == "nemp-medium-compiled")
    assert compiled["us_per_atom"] == {1536: 300.0, 12288: 450.0}
    assert compiled["forces_rmse"] == 10.0 and compiled["package"] == "mlcalc"


def test_each_peer_is_matched_with_our_fastest_model_at_least_as_accurate(tmp_path: Path) -> None:
    records = front.load_accuracy([accuracy_file(tmp_path / "a.json")], "30m")
    found = front.points(records, front.load_speed([speed_file(tmp_path / "s.json")]), [1536])
    rows = {row["peer"]["model"]: row for row in front.matches(found, 1536)}
    # SevenNet 15.0: nemp-small (20.0) is less accurate, so the compiled recipe model (10.0)
    assert rows["sevenn"]["ours"]["timed_as"] == "nemp-medium-compiled"
    assert rows["sevenn"]["speedup"] == pytest.approx(2.0)
    # NequIP 8.0 is more accurate than every model of ours
    assert rows["nequip"]["ours"] is None and rows["nequip"]["speedup"] is None
    table = front.format_matches(list(rows.values()))
    assert "none as accurate" in table and "| 2.00 |" in table


def test_tables_and_figure(tmp_path: Path) -> None:
    records = front.load_accuracy([accuracy_file(tmp_path / "a.json")], "30m")
    found = front.points(
        records, front.load_speed([speed_file(tmp_path / "s.json")]), [1536, 12288]
    )
    table = front.format_points(found, [1536, 12288]).splitlines()
    assert table[0].count("µs/atom/step at") == 2
    assert table[2].startswith("| nequip |")  # most accurate first
    assert "| 1,800 |" in table[2]
    figure = front.plot("ethanol", found, 1536, tmp_path / "front_ethanol.png")
    assert figure.stat().st_size > 10_000


def test_main_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "front.json"
    front.main(
        [
            *("--accuracy", str(accuracy_file(tmp_path / "a.json"))),
            *("--speed", str(speed_file(tmp_path / "s.json"))),
            *("--sizes", "1536", "--json", str(out)),
        ]
    )
    report = json.loads(out.read_text())
    assert set(report) == {"ethanol"}  # si's only model (MACE) has no time
    assert "## ethanol, 30m" in capsys.readouterr().out


def test_no_timed_model_is_an_error(tmp_path: Path) -> None:
    speed = tmp_path / "s.json"
    speed.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="no trained model has a speed"):
        front.main(["--accuracy", str(accuracy_file(tmp_path / "a.json")), "--speed", str(speed)])
