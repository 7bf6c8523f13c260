"""The default recipe: the model that ``mlcalc train`` builds when a config names only the data.

The optimiser side of the recipe (loss weights, learning rate and its schedule, batch size,
EMA) is the defaults of :class:`mlcalc.training.config.TrainConfig`; this module holds the
model side. The measurements behind both are in ``docs/training.md`` ("The default recipe").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Model fields the recipe fills in per architecture; the config's ``model`` entries win.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "nemp": {
        "preset": "small",
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
