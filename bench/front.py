"""The accuracy–speed front (issue #28): test force error against inference speed, every model
a point.

Usage (from the repository root, with the project's venv python)::

    python bench/accuracy.py --datasets ethanol --budgets 30m \\
        --models nemp nemp-small nemp-fast mlanet nequip sevenn --out runs/front
    python bench/peers.py --sizes 1536 12288 --dtype float32 --threads 2 --json runs/speed.json \\
        --models nemp-medium nemp-medium-compiled nemp-small nemp-small-compiled nemp-fast \\
        nemp-fast-compiled shipped-water-mlanet nequip nequip-l2 sevenn sevenn-l2 mace-64
    python bench/front.py --accuracy runs/front/results.json --speed runs/speed.json \\
        [--figure docs/img/front_]

Accuracy is a trained model's test force RMSE (meV/Å) from ``bench/accuracy.py``'s
``results.json`` (one or more files: one thread per training, the same frames, E0s and
budget). Speed is ``bench/peers.py``'s µs/atom/step (energy + forces + stress through each
package's ASE calculator) on liquid-water boxes, measured for the *architecture* each
training used (:data:`SPEED_MODELS`): an architecture's cost per atom does not depend on its
weights, so every data set's models are timed once, side by side, on the same water atoms.
One training can give several points (ours eager and with ``compile=True``).

For every peer point the table names the fastest model of ours whose test force RMSE is equal
or lower, and its speed-up (the issue's target: ≥ 3×). ``--figure PREFIX`` writes
``PREFIX<dataset>.png``: force RMSE against µs/atom/step at the first ``--sizes`` size,
log–log, with the front of each package's points.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: ``bench/accuracy.py`` model → the ``bench/peers.py`` models that time its architecture.
#: The recipe's NEMP is the ``medium`` preset; the recipe's MLANet is the shipped
#: ``water-mlanet`` architecture (same config; weights do not change the cost).
SPEED_MODELS: dict[str, tuple[str, ...]] = {
    "nemp": ("nemp-medium", "nemp-medium-compiled"),
    "nemp-small": ("nemp-small", "nemp-small-compiled"),
    "nemp-small-t1": ("nemp-small-t1", "nemp-small-t1-compiled"),
    "nemp-fast": ("nemp-fast", "nemp-fast-compiled"),
    "mlanet": ("shipped-water-mlanet",),
    "mace": ("mace-64",),
    "nequip": ("nequip",),
    "nequip-l2": ("nequip-l2",),
    "sevenn": ("sevenn",),
    "sevenn-l2": ("sevenn-l2",),
}
#: Package of each ``bench/accuracy.py`` model; the rest are ours.
PEER_PACKAGES = {"mace": "MACE", "nequip": "NequIP", "nequip-l2": "NequIP"}
PEER_PACKAGES |= {"sevenn": "SevenNet", "sevenn-l2": "SevenNet"}
#: Speed-up over each peer point that the issue asks of a model of ours at equal accuracy.
TARGET = 3.0


def package(model: str) -> str:
    return PEER_PACKAGES.get(model, "mlcalc")


def load_speed(paths: Sequence[Path]) -> dict[tuple[str, int], float]:
    """``(speed model, atoms) -> µs/atom/step`` from ``bench/peers.py --json`` files (a later
    file's measurement of the same model and size wins)."""
    speed: dict[tuple[str, int], float] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text())["rows"]:
            if row.get("us_per_atom") is not None and row.get("dtype", "float32") == "float32":
                speed[(row["model"], int(row["atoms"]))] = float(row["us_per_atom"])
    return speed


def load_accuracy(paths: Sequence[Path], budget: str) -> list[dict[str, Any]]:
    """The ``bench/accuracy.py`` records at ``budget`` (a later file's run of the same data set
    and model wins)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for record in json.loads(Path(path).read_text())["runs"]:
            if record["budget"] == budget and record.get("test_forces_rmse") is not None:
                found[(record["dataset"], record["model"])] = record
    return list(found.values())


def points(
    records: Sequence[dict[str, Any]], speed: dict[tuple[str, int], float], sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """One point per (trained model, speed model) with a time at every size in ``sizes``;
    ``us_per_atom`` is ``{atoms: µs/atom/step}``."""
    out = []
    for record in records:
        for timed in SPEED_MODELS.get(record["model"], ()):
            times = {size: speed.get((timed, size)) for size in sizes}
            if times[sizes[0]] is None:
                continue
            out.append(
                {
                    "dataset": record["dataset"],
                    "model": record["model"],
                    "timed_as": timed,
                    "package": package(record["model"]),
                    "parameters": record.get("parameters"),
                    "epochs": record.get("epochs"),
                    "forces_rmse": record["test_forces_rmse"],
                    "energy_rmse": record.get("test_energy_rmse"),
                    "us_per_atom": times,
                }
            )
    return out


def matches(dataset_points: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """For each peer point, the fastest point of ours with equal or lower force RMSE at
    ``size`` (``ours``: ``None`` when none is as accurate) and the speed-up."""
    ours = [p for p in dataset_points if p["package"] == "mlcalc"]
    rows = []
    for peer in (p for p in dataset_points if p["package"] != "mlcalc"):
        if peer["us_per_atom"].get(size) is None:
            continue
        candidates = [
            p
            for p in ours
            if p["forces_rmse"] <= peer["forces_rmse"] and p["us_per_atom"].get(size) is not None
        ]
        best = min(candidates, key=lambda p: p["us_per_atom"][size], default=None)
        ratio = None if best is None else peer["us_per_atom"][size] / best["us_per_atom"][size]
        rows.append({"peer": peer, "ours": best, "speedup": ratio, "size": size})
    return rows


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def format_points(dataset_points: Sequence[dict[str, Any]], sizes: Sequence[int]) -> str:
    """Markdown table of one data set's points, most accurate first."""
    header = " | ".join(f"µs/atom/step at {size:,}" for size in sizes)
    lines = [
        f"| model | timed as | params | epochs | F RMSE meV/Å | E RMSE meV/atom | {header} |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(sizes),
    ]
    for p in sorted(dataset_points, key=lambda p: (p["forces_rmse"], p["us_per_atom"][sizes[0]])):
        params = "—" if p["parameters"] is None else f"{p['parameters']:,}"
        times = " | ".join(_number(p["us_per_atom"].get(size), 0) for size in sizes)
        lines.append(
            f"| {p['model']} | {p['timed_as']} | {params} | {p['epochs'] or '—'} "
            f"| {p['forces_rmse']:.1f} | {_number(p['energy_rmse'], 2)} | {times} |"
        )
    return "\n".join(lines)


