"""bench/data_parallel.py's rate and table (the timing itself is a benchmark, not a test)."""

from __future__ import annotations

import pytest
from helpers import load_bench

bench = load_bench("data_parallel")


def test_rate_uses_the_last_validation_interval(tmp_path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,step,time_s\n0,100,95.0\n0,200,10.0\n")
    assert bench.rate(metrics, 100, 4) == pytest.approx(40.0)  # 400 structures in 10 s
    metrics.write_text("epoch,step,time_s\n0,100,95.0\n")
    with pytest.raises(SystemExit, match="needs two validation rows, has 1"):
        bench.rate(metrics, 100, 4)


def test_table_ratios_against_one_process_of_the_same_kind() -> None:
    runs = [
        bench.Run(1, False, 10.0),
        bench.Run(2, False, 18.0),
        bench.Run(1, True, 20.0),
        bench.Run(2, True, 30.0),
        bench.Run(4, True, 50.0),
    ]
    lines = bench.table(runs).splitlines()
    assert lines[2:] == [
        "| 1 | eager | 10.0 | 1.00 |",
        "| 2 | eager | 18.0 | 1.80 |",
        "| 1 | compiled | 20.0 | 1.00 |",
        "| 2 | compiled | 30.0 | 1.50 |",
        "| 4 | compiled | 50.0 | 2.50 |",
    ]
    assert bench.table([bench.Run(2, True, 30.0)]).splitlines()[2] == "| 2 | compiled | 30.0 | — |"
