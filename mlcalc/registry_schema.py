"""The registry's ``index.json``: its schema, its entries and their validation.

The schema is described in ``registry/README.md``; :mod:`mlcalc.pretrained` finds the index,
resolves entries to checkpoints and loads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from mlcalc.models import ARCHITECTURES, DTYPES
from mlcalc.models.base import normalize_elements

#: Version of the ``index.json`` schema this mlcalc reads.
INDEX_FORMAT_VERSION = 1
HF_PREFIX = "hf://"
FORCE_MODES = ("conservative", "direct")

_ENTRY_FIELDS = {
    "name",
    "architecture",
    "force_mode",
    "elements",
    "cutoff",
    "dtype",
    "dataset",
    "license",
    "test_errors",
    "speed",
    "description",
    "card",
    "source",
}
_DATASET_FIELDS = {"name", "split", "level_of_theory"}
_BUNDLED_FIELDS = {"file", "sha256"}
_HUB_FIELDS = {"repo_id", "filename", "revision", "sha256"}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: A Hugging Face Hub repository id, ``<org>/<repo>``.
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class RegistryError(ValueError):
    """An ``index.json`` that does not follow the schema, or an entry that does not describe
    its checkpoint."""


@dataclass(frozen=True)
class Dataset:
    """Training data of a pretrained model."""

    name: str
    split: str
    level_of_theory: str


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face Hub at a fixed revision."""

    repo_id: str
    filename: str
    revision: str

    @property
    def ref(self) -> str:
        """``hf://<repo_id>/<filename>@<revision>``."""
        return f"{HF_PREFIX}{self.repo_id}/{self.filename}@{self.revision}"


@dataclass(frozen=True)
class PretrainedModel:
    """One registry entry (see ``registry/README.md`` for the meaning of each field).

    ``cutoff`` is in Å; the keys of ``test_errors`` and ``speed`` name the quantity and its
    unit. ``file`` (bundled checkpoint) and ``card`` are relative to ``folder``, the folder
    of the index; exactly one of ``file`` and ``hub`` is set.
    """

    name: str
    architecture: str
    force_mode: str
    elements: tuple[str, ...]
    cutoff: float
    dtype: str
    dataset: Dataset
    license: str
    test_errors: dict[str, float]
    speed: dict[str, float | str]
    description: str
    card: str
    sha256: str
    file: str | None
    hub: HubFile | None
    folder: Path = field(repr=False, compare=False)

    @property
    def source(self) -> Literal["bundled", "hub"]:
        return "bundled" if self.hub is None else "hub"

    @property
    def card_path(self) -> Path:
        return self.folder / self.card

    def card_text(self) -> str:
        """The markdown model card."""
        if not self.card_path.is_file():
            raise FileNotFoundError(f"model card of {self.name!r} not found: {self.card_path}")
        return self.card_path.read_text(encoding="utf-8")

    def to_dict(self) -> dict[str, Any]:
        """The entry as written in ``index.json``."""
        if self.hub is None:
            source: dict[str, str] = {"file": str(self.file)}
        else:
            source = {
                "repo_id": self.hub.repo_id,
                "filename": self.hub.filename,
                "revision": self.hub.revision,
            }
        return {
            "name": self.name,
            "architecture": self.architecture,
            "force_mode": self.force_mode,
            "elements": list(self.elements),
            "cutoff": self.cutoff,
            "dtype": self.dtype,
            "dataset": vars(self.dataset).copy(),
            "license": self.license,
            "test_errors": dict(self.test_errors),
            "speed": dict(self.speed),
            "description": self.description,
            "card": self.card,
            "source": {**source, "sha256": self.sha256},
        }


def parse_index(index: Any, path: Path) -> list[PretrainedModel]:
    """Validate the decoded ``index.json`` at ``path``; ``RegistryError`` names any problem."""
    if not isinstance(index, dict) or set(index) != {"format_version", "models"}:
        raise RegistryError(f"{path}: expected an object with 'format_version' and 'models'")
    if index["format_version"] != INDEX_FORMAT_VERSION:
        raise RegistryError(
            f"{path}: format_version {index['format_version']!r} is not "
            f"{INDEX_FORMAT_VERSION}, the one this mlcalc reads; upgrade mlcalc"
        )
    if not isinstance(index["models"], list):
        raise RegistryError(f"{path}: 'models' must be a list")
    models = [
        _parse_entry(raw, path.parent, f"{path}: models[{i}]")
        for i, raw in enumerate(index["models"])
    ]
    names = [model.name for model in models]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RegistryError(f"{path}: repeated model name(s) {', '.join(repeated)}")
    return models


