"""``mlcalc learn`` against random selection with a real teacher: learning curves, calibration,
speed against the teacher and a property of the student's MD against the teacher's.

Usage (from the repository root, with the project's venv python)::

    python bench/learn.py --system ethanol-xtb --out runs/learn-ethanol [--threads 1]
    python bench/learn.py --system si-sevennet --out runs/learn-si
    python bench/learn.py --system cu-emt --out /tmp/learn-cu --quick      # minutes
    python bench/learn.py --system ethanol-xtb --out runs/learn-ethanol-pool3 --set candidate_pool=3

Every stage keeps its result in ``OUT/results.json`` and is skipped when it is there, and the
two loops resume where they stopped, so a killed benchmark is continued by running it again.
Stages: the active loop (its ``test.extxyz``, the teacher's own MD at the loop's temperatures,
is the test set of everything), the same loop with ``selection: random`` on the same label
budget, the student's speed against the teacher at ``--speed-atoms`` atoms, the student's MD
stability at the highest temperature, and the radial distribution function of the student's
MD against the teacher's (``--property-ps`` each). Prints one table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

from mlcalc.calculators import CALCULATOR_FOR
from mlcalc.learn import LearnConfig, TeacherSpec, learn
from mlcalc.learn.labelling import langevin_frames, teacher_md
from mlcalc.learn.report import score_committee, time_per_call
from mlcalc.models import load_checkpoint
from mlcalc.training import train
from mlcalc.workflows import rdf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import run_stage


def liquid_silicon(count: int = 64, density: float = 2.57, seed: int = 0) -> Atoms:
    """``count`` Si atoms at random, no two closer than 2.1 Å, in a cube of ``density`` g/cm³."""
    side = (count * 28.0855 / (density * 0.602214)) ** (1 / 3)
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = []
    while len(points) < count:
        trial = rng.uniform(0, side, 3)
        delta = np.array(points) - trial if points else np.zeros((0, 3))
        delta -= side * np.round(delta / side)
        if not len(points) or np.min(np.linalg.norm(delta, axis=1)) > 2.1:
            points.append(trial)
    return Atoms(f"Si{count}", positions=points, cell=[side] * 3, pbc=True)


def molecule_grid(name: str, count: int, spacing: float) -> Atoms:
    """``count`` copies of a molecule on a cubic grid ``spacing`` Å apart (no cell)."""
    single = molecule(name)
    side = int(np.ceil(count ** (1 / 3)))
    copies = [single.copy() for _ in range(count)]
    for k, copy in enumerate(copies):
        copy.translate(spacing * np.array([k % side, (k // side) % side, k // side**2]))
    grid = copies[0]
    for copy in copies[1:]:
        grid += copy
    return grid


#: name: (learn config keys, start structures, structure for speed, RDF box or None).
SYSTEMS: dict[str, dict[str, Any]] = {
    # gas-phase ethanol (two torsions): GFN2-xTB on periodic liquid water takes ~17 s per
    # call here, a flexible molecule milliseconds, so both loops fit a 2-core machine
    "ethanol-xtb": {
        "config": {
            "teacher": "xtb",
            "temperatures": [300, 600, 1000],
            "md_steps": 1000,
            "timestep_fs": 0.5,
            "sample_interval": 10,
            "initial_labels": 12,
            "labels_per_round": 12,
            "max_labels": 120,
            "max_rounds": 10,
            "uncertainty_threshold": 0.05,
            "uncertainty_stop": 1.0,
            "test_frames": 40,
            "test_interval": 40,
            "test_equilibration": 400,
            "training": {"epochs": 60},
        },
        "starts": lambda: [molecule("CH3CH2OH")],
        "speed": lambda: molecule_grid("CH3CH2OH", 112, 7.0),
        "rdf_cell": 30.0,
    },
    # silicon from crystal to melt: a diamond cell and a random liquid-density cell
    "si-sevennet": {
        "config": {
            "teacher": "sevennet",
            "temperatures": [600, 1800],
            "md_steps": 600,
            "timestep_fs": 1.0,
            "sample_interval": 10,
            "initial_labels": 16,
            "labels_per_round": 16,
            "max_labels": 160,
            "max_rounds": 10,
            "uncertainty_threshold": 0.1,
            "uncertainty_stop": 1.5,
            "test_frames": 20,
            "test_interval": 25,
            "test_equilibration": 300,
            "training": {"max_time": "1m"},
        },
        "starts": lambda: [bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2), liquid_silicon()],
        "speed": lambda: bulk("Si", "diamond", a=5.43, cubic=True) * (5, 5, 5),
        "rdf_cell": None,
    },
    # EMT copper: minutes, for trying the benchmark out (and its test)
    "cu-emt": {
        "config": {
            "teacher": "emt",
            "temperatures": [300, 1200],
            "md_steps": 200,
            "sample_interval": 10,
            "initial_labels": 8,
            "labels_per_round": 8,
            "max_labels": 40,
            "max_rounds": 4,
            "uncertainty_threshold": 0.01,
            "test_frames": 10,
            "test_interval": 10,
            "test_equilibration": 50,
            "training": {"epochs": 20},
        },
        "starts": lambda: [bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)],
        "speed": lambda: bulk("Cu", "fcc", a=3.61, cubic=True) * (6, 6, 7),
        "rdf_cell": None,
    },
}


def md_frames(
    atoms: Atoms,
    calculator: Any,
    temperature: float,
    picoseconds: float,
    timestep_fs: float,
    seed: int,
) -> list[Atoms]:
    """Frames every 20 steps of Langevin MD after the first fifth (equilibration)."""
    steps = int(picoseconds * 1000 / timestep_fs)
    return langevin_frames(
        atoms, calculator, temperature, steps * 4 // 5 // 20, 20, steps // 5, timestep_fs, seed
    )


def rdf_peaks(frames: list[Atoms], cell: float | None, rmax: float) -> dict[str, float]:
    """Position (Å) and height of the first peak of the total g(r); molecules are put in a
    periodic box of ``cell`` Å for the count."""
    if cell is not None:
        frames = [Atoms(f.numbers, f.positions, cell=[cell] * 3, pbc=True) for f in frames]
    result = rdf(frames, rmax=rmax)
    g = result.g["total"]
    peak = int(np.argmax(g))
    return {"peak_r": float(result.r[peak]), "peak_g": float(g[peak])}


def learning_curve(output_dir: Path) -> list[dict[str, float]]:
    rows = json.loads((output_dir / "state.json").read_text())["history"]
    return [
        {
            k: r[k]
            for k in (
                "labels",
                "test_forces_rmse",
                "test_energy_rmse",
                "spearman",
                "explore_median_uncertainty",
            )
            if k in r
        }
        for r in rows
    ]


def labels_to_reach(curve: list[dict[str, float]], error: float) -> int | None:
    """The fewest labels at which ``curve`` reaches a test force RMSE <= ``error``."""
    return next((int(r["labels"]) for r in curve if r["test_forces_rmse"] <= error), None)


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(quantity, value) lines of the results table."""
    active, random = results.get("uncertainty", []), results.get("random", [])
    rows = []
    for label, curve in (("active", active), ("random", random)):
        text = ", ".join(f"{int(r['labels'])}: {r['test_forces_rmse']:.1f}" for r in curve)
        rows.append((f"{label} selection: labels: test F RMSE (meV/Å)", text))
    if active and random:
        target = random[-1]["test_forces_rmse"]
        needed = labels_to_reach(active, target)
        rows.append(
            (
                "labels active needs for random's final error",
                f"{needed} of {int(random[-1]['labels'])}" if needed else "not reached",
            )
        )
    dense = results.get("dense")
    if dense and active:
        rows.append(
            (
                f"one model on {dense['labels']} teacher MD frames: test F RMSE",
                f"{dense['test_forces_rmse']:.1f} meV/Å (loop's final / this: "
                f"{active[-1]['test_forces_rmse'] / dense['test_forces_rmse']:.2f})",
            )
        )
    if active and "spearman" in active[-1]:
        rows.append(("calibration (Spearman, final committee)", f"{active[-1]['spearman']:.2f}"))
    speed = results.get("speed")
    if speed:
        rows.append(
            (
                f"speed at {speed['atoms']} atoms (s per E+F call)",
                f"student {speed['student_s']:.3f}, teacher {speed['teacher_s']:.2f}: "
                f"{speed['teacher_s'] / speed['student_s']:.3g}×",
            )
        )
    md = results.get("md")
    if md:
        rows.append(
            (
                f"student MD {md['picoseconds']} ps at {md['temperature']} K",
                f"closest pair {md['closest_pair']:.2f} Å, "
                f"{'collapsed' if md['closest_pair'] < 0.5 else 'no collapse'}",
            )
        )
    prop = results.get("rdf")
    if prop:
        rows.append(
            (
                "RDF first peak r (Å) / g, student vs teacher",
                f"{prop['student']['peak_r']:.3f} / {prop['student']['peak_g']:.2f} vs "
                f"{prop['teacher']['peak_r']:.3f} / {prop['teacher']['peak_g']:.2f}",
            )
        )
    return rows


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` → ``{key: value}`` with each value read as YAML."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--md-ps", type=float, default=100.0, help="student stability run")
    parser.add_argument("--property-ps", type=float, default=5.0, help="each RDF run")
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument(
        "--dense-factor",
        type=int,
        default=10,
        help="the baseline trained on this many times the loop's labels of "
        "teacher MD frames (0: skip)",
    )
    parser.add_argument("--quick", action="store_true", help="short MD runs (a try-out)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override keys of the system's learn config (YAML values), e.g. candidate_pool=3",
    )
    args = parser.parse_args()
    system = SYSTEMS[args.system]
    try:
        overrides = parse_overrides(args.set)
    except ValueError as error:
        parser.error(str(error))
    system = {**system, "config": {**system["config"], **overrides}}
    if args.quick:
        args.md_ps, args.property_ps, args.speed_repeats, args.dense_factor = 0.2, 0.2, 1, 2
    args.out.mkdir(parents=True, exist_ok=True)
    starts_file = args.out / "start.extxyz"
    if not starts_file.exists():
        import ase.io

        ase.io.write(starts_file, system["starts"](), format="extxyz")
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def loop(selection: str) -> list[dict[str, float]]:
        folder = args.out / selection
        values = {
            **system["config"],
            "start": str(starts_file),
            "output_dir": str(folder),
            "selection": selection,
            "threads": args.threads,
            "workers": args.workers,
        }
        if selection == "random":
            values["test_file"] = str(args.out / "uncertainty" / "test.extxyz")
        learn(LearnConfig.from_dict(values), resume=(folder / "state.json").exists())
        return learning_curve(folder)

    run_stage(results, results_path, "uncertainty", lambda: loop("uncertainty"))
    run_stage(results, results_path, "random", lambda: loop("random"))
    test_file = args.out / "uncertainty" / "test.extxyz"
    config = system["config"]
    teacher = TeacherSpec(config["teacher"], config.get("teacher_options", {}))
    model = load_checkpoint(args.out / "uncertainty" / "model.safetensors")
    student = CALCULATOR_FOR[model.architecture](model, device="cpu", dtype="float32")

    def speed() -> dict[str, float]:
        import torch

        torch.set_num_threads(args.threads)
        atoms = system["speed"]()
        return {
            "atoms": len(atoms),
            "threads": args.threads,
            "student_s": time_per_call(student, atoms, args.speed_repeats),
            "teacher_s": time_per_call(teacher.build(), atoms, args.speed_repeats),
        }

    hottest = max(config["temperatures"])
    last_start = system["starts"]()[-1]
    timestep = config.get("timestep_fs", 1.0)

    def stability() -> dict[str, float]:
        frames = md_frames(last_start, student, hottest, args.md_ps, timestep, seed=1)
        closest = min(
            float(np.min(f.get_all_distances(mic=bool(f.pbc.any())) + 1e9 * np.eye(len(f))))
            for f in frames
        )
        return {"picoseconds": args.md_ps, "temperature": hottest, "closest_pair": closest}

    def property_() -> dict[str, Any]:
        peaks = {}
        for name, calculator in (("student", student), ("teacher", teacher.build())):
            frames = md_frames(last_start, calculator, hottest, args.property_ps, timestep, seed=2)
            peaks[name] = rdf_peaks(frames, system["rdf_cell"], rmax=5.0)
        return {"temperature": hottest, "picoseconds": args.property_ps, **peaks}

    def dense() -> dict[str, float]:
        """One model (member 0's recipe) on ``--dense-factor`` × the loop's labels, drawn
        from the teacher's own MD at the loop's temperatures."""
        import ase.io

        labels = args.dense_factor * int(results["uncertainty"][-1]["labels"])
        starts = system["starts"]()
        per_run = -(-labels // (len(starts) * len(config["temperatures"])))
        frames = [
            frame
            for s, start in enumerate(starts)
            for temperature in config["temperatures"]
            for frame in teacher_md(
                teacher,
                start,
                temperature,
                per_run,
                config["sample_interval"],
                config["test_equilibration"],
                timestep,
                seed=100 + s,
            )
        ]
        data = args.out / "dense.extxyz"
        ase.io.write(data, frames[:labels], format="extxyz")
        values = {**system["config"], "start": str(starts_file), "threads": args.threads}
        member = LearnConfig.from_dict(values).member_config(0, data, None, args.out / "dense")
        result = train(member, resume=(args.out / "dense" / "training_state.pt").exists())
        path = str(result.model_path)
        scores = score_committee([path], path, str(test_file), "cpu", "float32")
        return {
            "labels": labels,
            "test_forces_rmse": scores["student_forces_rmse"],
            "test_energy_rmse": scores["student_energy_rmse"],
        }

    if args.dense_factor:
        run_stage(results, results_path, "dense", dense)
    run_stage(results, results_path, "speed", speed)
    run_stage(results, results_path, "md", stability)
    run_stage(results, results_path, "rdf", property_)
    width = max(len(q) for q, _ in summary_rows(results))
    print(f"\n{args.system} (bench/learn.py, {time.strftime('%Y-%m-%d')})")
    for quantity, value in summary_rows(results):
        print(f"{quantity:<{width}}  {value}")


if __name__ == "__main__":
    main()
