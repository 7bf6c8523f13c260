"""Pretrained models: a registry of named checkpoints, downloads from the Hugging Face Hub.

>>> from mlcalc import NEMPCalculator, list_pretrained
>>> [model.name for model in list_pretrained()]
>>> atoms.calc = NEMPCalculator.from_pretrained("water")

A model is named in one of three ways (``name_or_ref`` below):

* a registry name (``mlcalc models list``): a checkpoint bundled with mlcalc or pinned to a
  commit on the Hugging Face Hub, checked against the sha256 the registry records;
* ``hf://<org>/<repo>/<filename>@<revision>``: a file on the Hub (``filename`` may contain
  slashes); a 40-hex commit as ``revision`` is served from the cache without network access;
* a path to a local ``.safetensors`` checkpoint.

Hub files go through :func:`huggingface_hub.hf_hub_download`, so its cache and environment
variables (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_TOKEN``)
apply. Every checkpoint is read by :func:`mlcalc.models.load_checkpoint` (safetensors, never
unpickled, its internal digest verified).

The registry is ``index.json`` of the data package ``mlcalc._registry`` (``registry/`` in the
source tree; schema in its ``README.md``), or the ``index.json`` named by the environment
variable ``MLCALC_REGISTRY``; paths in an index are relative to its folder.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch

from mlcalc.models import ARCHITECTURES, DTYPES, AtomisticModel, load_checkpoint, torch_dtype
from mlcalc.models.base import normalize_elements
from mlcalc.models.checkpoint import CheckpointError

#: Environment variable naming an ``index.json`` to use instead of the shipped registry.
REGISTRY_ENV = "MLCALC_REGISTRY"
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
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class RegistryError(ValueError):
    """An ``index.json`` that does not follow the schema, or an entry that does not describe
    its checkpoint."""


class UnknownModelError(KeyError):
    """A name that is neither a registry entry, an ``hf://`` reference nor a checkpoint path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ChecksumError(CheckpointError):
    """A registry checkpoint whose sha256 differs from the one the registry records."""


class ModelNotCachedError(FileNotFoundError):
    """A Hub checkpoint that is not in the local cache and could not be downloaded."""


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


# ---------------------------------------------------------------------------------------------
# the index


def registry_index() -> Path:
    """The ``index.json`` in use: ``$MLCALC_REGISTRY`` if set, else the shipped one."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override).expanduser()
    folder = importlib.resources.files("mlcalc._registry")
    if not isinstance(folder, Path):
        raise RegistryError(f"mlcalc's registry is not a folder on disk ({folder}); reinstall")
    return folder / "index.json"


def list_pretrained() -> list[PretrainedModel]:
    """Every model of the registry, in index order."""
    path = registry_index()
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"registry index not found: {path} (${REGISTRY_ENV}?)") from None
    except (OSError, ValueError) as error:
        raise RegistryError(f"registry index {path} is not readable JSON: {error}") from error
    return _parse_index(index, path)


def _parse_index(index: Any, path: Path) -> list[PretrainedModel]:
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


def get_pretrained(name: str) -> PretrainedModel:
    """The registry entry ``name``; ``UnknownModelError`` lists the close and all names."""
    models = {model.name: model for model in list_pretrained()}
    if name not in models:
        raise _unknown(name, list(models))
    return models[name]


def _unknown(name: str, names: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(n) for n in close)}?)" if close else ""
    available = ", ".join(names) if names else "none yet"
    return UnknownModelError(
        f"unknown pretrained model {name!r}{hint}. Available: {available} (registry "
        f"{registry_index()}). Other models: a path to a .safetensors checkpoint, or "
        f"{HF_PREFIX}<org>/<repo>/<filename>@<revision>"
    )


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
        if not _REPO_ID.fullmatch(hub.repo_id):
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


# ---------------------------------------------------------------------------------------------
# files


def _parse_hf_ref(ref: str) -> HubFile:
    """``hf://<org>/<repo>/<filename>@<revision>`` → :class:`HubFile`."""
    body, at, revision = ref.removeprefix(HF_PREFIX).rpartition("@")
    org, _, rest = body.partition("/")
    repo, _, filename = rest.partition("/")
    if not (ref.startswith(HF_PREFIX) and at and revision and filename):
        raise ValueError(
            f"{ref!r} is not a Hub reference {HF_PREFIX}<org>/<repo>/<filename>@<revision> "
            f"(revision: a 40-hex commit, or a branch or tag)"
        )
    hub = HubFile(f"{org}/{repo}", filename, revision)
    if not _REPO_ID.fullmatch(hub.repo_id):
        raise ValueError(f"{ref!r}: the repository {hub.repo_id!r} is not '<org>/<repo>'")
    return hub


