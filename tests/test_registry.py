"""Pretrained models (:mod:`mlcalc.pretrained`, ``from_pretrained``, ``mlcalc models``): the
shipped index, temporary registries of tiny models, ``hf://`` references and local paths,
and the Hub path end to end against a local HTTP server that speaks the Hub's protocol."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from ase import Atoms
from helpers import tiny_mlanet

from mlcalc import MLANetCalculator, NEMPCalculator, list_pretrained, load_model
from mlcalc.calculators import CALCULATOR_FOR
from mlcalc.cli import main
from mlcalc.models import DTYPES
from mlcalc.models.checkpoint import CheckpointError
from mlcalc.pretrained import (
    REGISTRY_ENV,
    ChecksumError,
    ModelNotCachedError,
    RegistryError,
    UnknownModelError,
    download,
    file_sha256,
    get_pretrained,
    registry_index,
    resolve_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_INDEX = Path(str(importlib.resources.files("mlcalc._registry") / "index.json"))
SHIPPED_BUNDLED = [
    entry["name"]
    for entry in json.loads(SHIPPED_INDEX.read_text(encoding="utf-8"))["models"]
    if "file" in entry["source"]
]
REV_A = "a" * 40
REV_B = "b" * 40


# ---------------------------------------------------------------------------------------------
# tiny models and temporary registries


def entry(name: str, model: Any, source: dict[str, str], dtype: str = "float32") -> dict:
    """An index entry describing ``model``; ``source`` without the sha256 key is completed
    by the caller."""
    return {
        "name": name,
        "architecture": model.architecture,
        "force_mode": getattr(model.config, "force_mode", "conservative"),
        "elements": model.elements,
        "cutoff": model.cutoff,
        "dtype": dtype,
        "dataset": {"name": "none", "split": "none", "level_of_theory": "random weights"},
        "license": "MIT",
        "test_errors": {"energy_mae_meV_per_atom": 1.5, "force_mae_meV_per_A": 40.0},
        "speed": {"cpu_ms_per_step_192_atoms": 12.0, "cpu": "test machine"},
        "description": f"tiny {name} test model",
        "card": f"cards/{name}.md",
        "source": source,
    }


@pytest.fixture
def use_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``use_registry(*entries, index=None)``: write an index (and a card per entry) into
    ``tmp_path/registry`` and point ``$MLCALC_REGISTRY`` at it; returns the folder."""
    folder = tmp_path / "registry"
    (folder / "cards").mkdir(parents=True)

    def write(*entries: dict, index: Any = None) -> Path:
        for item in entries:
            (folder / "cards" / f"{item['name']}.md").write_text(
                f"# {item['name']}\n\nTest model card.\n"
            )
        if index is None:
            index = {"format_version": 1, "models": list(entries)}
        (folder / "index.json").write_text(json.dumps(index, indent=2))
        monkeypatch.setenv(REGISTRY_ENV, str(folder / "index.json"))
        return folder

    return write


@pytest.fixture
def bundled(use_registry, model_factory, tmp_path: Path) -> SimpleNamespace:
    """A registry of three bundled models: ``water`` (NEMP, H and O), ``water-mlanet``
    (direct MLANet, H and O) and ``si`` (NEMP, float64 default)."""
    folder = tmp_path / "registry"
    models = {
        "water": model_factory(elements=["H", "O"]),
        "water-mlanet": tiny_mlanet({"H": -13.6, "O": -2040.0}),
        "si": model_factory(elements=["Si"], seed=3),
    }
    entries = []
    for name, model in models.items():
        path = folder / f"{name}.safetensors"
        model.save(path)
        source = {"file": path.name, "sha256": file_sha256(path)}
        entries.append(entry(name, model, source, "float64" if name == "si" else "float32"))
    use_registry(*entries)
    return SimpleNamespace(folder=folder, models=models, entries=entries)


