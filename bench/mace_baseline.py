"""MACE baselines trained on our data files with our wall-clock budget (issue #4).

Usage (from the repository root, with the project's venv python; after
``python examples/configs/prepare_data.py ../shared/data data``)::

    python bench/mace_baseline.py ethanol --max-time 10m [--threads 1] [--out runs/mace-ethanol]
    python bench/mace_baseline.py si --max-time 15m -- --stress_weight 10   # extra MACE args

DATASET is one of 3bpa, acac, ethanol, water, si, or any name with ``--config``. Everything
that defines the data comes from our config ``examples/configs/DATASET-nemp.yaml``
(``--config`` names another): the training and test files, the validation split
(``valid_fraction`` of the training file, the frames that ``mlcalc.training.data.split`` picks
with ``seed``, so the same frames as our run), E0s (the isolated-atoms file, or MACE's
``average`` least-squares fit where ours says ``fit``), ``batch_size``, ``epochs`` (MACE's
``max_num_epochs``), ``dtype``, ``threads``, ``ema_decay``, ``seed`` and, unless ``--max-time``
is given, ``max_time``. Keys the config leaves out take ``mlcalc.training.TrainConfig``'s
defaults, as ``mlcalc train`` does (``threads``: 1 where that default is torch's own).

The model is a small standard MACE: ``--model MACE``, 64x0e+64x1o hidden irreps
(``--num_channels 64 --max_L 1``), r_max 5.0 Å, 2 interactions, correlation 3, MACE's
other defaults (max_ell 3, 8 Bessel functions, radial MLP [64, 64, 64]). The optimiser, loss
weights, learning rate and its schedule are MACE's defaults (AMSGrad, lr 0.01, energy 1 /
forces 100 / stress 1, ReduceLROnPlateau); EMA is on with our decay. Structures with stress
labels (si) train with ``--loss stress``. Arguments after ``--`` go to ``mace_run_train``
verbatim, after ours (the last occurrence of an option wins).

Steps:

1. set up the MACE venv with ``bench/peers.py`` (``--cache``, as there) if it is missing;
2. read the files with ``mlcalc.training.data.read_structures`` (as ``mlcalc train`` does),
   split, and write ``OUT/data/{train,valid}.extxyz`` with the labels as ``REF_energy``,
   ``REF_forces``, ``REF_stress`` (3x3, ASE sign). mace-torch 0.3.16 would accept the
   BOTNet keys ``energy``/``forces``: it warns and copies ``atoms.get_potential_energy()``
   into ``REF_energy``. Renamed copies do not depend on that, and carry our split;
3. run ``mace_run_train`` through ``bench/mace_worker.py train``, which stops the training
   loop at the budget and lets MACE finalise its best checkpoint (see that file for exactly
   what counts against the budget: MACE's training loop, validation included; not the
   setup before it nor the finalisation after it);
4. predict the test file with ``bench/mace_worker.py eval`` in the MACE venv and score the
   predictions here with the definitions of ``mlcalc eval --json``
   (``mlcalc/training/metrics.py``): energy per atom (meV/atom), force components (meV/Å),
   the 9 stress components (meV/Å³), MAE and RMSE.

It prints the metrics and writes them, with epochs, timings and the parameter count, to
``OUT/test_metrics.json``. ``OUT`` (default ``runs/mace-DATASET``) must not hold an earlier
run unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from mace_worker import write_json  # noqa: E402  (standard library only; bench/ is no package)

WORKER = HERE / "mace_worker.py"
DATASETS = ("3bpa", "acac", "ethanol", "water", "si")
#: The MACE architecture: 64x0e+64x1o, r_max 5 Å, 2 interactions, correlation 3.
MODEL_ARGS = [
    "--model=MACE",
    "--num_channels=64",
    "--max_L=1",
    "--r_max=5.0",
    "--num_interactions=2",
    "--correlation=3",
]
#: Written into OUT first; ``--overwrite`` only clears a folder that holds it.
MARKER = "mace_baseline.json"
MILLI = 1000.0
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str | float) -> float:
    """Seconds in ``"90s"``, ``"12m"``, ``"1h30m"`` or a plain number (``max_time``'s grammar)."""
    text = str(value).strip().lower().replace(" ", "")
    match = _DURATION.match(text)
    if text and match is not None and any(match.groups()):
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    else:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"expected a duration like 90s, 12m or 1h30m, got {value!r}") from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError(f"the duration must be positive, got {value!r}")
    return seconds


