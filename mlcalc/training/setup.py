"""Set-up of a training run: the data sets, the initial model and the model of a saved state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mlcalc.models import ARCHITECTURES, AtomisticModel
from mlcalc.training.config import TrainConfig
from mlcalc.training.data import (
    LabeledStructure,
    atomic_energies_from,
    elements_of,
    force_rms,
    read_structures,
    split,
)
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.recipe import model_fields


@dataclass
class Datasets:
    train: list[LabeledStructure]
    valid: list[LabeledStructure]
    test: list[LabeledStructure] = field(default_factory=list)


def load_datasets(config: TrainConfig) -> Datasets:
    """Read and split the data files named by ``config``."""
    keys = config.label_keys()
    train = read_structures(config.train_file, keys)
    if config.valid_file is not None:
        valid = read_structures(config.valid_file, keys)
    else:
        train, valid = split(train, config.valid_fraction, config.seed)
    test = read_structures(config.test_file, keys) if config.test_file is not None else []
    _require_weighted_labels(config, [*train, *valid])
    return Datasets(train, valid, test)


def _require_weighted_labels(config: TrainConfig, structures: list[LabeledStructure]) -> None:
    """Refuse training data that has none of a label the loss weights (stress is optional:
    molecules have none)."""
    for label, key in (("energy", config.energy_key), ("forces", config.forces_key)):
        weights = (getattr(config, f"{label}_weight"), getattr(config, f"{label}_weight_final"))
        missing = all(getattr(s, label) is None for s in structures)
        if missing and max(w or 0.0 for w in weights) > 0:
            raise ValueError(
                f"{structures[0].source} and every other training frame: no {label} under the "
                f"key {key!r}; set {label}_key to the file's name for them, or "
                f"{label}_weight: 0 to train without {label}"
            )


def initial_model(config: TrainConfig, data: Datasets) -> AtomisticModel:
    """A fresh model from ``config.model`` (or the ``init_from`` one) with E0s and scale set."""
    keys = config.label_keys()
    data_elements = elements_of([*data.train, *data.valid, *data.test])
    if config.init_from is not None:
        from mlcalc.pretrained import load_model

        model = load_model(config.init_from, device="cpu", dtype=torch.float64)
        missing = sorted(set(data_elements) - set(model.elements))
        if missing:
            raise ValueError(
                f"init_from {config.init_from} does not know element(s) {', '.join(missing)} "
                f"of the data (it has {', '.join(model.elements)})"
            )
    else:
        model_class = ARCHITECTURES[config.architecture]
        fields = model_fields(config.architecture, config.model)
        fields.setdefault("elements", data_elements)
        if fields.get("avg_num_neighbors") == "auto":
            cutoff = fields.get("cutoff", model_class.config_class.cutoff)
            probe = GraphDataset(data.train, cutoff, fields["elements"], torch.float64, 0)
            fields["avg_num_neighbors"] = probe.average_num_neighbors()
        preset = fields.pop("preset", None)
        if preset is not None:
            if not model_class.config_class.PRESETS:
                raise ValueError(f"{config.architecture} has no presets; drop `preset`")
            model_config = model_class.config_class.preset(preset, **fields)
        else:
            model_config = model_class.config_class.from_dict(fields)
        torch.manual_seed(config.seed)
        model = model_class(model_config)
    e0s_spec = config.e0s or ("keep" if config.init_from is not None else "fit")
    if e0s_spec != "keep":
        e0s = atomic_energies_from(e0s_spec, data.train, model.elements, keys)
        scale = force_rms(data.train) or model.energy_scale
        model.set_energy_reference(e0s, energy_scale=scale)
    return model


def model_from_state(state: dict[str, Any]) -> AtomisticModel:
    model_class = ARCHITECTURES[state["architecture"]]
    model = model_class(model_class.config_class.from_dict(state["model_config"]))
    model = model.to(dtype=state["dtype"])
    model.load_state_dict(state["model"])
    return model
