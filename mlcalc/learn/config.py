"""The ``mlcalc learn`` configuration: one YAML file, every key also a ``--key value`` flag.

Units: temperatures K, pressures GPa, time steps fs, lengths Å, force uncertainties eV/Å.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from mlcalc.models import ARCHITECTURES
from mlcalc.training.config import (
    TrainConfig,
    parse_duration,
    read_numbers,
    read_yaml_mapping,
    refuse_unknown_keys,
)

SELECTIONS = ("uncertainty", "random")
EXECUTORS = ("processes", "dask")
#: TrainConfig keys that the loop sets itself for every member.
LOOP_TRAINING_KEYS = frozenset(
    {"train_file", "valid_file", "test_file", "output_dir", "init_from", "seed", "architecture"}
)


@dataclasses.dataclass
class LearnConfig:
    """Everything an active-learning run needs; see ``docs/learn.md``.

    Attributes:
        teacher: the reference calculator: ``"emt"``, ``"xtb"`` (GFN-xTB through tblite),
            ``"sevennet"`` (SevenNet-0 from the ``sevenn`` wheel) or ``"module:factory"``.
        teacher_options: keyword arguments of the teacher (``{method: GFN1-xTB}``...).
        start: one or more ASE-readable files with the starting structures (every frame).
        output_dir: where the labels, checkpoints, ``rounds.csv``, figure and card go.
        committee: K, the number of members.
        architecture, model: the members' architecture and model fields over the training
            recipe's (``mlcalc train``'s defaults).
        training: further :class:`~mlcalc.training.TrainConfig` keys for every member's
            training (``max_time``, ``epochs``...); each round fine-tunes the members from the
            previous round's weights.
        seed: seeds the perturbations, the MD, the selection and member ``k`` (``seed + k``).
        initial_labels: structures labelled in round 0 (rattled and strained copies of the
            start); default ``labels_per_round``.
        rattle: Gaussian displacement of the round-0 copies, Å (standard deviation).
        strain: largest strain component of the round-0 copies of periodic cells.
        temperatures: MD temperatures of the exploration, K.
        pressures: NPT pressures for fully periodic starts, GPa (``None``: NVT only).
        md_steps, timestep_fs, sample_interval: length, time step and sampling of each run.
        uncertainty_threshold: frames whose force uncertainty (largest per-atom ``forces_std``
            of the committee, eV/Å) exceeds it are candidates.
        uncertainty_stop: a trajectory stops once a frame exceeds it (it has left what the
            committee can describe); the frames before it remain candidates.
        uncertainty_target: the run ends once the median uncertainty of a round's fresh
            exploration is below it and no trajectory had to be stopped.
        labels_per_round, max_labels, max_rounds, max_time: the label and time budgets
            (``max_time`` like ``"2h"``; checked before each round). A stopped run resumed
            with larger budgets goes on.
        selection: ``"uncertainty"`` (candidates above the threshold, thinned by farthest-point
            sampling) or ``"random"`` (any explored frame: the baseline to compare with).
        candidate_pool: with ``"uncertainty"``, thin only the ``candidate_pool ×
            labels_per_round`` most uncertain candidates (``None``: all above the threshold).
        executor: ``"processes"`` (local worker processes) or ``"dask"`` (a Dask cluster at
            ``scheduler_address``, or a local one); workers: processes or Dask workers;
            worker_threads: OpenMP threads of each worker's teacher.
        max_failed_fraction: the loop stops when more of a round's teacher calls fail.
        test_file: labelled frames (by the teacher) to score each round on.
        test_frames: without ``test_file``: frames per start structure and temperature of
            the teacher's own MD (Langevin, ``timestep_fs``) to score on, written to
            ``test.extxyz`` before round 0 and never shown to the loop (0: none; the card then
            reports validation errors). test_interval: MD steps between those frames, after
            ``test_equilibration`` steps.
        device, dtype, threads: where the committee runs and trains.
    """

    teacher: str | None = None
    start: str | list[str] | None = None
    teacher_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    output_dir: str = "learn"
    committee: int = 4
    architecture: str = "nemp"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    initial_labels: int | None = None
    rattle: float = 0.05
    strain: float = 0.02
    temperatures: list[float] = dataclasses.field(default_factory=lambda: [300.0])
    pressures: list[float] | None = None
    md_steps: int = 500
    timestep_fs: float = 1.0
    sample_interval: int = 10
    uncertainty_threshold: float = 0.05
    uncertainty_stop: float = 0.5
    uncertainty_target: float | None = None
    labels_per_round: int = 20
    max_labels: int = 200
    max_rounds: int = 10
    max_time: str | float | None = None
    selection: str = "uncertainty"
    candidate_pool: float | None = None
    executor: str = "processes"
    scheduler_address: str | None = None
    workers: int = 1
    worker_threads: int = 1
    max_failed_fraction: float = 0.5
    test_file: str | None = None
    test_frames: int = 0
    test_interval: int = 20
    test_equilibration: int = 200
    device: str | None = None
    dtype: str = "float32"
    threads: int | None = None

    def __post_init__(self) -> None:
        read_numbers(self)
        if self.teacher is None:
            raise ValueError("teacher is required (emt, xtb, sevennet or module:factory)")
        if self.start is None or not self.start_files():
            raise ValueError("start is required: one or more files with starting structures")
        for path in self.start_files():
            if not Path(path).is_file():
                raise FileNotFoundError(f"start file not found: {path}")
        if self.test_file is not None and not Path(self.test_file).is_file():
            raise FileNotFoundError(f"test_file not found: {self.test_file}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}"
            )
        for name in ("model", "training", "teacher_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        taken = sorted(LOOP_TRAINING_KEYS & set(self.training))
        if taken:
            raise ValueError(f"training: the loop sets {', '.join(taken)} itself; drop them")
        for name in (
            "committee",
            "md_steps",
            "sample_interval",
            "labels_per_round",
            "max_labels",
            "max_rounds",
            "workers",
            "worker_threads",
            "test_interval",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.initial_labels is not None and self.initial_labels < 2:
            raise ValueError(f"initial_labels must be >= 2, got {self.initial_labels}")
        if self.labels_per_round > self.max_labels:
            raise ValueError(
                f"labels_per_round ({self.labels_per_round}) is larger than max_labels "
                f"({self.max_labels})"
            )
        if (self.initial_labels or 0) > self.max_labels:
            raise ValueError(
                f"initial_labels ({self.initial_labels}) is larger than max_labels "
                f"({self.max_labels})"
            )
        for name in ("timestep_fs", "uncertainty_threshold", "uncertainty_stop"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.uncertainty_stop <= self.uncertainty_threshold:
            raise ValueError(
                f"uncertainty_stop ({self.uncertainty_stop}) must exceed uncertainty_threshold "
                f"({self.uncertainty_threshold})"
            )
        if self.rattle < 0 or not 0 <= self.strain < 0.5:
            raise ValueError(
                f"need rattle >= 0 and 0 <= strain < 0.5, got {self.rattle}, {self.strain}"
            )
        self.temperatures = as_list(self.temperatures)
        self.pressures = as_list(self.pressures) or None
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(
                f"temperatures must be a non-empty list of K >= 0: {self.temperatures}"
            )
        if self.candidate_pool is not None and not self.candidate_pool >= 1:
            raise ValueError(
                f"candidate_pool must be >= 1 (a multiple of labels_per_round), "
                f"got {self.candidate_pool}"
            )
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.test_frames < 0 or self.test_equilibration < 0:
            raise ValueError(
                f"test_frames and test_equilibration must be >= 0, got {self.test_frames}, "
                f"{self.test_equilibration}"
            )
        if not 0 < self.max_failed_fraction <= 1:
            raise ValueError(
                f"max_failed_fraction must be in (0, 1], got {self.max_failed_fraction}"
            )
        if self.max_time is not None:
            parse_duration(self.max_time)
        self.member_config(0, "labels.extxyz")  # the training keys are checked now

    def start_files(self) -> list[str]:
        """The start files as a list."""
        if isinstance(self.start, str):
            return [self.start]
        return [str(p) for p in (self.start or [])]

    @property
    def round0_labels(self) -> int:
        return self.initial_labels or self.labels_per_round

    def member_config(
        self,
        member: int,
        train_file: str | PathLike,
        init_from: str | None = None,
        output_dir: str | PathLike = ".",
    ) -> TrainConfig:
        """The training configuration of committee member ``member``: the recipe, the
        ``training`` keys, its own seed (its own validation split and initial weights), and
        for later rounds the previous round's weights."""
        values: dict[str, Any] = {
            "architecture": self.architecture,
            "dtype": self.dtype,
            "device": self.device,
            "threads": self.threads,
            **self.training,
            "train_file": str(train_file),
            "seed": self.seed + member,
            "output_dir": str(output_dir),
        }
        if init_from is None:
            values["model"] = dict(self.model)
        else:
            values["init_from"] = init_from
            values.setdefault("e0s", "keep")
        return TrainConfig.from_dict(values)

    def max_time_seconds(self) -> float | None:
        return parse_duration(self.max_time) if self.max_time is not None else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LearnConfig:
        refuse_unknown_keys(values, cls, "learn config")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | PathLike, overrides: Mapping[str, Any] = ()) -> LearnConfig:
        """Read ``path`` and apply ``overrides`` (flags win over the file)."""
        return cls.from_dict({**read_yaml_mapping(path, "learn config"), **dict(overrides)})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def as_list(value: float | Sequence[float] | None) -> list[float]:
    """A number or a list of numbers as a list (``None``: empty)."""
    if value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    return [float(v) for v in value]
