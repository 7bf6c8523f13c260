"""Checkpoints: one ``.safetensors`` file, weights plus JSON metadata, never pickled.

Metadata keys (all strings): ``format`` (``"mlcalc"``), ``format_version``, ``architecture``,
``config`` (JSON of the model config), ``elements``, ``cutoff``, ``atomic_energies`` and
``energy_scale`` (JSON, for people reading the file), ``mlcalc_version`` and ``sha256``: the
digest of every other metadata entry and every tensor (name, dtype, shape and bytes). Loading
recomputes the digest and refuses a file in which any of these changed.

This module is the file format only and knows no model: a model writes itself with
:meth:`mlcalc.models.AtomisticModel.save`, and :func:`mlcalc.models.load_checkpoint` rebuilds
the model of any architecture from :func:`read_checkpoint`'s metadata and tensors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mlcalc._version import __version__
from mlcalc.atomic import atomic_path

FORMAT = "mlcalc"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a valid, intact mlcalc checkpoint."""


def weights_digest(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the metadata (except ``sha256`` itself) and all tensors, in sorted order."""
    digest = hashlib.sha256()
    entries = {k: v for k, v in metadata.items() if k != "sha256"}
    digest.update(json.dumps(entries, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        header = f"\n{name}|{tensor.dtype}|{list(tensor.shape)}\n"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_checkpoint(
    path: str | PathLike, tensors: Mapping[str, torch.Tensor], fields: Mapping[str, str]
) -> None:
    """Write ``tensors`` and the model's metadata ``fields`` (``architecture`` ... ``energy_scale``)
    to ``path`` atomically (temporary file in the same folder, then rename), with the format,
    version and digest entries added."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), **fields}
    metadata["mlcalc_version"] = __version__
    metadata["sha256"] = weights_digest(metadata, tensors)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def read_checkpoint(path: str | PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a checkpoint, after checking format, version and digest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = dict(stream.metadata() or {})
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or corrupted?): {error}"
        ) from error
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an mlcalc checkpoint")
    version = metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit()) or int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, newer than this mlcalc "
            f"({__version__}, format {FORMAT_VERSION}) reads; upgrade mlcalc"
        )
    expected = metadata.get("sha256")
    actual = weights_digest(metadata, tensors)
    if expected != actual:
        raise CheckpointError(
            f"{path} failed its integrity check: sha256 of its contents is {actual}, "
            f"the file records {expected}; the file was altered or damaged"
        )
    return metadata, tensors