def energy_and_forces(calc, atoms: Atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


# ---------------------------------------------------------------------------------------------
# the shipped registry and packaging


def test_shipped_index_follows_the_schema(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    assert registry_index() == SHIPPED_INDEX
    raw = json.loads(SHIPPED_INDEX.read_text(encoding="utf-8"))
    models = list_pretrained()  # validates every entry
    # canonical: nothing the schema would drop or reorder (elements sorted by Z)
    assert [model.to_dict() for model in models] == raw["models"]
    for model in models:
        assert model.card == f"cards/{model.name}.md"
        assert model.card_text().strip()
    assert (SHIPPED_INDEX.parent / "README.md").is_file()


@pytest.mark.parametrize("name", SHIPPED_BUNDLED)
def test_shipped_bundled_model_loads(name, monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    model = get_pretrained(name)
    assert file_sha256(model.folder / str(model.file)) == model.sha256
    right = CALCULATOR_FOR[model.architecture]
    calc = right.from_pretrained(name, device="cpu")
    assert type(calc) is right
    assert calc.dtype == DTYPES[model.dtype]
    atoms = Atoms(
        list(model.elements) * 2,
        positions=[[1.7 * i, 0.1 * (i % 2), 0.0] for i in range(2 * len(model.elements))],
    )
    energy, forces = energy_and_forces(calc, atoms)
    assert np.isfinite(energy) and np.all(np.isfinite(forces))
    wrong = next(cls for cls in CALCULATOR_FOR.values() if cls is not right)
    with pytest.raises(TypeError, match=f"use {right.__name__}"):
        wrong.from_pretrained(name, device="cpu")


def test_pyproject_lists_every_package():
    """Packages are listed (the registry is mapped from ``registry/``): a subpackage left
    out would be missing from the wheel while editable installs still import it."""
    tracked = subprocess.run(
        ["git", "ls-files", "mlcalc", "registry"], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert pyproject["package-dir"] == {"mlcalc._registry": "registry"}
    folders = {str(Path(p).parent) for p in tracked.stdout.split() if p.endswith(".py")}
    packages = {"mlcalc._registry" if f == "registry" else f.replace("/", ".") for f in folders}
    assert set(pyproject["packages"]) == packages
    assert {"*.json", "*.md", "*.safetensors", "cards/*.md"} <= set(
        pyproject["package-data"]["mlcalc._registry"]
    )


# ---------------------------------------------------------------------------------------------
# registry names and local paths


def test_registry_model_loads_in_its_default_dtype(bundled, structures):
    model = bundled.models["water"]
    atoms = structures.molecule()
    calc = NEMPCalculator.from_pretrained("water", device="cpu")
    assert type(calc) is NEMPCalculator and calc.dtype == torch.float32
    reference = NEMPCalculator(model, device="cpu", dtype="float32")
    expected, actual = energy_and_forces(reference, atoms), energy_and_forces(calc, atoms)
    assert actual[0] == expected[0]
    np.testing.assert_array_equal(actual[1], expected[1])

    calc64 = NEMPCalculator.from_pretrained("water", device="cpu", dtype="float64", skin=0.5)
    assert calc64.dtype == torch.float64 and calc64.neighbors.skin == 0.5
    assert (
        energy_and_forces(calc64, atoms)[0]
        == energy_and_forces(NEMPCalculator(model, device="cpu"), atoms)[0]
    )
    assert next(load_model("si").parameters()).dtype == torch.float64  # its entry's default
    loaded = load_model("water")
    assert not loaded.training and next(loaded.parameters()).device.type == "cpu"
    assert loaded.atomic_energies == model.atomic_energies  # E0 stay float64


def test_list_and_get_pretrained(bundled):
    models = list_pretrained()
    assert [model.name for model in models] == ["water", "water-mlanet", "si"]
    assert [model.to_dict() for model in models] == bundled.entries
    water = get_pretrained("water")
    assert water.source == "bundled" and water.hub is None
    assert water.elements == ("H", "O") and water.cutoff == 4.0
    assert water.dataset.level_of_theory == "random weights"
    assert water.card_text().startswith("# water")
    assert resolve_checkpoint("water") == download("water") == bundled.folder / "water.safetensors"
    assert type(MLANetCalculator.from_pretrained("water-mlanet", device="cpu")) is MLANetCalculator


def test_local_paths(bundled, tmp_path, monkeypatch, structures):
    path = bundled.folder / "water.safetensors"
    for ref in (path, str(path)):
        calc = NEMPCalculator.from_pretrained(ref, device="cpu")
        assert calc.dtype == torch.float64  # the checkpoint's own dtype
        reference = NEMPCalculator.from_checkpoint(path, device="cpu")
        atoms = structures.molecule()
        assert energy_and_forces(calc, atoms)[0] == energy_and_forces(reference, atoms)[0]
    assert resolve_checkpoint(str(path)) == path
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nothere\.safetensors"):
        load_model(tmp_path / "nothere.safetensors")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model("nothere.safetensors")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        NEMPCalculator.from_pretrained("./water", device="cpu")
    # a registry name wins over a file of that name; ./name is the file
    monkeypatch.chdir(tmp_path)
    bundled.models["si"].save(tmp_path / "water")
    assert load_model("water").elements == ["H", "O"]
    assert load_model("./water").elements == ["Si"]


def test_unknown_name_lists_close_matches(bundled):
    with pytest.raises(UnknownModelError) as error:
        NEMPCalculator.from_pretrained("watr", device="cpu")
    message = str(error.value)
    assert isinstance(error.value, LookupError)
    assert message.startswith("unknown pretrained model 'watr' (did you mean 'water'")
    assert "Available: water, water-mlanet, si" in message
    assert "hf://<org>/<repo>/<filename>@<revision>" in message
    with pytest.raises(UnknownModelError, match=r"'sii' \(did you mean 'si'\?\)"):
        get_pretrained("sii")
    with pytest.raises(UnknownModelError, match=r"'graphene'\. Available"):
        load_model("graphene")


def test_unknown_name_in_an_empty_registry(use_registry):
    use_registry()
    assert list_pretrained() == []
    with pytest.raises(UnknownModelError, match="Available: none yet"):
        load_model("water")


def test_wrong_calculator_class(bundled):
    with pytest.raises(TypeError, match=r"MLANetCalculator needs a MLANet.*use NEMPCalculator"):
        MLANetCalculator.from_pretrained("water", device="cpu")
    with pytest.raises(TypeError, match="use MLANetCalculator"):
        NEMPCalculator.from_pretrained("water-mlanet", device="cpu")


def test_unsupported_element_at_calculation_time(bundled, structures):
    atoms = structures.molecule()
    atoms.symbols[0] = "Si"
    atoms.calc = NEMPCalculator.from_pretrained("water", device="cpu")
    with pytest.raises(KeyError, match=r"element\(s\) Si not supported .*trained on: H, O"):
        atoms.get_potential_energy()


def test_bundled_checksum_mismatch_is_refused(bundled, use_registry):
    path = bundled.folder / "water.safetensors"
    before = path.read_bytes()
    actual = hashlib.sha256(before).hexdigest()
    bundled.entries[0]["source"]["sha256"] = "0" * 64
    use_registry(*bundled.entries)
    with pytest.raises(ChecksumError) as error:
        NEMPCalculator.from_pretrained("water", device="cpu")
    assert isinstance(error.value, CheckpointError)
    for part in ("'water'", str(path), actual, "0" * 64, "nothing was deleted"):
        assert part in str(error.value)
    assert path.read_bytes() == before


def test_entry_that_does_not_describe_its_checkpoint(bundled, use_registry):
    bundled.entries[0].update(elements=["H", "C", "O"], cutoff=5.0)
    use_registry(*bundled.entries)
    with pytest.raises(RegistryError, match=r"entry 'water' does not describe") as error:
        load_model("water")
    assert "elements is ('H', 'O') in the checkpoint but ('H', 'C', 'O')" in str(error.value)
    assert "cutoff is 4.0 in the checkpoint but 5.0" in str(error.value)


def test_missing_bundled_file(bundled):
    (bundled.folder / "si.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="bundled checkpoint of 'si' is missing"):
        load_model("si")


GOOD_SOURCE = {"file": "m.safetensors", "sha256": "0" * 64}
HUB_SOURCE = {"repo_id": "org/repo", "filename": "m.safetensors", "revision": REV_A}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.pop("license"), r"missing field\(s\) \['license'\]"),
        (lambda e: e.update(colour="blue"), r"unknown field\(s\) \['colour'\]"),
        (lambda e: e.update(name="Water"), "must be lower case"),
        (lambda e: e.update(architecture="mace"), r"architecture must be one of \['nemp'"),
        (lambda e: e.update(force_mode="exact"), "force_mode must be one of"),
        (lambda e: e.update(elements=["H", "Xx"]), "elements: unknown element symbol 'Xx'"),
        (lambda e: e.update(cutoff=-1), "cutoff must be a positive number"),
        (lambda e: e.update(cutoff=True), "cutoff must be a positive number"),
        (lambda e: e.update(dtype="float16"), "dtype must be one of"),
        (lambda e: e["dataset"].pop("split"), r"dataset: missing field\(s\) \['split'\]"),
        (lambda e: e.update(test_errors={"e": "small"}), "test_errors must map names to numbers"),
        (lambda e: e.update(speed=[]), "speed must map names to numbers or strings"),
        (lambda e: e.update(description=""), "description must be a non-empty string"),
        (lambda e: e.update(card="/abs/card.md"), "card must be a relative path"),
        (lambda e: e["source"].update(file="../m.safetensors"), "file must be a relative path"),
        (lambda e: e["source"].update(sha256="ABC"), "sha256 must be 64 lower-case hex"),
        (lambda e: e["source"].pop("sha256"), "source must be"),
        (lambda e: e.update(source={**HUB_SOURCE, **GOOD_SOURCE}), "source must be"),
        (lambda e: e.update(source={**HUB_SOURCE, "revision": "main", "sha256": "0" * 64}),
         "revision must be a 40-hex commit"),
        (lambda e: e.update(source={**HUB_SOURCE, "repo_id": "repo", "sha256": "0" * 64}),
         "repo_id 'repo' must be '<org>/<repo>'"),
    ],
)  # fmt: skip
def test_invalid_entry_is_refused(use_registry, model_factory, edit, message):
    item = entry("water", model_factory(elements=["H", "O"]), dict(GOOD_SOURCE))
    edit(item)
    use_registry(item)
    with pytest.raises(RegistryError, match=message):
        list_pretrained()


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ({"format_version": 2, "models": []}, "format_version 2 is not 1"),
        ({"models": []}, "expected an object with 'format_version' and 'models'"),
        ({"format_version": 1, "models": {}}, "'models' must be a list"),
        ({"format_version": 1, "models": [1]}, r"models\[0\]: expected an object"),
    ],
)
def test_invalid_index_is_refused(use_registry, index, message):
    use_registry(index=index)
    with pytest.raises(RegistryError, match=message):
        list_pretrained()


