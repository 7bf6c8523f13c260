"""bench/peers.py logic that needs no peer venv: arguments, skips, speed-ups, the table, the
watched subprocess. Nothing here times a model or asserts on timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import BENCH, load_bench

peers = load_bench("peers")


def measured(model: str, us_per_atom: float, atoms: int = 192, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "dtype": "float32",
        "atoms": atoms,
        "median_ms": us_per_atom * atoms / 1e3,
        "us_per_atom": us_per_atom,
        "steps": 10,
        "repeats_asked": 10,
        "first_step_s": 1.0,
        "rss_after_build_mb": 400.0,
        "peak_rss_mb": 500.0,
        "child_peak_rss_mb": 510.0,
        "wall_s": 12.0,
        **extra,
    }


def test_defaults_and_model_lists() -> None:
    args = peers.parse_args([])
    assert args.sizes == [192, 1536, 12288, 98304]
    assert args.dtype == ["float32", "float64"]
    assert args.threads == 2
    assert args.max_rss_gb == 20.0
    assert args.cache == Path("~/.cache/mlcalc/bench-peers").expanduser()
    assert args.models == peers.OURS + peers.PEERS
    assert peers.OURS[:2] == ["nemp-default", "nemp-small"]  # from bench/speed.py
    assert set(peers.PEERS) == {"mace-128", "mace-64", "nequip", "nequip-l2", "sevenn", "sevenn-l2"}
    assert set(peers.FLOAT32_ONLY) == {"sevenn", "sevenn-l2"}
    assert set(peers.PEER_PACKAGES) == {"mace", "nequip", "sevenn"}
    for pins in peers.PEER_PACKAGES.values():
        assert "==" in pins[0]  # the peer package itself is pinned


def test_argument_errors() -> None:
    with pytest.raises(SystemExit):
        peers.parse_args(["--sizes", "100"])  # not a water box
    with pytest.raises(SystemExit):
        peers.parse_args(["--models", "schnet"])
    args = peers.parse_args(
        ["--models", "nemp-small", "sevenn", "--cache", "/tmp/x", "--json", "r"]
    )
    assert args.models == ["nemp-small", "sevenn"] and args.cache == Path("/tmp/x")


def test_speedups_pair_rows_of_the_same_size_and_dtype() -> None:
    rows = [
        measured("nemp-small", 100.0),
        measured("sevenn", 300.0),
        measured("mace-64", 1000.0),
        measured("nequip", 50.0, atoms=1536),  # other size: not paired
        {"model": "mace-128", "dtype": "float32", "atoms": 192, "skipped": "x"},
    ]
    ratios = peers.speedups(rows)
    assert ratios == {("nemp-small", "float32", 192): {"mace-64": 10.0, "sevenn": 3.0}}


def test_table_has_one_row_per_config_with_reasons() -> None:
    rows = [
        measured("sevenn", 300.0),
        measured("nemp-small", 100.0, background_cpu=0.4, steps=3),
        {"model": "nequip", "dtype": "float32", "atoms": 192, "error": "setup failed: no pip"},
        {"model": "nemp-small", "dtype": "float32", "atoms": 1536, "skipped": ">20 GB"},
    ]
    head, cells = peers.table(rows)
    assert head[-3:] == ["× vs nequip", "× vs sevenn", "note"]
    assert [c[0] for c in cells] == ["nemp-small", "nequip", "sevenn", "nemp-small"]
    ours = cells[0]
    assert ours[3] == "19.2" and ours[4] == "100" and ours[6] == "510"
    assert ours[head.index("× vs sevenn")] == "3.00" and ours[head.index("× vs nequip")] == ""
    assert "budget cut" in ours[-1] and "40 % CPU" in ours[-1]
    assert cells[1][-1] == "failed: setup failed: no pip"
    assert cells[3][-1] == "skipped: >20 GB"
    meta = {
        "date": "2026-11-22",
        "cpu": "AMD EPYC",
        "cores": 2,
        "threads": 2,
        "versions": {"torch": "2.13.0"},
        "peers": {"sevenn": {"versions": {"sevenn": "0.13.0"}}, "nequip": {"error": "no pip"}},
        "repeats": 10,
        "budget_s": 300.0,
        "max_rss_gb": 20.0,
    }
    text = peers.render(rows, meta, as_markdown=True)
    assert "- peer sevenn: sevenn 0.13.0" in text and "- peer nequip: no pip" in text
    assert text.count("\n| ") == 1 + len(rows)
    assert "AMD EPYC (2 cores), 2 torch threads" in peers.render(rows, meta, as_markdown=False)
    assert "- allocator: glibc" in text  # runs recorded before the option: glibc's malloc
    assert "allocator: jemalloc" in peers.render(rows, {**meta, "allocator": "jemalloc"}, False)


def test_skip_reasons() -> None:
    args = peers.parse_args(["--budget-s", "100"])
    assert peers.skip_reason(None, 1536, args) == ""
    assert "float32 only" in peers.skip_reason(None, 192, args, "sevenn", "float64")
    assert peers.skip_reason(None, 192, args, "sevenn", "float32") == ""
    assert "did not finish" in peers.skip_reason({"atoms": 192, "error": "x"}, 1536, args)
    slow = measured("nemp-small", 100.0, wall_s=150.0)
    assert peers.skip_reason(slow, 1536, args) == "192 atoms took 150 s > budget 100 s"
    fine = measured("nemp-small", 100.0)
    assert peers.skip_reason(fine, 1536, args) == ""  # predicts 8 × 1.02 s
    assert "predicted" in peers.skip_reason(fine, 98304, args)  # 512 × 1.02 s
    # memory: 1,536 atoms at 4 GB predicts 32 GB at 12,288 atoms (guard: 20 GB) unless the
    # larger size switches to recomputing its edge chunks, where it grows far slower
    big = measured("nemp-default", 100.0, atoms=1536, peak_rss_mb=4400.0, edges=83_000)
    assert "peak RSS" in peers.skip_reason(big, 12288, args)
    recomputing = {**big, "recompute_above_edges": 524_288}
    assert peers.skip_reason(recomputing, 12288, args) == ""
    assert peers.skip_reason({**recomputing, "recompute_above_edges": 10**7}, 12288, args) != ""
    assert peers.skip_reason({**recomputing, "recompute_above_edges": 0}, 12288, args) != ""


def test_missing_venv_with_skip_setup_is_reported_not_installed(tmp_path: Path) -> None:
    info = peers.setup_peer(tmp_path, "sevenn", skip_setup=True, log=print)
    assert "--skip-setup" in info["error"] and not (tmp_path / "venv-sevenn").exists()


def test_watched_child_is_killed_over_time_and_memory() -> None:
    env = peers.child_env(1)
    slow = peers.run_watched([sys.executable, "-c", "import time; time.sleep(30)"], env, 20, 0.3)
    assert slow["killed"].startswith("killed after") and slow["returncode"] != 0
    grow = (
        "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    )
    big = peers.run_watched([sys.executable, "-c", grow], env, 0.1, 20)
    assert big["killed"].startswith(">0.1 GB")
    ok = peers.run_watched([sys.executable, "-c", "print('{}')"], env, 20, 20)
    assert ok["killed"] == "" and ok["returncode"] == 0 and ok["stdout"].strip() == "{}"
    assert ok["child_peak_rss_mb"] > 1


def test_allocator_is_preloaded_into_the_child() -> None:
    """``--allocator jemalloc`` runs the child with jemalloc mapped in; glibc leaves it out."""
    show = "print(any('jemalloc' in line for line in open('/proc/self/maps')))"
    plain = peers.run_watched([sys.executable, "-c", show], peers.child_env(1), 20, 60)
    assert plain["stdout"].strip() == "False"
    assert "jemalloc" not in peers.child_env(1).get("LD_PRELOAD", "")
    problem = peers.allocator_problem("jemalloc")
    if problem:
        pytest.skip(f"jemalloc is not installed here: {problem}")
    env = peers.child_env(1, "jemalloc")
    preloaded = peers.run_watched([sys.executable, "-c", show], env, 20, 60)
    assert preloaded["stdout"].strip() == "True", preloaded["stderr"]
    assert peers.parse_args(["--allocator", "jemalloc"]).allocator == "jemalloc"


def test_hotspots_prints_the_operator_table() -> None:
    """bench/hotspots.py runs end to end (its numbers are for reading, not asserted)."""
    command = [
        sys.executable,
        str(BENCH / "hotspots.py"),
        "--atoms",
        "24",
        "--threads",
        "1",
        "--steps",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "matmul peak" in done.stdout
    assert "| `aten::mm` |" in done.stdout
    assert "| gather/scatter |" in done.stdout
