"""The training configuration: one YAML file, every key also settable as a ``--key value`` flag.

See ``docs/training.md`` for what each key does; :class:`TrainConfig` lists them with their
defaults.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from mlcalc.models import ARCHITECTURES
from mlcalc.training.data import LabelKeys
from mlcalc.training.loss import LOSS_KINDS

SCHEDULERS = ("plateau", "cosine", "constant")
KEEP_CHOICES = ("final", "best")
#: ``epochs`` when neither it nor ``max_time`` is given.
DEFAULT_EPOCHS = 100
#: ``epochs`` when only ``max_time`` is given: the budget alone ends the run (and the cosine).
UNLIMITED_EPOCHS = 1_000_000


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. Units: energies eV, forces eV/Å, stress eV/Å³.

    Attributes:
        architecture: ``"nemp"`` or ``"mlanet"``.
        model: that architecture's config fields over the recipe's model
            (:data:`mlcalc.training.recipe.MODEL_DEFAULTS`; ``preset: default`` asks for the
            architecture's own defaults instead); ``elements`` defaults to the elements of the
            data; ``avg_num_neighbors: auto`` is measured.
        init_from: fine-tune from a checkpoint path or registry name (its architecture and
            model config are used; ``model`` must then be empty).
        train_file, valid_file, test_file: ASE-readable files (extxyz...).
        valid_fraction: seeded random part of ``train_file`` used for validation when there
            is no ``valid_file``.
        energy_key, forces_key, stress_key, virial_key: label names in the files.
        charge_key, spin_key: ``atoms.info`` names of the total charge (e) and spin
            multiplicity ``2S + 1`` in the files (defaults 0 and the lowest multiplicity;
            see :mod:`mlcalc.electrons`), inputs of models with ``charge_embedding``.
        e0s: ``"fit"`` (least squares on the training energies), a path to an isolated-atoms
            file, a mapping symbol -> eV, or ``"keep"`` (the ``init_from`` model's).
        loss: ``"l1"``, ``"mse"`` or ``"huber"`` (``huber_delta``), on energy per atom,
            force components and stress components.
        energy_weight, forces_weight, stress_weight: loss weights at the start.
        energy_weight_final, forces_weight_final, stress_weight_final: if set, the weight
            moves linearly with the learning rate from its start value (at ``lr``) to this
            value (at ``lr_min``), as NEMP trains. The energy's is 100 by default: forces
            first, energies weighted as the learning rate falls (``None``: constant).
        batch_size: structures per optimiser step, over all processes together (default:
            about 45 atoms per step, :func:`mlcalc.training.recipe.batch_size_for`).
        lr, lr_min: start and smallest learning rate; plateau training stops at ``lr_min``.
        warmup_epochs: linear warm-up from ``warmup_factor * lr``.
        scheduler: ``"cosine"`` (to ``lr_min`` at ``epochs`` or at ``max_time``, whichever
            comes first), ``"plateau"`` (``lr_factor``, ``lr_patience`` validations) or
            ``"constant"``.
        weight_decay, amsgrad: AdamW settings (decoupled weight decay).
        clip_grad: global gradient-norm clip (``None``: no clipping).
        ema_decay: exponential moving average of the weights (0 disables); the averaged
            weights are validated and written.
        epochs: maximum number of epochs (default: 100, or no limit when ``max_time`` is
            given); max_time: wall-clock budget (``"30m"``, ``"2h"``, seconds) for training and
            validation, the final validation pass included. Schedules move every optimiser
            step, by whichever runs out first, the epochs or the budget; the run stops at the
            step after which the next step and the final validation would not fit.
        max_steps: a budget in optimiser steps, as ``max_time`` is one in seconds: the run
            and its schedules end after this many steps (or earlier, at ``epochs`` or
            ``max_time``).
        early_stopping_patience: stop after this many validations without a better loss.
        valid_interval: optimiser steps between validations (default: every epoch, or every
            2,000 steps when epochs are longer); each validation row of ``metrics.csv`` scores
            ``valid_subset`` structures of the validation set (a fixed, seeded choice; all of
            them when there are no more), and the run's final model is scored on all.
        keep: the run's model, scored on the test set: ``"final"`` (the EMA weights after the
            last step, ``final.safetensors``) or ``"best"`` (the lowest validation loss,
            ``best.safetensors``); both files are written.
        seed: model initialisation, split and data order.
        device: ``"cpu"``, ``"cuda"`` (default: CUDA when available); dtype: ``"float32"`` or
            ``"float64"``.
        threads: torch intra-op threads per process (default: torch's).
        compile: compile the training steps (:mod:`mlcalc.training.compiled`): ``True``,
            ``False`` or ``"auto"`` (the default: when the model can be traced and the run is
            long enough to repay one to two minutes of compiling; one graph serves structures
            of every size).
        eval_batch_atoms: atoms per batch when scoring validation and test sets.
        graph_memory: GiB of memory per process for the training and validation graphs
            (neighbour lists) kept between steps (``None``: keep all); graphs beyond it are
            built again whenever a batch takes them (:class:`mlcalc.training.graphs.GraphDataset`).
        output_dir: where ``best.safetensors``, ``training_state.pt``, ``config.yaml`` and
            ``metrics.csv`` go.
    """

    train_file: str | None = None
    architecture: str = "nemp"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_from: str | None = None
    valid_file: str | None = None
    valid_fraction: float = 0.1
    test_file: str | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str = "virial"
    charge_key: str = "charge"
    spin_key: str = "spin"
    e0s: str | dict[str, float] | None = None
    loss: str = "mse"
    huber_delta: float = 0.01
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 100.0
    energy_weight_final: float | None = 100.0
    forces_weight_final: float | None = None
    stress_weight_final: float | None = None
    batch_size: int | None = None
    lr: float = 0.01
    lr_min: float = 1e-5
    warmup_epochs: int = 0
    warmup_factor: float = 0.1
    scheduler: str = "cosine"
    lr_factor: float = 0.5
    lr_patience: int = 10
    weight_decay: float = 0.0
    amsgrad: bool = True
    clip_grad: float | None = 10.0
    ema_decay: float = 0.99
    epochs: int | None = None
    max_time: str | float | None = None
    early_stopping_patience: int | None = None
    max_steps: int | None = None
    valid_interval: int | None = None
    valid_subset: int = 500
    keep: str = "final"
    seed: int = 0
    device: str | None = None
    dtype: str = "float32"
    threads: int | None = None
    compile: bool | str = "auto"
    eval_batch_atoms: int = 2048
    graph_memory: float | None = 8.0
    output_dir: str = "training"

    def __post_init__(self) -> None:
        read_numbers(self)
        if self.train_file is None:
            raise ValueError("train_file is required (a training data file)")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if not isinstance(self.model, Mapping):
            raise ValueError(f"model must be a mapping of config fields, got {self.model!r}")
        if self.init_from is not None and self.model:
            raise ValueError("init_from takes the model config from the checkpoint; drop `model`")
        if self.e0s == "keep" and self.init_from is None:
            raise ValueError("e0s: keep needs init_from (a model whose E0s to keep)")
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {', '.join(LOSS_KINDS)}, got {self.loss!r}")
        if self.epochs is None:
            budgeted = self.max_time is not None or self.max_steps is not None
            self.epochs = UNLIMITED_EPOCHS if budgeted else DEFAULT_EPOCHS
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}, got {self.keep!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f"compile must be true, false or 'auto', got {self.compile!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        positive = ("batch_size", "epochs", "eval_batch_atoms", "max_steps", "valid_interval")
        for name in (*positive, "valid_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_min", "huber_delta", "lr_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) is larger than lr ({self.lr})")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("energy_weight", "forces_weight", "stress_weight"):
            for key in (name, f"{name}_final"):
                value = getattr(self, key)
                if value is not None and value < 0:
                    raise ValueError(f"{key} must be >= 0, got {value}")
        if self.graph_memory is not None and not self.graph_memory >= 0:
            raise ValueError(f"graph_memory must be >= 0 GiB or null, got {self.graph_memory}")
        self.max_time_seconds()  # validates the format

    def label_keys(self) -> LabelKeys:
        """Where the files hold labels, charge and spin."""
        return LabelKeys(
            self.energy_key,
            self.forces_key,
            self.stress_key,
            self.virial_key,
            self.charge_key,
            self.spin_key,
        )

    def graph_memory_bytes(self) -> int | None:
        """``graph_memory`` in bytes (``None``: no limit)."""
        return None if self.graph_memory is None else int(self.graph_memory * 2**30)

    def max_time_seconds(self) -> float | None:
        """``max_time`` in seconds (``None``: no budget)."""
        return parse_duration(self.max_time) if self.max_time is not None else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        refuse_unknown_keys(values, cls, "training config")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | PathLike, overrides: Mapping[str, Any] = ()) -> TrainConfig:
        """Read ``path`` and apply ``overrides`` (relative file paths stay relative to the
        current directory, as on the command line)."""
        return cls.from_dict({**read_yaml_mapping(path, "training config"), **dict(overrides)})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: The number-valued fields, by their annotation.