def test_repeated_name_and_broken_json_are_refused(use_registry, model_factory, tmp_path):
    item = entry("water", model_factory(elements=["H", "O"]), dict(GOOD_SOURCE))
    use_registry(item, item)
    with pytest.raises(RegistryError, match="repeated model name"):
        list_pretrained()
    (tmp_path / "registry" / "index.json").write_text("{not json")
    with pytest.raises(RegistryError, match="is not readable JSON"):
        list_pretrained()
    (tmp_path / "registry" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="registry index not found"):
        list_pretrained()


# ---------------------------------------------------------------------------------------------
# the Hub, served locally


class FakeHub:
    """Files by ``(repo_id, revision, filename)`` served as ``huggingface_hub`` expects them;
    every request is recorded as ``(method, path)``. Anything else is a 404 (huggingface_hub
    also asks for ``/api/agent-harnesses``, at most once per process, when online)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes | int] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, repo_id: str, revision: str, filename: str, data: bytes | int) -> None:
        """Serve ``data``, or answer with ``data`` as the HTTP status if it is an int."""
        self.files[(repo_id, revision, filename)] = data

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.respond(send_body=False)

            def do_GET(self) -> None:
                self.respond(send_body=True)

            def respond(self, send_body: bool) -> None:
                with hub.lock:
                    hub.requests.append((self.command, self.path))
                # /{org}/{repo}/resolve/{revision}/{filename with slashes}
                parts = unquote(urlsplit(self.path).path).strip("/").split("/")
                data = None
                if len(parts) > 4 and parts[2] == "resolve":
                    key = ("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                    data = hub.files.get(key)
                if not isinstance(data, bytes):
                    self.send_response(404 if data is None else data)
                    if data is None:
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", parts[3])
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A local Hub on 127.0.0.1 with ``huggingface_hub`` pointed at it and its cache in
    ``tmp_path/hf``. huggingface_hub reads its environment at import, so its constants are
    patched too. ``hub.offline()`` switches to ``HF_HUB_OFFLINE=1``."""
    from huggingface_hub import constants

    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    home = tmp_path / "hf"
    settings = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_OFFLINE": False,
    }
    for name, value in settings.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def offline() -> None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def file_requests() -> list[tuple[str, str]]:
        return [(method, path) for method, path in fake.requests if "/resolve/" in path]

    yield SimpleNamespace(
        add=fake.add,
        requests=fake.requests,
        file_requests=file_requests,
        url=url,
        home=home,
        offline=offline,
    )
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def hub_models(hub, use_registry, model_factory, tmp_path) -> SimpleNamespace:
    """Two different H/O models at revisions A and B of ``org/water`` (``models/water.
    safetensors``), and a registry entry ``hub-water`` pinned to revision A."""
    models, data = {}, {}
    for revision, seed in ((REV_A, 1), (REV_B, 2)):
        models[revision] = model_factory(elements=["H", "O"], seed=seed)
        path = tmp_path / f"{seed}.safetensors"
        models[revision].save(path)
        data[revision] = path.read_bytes()
        hub.add("org/water", revision, "models/water.safetensors", data[revision])
    source = {"repo_id": "org/water", "filename": "models/water.safetensors", "revision": REV_A}
    sha = {revision: hashlib.sha256(blob).hexdigest() for revision, blob in data.items()}
    item = entry("hub-water", models[REV_A], {**source, "sha256": sha[REV_A]})
    use_registry(item)
    return SimpleNamespace(models=models, sha=sha, entry=item)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(
        torch.equal(first[k].to(second[k].dtype), second[k]) for k in first
    )


