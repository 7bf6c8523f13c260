"""bench/train_step.py's batches and table (the timing itself is a benchmark, not a test)."""

from __future__ import annotations

from helpers import load_bench

from mlcalc.training import TrainConfig
from mlcalc.training.steps import Processes, global_batches

train_step = load_bench("train_step")


def test_batches_are_the_trainers_epochs_in_order() -> None:
    config = TrainConfig.from_dict({"train_file": "x.xyz", "batch_size": 3, "seed": 4})
    batches = train_step.first_batches(7, config, 5)
    epoch0 = global_batches(7, 0, config, Processes())
    epoch1 = global_batches(7, 1, config, Processes())
    assert batches == [*epoch0, *epoch1][:5]
    assert [len(b) for b in batches] == [3, 3, 1, 3, 3]  # an epoch's short last batch too


def test_table_rates_ratio_and_compile_time() -> None:
    text = train_step.table(
        "set.xyz",
        steps=10,
        structures=20,
        eager=train_step.Pass(4.0),
        first=train_step.Pass(100.0, 8),
        compiled=train_step.Pass(2.0, 8),
        graphs=1,
    )
    header, rule, row = text.splitlines()
    assert header.count("|") == rule.count("|") == row.count("|") == 9
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 20 structures in 4 s and in 2 s; 8 of 10 steps compiled; 98 s more in the first pass
    assert cells == ["set.xyz", "20", "5.0", "10.0", "2.00", "8 (80 %)", "1", "98"]
