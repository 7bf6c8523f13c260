"""bench/committee.py's member copies and table (the timing itself is a benchmark, not a test)."""

from __future__ import annotations

import json

import torch
from conftest import build_model
from helpers import load_bench

committee = load_bench("committee")


def test_perturbed_copies_keep_member_zero():
    model = build_model()
    copies = committee.perturbed_copies(model, 3, 0.01)
    first, second = (dict(c.named_parameters()) for c in copies[:2])
    for name, parameter in model.named_parameters():
        assert torch.equal(first[name], parameter)
    assert any(not torch.equal(second[n], p) for n, p in model.named_parameters())


def test_table_of_a_tiny_run(tmp_path, capsys):
    path = tmp_path / "tiny.safetensors"
    build_model(cutoff=3.0).save(path)
    rows_file = tmp_path / "rows.json"
    argv = ["--model", str(path), "--repeat", "1", "--steps", "2", "--threads", "1"]
    committee.main([*argv, "--members", "1", "2", "--dtype", "float64", "--json", str(rows_file)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("192 atoms, float64, 1 threads, median of 2 steps")
    assert lines[1].startswith("| calculator | K | median step (ms) |")
    assert [line.split("|")[1:3] for line in lines[3:]] == [
        [" one model ", " 1 "],
        [" committee ", " 1 "],
        [" committee ", " 2 "],
        [" shared body ", " 1 "],
        [" shared body ", " 2 "],
    ]
    rows = json.loads(rows_file.read_text())
    assert rows[0]["ratio"] == 1.0 and all(row["steps"] == 2 for row in rows)
    assert all(row["model_ms"] == row["median_ms"] - row["graph_ms"] for row in rows)