_NUMBER_FIELDS: dict[str, type] = {
    "float": float,
    "float | None": float,
    "int": int,
    "int | None": int,
}


def read_numbers(config: Any) -> None:
    """The number fields of the dataclass instance ``config`` (annotated ``int``, ``float``,
    or either ``| None``) given as text become numbers (YAML 1.1 reads ``1e-3`` as a string);
    ``ValueError`` naming the field for anything else."""
    for field in dataclasses.fields(config):
        kind = _NUMBER_FIELDS.get(str(field.type))
        value = getattr(config, field.name)
        if kind is None or value is None:
            continue
        number = _as_number(value, kind)
        if number is None:
            expected = "an integer" if kind is int else "a number"
            raise ValueError(f"{field.name} must be {expected}, got {value!r}")
        setattr(config, field.name, number)


def _as_number(value: Any, kind: type) -> float | int | None:
    """``value`` as ``kind`` (``"1e-3"`` -> 0.001, ``5.0`` -> 5), or ``None`` if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    if kind is int:
        return int(value) if float(value).is_integer() else None
    return float(value)


def refuse_unknown_keys(values: Mapping[str, Any], config_class: type, what: str) -> None:
    """``ValueError`` naming the keys of ``values`` that are not fields of the dataclass
    ``config_class``, each with the closest field (``what``: the config's name)."""
    import difflib

    known = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown {what} key(s): {'; '.join(hints)}")


def read_yaml_mapping(path: str | PathLike, what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``what``: the config's name, for errors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of keys to values")
    return values


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"1h30m"`` or a plain number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.match(text)
        if not text or match is None or not any(match.groups()):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"max_time must look like '90s', '30m', '1h30m' or seconds, got {value!r}"
                ) from None
        else:
            hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * hours + 60 * minutes + secs
    if not seconds > 0:
        raise ValueError(f"max_time must be positive, got {value!r}")
    return seconds
