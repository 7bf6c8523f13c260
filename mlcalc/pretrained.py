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
from os import PathLike
from pathlib import Path

import torch

from mlcalc.models import AtomisticModel, load_checkpoint, torch_dtype
from mlcalc.models.checkpoint import CheckpointError
from mlcalc.registry_schema import (
    HF_PREFIX,
    REPO_ID,
    HubFile,
    PretrainedModel,
    RegistryError,
    parse_index,
)

#: Environment variable naming an ``index.json`` to use instead of the shipped registry.
REGISTRY_ENV = "MLCALC_REGISTRY"


class UnknownModelError(KeyError):
    """A name that is neither a registry entry, an ``hf://`` reference nor a checkpoint path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ChecksumError(CheckpointError):
    """A registry checkpoint whose sha256 differs from the one the registry records."""


class ModelNotCachedError(FileNotFoundError):
    """A Hub checkpoint that is not in the local cache and could not be downloaded."""


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
    return parse_index(index, path)


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
    if not REPO_ID.fullmatch(hub.repo_id):
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