def test_hub_model_is_downloaded_once_then_served_from_the_cache(hub, hub_models, structures):
    model = load_model("hub-water", dtype="float64")
    assert same_weights(model, hub_models.models[REV_A])
    resolve = f"/org/water/resolve/{REV_A}/models/water.safetensors"
    assert hub.file_requests() == [("HEAD", resolve), ("GET", resolve)]
    seen = len(hub.requests)
    path = resolve_checkpoint("hub-water")
    assert path.is_relative_to(hub.home / "hub")
    assert get_pretrained("hub-water").source == "hub"
    assert get_pretrained("hub-water").to_dict() == hub_models.entry

    calc = NEMPCalculator.from_pretrained("hub-water", device="cpu")
    assert calc.dtype == torch.float32
    assert download("hub-water") == path
    assert hub.requests[seen:] == []  # the pinned commit is cached: no request at all
    reference = NEMPCalculator(hub_models.models[REV_A], device="cpu", dtype="float32")
    atoms = structures.molecule()
    assert energy_and_forces(calc, atoms)[0] == energy_and_forces(reference, atoms)[0]


def test_hf_references_fetch_the_revision_asked_for(hub, hub_models):
    for revision in (REV_B, REV_A):
        ref = f"hf://org/water/models/water.safetensors@{revision}"
        model = load_model(ref)
        assert same_weights(model, hub_models.models[revision])
        assert next(model.parameters()).dtype == torch.float64  # the checkpoint's own
    assert {path for _, path in hub.file_requests()} == {
        f"/org/water/resolve/{revision}/models/water.safetensors" for revision in (REV_A, REV_B)
    }
    seen = len(hub.requests)
    assert same_weights(
        NEMPCalculator.from_pretrained(f"hf://org/water/models/water.safetensors@{REV_B}").model,
        hub_models.models[REV_B],
    )
    assert hub.requests[seen:] == []