def _parse_entry(raw: Any, folder: Path, where: str) -> PretrainedModel:
    fields = _object(raw, _ENTRY_FIELDS, where)
    name = _text(fields, "name", where)
    if not _NAME.fullmatch(name):
        raise RegistryError(f"{where}: name {name!r} must be lower case letters, digits, . _ -")
    where = f"{where} ({name})"
    try:
        elements = tuple(normalize_elements(_list_of_text(fields, "elements", where)))
    except ValueError as error:
        raise RegistryError(f"{where}: elements: {error}") from None
    cutoff = fields["cutoff"]
    if not _is_number(cutoff) or not cutoff > 0:
        raise RegistryError(f"{where}: cutoff must be a positive number (Å), got {cutoff!r}")
    dataset = _object(fields["dataset"], _DATASET_FIELDS, f"{where}: dataset")
    source = fields["source"]
    keys = set(source) if isinstance(source, dict) else set()
    if keys not in (_BUNDLED_FIELDS, _HUB_FIELDS):
        raise RegistryError(
            f"{where}: source must be {{'file', 'sha256'}} (bundled) or "
            f"{{'repo_id', 'filename', 'revision', 'sha256'}} (Hub), got {source!r}"
        )
    sha256 = _text(source, "sha256", where)
    if not _SHA256.fullmatch(sha256):
        raise RegistryError(f"{where}: sha256 must be 64 lower-case hex digits, got {sha256!r}")
    hub = None
    if "file" in source:
        file = _relative_path(source, "file", where)
    else:
        file = None
        hub = HubFile(
            _text(source, "repo_id", where),
            _relative_path(source, "filename", where),
            _text(source, "revision", where),
        )
        if not REPO_ID.fullmatch(hub.repo_id):
            raise RegistryError(f"{where}: repo_id {hub.repo_id!r} must be '<org>/<repo>'")
        if not _COMMIT.fullmatch(hub.revision):
            raise RegistryError(
                f"{where}: revision must be a 40-hex commit (pinned), got {hub.revision!r}"
            )
    return PretrainedModel(
        name=name,
        architecture=_choice(fields, "architecture", tuple(ARCHITECTURES), where),
        force_mode=_choice(fields, "force_mode", FORCE_MODES, where),
        elements=elements,
        cutoff=float(cutoff),
        dtype=_choice(fields, "dtype", tuple(DTYPES), where),
        dataset=Dataset(**{key: _text(dataset, key, f"{where}: dataset") for key in dataset}),
        license=_text(fields, "license", where),
        test_errors=_mapping(fields, "test_errors", where, strings=False),
        speed=_mapping(fields, "speed", where, strings=True),
        description=_text(fields, "description", where),
        card=_relative_path(fields, "card", where),
        sha256=sha256,
        file=file,
        hub=hub,
        folder=folder,
    )


def _object(raw: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected an object, got {raw!r}")
    missing, unknown = keys - set(raw), set(raw) - keys
    if missing or unknown:
        raise RegistryError(
            f"{where}: missing field(s) {sorted(missing)}, unknown field(s) {sorted(unknown)}"
        )
    return raw


def _text(fields: Mapping[str, Any], key: str, where: str) -> str:
    value = fields[key]
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _list_of_text(fields: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = fields[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RegistryError(f"{where}: {key} must be a list of strings, got {value!r}")
    return value


def _choice(fields: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    if fields[key] not in choices:
        raise RegistryError(f"{where}: {key} must be one of {list(choices)}, got {fields[key]!r}")
    return fields[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping(fields: Mapping[str, Any], key: str, where: str, strings: bool) -> dict[str, Any]:
    value = fields[key]
    kinds = "numbers or strings" if strings else "numbers"
    if not isinstance(value, dict) or not all(
        _is_number(item) or (strings and isinstance(item, str)) for item in value.values()
    ):
        raise RegistryError(f"{where}: {key} must map names to {kinds}, got {value!r}")
    return dict(value)


def _relative_path(fields: Mapping[str, Any], key: str, where: str) -> str:
    value = _text(fields, key, where)
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise RegistryError(f"{where}: {key} must be a relative path with '/', got {value!r}")
    return value
