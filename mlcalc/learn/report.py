"""What a learn run reports: test errors and calibration per round, ``rounds.csv``, the
learning-curve figure and a model card in the registry's card format (``card.md``)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from scipy.stats import spearmanr

from mlcalc._version import __version__
from mlcalc.atomic import atomic_path, write_text_atomic
from mlcalc.calculators import CALCULATOR_FOR
from mlcalc.committee import CommitteeCalculator
from mlcalc.learn.config import LearnConfig
from mlcalc.learn.labels import LabelStore
from mlcalc.learn.teachers import TeacherSpec
from mlcalc.models import load_checkpoint
from mlcalc.training import LabelKeys, read_structures


def force_errors(
    reference: Sequence[np.ndarray], predicted: Sequence[np.ndarray]
) -> tuple[float, np.ndarray]:
    """Force RMSE over all components (eV/Å) and ``[S]`` per-structure RMS errors (eV/Å)."""
    per_structure = np.array(
        [np.sqrt(np.mean((p - r) ** 2)) for r, p in zip(reference, predicted, strict=True)]
    )
    squares = sum(float(np.sum((p - r) ** 2)) for r, p in zip(reference, predicted, strict=True))
    components = sum(r.size for r in reference)
    return float(np.sqrt(squares / components)), per_structure


def score_committee(
    member_paths: Sequence[str],
    student_path: str,
    test_file: str,
    device: str | None,
    dtype: str,
) -> dict[str, float]:
    """Errors on the teacher-labelled ``test_file``, in meV/Å and meV/atom: the committee mean
    (``test_forces_rmse``, ``test_energy_rmse``), the student (``student_forces_rmse``...) and
    the calibration ``spearman``: rank correlation, over the structures, of the predicted force
    uncertainty (RMS over atoms of ``forces_std``) with the committee's RMS force error."""
    test = read_structures(test_file, LabelKeys())
    frames = [s.atoms for s in test]
    committee = CommitteeCalculator.from_checkpoints(member_paths, device=device, dtype=dtype)
    student_model = load_checkpoint(student_path)
    student = CALCULATOR_FOR[student_model.architecture](student_model, device=device, dtype=dtype)
    scores: dict[str, float] = {}
    reference_f = [s.forces for s in test]
    for name, results in (
        ("test", committee.calculate_batch(frames)),
        ("student", student.calculate_batch(frames)),
    ):
        rmse, per_structure = force_errors(reference_f, [r["forces"] for r in results])
        scores[f"{name}_forces_rmse"] = 1000 * rmse
        energy = [(r["energy"] - s.energy) / len(s) for r, s in zip(results, test, strict=True)]
        scores[f"{name}_energy_rmse"] = 1000 * float(np.sqrt(np.mean(np.square(energy))))
        if name == "test":
            sigma = [float(np.sqrt(np.mean(np.square(r["forces_std"])))) for r in results]
            scores["spearman"] = (
                float(spearmanr(sigma, per_structure).statistic) if len(test) > 2 else float("nan")
            )
    return scores