@pytest.mark.parametrize(
    "ref",
    [
        "hf://org/water@" + REV_A,
        "hf://org/water/file.safetensors",
        "hf://org/water/f.st@",
        "hf://o",
    ],
)
def test_malformed_hf_reference(ref, hub):
    with pytest.raises(ValueError, match="is not a Hub reference"):
        load_model(ref)
    assert hub.requests == []


def test_hub_checksum_mismatch_is_refused(hub, hub_models, use_registry):
    hub_models.entry["source"]["sha256"] = hub_models.sha[REV_B]  # wrong for revision A
    use_registry(hub_models.entry)
    with pytest.raises(ChecksumError) as error:
        NEMPCalculator.from_pretrained("hub-water", device="cpu")
    message = str(error.value)
    assert f"has sha256 {hub_models.sha[REV_A]}, the registry expects {hub_models.sha[REV_B]}" in (
        message
    )
    assert "Hugging Face cache" in message and str(hub.home / "hub") in message
    seen = len(hub.requests)
    with pytest.raises(ChecksumError):  # refused again from the cache, which is left as is
        download("hub-water")
    assert len(hub.file_requests()) == 2 and hub.requests[seen:] == []


def test_offline_and_not_cached_says_how_to_download(hub, hub_models):
    hub.offline()
    with pytest.raises(ModelNotCachedError) as error:
        NEMPCalculator.from_pretrained("hub-water", device="cpu")
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert message.startswith("pretrained model hub-water (hf://org/water/models/water")
    for part in ("not in the Hugging Face cache", str(hub.home / "hub"), "HF_HUB_OFFLINE is set"):
        assert part in message
    assert "unset HF_HUB_OFFLINE and run `mlcalc models download hub-water`" in message
    ref = f"hf://org/water/models/water.safetensors@{REV_B}"
    with pytest.raises(ModelNotCachedError, match=f"run `mlcalc models download {ref}`"):
        load_model(ref)
    assert hub.requests == []


