"""Accuracy at equal wall-clock budgets: mlcalc's default recipe against MACE (issue #13).

Usage (from the repository root, with the project's venv python; after
``python examples/configs/prepare_data.py ../shared/data data``)::

    python bench/accuracy.py --datasets ethanol acac --budgets 5m 30m [--models nemp mace]
        [--parallel 2] [--out runs/accuracy] [--figure docs/img/accuracy_] [--overwrite]
    python bench/accuracy.py --report --out runs/accuracy --figure docs/img/accuracy_

For each data set, budget and model it trains one model and scores it on the test file; every
finished run under ``OUT`` goes into ``OUT/results.json``. It prints a markdown table and, with
``--figure PREFIX``, writes ``PREFIX<dataset>.png``. ``--report`` redraws both from
``OUT/results.json`` without training. Runs live in ``OUT/<dataset>/<budget>/<model>/``
(``run.log``: the run's stdout and stderr; ``run.json``: command, load average, exit code);
a run whose folder already holds a test result is kept, so an interrupted command can simply be
given again (``--overwrite`` re-runs).

Ours (``nemp``, ``mlanet``) is ``mlcalc train`` on a config that names only the data
(``train_file``, ``test_file``, ``e0s``; ``architecture`` for MLANet): every other setting is
``mlcalc.training.TrainConfig``'s default, the recipe a user gets; the :data:`VARIANTS`
(``nemp-small``, ``nemp-c32``, ``nemp-eager``) add model fields or one config key. Every run of
ours compiles with an empty ``torch.compile`` cache of its own (``TORCHINDUCTOR_CACHE_DIR`` in
its folder), as a user's first run does, with one compiler process. MACE is
``bench/mace_baseline.py`` on the same config; NequIP (``nequip``, ``nequip-l2``) and SevenNet
(``sevenn``, ``sevenn-l2``) are ``bench/nequip_baseline.py`` and ``bench/sevenn_baseline.py``
(their own training loops, losses and schedules, in their own venvs; the architectures that
``bench/peers.py`` times, for ``bench/front.py``). Equal on both sides: the training and
validation frames (``valid_fraction`` and ``seed``, TrainConfig's defaults, split by
``mlcalc.training.data.split``), E0s (the isolated-atoms file, or a least-squares fit),
batch size, EMA decay, dtype, epoch cap, the budget (``--max_time`` / ``--max-time``; each
side counts only its training loop, validation included) and one torch thread per run
(OMP/MKL threads 1). Runs of one data set and budget start together, at most ``--parallel``
at a time; the load average at the start and end of each run is recorded. Test errors are
those of ``mlcalc eval --json`` (``mlcalc/training/metrics.py``): energy per atom (meV/atom),
force components (meV/Å), stress components (meV/Å³).

The figure's curves are the *validation* force RMSE (the validation frames, not the test set)
after each validation against the training time: for ours the cumulative ``time_s`` of
``metrics.csv``; for MACE the timestamps of its log lines, counted from its first
(``Initial``, untrained) validation. Each budget's final *test* force RMSE is a marker at its
training time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from mace_baseline import parse_duration  # noqa: E402  (bench/ is not a package)

#: The project venv's python runs both sides (mace_baseline.py starts the MACE venv itself).
PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = PYTHON if PYTHON.is_file() else Path(sys.executable)
SHARED = "../shared/data"
#: name -> (train file, test file, e0s), paths relative to the repository root.
DATASETS: dict[str, tuple[str, str, str]] = {
    "water": ("data/water_train.extxyz", "data/water_test.extxyz", "fit"),
    # 20,000 EMT Cu–Au cells of 1–256 atoms (bench/scale.py): training at scale
    "cuau": ("data/cuau_train.extxyz", "data/cuau_test.extxyz", "fit"),
    # Li–Al DFT (GitHub mogroupumd/Li-Al_MLIP_datasets, converted by bench/lial.py)
    "lial": ("data/lial_train.extxyz", "data/lial_test.extxyz", "fit"),
    "3bpa": (
        f"{SHARED}/3bpa/train_300K.xyz",
        "data/3bpa_test_mixedT.xyz",
        f"{SHARED}/3bpa/iso_atoms.xyz",
    ),
    # 300 K and half the hot frames in training, the other half the test
    "3bpa-hot": (
        "data/3bpa_train_hot.xyz",
        "data/3bpa_test_hot.xyz",
        f"{SHARED}/3bpa/iso_atoms.xyz",
    ),
    "acac": (
        f"{SHARED}/acac/train_300K.xyz",
        f"{SHARED}/acac/test_MD_300K.xyz",
        f"{SHARED}/acac/isolated_atoms.xyz",
    ),
    "ethanol": (
        f"{SHARED}/ethanol/train.xyz",
        f"{SHARED}/ethanol/test_MD.xyz",
        f"{SHARED}/ethanol/isolated_atoms.xyz",
    ),
    **{
        name.lower(): (
            f"{SHARED}/mlearn/{name}/training.extxyz",
            f"{SHARED}/mlearn/{name}/test.extxyz",
            "fit",
        )
        for name in ("Si", "Li", "Ge")
    },
}
MODELS = (
    "nemp",
    "nemp-small",
    "nemp-small-t1",
    "nemp-fast",
    "nemp-c32",
    "nemp-eager",
    "mlanet",
    "mace",
    "nequip",
    "nequip-l2",
    "sevenn",
    "sevenn-l2",
)
#: Peer models trained by their own baseline scripts (in their own venvs): name -> (script in
#: bench/, its ``--size``, the script's marker file in the run's result folder).
PEER_BASELINES: dict[str, tuple[str, str | None, str]] = {
    "mace": ("mace_baseline.py", None, "mace_baseline.json"),
    "nequip": ("nequip_baseline.py", "default", "nequip_baseline.json"),
    "nequip-l2": ("nequip_baseline.py", "l2", "nequip_baseline.json"),
    "sevenn": ("sevenn_baseline.py", "default", "sevenn_baseline.json"),
    "sevenn-l2": ("sevenn_baseline.py", "l2", "sevenn_baseline.json"),
}
#: Our models that are not the recipe's own: name -> (architecture, model fields of the
#: config, other config keys).
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # the recipe's NEMP before 2026-12-01: the small preset (8 channels, l <= 1 features)
    "nemp-small": ("nemp", {"preset": "small"}, {}),
    # the small preset with one interaction: the fastest point of ours on the front
    "nemp-small-t1": ("nemp", {"preset": "small", "num_interactions": 1}, {}),
    # the fast preset: small-t1 with wider radial basis, pair code and readout
    "nemp-fast": ("nemp", {"preset": "fast"}, {}),
    # the recipe's medium preset with twice its channels (32)
    "nemp-c32": ("nemp", {"channels": 32}, {}),
    # the recipe with its training steps run eagerly (before 2026-12-01, or `compile: false`)
    "nemp-eager": ("nemp", {}, {"compile": False}),
}
_MACE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) INFO: (Initial|Epoch (\d+)): head: [^,]*, "
    r"loss=[^,]*, RMSE_E_per_atom=\s*(\S+) meV, RMSE_F=\s*(\S+) meV / A"
)
_PARAMETERS = re.compile(r"^\w+: ([\d,]+) parameters,", re.MULTILINE)
_TRAINING = re.compile(r"([\d,]+) training / ")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ethanol"], metavar="NAME")
    parser.add_argument("--budgets", nargs="+", default=["5m"], help="e.g. 90s 5m 1h")
    parser.add_argument("--models", nargs="+", default=["nemp", "mace"], choices=MODELS)
    parser.add_argument("--parallel", type=int, default=2, help="simultaneous runs")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--figure", help="write PREFIX<dataset>.png per data set")
    parser.add_argument("--report", action="store_true", help="redraw from OUT/results.json")
    parser.add_argument("--overwrite", action="store_true", help="re-run finished runs")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/mlcalc/bench-peers"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.datasets if name not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(DATASETS)}")
    try:
        args.budget_s = {text: parse_duration(text) for text in args.budgets}
    except ValueError as error:
        parser.error(f"--budgets: {error}")
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    return args


def missing_files(dataset: str) -> list[str]:
    """The files of ``dataset`` (paths relative to the repository root) that do not exist."""
    return [f for f in DATASETS[dataset] if f != "fit" and not (ROOT / f).is_file()]


def write_config(dataset: str, model: str, path: Path) -> dict[str, str]:
    """Write the YAML config of a run: only the data (and the architecture for MLANet, the
    model fields for a :data:`VARIANTS` entry)."""
    import yaml

    train, test, e0s = DATASETS[dataset]
    config = {
        "train_file": str((ROOT / train).resolve()),
        "test_file": str((ROOT / test).resolve()),
    }
    config["e0s"] = e0s if e0s == "fit" else str((ROOT / e0s).resolve())
    if model == "mlanet":
        config["architecture"] = "mlanet"
    if model in VARIANTS:
        architecture, fields, keys = VARIANTS[model]
        config["architecture"] = architecture
        if fields:
            config["model"] = fields
        config.update(keys)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def run_command(run: dict[str, Any], config: Path, cache: Path) -> list[str]:
    """The command line of one run (``run``: dataset, model, budget_s, folder)."""
    result = str(result_dir(run))
    if run["model"] in PEER_BASELINES:
        script, size, _ = PEER_BASELINES[run["model"]]
        return [
            *(str(PYTHON), str(HERE / script), run["dataset"]),
            *("--config", str(config), "--max-time", f"{run['budget_s']:g}"),
            *("--threads", "1", "--out", result, "--skip-setup", "--cache", str(cache)),
            *(() if size is None else ("--size", size)),
        ]
    return [
        *(str(PYTHON), "-m", "mlcalc.cli", "train", str(config)),
        *("--max_time", f"{run['budget_s']:g}", "--threads", "1", "--output_dir", result),
    ]


def result_dir(run: dict[str, Any]) -> Path:
    """Where a run's results go: ``train`` for ours, ``peer`` (``mace`` for MACE) for a peer."""
    if run["model"] == "mace":
        return Path(run["folder"]) / "mace"
    return Path(run["folder"]) / ("peer" if run["model"] in PEER_BASELINES else "train")


