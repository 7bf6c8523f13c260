"""Losses and error sums on energy per atom, forces and stress, with missing labels masked.

Everything here returns *sums* over the labelled items of a batch together with their counts,
so that a loss can be normalised by the counts of the whole global batch when several
processes each see a part of it (data-parallel training gives then exactly the gradients of
one process with the same global batch).
"""

from __future__ import annotations

from typing import Literal

import torch

from mlcalc.training.graphs import Batch

LossKind = Literal["l1", "mse", "huber"]
LOSS_KINDS: tuple[str, ...] = ("l1", "mse", "huber")

#: The labels a model is trained on, in order.
LABELS: tuple[str, ...] = ("energy", "forces", "stress")


def penalty(residual: torch.Tensor, kind: LossKind, huber_delta: float) -> torch.Tensor:
    """Elementwise ``|r|`` (l1), ``r²`` (mse) or Huber(δ) of the residuals."""
    if kind == "l1":
        return residual.abs()
    if kind == "mse":
        return residual.square()
    if kind == "huber":
        return torch.nn.functional.huber_loss(
            residual, torch.zeros_like(residual), reduction="none", delta=huber_delta
        )
    raise ValueError(f"loss must be one of {', '.join(LOSS_KINDS)}, got {kind!r}")


def residuals(outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """Prediction minus reference of every labelled item, flattened.

    ``energy``: per-atom energy residuals, eV/atom (one per labelled structure); ``forces``:
    force components, eV/Å; ``stress``: the nine components of each labelled stress, eV/Å³.
    Labels the outputs lack (no forces computed) are absent from the result.
    """
    result = {}
    per_atom = (outputs["energy"] - batch.energy) / batch.num_atoms.to(batch.energy.dtype)
    result["energy"] = per_atom[batch.energy_mask]
    if "forces" in outputs:
        result["forces"] = (outputs["forces"] - batch.forces)[batch.forces_mask].reshape(-1)
    if "stress" in outputs:
        result["stress"] = (outputs["stress"] - batch.stress)[batch.stress_mask].reshape(-1)
    return result


def label_counts(batch: Batch) -> dict[str, int]:
    """Number of labelled items per label (structures, force components, stress components)."""
    return {
        "energy": int(batch.energy_mask.sum()),
        "forces": 3 * int(batch.forces_mask.sum()),
        "stress": 9 * int(batch.stress_mask.sum()),
    }
