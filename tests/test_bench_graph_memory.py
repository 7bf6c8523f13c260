"""bench/graph_memory.py on a tiny file: both settings measured, the table's arithmetic."""

from __future__ import annotations

from ase.io import write
from helpers import load_bench
from test_training import emt_frames

bench = load_bench("graph_memory")


def test_kept_and_rebuilt_graphs_are_measured(tmp_path) -> None:
    path = tmp_path / "train.xyz"
    write(path, emt_frames(6))
    kept = bench.measure(str(path), 3, 4.0, True, 5)
    rebuilt = bench.measure(str(path), 3, 4.0, False, 5)
    assert kept["structures"] == rebuilt["structures"] == 18
    assert (kept["kept"], rebuilt["kept"], rebuilt["kept_gib"]) == (18, 0, 0.0)
    assert kept["kept_gib"] > 0 and kept["batch_ms"] > 0 and rebuilt["batch_ms"] > 0


def test_table_per_structure_in_kilobytes() -> None:
    row = {"structures": 1024, "kept": 1024, "read_gib": 0.5, "graphs_gib": 0.25,
           "kept_gib": 0.2, "build_s": 12.3, "batch_ms": 0.456}  # fmt: skip
    last = bench.table([row]).splitlines()[-1]
    # 0.5 GiB / 1024 = 512 kB, 0.25 GiB / 1024 = 256 kB
    assert last == "| 1,024 | 1,024 | 0.50 | 0.25 | 512.0 + 256.0 | 12 | 0.46 |"