def file_sha256(path: str | PathLike) -> str:
    """Hex sha256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_download(hub: HubFile, what: str) -> Path:
    """Path of ``hub`` in the Hugging Face cache, downloaded first if needed."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        offline = constants.is_offline_mode()
        reason = "HF_HUB_OFFLINE is set" if offline else f"the Hub said: {error}"
        unset = "unset HF_HUB_OFFLINE and " if offline else ""
        raise ModelNotCachedError(
            f"pretrained model {what} ({hub.ref}) is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) and could not be downloaded: {reason}. With network "
            f"access, {unset}run `mlcalc models download {what}` once; later loads need no "
            f"network"
        ) from error


def _verify(path: Path, model: PretrainedModel) -> None:
    actual = file_sha256(path)
    if actual != model.sha256:
        where = "the Hugging Face cache" if model.hub else "the registry folder"
        raise ChecksumError(
            f"refusing to load pretrained model {model.name!r}: {path} has sha256 {actual}, "
            f"the registry expects {model.sha256}. The file in {where} is damaged or not the "
            f"one the registry describes; nothing was deleted"
        )


def download(name_or_ref: str) -> Path:
    """Local checkpoint of a registry model or ``hf://`` reference, downloaded if needed.

    Registry checkpoints (bundled or from the Hub) are checked against their sha256.
    """
    if name_or_ref.startswith(HF_PREFIX):
        return _hub_download(_parse_hf_ref(name_or_ref), name_or_ref)
    return _fetch(get_pretrained(name_or_ref))


def _fetch(model: PretrainedModel) -> Path:
    """The checkpoint of a registry entry, downloaded if needed and sha256-verified."""
    if model.hub is None:
        path = model.folder / str(model.file)
        if not path.is_file():
            raise FileNotFoundError(f"bundled checkpoint of {model.name!r} is missing: {path}")
    else:
        path = _hub_download(model.hub, model.name)
    _verify(path, model)
    return path


def _resolve(name_or_ref: str | PathLike) -> tuple[Path, PretrainedModel | None]:
    """The checkpoint file and, for a registry name, its entry."""
    if isinstance(name_or_ref, PathLike):
        return _existing(Path(name_or_ref)), None
    if name_or_ref.startswith(HF_PREFIX):
        return download(name_or_ref), None
    models = {model.name: model for model in list_pretrained()}
    if name_or_ref in models:
        return _fetch(models[name_or_ref]), models[name_or_ref]
    path = Path(name_or_ref).expanduser()
    if path.exists() or path.suffix == ".safetensors" or {"/", os.sep} & set(name_or_ref):
        return _existing(path), None
    raise _unknown(name_or_ref, list(models))


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def resolve_checkpoint(name_or_ref: str | PathLike) -> Path:
    """Local ``.safetensors`` file of a registry name, ``hf://`` reference or path.

    Downloads Hub files that are not cached; registry files are checked against their
    sha256. A registry name wins over a file of the same name (write ``./name`` for that).
    """
    return _resolve(name_or_ref)[0]


def load_model(
    name_or_ref: str | PathLike,
    device: torch.device | str | None = None,
    dtype: str | torch.dtype | None = None,
) -> AtomisticModel:
    """The model of a registry name, ``hf://`` reference or checkpoint path, in eval mode.

    Args:
        name_or_ref: see :mod:`mlcalc.pretrained`.
        device: where to put the model; default CPU.
        dtype: ``"float32"`` or ``"float64"``; default the registry entry's ``dtype``, or the
            checkpoint's own dtype for references and paths.
    """
    path, entry = _resolve(name_or_ref)
    model = load_checkpoint(path)
    if entry is not None:
        _check_entry(entry, model, path)
        dtype = entry.dtype if dtype is None else dtype
    if dtype is None:
        dtype = next(model.parameters()).dtype
    return model.to(device=device or "cpu", dtype=torch_dtype(dtype)).eval()


def _check_entry(entry: PretrainedModel, model: AtomisticModel, path: Path) -> None:
    """``RegistryError`` unless the registry entry describes the checkpoint it points to."""
    found = {
        "architecture": model.architecture,
        # NEMP has no force_mode: its forces are always conservative
        "force_mode": getattr(model.config, "force_mode", "conservative"),
        "elements": tuple(model.elements),
        "cutoff": model.cutoff,
    }
    wrong = [
        f"{key} is {value!r} in the checkpoint but {getattr(entry, key)!r} in the index"
        for key, value in found.items()
        if value != getattr(entry, key)
    ]
    if wrong:
        raise RegistryError(
            f"registry entry {entry.name!r} does not describe its checkpoint {path}: "
            + "; ".join(wrong)
        )