def write_rounds_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """One row per round, every key that any round has (blank where a round lacks it)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, text.getvalue())


def plot_learning_curve(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Force error (test if scored, else validation) and exploration uncertainty against the
    number of labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["labels"] for row in history]
    key = "test_forces_rmse" if "test_forces_rmse" in history[-1] else "valid_forces_rmse"
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].plot(labels, [row.get(key) for row in history], "o-")
    axes[0].set_xlabel("teacher labels")
    axes[0].set_ylabel(f"{'test' if key.startswith('test') else 'validation'} force RMSE (meV/Å)")
    axes[0].set_yscale("log")
    explored = [
        (row["labels"], row["explore_median_uncertainty"])
        for row in history
        if "explore_median_uncertainty" in row
    ]
    if explored:
        axes[1].plot(*zip(*explored, strict=True), "s-", color="C1")
    axes[1].set_xlabel("teacher labels")
    axes[1].set_ylabel("median force uncertainty of exploration (eV/Å)")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)


def time_per_call(calculator: Any, atoms: Atoms, repeats: int = 5) -> float:
    """Median seconds of an energy+forces calculation of ``atoms`` (after one warm-up)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    times = []
    for k in range(repeats + 1):
        atoms.positions[0, 0] += 1e-4  # a new structure each time
        started = time.perf_counter()
        atoms.get_forces()
        if k:
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def write_card(
    path: Path,
    config: LearnConfig,
    teacher: TeacherSpec,
    history: Sequence[dict[str, Any]],
    store: LabelStore,
    example: Atoms,
) -> None:
    """A model card for ``model.safetensors`` in the registry's card format."""
    model = load_checkpoint(path.parent / "model.safetensors")
    student = CALCULATOR_FOR[model.architecture](model, device=config.device, dtype=config.dtype)
    teacher_seconds = [
        float(f.info["teacher_seconds"])
        for f in store.frames
        if len(f) == len(example) and "teacher_seconds" in f.info
    ]
    student_seconds = time_per_call(student, example)
    last = history[-1]
    lines = [
        f"# `{path.parent.name}`: {model.architecture.upper()} learned from {teacher.describe()}",
        "",
        "```python",
        "from mlcalc import " + type(student).__name__,
        f'atoms.calc = {type(student).__name__}.from_checkpoint("model.safetensors")',
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {model.architecture}, {model.num_parameters():,} parameters, cutoff "
        f"{model.cutoff} Å |",
        f"| elements | {', '.join(model.elements)} |",
        f"| data set | {len(store.frames)} structures labelled by the teacher in "
        f"{len(history)} rounds of `mlcalc learn` ({len(store.failures)} teacher calls failed) |",
        f"| level of theory | {teacher.describe()} |",
        f"| training | committee of {config.committee}, selection `{config.selection}`, "
        f"exploration MD at {', '.join(f'{t:g}' for t in config.temperatures)} K; "
        f"mlcalc {__version__} |",
        f"| default dtype | {config.dtype} |",
        "",
        "## Rounds",
        "",
        "| round | labels | median exploration uncertainty (eV/Å) | force RMSE (meV/Å) |",
        "|---|---|---|---|",
    ]
    key = "test_forces_rmse" if "test_forces_rmse" in last else "valid_forces_rmse"
    for row in history:
        sigma, error = row.get("explore_median_uncertainty"), row.get(key)
        lines.append(
            f"| {row['round']} | {row['labels']} | "
            f"{'' if sigma is None else f'{sigma:.4f}'} | "
            f"{'' if error is None else f'{error:.1f}'} |"
        )
    where = (
        "the teacher-labelled test set"
        if key.startswith("test")
        else ("the members' validation frames (no test_file was given)")
    )
    lines += ["", f"Force errors on {where}."]
    if "student_forces_rmse" in last:
        lines += [
            "",
            "## Test errors (this model)",
            "",
            "| quantity | RMSE |",
            "|---|---|",
            f"| energy | {last['student_energy_rmse']:.2f} meV/atom |",
            f"| forces | {last['student_forces_rmse']:.1f} meV/Å |",
            "",
            f"Committee calibration: Spearman rank correlation of predicted force uncertainty "
            f"with the true force error, per test structure: {last['spearman']:.2f}.",
        ]
    lines += ["", "## Speed", ""]
    if teacher_seconds:
        ratio = float(np.median(teacher_seconds)) / student_seconds
        lines.append(
            f"On the start structure ({len(example)} atoms), energy + forces: this model "
            f"{1000 * student_seconds:.1f} ms, the teacher {1000 * np.median(teacher_seconds):.1f} "
            f"ms (median of its labelling calls, one thread per worker): this model is "
            f"{ratio:.3g}× as fast as the teacher."
        )
    else:
        lines.append(
            f"On the start structure ({len(example)} atoms), energy + forces: "
            f"{1000 * student_seconds:.1f} ms."
        )
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_outputs(
    output_dir: Path,
    config: LearnConfig,
    teacher: TeacherSpec,
    history: Sequence[dict[str, Any]],
    store: LabelStore,
    example: Atoms,
) -> None:
    """``rounds.csv``, ``learning_curve.png`` and ``card.md`` in ``output_dir``."""
    write_rounds_csv(output_dir / "rounds.csv", history)
    plot_learning_curve(output_dir / "learning_curve.png", history)
    write_card(output_dir / "card.md", config, teacher, history, store, example)
