"""Errors of a model against labelled data: MAE and RMSE of energy per atom, forces, stress.

Units of the reported errors: energy meV/atom, forces meV/Å, stress meV/Å³ (the nine
components of each stress tensor). The same code scores validation during training and
``mlcalc eval``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlcalc.atomic import write_text_atomic
from mlcalc.models import AtomisticModel
from mlcalc.progress import progress_bar
from mlcalc.training.graphs import Batch, GraphDataset
from mlcalc.training.loss import LABELS, LossKind, label_counts, penalty, residuals

#: eV -> meV.
MILLI = 1000.0

#: Unit of each label's reported errors.
ERROR_UNITS: dict[str, str] = {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}


class ErrorSums:
    """Running sums of |r|, r² and the loss penalty per label, mergeable across processes.

    Args:
        loss: the penalty used for the loss sums.
        huber_delta: δ of the Huber penalty.
        keep_values: also keep (reference, prediction) pairs for parity plots.
    """

    def __init__(
        self, loss: LossKind = "mse", huber_delta: float = 0.01, keep_values: bool = False
    ) -> None:
        self.loss, self.huber_delta = loss, huber_delta
        # per label: [count, sum |r|, sum r², sum penalty]
        self.sums = torch.zeros(len(LABELS), 4, dtype=torch.float64)
        self.structures = 0
        self.atoms = 0
        self.keep_values = keep_values
        self.values: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in LABELS}

    def add(self, outputs: dict[str, torch.Tensor], batch: Batch) -> None:
        """Accumulate one batch (``outputs`` of the model on ``batch.graph``)."""
        self.structures += int(batch.num_atoms.numel())
        self.atoms += int(batch.num_atoms.sum())
        counts = label_counts(batch)
        batch_residuals = residuals(outputs, batch)
        for index, label in enumerate(LABELS):
            residual = batch_residuals.get(label)
            if residual is None:
                continue
            residual = residual.detach().double().cpu()
            self.sums[index] += torch.tensor(
                [
                    counts[label],
                    residual.abs().sum().item(),
                    residual.square().sum().item(),
                    penalty(residual, self.loss, self.huber_delta).sum().item(),
                ],
                dtype=torch.float64,
            )
            if self.keep_values:
                self.values[label].append(self._pairs(label, outputs, batch))

    @staticmethod
    def _pairs(
        label: str, outputs: dict[str, torch.Tensor], batch: Batch
    ) -> tuple[np.ndarray, np.ndarray]:
        if label == "energy":
            sizes = batch.num_atoms.double()
            reference = (batch.energy / sizes)[batch.energy_mask]
            predicted = (outputs["energy"].detach().double().cpu() / sizes)[batch.energy_mask]
        else:
            mask = batch.forces_mask if label == "forces" else batch.stress_mask
            reference = getattr(batch, label)[mask].reshape(-1)
            predicted = outputs[label].detach().cpu()[mask].reshape(-1)
        return reference.double().numpy(), predicted.double().numpy()

    def all_reduce(self) -> None:
        """Sum the counts of every process (``torch.distributed``) into each process."""
        import torch.distributed as dist

        totals = torch.cat([self.sums.reshape(-1), torch.tensor([self.structures, self.atoms])])
        dist.all_reduce(totals)
        self.sums = totals[:-2].reshape(self.sums.shape)
        self.structures, self.atoms = int(totals[-2]), int(totals[-1])

    def mean_penalty(self, label: str) -> float | None:
        count, _, _, total = self.sums[LABELS.index(label)].tolist()
        return total / count if count else None

    def errors(self) -> dict[str, float | int]:
        """``n_structures``, ``n_atoms`` and ``<label>_mae`` / ``<label>_rmse`` (meV units)
        of every label present."""
        result: dict[str, float | int] = {"n_structures": self.structures, "n_atoms": self.atoms}
        for label, (count, abs_sum, square_sum, _) in zip(LABELS, self.sums.tolist(), strict=True):
            if count:
                result[f"{label}_mae"] = MILLI * abs_sum / count
                result[f"{label}_rmse"] = MILLI * math.sqrt(square_sum / count)
        return result

    def parity_data(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per label: (reference, predicted) in eV/atom, eV/Å, eV/Å³."""
        return {
            label: (np.concatenate([r for r, _ in pairs]), np.concatenate([p for _, p in pairs]))
            for label, pairs in self.values.items()
            if pairs
        }


def evaluate(
    model: AtomisticModel,
    dataset: GraphDataset,
    device: torch.device | str = "cpu",
    max_atoms_per_batch: int = 2048,
    indices: Sequence[int] | None = None,
    sums: ErrorSums | None = None,
    progress: bool | None = False,
) -> ErrorSums:
    """Score ``model`` on ``dataset`` (or the structures at ``indices``); returns the sums.

    Forces are computed when the data has force labels, stress when it has stress labels.
    ``progress``: a bar of the structures on stderr (``None``: when stderr is a terminal).
    """
    sums = sums if sums is not None else ErrorSums()
    compute_forces, compute_stress = dataset.has_forces, dataset.has_stress
    was_training = model.training
    model.eval()
    total = len(dataset) if indices is None else len(indices)
    bar = progress_bar(desc="eval", unit="structures", total=total, enabled=progress)
    try:
        for group in dataset.batches_by_atoms(max_atoms_per_batch, indices):
            batch = dataset.batch(group).to(device)
            with torch.set_grad_enabled(compute_forces or compute_stress):
                outputs = model(
                    batch.graph, compute_forces=compute_forces, compute_stress=compute_stress
                )
            sums.add({k: v.detach() for k, v in outputs.items()}, batch.to("cpu"))
            bar.update(len(group))
    finally:
        bar.close()
        model.train(was_training)
    return sums


def format_errors(errors: dict[str, float | int]) -> str:
    """One line: ``E MAE/RMSE ... meV/atom, F ... meV/Å, S ... meV/Å³``."""
    parts = []
    for label, unit in ERROR_UNITS.items():
        if f"{label}_mae" in errors:
            mae, rmse = errors[f"{label}_mae"], errors[f"{label}_rmse"]
            parts.append(f"{label} MAE {mae:.2f} RMSE {rmse:.2f} {unit}")
    return ", ".join(parts)


#: Columns of a training run's ``metrics.csv``, one row per validation: the epoch and the
#: optimiser step (counted from 1) it follows, the learning rate of that step, the mean
#: training loss since the previous row, validation loss and errors, and the seconds since the
#: previous row (training and validation).
METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "valid_loss",
    "valid_energy_mae",
    "valid_energy_rmse",
    "valid_forces_mae",
    "valid_forces_rmse",
    "valid_stress_mae",
    "valid_stress_rmse",
    "time_s",
)


def write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    """Write the rows ``history`` to ``path`` (atomically) with :data:`METRIC_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, restval="")
    writer.writeheader()
    for row in history:
        writer.writerow({k: v for k, v in row.items() if k in METRIC_COLUMNS})
    write_text_atomic(path, buffer.getvalue())