def format_matches(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: each peer point, our fastest model at least as accurate, the speed-up."""
    lines = [
        "| peer | peer F RMSE | atoms | fastest of ours with ≤ F RMSE | its F RMSE "
        f"| speed-up (target ≥ {TARGET:g}×) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        peer, ours = row["peer"], row["ours"]
        name = "none as accurate" if ours is None else f"{ours['model']} ({ours['timed_as']})"
        lines.append(
            f"| {peer['model']} | {peer['forces_rmse']:.1f} | {row['size']:,} | {name} "
            f"| {_number(None if ours is None else ours['forces_rmse'], 1)} "
            f"| {_number(row['speedup'], 2)} |"
        )
    return "\n".join(lines)


def plot(dataset: str, dataset_points: Sequence[dict[str, Any]], size: int, path: Path) -> Path:
    """Force RMSE against µs/atom/step at ``size``, log–log; each package's front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    colours = {"mlcalc": "tab:blue", "MACE": "tab:red", "NequIP": "tab:orange"}
    colours["SevenNet"] = "tab:green"
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for name in dict.fromkeys(p["package"] for p in dataset_points):
        colour = colours.get(name, "grey")
        own = sorted(
            (p for p in dataset_points if p["package"] == name),
            key=lambda p: p["us_per_atom"][size],
        )
        for p in own:
            compiled = p["timed_as"].endswith("-compiled")
            xy = (p["us_per_atom"][size], p["forces_rmse"])
            ax.plot(*xy, "o", color="white" if compiled else colour, mec=colour, mew=1.5, ms=7)
            if not compiled:  # one label per trained model, beside its eager point
                ax.annotate(p["model"], xy, fontsize=7, xytext=(5, 4), textcoords="offset points")
        ax.plot([], [], "o", color=colour, mec=colour, ms=7, label=name)
        front, best = [], float("inf")
        for p in own:
            if p["forces_rmse"] < best:
                front.append((p["us_per_atom"][size], p["forces_rmse"]))
                best = p["forces_rmse"]
        ax.plot(*zip(*front, strict=True), "-", color=colour, lw=1, alpha=0.6)
    if any(p["timed_as"].endswith("-compiled") for p in dataset_points):
        ax.plot([], [], "o", color="white", mec="black", ms=7, label="the same, compile=True")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"µs/atom/step, {size:,} water atoms, float32, E + F + S",
        ylabel="test force RMSE (meV/Å)",
        title=f"{dataset}: same training budget; lower left is better",
    )
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 5 × 10^n; no minor labels
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accuracy", nargs="+", type=Path, required=True, metavar="RESULTS")
    parser.add_argument("--speed", nargs="+", type=Path, required=True, metavar="PEERS_JSON")
    parser.add_argument("--budget", default="30m", help="the training budget to compare")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1536, 12288])
    parser.add_argument("--figure", help="write PREFIX<dataset>.png per data set")
    parser.add_argument("--json", type=Path, help="write the points and matches here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    speed = load_speed(args.speed)
    records = load_accuracy(args.accuracy, args.budget)
    all_points = points(records, speed, args.sizes)
    if not all_points:
        raise SystemExit("no trained model has a speed measurement: see SPEED_MODELS")
    report: dict[str, Any] = {}
    for dataset in dict.fromkeys(p["dataset"] for p in all_points):
        subset = [p for p in all_points if p["dataset"] == dataset]
        found = [row for size in args.sizes for row in matches(subset, size)]
        report[dataset] = {"points": subset, "matches": found}
        print(f"## {dataset}, {args.budget}\n\n{format_points(subset, args.sizes)}\n")
        print(f"{format_matches(found)}\n")
        if args.figure:
            print(
                f"wrote {plot(dataset, subset, args.sizes[0], Path(f'{args.figure}{dataset}.png'))}"
            )
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
