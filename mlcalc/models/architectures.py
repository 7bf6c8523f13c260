"""The architectures by name, and checkpoints of any of them."""

from __future__ import annotations

import json
from os import PathLike

import torch

from mlcalc.models.base import AtomisticModel
from mlcalc.models.checkpoint import CheckpointError, read_checkpoint
from mlcalc.models.mlanet import MLANet
from mlcalc.models.nemp import NEMP

#: Architecture name (as stored in checkpoints) → model class.
ARCHITECTURES: dict[str, type[AtomisticModel]] = {
    NEMP.architecture: NEMP,
    MLANet.architecture: MLANet,
}


def save_checkpoint(model: AtomisticModel, path: str | PathLike) -> None:
    """Write ``model`` to ``path`` atomically; see :meth:`AtomisticModel.save`."""
    model.save(path)


def load_checkpoint(path: str | PathLike, device: torch.device | str = "cpu") -> AtomisticModel:
    """Rebuild the model stored in ``path`` (any architecture), on ``device``, in eval mode."""
    metadata, tensors = read_checkpoint(path)
    architecture = metadata.get("architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{path} holds an unknown architecture {architecture!r}; "
            f"this mlcalc knows {sorted(ARCHITECTURES)}"
        )
    model_class = ARCHITECTURES[architecture]
    try:
        config = model_class.config_class.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from error
    with torch.random.fork_rng(devices=[]):  # building the model must not move the user's RNG
        model = model_class(config)
    dtype = next(iter(t for t in tensors.values() if t.is_floating_point()), None)
    if dtype is not None:
        model = model.to(dtype=dtype.dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path} does not match its {architecture} config: {error}"
        ) from error
    return model.to(device).eval()