def test_offline_and_cached_works(hub, hub_models):
    download("hub-water")
    seen = len(hub.requests)
    hub.offline()
    assert same_weights(load_model("hub-water", dtype="float64"), hub_models.models[REV_A])
    assert type(NEMPCalculator.from_pretrained("hub-water", device="cpu")) is NEMPCalculator
    assert hub.requests[seen:] == []


def test_hub_refusal_and_not_cached(hub):
    hub.add("org/water", REV_A, "denied.safetensors", 403)
    ref = f"hf://org/water/denied.safetensors@{REV_A}"
    with pytest.raises(ModelNotCachedError) as error:
        load_model(ref)
    message = str(error.value)
    assert "could not be downloaded: the Hub said: " in message
    assert f"With network access, run `mlcalc models download {ref}` once" in message


def test_environment_variables_are_honoured_in_a_fresh_process(hub, hub_models, tmp_path):
    """``HF_ENDPOINT``, ``HF_HOME`` and ``MLCALC_REGISTRY`` as a user sets them."""
    home = tmp_path / "fresh-hf-home"
    env = {**os.environ, "HF_HOME": str(home), "HF_ENDPOINT": hub.url}
    result = subprocess.run(
        [sys.executable, "-m", "mlcalc.cli", "models", "download", "hub-water"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_relative_to(home / "hub") and file_sha256(path) == hub_models.sha[REV_A]
    assert [method for method, _ in hub.file_requests()] == ["HEAD", "GET"]


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_models_list(bundled, capsys):
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "name", "architecture", "elements", "data set", "F RMSE (meV/Å)", "E RMSE (meV/atom)",
    ]  # fmt: skip
    assert lines[1].split() == ["water", "nemp", "H,O", "none", "-", "-"]
    assert lines[2].split()[:3] == ["water-mlanet", "mlanet", "(direct)"]
    assert lines[3].startswith("si ") and "Si" in lines[3]
    assert all(len(line) <= 100 for line in lines)
    # aligned: every column starts where its header does
    starts = [lines[0].index(name) for name in ("architecture", "elements", "data set")]
    for line in lines[1:4]:
        assert all(line[start - 2 : start] == "  " and line[start] != " " for start in starts)
    assert lines[-1] == "details, test errors and model card: mlcalc models info NAME"
    assert main(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == bundled.entries


def test_models_list_table_fits_100_columns_with_rmse_columns():
    from mlcalc.cli.models import table

    rows = [
        ["3bpa", "nemp", "H,C,N,O", "3BPA", "414.0", "16.89"],
        ["long", "mlanet (direct)", "H,O", "a data set with a very long name " * 4, "52.1", "-"],
    ]
    lines = table(rows)
    assert max(len(line) for line in lines) == 100
    assert "nam…  " in lines[2] and lines[2].endswith("52.1                  -")
    assert lines[0].endswith("F RMSE (meV/Å)  E RMSE (meV/atom)")
    assert lines[1].endswith("414.0              16.89")


def test_cli_models_list_empty(use_registry, capsys):
    folder = use_registry()
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out == f"no pretrained models in the registry {folder}/index.json\n"
    assert main(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_models_info(bundled, capsys):
    assert main(["models", "info", "water-mlanet"]) == 0
    out = capsys.readouterr().out
    assert "name" in out and "water-mlanet" in out and "force_mode" in out and "direct" in out
    assert "level_of_theory" in out and "random weights" in out
    assert out.rstrip().endswith("# water-mlanet\n\nTest model card.")
    assert main(["models", "info", "si", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == bundled.entries[2]
    assert main(["models", "info", "wter"]) == 2
    assert "did you mean 'water'" in capsys.readouterr().err


def test_cli_models_download_bundled(bundled, use_registry, capsys):
    assert main(["models", "download", "water"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{bundled.folder / 'water.safetensors'}\n"
    assert "bundled with mlcalc, nothing to download; sha256 verified" in captured.err
    bundled.entries[0]["source"]["sha256"] = "1" * 64
    use_registry(*bundled.entries)
    assert main(["models", "download", "water"]) == 2
    assert f"the registry expects {'1' * 64}" in capsys.readouterr().err


def test_cli_models_download_from_the_hub(hub, hub_models, capsys):
    assert main(["models", "download", "hub-water"]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert path.is_relative_to(hub.home / "hub") and "sha256 verified" in captured.err
    ref = f"hf://org/water/models/water.safetensors@{REV_B}"
    assert main(["models", "download", ref]) == 0
    assert file_sha256(capsys.readouterr().out.strip()) == hub_models.sha[REV_B]
    assert len(hub.file_requests()) == 4
    assert main(["models", "download", f"hf://org/water/missing.safetensors@{REV_A}"]) == 2
    assert "mlcalc models download: error:" in capsys.readouterr().err
    hub.offline()
    assert main(["models", "download", "hub-water"]) == 0  # cached
    assert main(["models", "download", f"hf://org/water/other.safetensors@{REV_A}"]) == 2
    assert "not in the Hugging Face cache" in capsys.readouterr().err


def test_hub_model_of_the_wrong_class_is_refused_before_downloading(hub, hub_models):
    with pytest.raises(TypeError, match="hub-water holds NEMP; use NEMPCalculator"):
        MLANetCalculator.from_pretrained("hub-water", device="cpu")
    assert hub.requests == []