#: Display name of each peer package (its venv key in ``bench/peers.py``).
PACKAGE_NAMES = {"mace": "MACE", "nequip": "NequIP", "sevenn": "SevenNet"}


def parse_args(
    argv: Sequence[str] | None = None,
    package: str = "mace",
    sizes: Sequence[str] = (),
    batched_eval: bool = True,
    trainer_args: bool = True,
) -> argparse.Namespace:
    """Arguments of a peer's baseline script (this one and ``bench/nequip_baseline.py``,
    ``bench/sevenn_baseline.py``). ``package``: the venv and the default output folder
    ``runs/PACKAGE[-SIZE]-DATASET``; ``sizes``: the ``--size`` choices, the first the default
    (none: no ``--size``); ``batched_eval``: an ``--eval-batch-size``; ``trainer_args``:
    arguments after ``--`` go to the peer's trainer verbatim (``args.extra``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    name = PACKAGE_NAMES[package]
    parser = argparse.ArgumentParser(description=f"{name} baseline on our data and budget")
    parser.add_argument("dataset", help=f"{', '.join(DATASETS)}, or any name with --config")
    parser.add_argument(
        "--max-time", help="training budget, e.g. 12m (default: max_time of the config)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: the config's)")
    if sizes:
        parser.add_argument("--size", choices=list(sizes), default=sizes[0])
    parser.add_argument("--out", type=Path, help=f"output folder (default runs/{package}-DATASET)")
    parser.add_argument(
        "--config",
        type=Path,
        help="our config to copy (default examples/configs/DATASET-nemp.yaml)",
    )
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/mlcalc/bench-peers"))
    parser.add_argument("--skip-setup", action="store_true", help=f"never install the {name} venv")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in OUT")
    if batched_eval:
        parser.add_argument("--eval-batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    args.budget_s = None
    if args.max_time is not None:
        try:
            args.budget_s = parse_duration(args.max_time)
        except ValueError as error:
            parser.error(f"--max-time: {error}")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if batched_eval and args.eval_batch_size < 1:
        parser.error("--eval-batch-size must be >= 1")
    if extra and not trainer_args:
        parser.error(f"{name}'s trainer takes no arguments after --")
    if args.config is None and args.dataset not in DATASETS:
        parser.error(
            f"dataset {args.dataset!r} has no default config: one of {DATASETS}, or --config"
        )
    folder = package if not sizes or args.size == sizes[0] else f"{package}-{args.size}"
    args.out = args.out or Path("runs") / f"{folder}-{args.dataset}"
    args.config = args.config or ROOT / "examples" / "configs" / f"{args.dataset}-nemp.yaml"
    args.cache = args.cache.expanduser()
    args.extra = extra
    return args


#: What a MACE run takes from our config: the file's value, else TrainConfig's default.
SPEC_KEYS = ("valid_fraction", "seed", "batch_size", "epochs", "dtype", "threads", "ema_decay")


def load_spec(config: Path, max_time: str | None = None) -> dict[str, Any]:
    """What a MACE run copies from one of our YAML configs; paths resolved against the
    repository root (the configs are written to run from there). The ``SPEC_KEYS`` the file
    leaves out are ``mlcalc.training.config.TrainConfig``'s defaults as ``mlcalc train`` resolves
    them for budget ``max_time`` (``--max-time``; else the file's): ``epochs``, for one, may
    depend on it."""
    import yaml

    from mlcalc.training.config import TrainConfig

    raw = yaml.safe_load(config.read_text())
    given = {key: raw[key] for key in SPEC_KEYS if key in raw}
    budget = max_time if max_time is not None else raw.get("max_time")
    default = TrainConfig(train_file=str(raw["train_file"]), max_time=budget, **given)

    def path(value: str | None) -> Path | None:
        return None if value is None else (ROOT / value).resolve()

    e0s = raw.get("e0s") or "fit"
    if isinstance(e0s, str) and e0s not in ("fit", "keep"):
        e0s = path(e0s)
    return {
        "config": str(config),
        "train_file": path(raw["train_file"]),
        "valid_file": path(raw.get("valid_file")),
        "test_file": path(raw["test_file"]),
        "e0s": e0s,
        "valid_fraction": float(default.valid_fraction),
        "seed": int(default.seed),
        "batch_size": default.batch_size,  # None: sized from the data, as mlcalc train does
        "epochs": int(default.epochs),
        "max_time": raw.get("max_time"),
        "dtype": str(default.dtype),
        "threads": int(default.threads or 1),  # None is torch's default: one thread here
        "ema_decay": float(default.ema_decay),
    }


def e0s_argument(e0s: Any, isolated: Sequence[Any] = (), elements: Sequence[int] = ()) -> str:
    """MACE's ``--E0s`` for our ``e0s``: ``fit`` becomes ``average`` (MACE's least-squares
    fit on the training set); a mapping symbol -> eV and the single-atom structures of an
    isolated-atoms file (``isolated``) become ``{Z: E}`` for the atomic numbers ``elements``
    of the training data."""
    from ase.data import atomic_numbers

    if e0s == "fit":
        return "average"
    energies: dict[int, float] = {}
    if isinstance(e0s, dict):
        energies = {atomic_numbers[symbol]: float(value) for symbol, value in e0s.items()}
    elif isinstance(e0s, Path):
        for structure in isolated:
            if len(structure) == 1 and structure.energy is not None:
                energies[int(structure.atoms.numbers[0])] = float(structure.energy)
    else:
        raise ValueError(f"e0s {e0s!r} has no MACE equivalent here (use fit, a file or a mapping)")
    missing = sorted(set(elements) - set(energies))
    if missing:
        raise ValueError(f"e0s {e0s}: no isolated-atom energy for atomic numbers {missing}")
    # only the elements of the data: MACE sizes its E0 table by the dict, not by the data
    return "{" + ", ".join(f"{z}: {energies[z]!r}" for z in sorted(elements)) + "}"


def mace_command(
    spec: dict[str, Any],
    data: Path,
    out: Path,
    e0s: str,
    stress: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """``mace_run_train`` arguments for one run (what follows ``--`` for the worker)."""
    command = [
        "--name=mace",
        f"--work_dir={out}",
        f"--train_file={data / 'train.extxyz'}",
        f"--valid_file={data / 'valid.extxyz'}",
        f"--E0s={e0s}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--stress_key=REF_stress",
        *MODEL_ARGS,
        f"--batch_size={spec['batch_size']}",
        f"--max_num_epochs={spec['epochs']}",
        f"--default_dtype={spec['dtype']}",
        f"--seed={spec['seed']}",
        "--ema",
        f"--ema_decay={spec['ema_decay']}",
        "--device=cpu",
        "--pin_memory=False",
        "--plot=False",
    ]
    if stress:
        command += [
            "--loss=stress",
            "--compute_stress=True",
            "--error_table=PerAtomRMSEstressvirials",
        ]
    return command + list(extra)


# ---------------------------------------------------------------------------------------------
# Metrics: the definitions of mlcalc/training/metrics.py, on numpy arrays


def score(
    labels: Sequence[Any],
    energy: np.ndarray,
    forces: Sequence[np.ndarray],
    stress: np.ndarray | None = None,
) -> dict[str, float | int]:
    """``n_structures``, ``n_atoms`` and ``<label>_mae`` / ``<label>_rmse`` in meV units.

    ``labels``: per structure, an object with ``len()`` (atoms) and ``energy`` (eV),
    ``forces`` (``[n, 3]`` eV/Å) and ``stress`` (``[3, 3]`` eV/Å³), each possibly ``None``
    (``mlcalc.training.data.LabeledStructure``). Predictions in the same order: total
    energies, per-structure forces, stresses ``[n, 3, 3]`` (or ``None``). As in ``mlcalc
    eval``: energy residuals per atom (one per labelled structure), every force component,
    the nine components of every labelled stress.
    """
    if not len(labels) == len(energy) == len(forces):
        raise ValueError(f"{len(labels)} structures but {len(energy)} / {len(forces)} predicted")
    residuals: dict[str, list[np.ndarray]] = {"energy": [], "forces": [], "stress": []}
    for k, label in enumerate(labels):
        n = len(label)
        if label.energy is not None:
            residuals["energy"].append(np.atleast_1d((float(energy[k]) - label.energy) / n))
        if label.forces is not None:
            predicted = np.asarray(forces[k], dtype=np.float64)
            if predicted.shape != (n, 3):
                raise ValueError(f"structure {k}: forces {predicted.shape}, expected ({n}, 3)")
            residuals["forces"].append((predicted - label.forces).reshape(-1))
        if label.stress is not None and stress is not None:
            tensor = np.asarray(stress[k], dtype=np.float64).reshape(3, 3)
            residuals["stress"].append((tensor - np.asarray(label.stress).reshape(3, 3)).ravel())
    result: dict[str, float | int] = {
        "n_structures": len(labels),
        "n_atoms": int(sum(len(label) for label in labels)),
    }
    for name, parts in residuals.items():
        if parts:
            values = np.concatenate(parts)
            result[f"{name}_mae"] = MILLI * float(np.abs(values).mean())
            result[f"{name}_rmse"] = MILLI * math.sqrt(float(np.square(values).mean()))
    return result


def split_forces(forces: np.ndarray, num_atoms: Sequence[int]) -> list[np.ndarray]:
    """Concatenated ``[N, 3]`` forces into one array per structure."""
    if int(sum(num_atoms)) != len(forces):
        raise ValueError(f"{len(forces)} force rows for {int(sum(num_atoms))} atoms")
    return np.split(forces, np.cumsum(num_atoms)[:-1])


def format_metrics(metrics: dict[str, Any]) -> str:
    units = {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}
    lines = [f"test: {metrics['n_structures']} structures, {metrics['n_atoms']} atoms"]
    for label, unit in units.items():
        if f"{label}_mae" in metrics:
            lines.append(
                f"  {label:<7} MAE {metrics[f'{label}_mae']:9.3f}  "
                f"RMSE {metrics[f'{label}_rmse']:9.3f}  {unit}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run


def write_labelled(structures: Sequence[Any], path: Path) -> None:
    """Frames as extxyz with their labels under ``REF_energy``/``REF_forces``/``REF_stress``."""
    from ase.io import write

    frames = []
    for structure in structures:
        atoms = structure.atoms.copy()
        if structure.energy is not None:
            atoms.info["REF_energy"] = float(structure.energy)
        if structure.forces is not None:
            atoms.arrays["REF_forces"] = np.asarray(structure.forces, dtype=np.float64)
        if structure.stress is not None:
            atoms.info["REF_stress"] = np.asarray(structure.stress, dtype=np.float64).reshape(3, 3)
        frames.append(atoms)
    write(path, frames, format="extxyz")


def prepare(spec: dict[str, Any], data: Path) -> dict[str, Any]:
    """Split and write the training data, read the test labels, and the ``--E0s`` value."""
    from mlcalc.training.data import read_structures, split
    from mlcalc.training.recipe import batch_size_for

    train = read_structures(spec["train_file"])
    if spec["valid_file"] is not None:
        valid = read_structures(spec["valid_file"])
    else:
        train, valid = split(train, spec["valid_fraction"], spec["seed"])
    test = read_structures(spec["test_file"])
    elements = sorted({int(z) for s in [*train, *valid] for z in s.atoms.numbers})
    unseen = sorted({int(z) for s in test for z in s.atoms.numbers} - set(elements))
    if unseen:
        raise SystemExit(
            f"{spec['test_file']}: atomic numbers {unseen} are not in the training data"
        )
    isolated = read_structures(spec["e0s"]) if isinstance(spec["e0s"], Path) else []
    e0s = e0s_argument(spec["e0s"], isolated, elements)
    data.mkdir(parents=True, exist_ok=True)
    write_labelled(train, data / "train.extxyz")
    write_labelled(valid, data / "valid.extxyz")
    batch_size = spec["batch_size"] or batch_size_for([len(s) for s in train])
    return {
        "batch_size": batch_size,
        "train": len(train),
        "valid": len(valid),
        "test": test,
        "e0s": e0s,
        "stress": any(s.stress is not None for s in [*train, *valid]),
        "test_stress": any(s.stress is not None for s in test),
    }


def prepare_out(out: Path, overwrite: bool, marker: str = MARKER) -> None:
    """Create ``out``; with ``overwrite``, first clear an earlier run there, one that holds the
    baseline script's ``marker`` file (any other non-empty folder is refused)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SystemExit(f"{out} is not empty; give --overwrite or another --out")
        if not (out / marker).is_file():
            raise SystemExit(f"{out} has no {marker}: not a run of that baseline; not clearing it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_logged(command: list[str], env: dict[str, str], log: Path, limit_s: float) -> int:
    """Run ``command`` with its output shown and appended to ``log``; kill it after ``limit_s``
    (a backstop only: the worker keeps the training budget itself)."""
    with log.open("a") as sink:
        sink.write(f"\n$ {' '.join(command)}\n")
        sink.flush()
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            watchdog = threading.Timer(limit_s, proc.kill)
            watchdog.start()
            try:
                for line in proc.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    sink.write(line)
                return proc.wait()
            finally:
                watchdog.cancel()


def atomic_energies(e0s: Any, data: Path) -> dict[str, float]:
    """Our E0s (eV per element) for the frames of ``data/{train,valid}.extxyz``, as ``mlcalc
    train`` resolves the config's ``e0s``: ``fit`` (least squares on the training frames), an
    isolated-atoms file or a mapping symbol -> eV."""
    from mlcalc.training.data import LabelKeys, atomic_energies_from, elements_of, read_structures

    keys = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress")
    train = read_structures(data / "train.extxyz", keys)
    valid = read_structures(data / "valid.extxyz", keys)
    spec = str(e0s) if isinstance(e0s, Path) else e0s
    return atomic_energies_from(spec, train, elements_of([*train, *valid]))


@dataclass
class Run:
    """A baseline run's settings once its folder and the peer's venv are ready."""

    spec: dict[str, Any]  # load_spec's, budget resolved
    budget_s: float
    threads: int
    out: Path  # the output folder, absolute
    peer: dict[str, Any]  # bench/peers.py's setup_peer result: python, versions
    record: dict[str, Any]  # written to the marker file


def start_run(
    args: argparse.Namespace, package: str, marker: str, log: Callable[[str], None]
) -> Run:
    """Resolve the budget and threads, clear or create the output folder (holding ``marker``),
    set up the ``package`` venv and write the marker record."""
    import peers  # bench/peers.py: the peer venvs

    spec = load_spec(args.config, args.max_time)
    budget_s = args.budget_s
    if budget_s is None:
        if spec["max_time"] is None:
            raise SystemExit(f"{args.config} has no max_time; give --max-time")
        budget_s = parse_duration(spec["max_time"])
    threads = args.threads or spec["threads"]
    out = args.out.resolve()
    prepare_out(out, args.overwrite, marker)
    name = PACKAGE_NAMES[package]
    peer = peers.setup_peer(args.cache, package, args.skip_setup, log)
    if "error" in peer:
        raise SystemExit(f"{name} venv: {peer['error']}")
    log(f"{name} venv {peer['python']}: {peer['versions']}")
    record: dict[str, Any] = {
        "dataset": args.dataset,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        **{k: str(v) if isinstance(v, Path) else v for k, v in spec.items()},
        **({"size": args.size} if hasattr(args, "size") else {}),
        "budget_s": budget_s,
        "threads": threads,
        "versions": peer["versions"],
    }
    write_json(out / marker, record)
    return Run(spec, budget_s, threads, out, peer, record)


def evaluate_test(
    command: list[str], data: dict[str, Any], env: dict[str, str], log: Path, predictions: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a worker's ``eval`` ``command`` (its output appended to ``log``), which writes
    ``predictions`` for ``data["test"]``, and score them: ``(metrics, the worker's info)``."""
    import peers

    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=7200)
    with log.open("a") as sink:
        sink.write(f"\n$ {' '.join(command)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise SystemExit(f"evaluation failed: {peers.last_line(proc.stderr)}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(predictions) as arrays:
        test = data["test"]
        if [len(s) for s in test] != arrays["num_atoms"].tolist():
            raise SystemExit("the predictions do not match the test file's structures")
        stress = arrays["stress"] if "stress" in arrays else None
        forces = split_forces(arrays["forces"], arrays["num_atoms"])
        metrics = score(test, arrays["energy"], forces, stress)
    return metrics, info


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    import peers  # bench/peers.py: the MACE venv

    def log(message: str) -> None:
        print(f"mace_baseline: {message}", file=sys.stderr, flush=True)

    run = start_run(args, "mace", MARKER, log)
    spec, out, budget_s, threads = run.spec, run.out, run.budget_s, run.threads
    peer, record = run.peer, run.record

    data = prepare(spec, out / "data")
    spec["batch_size"] = data["batch_size"]
    record["batch_size"] = data["batch_size"]
    mace_args = mace_command(spec, out / "data", out, data["e0s"], data["stress"], args.extra)
    record.update(
        n_train=data["train"], n_valid=data["valid"], e0s_argument=data["e0s"], mace_args=mace_args
    )
    write_json(out / MARKER, record)
    log(f"{data['train']} training / {data['valid']} validation structures; budget {budget_s:g} s")

    env = peers.child_env(threads)
    python = peer["python"]
    status_path = out / "mace_budget.json"
    train = [python, str(WORKER), "train", f"--budget-s={budget_s}", f"--status={status_path}"]
    train += [f"--threads={threads}", "--", *mace_args]
    code = run_logged(train, env, out / "mace_baseline.log", budget_s + max(3600.0, budget_s))
    if code != 0 or not (out / "mace.model").is_file():
        raise SystemExit(f"mace_run_train failed (exit {code}); see {out / 'mace_baseline.log'}")
    status = json.loads(status_path.read_text())

    predictions = out / "test_predictions.npz"
    evaluate = [python, str(WORKER), "eval", f"--model={out / 'mace.model'}"]
    evaluate += [f"--configs={spec['test_file']}", f"--out={predictions}", f"--threads={threads}"]
    evaluate.append(f"--batch-size={args.eval_batch_size}")
    if data["test_stress"]:
        evaluate.append("--stress")
    metrics, info = evaluate_test(evaluate, data, env, out / "mace_baseline.log", predictions)
    metrics.update(
        {
            "dataset": args.dataset,
            "model": "MACE 64x0e+64x1o, r_max 5, 2 interactions, correlation 3",
            "test_file": str(spec["test_file"]),
            "epochs": status["epochs_done"],
            "best_epoch": status["best_epoch"],
            "stopped_by": status["stopped_by"],
            "budget_s": budget_s,
            "train_s": status["train_s"],
            "setup_s": status["setup_s"],
            "finalise_s": status["finalise_s"],
            "eval_s": info["eval_s"],
            "wall_s": time.perf_counter() - started,
            "parameters": info["parameters"],
            "dtype": info["dtype"],
            "threads": threads,
            "mace_torch": peer["versions"].get("mace-torch"),
        }
    )
    write_json(out / "test_metrics.json", metrics)
    print(format_metrics(metrics))
    print(
        f"MACE {metrics['parameters']:,} parameters; {metrics['epochs']} epochs in "
        f"{metrics['train_s']:.0f} s of a {budget_s:g} s budget (stopped by "
        f"{metrics['stopped_by']}; best epoch {metrics['best_epoch']}); setup "
        f"{metrics['setup_s']:.0f} s, finalise {metrics['finalise_s']:.0f} s, test "
        f"{metrics['eval_s']:.0f} s, wall {metrics['wall_s']:.0f} s"
    )
    print(f"wrote {out / 'test_metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