def finished(run: dict[str, Any]) -> bool:
    return (result_dir(run) / "test_metrics.json").is_file()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def start(run: dict[str, Any], cache: Path) -> subprocess.Popen[bytes]:
    """Clear the run's folder, write its config and start it; output to ``run.log``."""
    folder = Path(run["folder"])
    if folder.exists():
        if any(folder.iterdir()) and not (folder / "run.json").is_file():
            raise SystemExit(f"{folder} was not made by bench/accuracy.py; not clearing it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = folder / "data.yaml"
    write_config(run["dataset"], run["model"], config)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    # compiling counts in the budget: no cache of an earlier run's compiled graphs, and one
    # compiler process (torch's default is one per core)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor-cache")
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    run["command"] = run_command(run, config, cache)
    run["started"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    run["load_start"] = os.getloadavg()[0]
    write_json(folder / "run.json", run)
    with (folder / "run.log").open("wb") as log:
        return subprocess.Popen(
            run["command"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )


def run_queue(runs: list[dict[str, Any]], parallel: int, cache: Path) -> None:
    """Run ``runs`` in order, at most ``parallel`` at once; the runs of one (dataset, budget)
    group start together (a group waits until it has enough free slots)."""
    queue = list(runs)
    active: list[tuple[dict[str, Any], subprocess.Popen[bytes], float]] = []
    while queue or active:
        for item in list(active):
            run, proc, began = item
            if proc.poll() is not None:
                run.update(returncode=proc.returncode, load_end=os.getloadavg()[0])
                run["wall_s"] = time.perf_counter() - began
                write_json(Path(run["folder"]) / "run.json", run)
                state = "done" if finished(run) else f"FAILED (see {run['folder']}/run.log)"
                print(f"accuracy: {state}: {run['dataset']} {run['budget']} {run['model']}")
                active.remove(item)
        if queue:
            group = [r for r in queue if r["group"] == queue[0]["group"]]
            if parallel - len(active) >= min(len(group), parallel):
                while queue and queue[0]["group"] == group[0]["group"] and len(active) < parallel:
                    run = queue.pop(0)
                    print(f"accuracy: start {run['dataset']} {run['budget']} {run['model']}")
                    active.append((run, start(run, cache), time.perf_counter()))
                continue
        time.sleep(2.0)


def ours_curve(metrics_csv: Path) -> list[list[float]]:
    """``[[time_s, valid forces RMSE meV/Å], ...]`` per validation row: cumulative ``time_s``
    (``epoch_time_s`` in runs written before validations could fall mid-epoch)."""
    curve, elapsed = [], 0.0
    with metrics_csv.open() as stream:
        for row in csv.DictReader(stream):
            elapsed += float(row["time_s"] if "time_s" in row else row["epoch_time_s"])
            if row.get("valid_forces_rmse"):
                curve.append([elapsed, float(row["valid_forces_rmse"])])
    return curve


def mace_curve(log_text: str) -> list[list[float]]:
    """``[[time_s, valid forces RMSE meV/Å], ...]`` from MACE's validation log lines; time
    from the ``Initial`` validation (time 0)."""
    points, zero = [], None
    for line in log_text.splitlines():
        match = _MACE_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        zero = stamp if zero is None else zero  # the Initial line comes first
        points.append([stamp - zero, float(match.group(5))])
    return points


def collect(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per finished run under ``out`` (test metrics, epochs, time, curve, load),
    and the folders of the runs that ended without a test result."""
    records, failed = [], []
    for path in sorted(out.glob("*/*/*/run.json")):
        run = json.loads(path.read_text())
        if not finished(run):
            if run.get("returncode") is not None:
                failed.append(run["folder"])
            continue
        metrics = json.loads((result_dir(run) / "test_metrics.json").read_text())
        record = {k: run.get(k) for k in ("dataset", "budget", "budget_s", "model")}
        record.update({k: run.get(k) for k in ("load_start", "load_end", "started")})
        if run["model"] in PEER_BASELINES:
            folder = result_dir(run)
            if run["model"] == "mace":
                curve = mace_curve((folder / "mace_baseline.log").read_text())
            else:
                curve = json.loads((folder / "curve.json").read_text())
            record.update(parameters=metrics["parameters"], epochs=metrics["epochs"])
            record.update(train_s=metrics["train_s"], curve=curve)
            marker = json.loads((folder / PEER_BASELINES[run["model"]][2]).read_text())
            record.update(n_train=marker.get("n_train"))
        else:
            log = (path.parent / "run.log").read_text()
            found, count = _PARAMETERS.search(log), _TRAINING.search(log)
            curve = ours_curve(result_dir(run) / "metrics.csv")
            record.update(parameters=int(found.group(1).replace(",", "")) if found else None)
            record.update(n_train=int(count.group(1).replace(",", "")) if count else None)
            record.update(epochs=len(curve), train_s=metrics["train_time_s"], curve=curve)
        for label in ("energy", "forces", "stress"):
            for kind in ("mae", "rmse"):
                record[f"test_{label}_{kind}"] = metrics.get(f"{label}_{kind}")
        records.append(record)
    order = list(DATASETS)
    records.sort(key=lambda r: (order.index(r["dataset"]), r["budget_s"], MODELS.index(r["model"])))
    return records, failed


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def throughput(record: dict[str, Any]) -> float | None:
    """Training structures per second of training time (validation passes included)."""
    if not record.get("n_train") or not record["train_s"]:
        return None
    return record["n_train"] * record["epochs"] / record["train_s"]


def mace_runs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """MACE's record per (data set, budget)."""
    return {(r["dataset"], r["budget"]): r for r in records if r["model"] == "mace"}


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table; the ratio is a model's test force RMSE over MACE's at the same set and
    budget."""
    mace = mace_runs(records)
    lines = [
        "| set | budget | model | params | epochs | train s | E RMSE meV/atom | F RMSE meV/Å "
        "| S RMSE meV/Å³ | F RMSE / MACE's | structures/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        reference = mace.get((r["dataset"], r["budget"]))
        ratio = None
        if r is not reference and reference and reference["test_forces_rmse"]:
            ratio = r["test_forces_rmse"] / reference["test_forces_rmse"]
        params = "—" if r["parameters"] is None else f"{r['parameters']:,}"
        lines.append(
            f"| {r['dataset']} | {r['budget']} | {r['model']} | {params} | {r['epochs']} "
            f"| {r['train_s']:.0f} | {_number(r['test_energy_rmse'], 2)} "
            f"| {_number(r['test_forces_rmse'], 1)} | {_number(r['test_stress_rmse'], 2)} "
            f"| {_number(ratio, 2)} | {_number(throughput(r), 1)} |"
        )
    return "\n".join(lines)


def format_per_epoch(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table separating sample efficiency from throughput: each model's validation
    force RMSE after as many epochs as MACE completed, and the seconds per epoch."""
    mace = mace_runs(records)
    lines = [
        "| set | budget | model | epochs compared | valid F RMSE ours / MACE (meV/Å) "
        "| s per epoch ours / MACE |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in records:
        reference = mace.get((r["dataset"], r["budget"]))
        if r["model"] in PEER_BASELINES or reference is None:
            continue
        epochs = len(reference["curve"]) - 1  # its first point is the untrained model
        if epochs < 1 or len(r["curve"]) < epochs:
            continue
        ours, theirs = r["curve"][epochs - 1][1], reference["curve"][epochs][1]
        pace = (r["train_s"] / r["epochs"], reference["train_s"] / reference["epochs"])
        lines.append(
            f"| {r['dataset']} | {r['budget']} | {r['model']} | {epochs} "
            f"| {ours:.1f} / {theirs:.1f} | {pace[0]:.1f} / {pace[1]:.1f} |"
        )
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], prefix: str) -> list[Path]:
    """One PNG per data set: validation F RMSE against training time (log-log), test markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "nemp": "tab:blue",
        "nemp-small": "tab:cyan",
        "nemp-small-t1": "navy",
        "nemp-fast": "tab:olive",
        "nemp-c32": "tab:purple",
        "nemp-eager": "darkkhaki",
        "mlanet": "tab:green",
        "mace": "tab:red",
        "nequip": "tab:orange",
        "nequip-l2": "tab:brown",
        "sevenn": "tab:pink",
        "sevenn-l2": "tab:gray",
    }
    written = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        subset = [r for r in records if r["dataset"] == dataset]
        budgets = sorted({r["budget_s"] for r in subset})
        for r in subset:
            colour = colours[r["model"]]
            style = ("-", "--", ":", "-.")[budgets.index(r["budget_s"]) % 4]
            points = [p for p in r["curve"] if p[0] > 0]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    style,
                    marker=".",
                    color=colour,
                    lw=1.2,
                    alpha=0.8,
                    label=f"{r['model']} {r['budget']} (validation)",
                )
            ax.plot(r["train_s"], r["test_forces_rmse"], "o", color=colour, mec="black", ms=7)
        ax.plot([], [], "o", color="grey", mec="black", label="test F RMSE at the end")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="training wall time (s)",
            ylabel="force RMSE (meV/Å)",
            title=f"{dataset}: same budget, one thread each",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(f"{prefix}{dataset}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def plan(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """The runs to do, in order dataset -> budget -> model, less the finished ones (unless
    ``--overwrite``) and the data sets with missing files (with a message why)."""
    runs = []
    for dataset in args.datasets:
        missing = missing_files(dataset)
        if missing:
            print(
                f"accuracy: skipping {dataset}: missing {', '.join(missing)} (files under "
                f"data/ come from `python examples/configs/prepare_data.py {SHARED} data`; "
                f"the others are the shared reference data in {SHARED})",
                file=sys.stderr,
            )
            continue
        for budget, budget_s in args.budget_s.items():
            for model in args.models:
                run = {
                    "dataset": dataset,
                    "budget": budget,
                    "budget_s": budget_s,
                    "model": model,
                    "folder": str(out / dataset / budget / model),
                    "group": f"{dataset}/{budget}",
                }
                if finished(run) and not args.overwrite:
                    print(f"accuracy: kept finished {dataset} {budget} {model}")
                else:
                    runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    if not args.report:
        run_queue(plan(args, out), args.parallel, args.cache.expanduser())
    records, failed = collect(out) if out.is_dir() else ([], [])
    if not records and not failed:
        raise SystemExit(f"no runs under {out}; run without --report first")
    results = {"cpu_count": os.cpu_count(), "runs": records, "failed": failed}
    write_json(out / "results.json", results)
    print(format_table(results["runs"]))
    print()
    print(format_per_epoch(results["runs"]))
    for folder in results.get("failed", []):
        print(f"no test result (see its run.log): {folder}")
    if args.figure:
        for path in plot(results["runs"], args.figure):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
