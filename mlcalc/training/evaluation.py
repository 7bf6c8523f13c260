"""``mlcalc eval``: score a checkpoint or registry model on a data file; parity plots."""

from __future__ import annotations

from os import PathLike

import numpy as np
from matplotlib.figure import Figure

from mlcalc.training.data import LabelKeys, read_structures
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.metrics import ErrorSums, evaluate

_AXES = {
    "energy": ("energy", "eV/atom"),
    "forces": ("force components", "eV/Å"),
    "stress": ("stress components", "eV/Å³"),
}


def evaluate_file(
    model_ref: str | PathLike,
    data: str | PathLike,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virial_key: str = "virial",
    charge_key: str = "charge",
    spin_key: str = "spin",
    device: str | None = None,
    dtype: str | None = None,
    batch_atoms: int = 2048,
    keep_values: bool = False,
    progress: bool | None = None,
) -> tuple[dict[str, float | int], ErrorSums]:
    """Errors of the model ``model_ref`` (path, ``hf://`` ref or registry name) on ``data``.

    ``progress``: a bar of the structures on stderr (``None``: when stderr is a terminal).
    ``charge_key``/``spin_key``: ``atoms.info`` names of the total charge (e) and spin
    multiplicity; a model without ``charge_embedding`` warns once if the data is charged.
    Returns ``(errors, sums)``: ``errors`` as :meth:`ErrorSums.errors` (meV/atom, meV/Å,
    meV/Å³) and the sums (with parity data when ``keep_values``).
    """
    from mlcalc.calculators import resolve_device
    from mlcalc.models.charge import warn_if_charge_ignored
    from mlcalc.pretrained import load_model

    resolved = resolve_device(device)
    model = load_model(model_ref, device=resolved, dtype=dtype)
    keys = LabelKeys(energy_key, forces_key, stress_key, virial_key, charge_key, spin_key)
    structures = read_structures(data, keys)
    model_dtype = next(model.parameters()).dtype
    dataset = GraphDataset(structures, model.cutoff, model.elements, model_dtype)
    for index in range(len(dataset)):
        warn_if_charge_ignored(model, dataset.graph(index))
    sums = ErrorSums(keep_values=keep_values)
    sums = evaluate(model, dataset, resolved, batch_atoms, sums=sums, progress=progress)
    return sums.errors(), sums


def parity_figure(sums: ErrorSums) -> Figure:
    """Predicted against reference for each label present, with MAE and RMSE in the titles."""
    data = sums.parity_data()
    errors = sums.errors()
    figure = Figure(figsize=(4.2 * max(1, len(data)), 4.2), layout="constrained")
    for k, (label, (reference, predicted)) in enumerate(data.items()):
        axes = figure.add_subplot(1, len(data), k + 1)
        what, unit = _AXES[label]
        axes.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0)
        low = float(np.min([reference.min(), predicted.min()]))
        high = float(np.max([reference.max(), predicted.max()]))
        axes.plot([low, high], [low, high], color="black", linewidth=0.8)
        axes.set_xlabel(f"reference {what} ({unit})")
        axes.set_ylabel(f"predicted {what} ({unit})")
        milli = unit.replace("eV", "meV")
        axes.set_title(
            f"MAE {errors[f'{label}_mae']:.2f}, RMSE {errors[f'{label}_rmse']:.2f} {milli}",
            fontsize=9,
        )
    return figure


__all__ = ["evaluate_file", "parity_figure"]
