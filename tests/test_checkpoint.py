"""Checkpoints (:mod:`mlcalc.models.checkpoint`): exact round trips, atomic saving, refusal of
damaged or foreign files, no unpickling and no side effects on the global RNG."""

from __future__ import annotations

import json
import os
import pickle
import random
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import mlcalc.models.checkpoint as checkpoint
from mlcalc import NEMPCalculator
from mlcalc.graph import build_graph
from mlcalc.models import NEMP, load_checkpoint
from mlcalc.models.checkpoint import FORMAT_VERSION, CheckpointError, weights_digest

DTYPES = [torch.float32, torch.float64]


# ---------------------------------------------------------------------------------------------
# helpers


def model_outputs(model: NEMP, atoms) -> dict[str, np.ndarray]:
    """Energy, node energies, forces and stress of a direct model call, as numpy arrays."""
    dtype = next(model.parameters()).dtype
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers, dtype=dtype)
    out = model(graph, compute_forces=True, compute_stress=True)
    return {name: value.detach().cpu().numpy() for name, value in out.items()}


def calculator_outputs(calc: NEMPCalculator, atoms) -> dict[str, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calc
    return {
        "energy": np.array(atoms.get_potential_energy()),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def read_raw(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file, without any mlcalc checks."""
    with safe_open(str(path), framework="pt") as stream:
        metadata = dict(stream.metadata() or {})
        tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    return metadata, tensors


def write_with_digest(path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor]):
    """Write a checkpoint whose ``sha256`` matches its (possibly edited) contents."""
    metadata = {k: v for k, v in metadata.items() if k != "sha256"}
    metadata["sha256"] = weights_digest(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)


def header_span(data: bytes) -> tuple[int, int]:
    """``(start, end)`` of the JSON header of a safetensors file; the tensor data follows."""
    (length,) = struct.unpack("<Q", data[:8])
    return 8, 8 + length


@pytest.fixture
def saved(tmp_path: Path, model: NEMP) -> Path:
    """A valid float64 checkpoint of the default test model."""
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip_is_exact(tmp_path, model_factory, structures, dtype):
    e0 = {"H": -13.604, "O": -432.1234567891, "Al": -0.3, "Ni": 1e-3, "Cu": -3.7}
    model = model_factory(dtype=dtype, atomic_energies=e0, energy_scale=0.37)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load_checkpoint(path)

    assert type(loaded) is NEMP
    assert not loaded.training
    assert loaded.elements == model.elements
    assert loaded.cutoff == model.cutoff
    assert loaded.config == model.config
    assert loaded.config.to_dict() == model.config.to_dict()
    assert loaded.atomic_energies == model.atomic_energies == e0  # E0 stays float64, exactly
    assert loaded.energy_scale == model.energy_scale == pytest.approx(0.37, rel=1e-7)
    assert all(p.dtype == dtype for p in loaded.parameters())
    reference, restored = model.state_dict(), loaded.state_dict()
    assert reference.keys() == restored.keys()
    for name, tensor in reference.items():
        assert restored[name].dtype == tensor.dtype, name
        assert torch.equal(restored[name], tensor), name

    for atoms in (structures.triclinic_bulk(), structures.molecule()):
        assert_bit_identical(model_outputs(model.eval(), atoms), model_outputs(loaded, atoms))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_calculator_from_checkpoint_is_exact(tmp_path, model_factory, structures, dtype):
    model = model_factory(dtype=dtype)
    path = tmp_path / "model.safetensors"
    model.save(path)
    from_file = NEMPCalculator.from_checkpoint(path, device="cpu")
    direct = NEMPCalculator(model, device="cpu")
    assert isinstance(from_file, NEMPCalculator)
    assert from_file.dtype == dtype
    assert from_file.model.atomic_energies == model.atomic_energies
    assert from_file.model.energy_scale == model.energy_scale
    atoms = structures.triclinic_bulk()
    assert_bit_identical(calculator_outputs(direct, atoms), calculator_outputs(from_file, atoms))


def test_checkpoint_path_may_be_a_string(tmp_path, model, structures):
    path = str(tmp_path / "as-string.safetensors")
    model.save(path)
    atoms = structures.molecule()
    assert_bit_identical(
        model_outputs(model.eval(), atoms), model_outputs(load_checkpoint(path), atoms)
    )


def test_metadata_is_readable_and_complete(saved, model):
    metadata, _ = read_raw(saved)
    assert metadata["format"] == "mlcalc"
    assert metadata["format_version"] == str(FORMAT_VERSION)
    assert metadata["architecture"] == "nemp"
    assert json.loads(metadata["elements"]) == model.elements
    assert json.loads(metadata["cutoff"]) == model.cutoff
    assert json.loads(metadata["atomic_energies"]) == model.atomic_energies
    assert json.loads(metadata["energy_scale"]) == model.energy_scale
    assert json.loads(metadata["config"]) == model.config.to_dict()
    assert len(metadata["sha256"]) == 64


# ---------------------------------------------------------------------------------------------
# atomic saving


def test_save_leaves_only_the_checkpoint(tmp_path, model):
    path = tmp_path / "model.safetensors"
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_save_creates_missing_folders(tmp_path, model):
    path = tmp_path / "a" / "b" / "model.safetensors"
    model.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]
    assert load_checkpoint(path).config == model.config


def test_save_replaces_an_existing_file(tmp_path, model_factory, structures):
    path = tmp_path / "model.safetensors"
    first, second = model_factory(seed=1), model_factory(seed=2, cutoff=3.5)
    first.save(path)
    second.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    loaded = load_checkpoint(path)
    assert loaded.cutoff == 3.5
    atoms = structures.molecule()
    assert_bit_identical(model_outputs(second.eval(), atoms), model_outputs(loaded, atoms))


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
def test_failed_save_keeps_the_old_file(tmp_path, model_factory, monkeypatch, error):
    path = tmp_path / "model.safetensors"
    old = model_factory(seed=1)
    old.save(path)
    before = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as stream:  # half a file, then the failure
            stream.write(b"\x00" * 100)
        raise error

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(type(error)):
        model_factory(seed=2).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    monkeypatch.undo()
    assert load_checkpoint(path).state_dict().keys() == old.state_dict().keys()


def test_failed_first_save_leaves_nothing(tmp_path, model, monkeypatch):
    def broken_save_file(tensors, filename, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_permissions_follow_the_umask(tmp_path, model):
    """Like any file the user writes (``open``, ``torch.save``), not private to the owner."""
    path = tmp_path / "model.safetensors"
    old_umask = os.umask(0o022)
    try:
        model.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------------------------
# damaged and foreign files


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.safetensors"):
        load_checkpoint(tmp_path / "nothere.safetensors")
    with pytest.raises(FileNotFoundError):
        NEMPCalculator.from_checkpoint(tmp_path / "nothere.safetensors", device="cpu")


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises((FileNotFoundError, CheckpointError)):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", ["empty", "4 bytes", "half header", "half data", "all but one"])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    _, data_start = header_span(data)
    length = {
        "empty": 0,
        "4 bytes": 4,
        "half header": data_start // 2,
        "half data": (data_start + len(data)) // 2,
        "all but one": len(data) - 1,
    }[keep]
    saved.write_bytes(data[:length])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError):
        NEMPCalculator.from_checkpoint(saved, device="cpu")


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_altered_tensor_byte_is_refused(saved, where):
    data = bytearray(saved.read_bytes())
    _, data_start = header_span(bytes(data))
    index = {"first": data_start, "middle": (data_start + len(data)) // 2, "last": len(data) - 1}
    data[index[where]] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="integrity check"):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="integrity check"):
        NEMPCalculator.from_checkpoint(saved, device="cpu")


def edit_digit(text: bytes, prefix: bytes) -> bytes:
    """``text`` with the first digit after the single occurrence of ``prefix`` changed."""
    assert text.count(prefix) == 1, (prefix, text[:1500])
    index = text.index(prefix) + len(prefix)
    while not chr(text[index]).isdigit():
        index += 1
    digit = (int(chr(text[index])) + 1) % 10
    return text[:index] + str(digit).encode() + text[index + 1 :]


@pytest.mark.parametrize(
    "prefix",
    [
        b'"cutoff":"',  # the human-readable cutoff entry
        b'\\"cutoff\\": ',  # the cutoff inside the config JSON
        b'\\"channels\\": ',
        b'"energy_scale":"',
        b'"atomic_energies":"{',  # the first digit is in the first E0
        b'"format_version":"',
    ],
    ids=["cutoff", "config-cutoff", "config-channels", "energy-scale", "e0", "version"],
)
def test_altered_header_metadata_is_refused(saved, prefix):
    data = saved.read_bytes()
    start, end = header_span(data)
    edited = edit_digit(data[start:end], prefix)
    assert len(edited) == end - start
    assert json.loads(edited) != json.loads(data[start:end])  # valid JSON, different content
    saved.write_bytes(data[:start] + edited + data[end:])
    with pytest.raises(CheckpointError, match=r"integrity check|upgrade mlcalc"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'\\"use_norm\\": true', b'\\"use_norm\\": fals'),  # config no longer JSON
        (b'"format":"mlcalc"', b'"format":"mlcalx"'),
        (b'"architecture":"nemp"', b'"architecture":"nemq"'),
    ],
    ids=["config-json", "format", "architecture"],
)
def test_altered_header_text_is_refused(saved, old, new):
    data = saved.read_bytes()
    start, end = header_span(data)
    header = data[start:end]
    assert header.count(old) == 1
    edited = header.replace(old, new)
    json.loads(edited)
    saved.write_bytes(data[:start] + edited + data[end:])
    with pytest.raises(CheckpointError, match=r"integrity check|not an mlcalc"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    "content",
    [
        b"hello, I am not a checkpoint\n",
        b"\x00" * 64,
        b"\xff" * 64,
        json.dumps({"weights": [1, 2, 3]}).encode(),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    ],
    ids=["text", "zeros", "ones", "json", "bad-header"],
)
def test_non_safetensors_file_is_refused(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_torch_pickle_file_is_refused_without_unpickling(tmp_path, model, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    forbid_unpickling(monkeypatch)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("metadata", [None, {"format": "other"}, {"author": "someone"}])
def test_safetensors_file_without_mlcalc_metadata_is_refused(tmp_path, model, metadata):
    path = tmp_path / "plain.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="not an mlcalc checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not an mlcalc checkpoint"):
        NEMPCalculator.from_checkpoint(path, device="cpu")


@pytest.mark.parametrize("version", [str(FORMAT_VERSION + 1), "99", "2.0", ""])
def test_newer_format_version_is_refused(saved, version):
    metadata, tensors = read_raw(saved)
    metadata["format_version"] = version
    write_with_digest(saved, metadata, tensors)
    with pytest.raises(CheckpointError, match="upgrade mlcalc"):
        load_checkpoint(saved)


def test_unknown_architecture_is_refused(saved):
    metadata, tensors = read_raw(saved)
    metadata["architecture"] = "transformer9000"
    write_with_digest(saved, metadata, tensors)
    with pytest.raises(CheckpointError, match="unknown architecture 'transformer9000'"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    "edit",
    [
        lambda config: config.update(channels=9),  # weights no longer fit
        lambda config: config.update(cutoff=-1.0),  # invalid value
        lambda config: config.update(colour="blue"),  # unknown field
    ],
    ids=["shape-mismatch", "invalid-value", "unknown-field"],
)
def test_config_inconsistent_with_weights_is_refused(saved, edit):
    metadata, tensors = read_raw(saved)
    config = json.loads(metadata["config"])
    edit(config)
    metadata["config"] = json.dumps(config)
    write_with_digest(saved, metadata, tensors)
    with pytest.raises(CheckpointError, match=r"invalid model config|does not match"):
        load_checkpoint(saved)


def test_missing_or_extra_tensor_is_refused(saved):
    metadata, tensors = read_raw(saved)
    name = sorted(tensors)[0]
    tensors.pop(name)
    write_with_digest(saved, metadata, tensors)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(saved)

    metadata, tensors = read_raw(saved)
    tensors["extra.weight"] = torch.zeros(3, dtype=torch.float64)
    write_with_digest(saved, metadata, tensors)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(saved)


# ---------------------------------------------------------------------------------------------
# no unpickling, no side effects


def forbid_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must never unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_loading_never_unpickles(saved, model, structures, monkeypatch):
    forbid_unpickling(monkeypatch)
    loaded = load_checkpoint(saved)
    calc = NEMPCalculator.from_checkpoint(saved, device="cpu")
    monkeypatch.undo()
    atoms = structures.molecule()
    assert_bit_identical(model_outputs(model.eval(), atoms), model_outputs(loaded, atoms))
    np.testing.assert_array_equal(
        calculator_outputs(calc, structures.triclinic_bulk())["forces"],
        calculator_outputs(NEMPCalculator(model, device="cpu"), structures.triclinic_bulk())[
            "forces"
        ],
    )


def test_loading_leaves_the_global_rng_alone(saved):
    torch.manual_seed(1234)
    random.seed(1234)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    load_checkpoint(saved)
    NEMPCalculator.from_checkpoint(saved, device="cpu")
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
