"""The default recipe: the model that ``mlcalc train`` builds when a config names only the data.

The optimiser side of the recipe (loss weights, learning rate and its schedule, batch size,
EMA) is the defaults of :class:`mlcalc.training.config.TrainConfig`; this module holds the
model side. The measurements behind both are in ``docs/training.md`` ("The default recipe").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Atoms per optimiser step that the default batch size aims at.
ATOMS_PER_BATCH = 45

#: Model fields the recipe fills in per architecture; the config's ``model`` entries win.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "nemp": {
        "preset": "medium",  # small with 16 channels and l <= 2 node features
        "neighbor_norm": "constant",  # smooth at the cutoff (spec §2.10.9)
        "avg_num_neighbors": "auto",
    },
    "mlanet": {
        "lmax": 1,
        "channels": 32,
        "readout_channels": 32,
        "num_interactions": 2,
        "force_mode": "conservative",
    },
}


def model_fields(architecture: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The config's model ``fields`` over the recipe's defaults for ``architecture``.

    ``preset: default`` (NEMP, MLANet) asks for the architecture's own defaults instead of the
    recipe's model; fields given next to it still apply.
    """
    if fields.get("preset") == "default":
        return dict(fields)
    return {**MODEL_DEFAULTS.get(architecture, {}), **fields}


def batch_size_for(atoms_per_structure: Sequence[int]) -> int:
    """The default batch size: about :data:`ATOMS_PER_BATCH` atoms per step.

    Below that a step costs about the same however few atoms it holds (ethanol, 9 atoms: a
    batch of 2 takes twice as long per epoch as one of 5); above it the cost grows with the
    atoms, and more, smaller steps learn faster in the same time (liquid water, 192 atoms:
    batches of 2 and 5 take the same time per epoch; see docs/training.md).
    """
    if not atoms_per_structure:
        raise ValueError("no training structures to size a batch for")
    mean = sum(atoms_per_structure) / len(atoms_per_structure)
    return max(1, round(ATOMS_PER_BATCH / mean))
