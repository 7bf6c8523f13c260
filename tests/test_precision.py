"""float64 is float64: every path to a float64 model holds the same constants and energies.

Constants (Clebsch–Gordan coefficients, Bessel frequencies, normalisation factors) are kept as
float64 masters and re-derived on every cast (:mod:`mlcalc.models.constants`), so a float32
model or checkpoint cast to float64 must match a model built in float64 bit for bit.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from ase import Atoms
from ase.build import molecule

from mlcalc.calculators import CALCULATOR_FOR
from mlcalc.graph import build_graph
from mlcalc.models import (
    NEMP,
    AtomisticModel,
    MLANet,
    MLANetConfig,
    NEMPConfig,
    load_checkpoint,
)
from mlcalc.models.checkpoint import read_checkpoint
from mlcalc.models.constants import ExactConstants
from mlcalc.pretrained import load_model

REGISTRY = Path(__file__).resolve().parents[1] / "registry"
SHIPPED = sorted(REGISTRY.glob("*.safetensors"))
DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def built_in_float64(like: AtomisticModel, state: dict[str, torch.Tensor]) -> AtomisticModel:
    """A model of ``like``'s class and config built in float64, holding ``state``'s weights."""
    with default_dtype(torch.float64), torch.random.fork_rng(devices=[]):
        model = type(like)(like.config)
    model.load_state_dict(state)
    return model.eval()


def assert_same_buffers(model: AtomisticModel, reference: AtomisticModel) -> None:
    """Every buffer (constants, e3nn's own, the readout's) equal bit for bit, all float64."""
    expected = dict(reference.named_buffers())
    found = dict(model.named_buffers())
    assert found.keys() == expected.keys()
    for name, buffer in found.items():
        if buffer.is_floating_point():
            assert buffer.dtype == torch.float64, name
        assert torch.equal(buffer, expected[name]), name


def constants_of(model: AtomisticModel) -> dict[str, torch.Tensor]:
    """The float64-master constants of a model, by buffer name."""
    return {
        f"{prefix}.{name}".lstrip("."): getattr(module, name)
        for prefix, module in model.named_modules()
        if isinstance(module, ExactConstants)
        for name in module._float64_constants
    }


def energy(model: AtomisticModel, atoms: Atoms) -> float:
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers, torch.float64)
    return float(model(graph, compute_forces=False)["energy"][0].detach())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_checkpoints_in_float64_carry_no_float32_rounding(path: Path) -> None:
    _, tensors = read_checkpoint(path)
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())
    loaded = load_model(path, dtype="float64")
    reference = built_in_float64(loaded, tensors)
    assert_same_buffers(loaded, reference)
    calculator = CALCULATOR_FOR[loaded.architecture].from_checkpoint(
        path, device="cpu", dtype="float64"
    )
    assert_same_buffers(calculator.model, reference)
    # the test has teeth: some constant of every model is not a float32 number
    constants = constants_of(loaded)
    assert any(not torch.equal(c, c.float().double()) for c in constants.values())


def tiny_models() -> dict[str, AtomisticModel]:
    nemp = NEMPConfig.preset("small", elements=["H", "C", "O"], cutoff=3.5)
    mlanet = {"elements": ["H", "C", "O"], "cutoff": 3.5, "channels": 8, "num_heads": 2}
    mlanet |= {"num_interactions": 1, "readout_channels": 8, "energy_mlp_hidden": [8]}
    return {
        "nemp": NEMP(nemp),
        "mlanet-direct-l1": MLANet(MLANetConfig(**mlanet, lmax=1, force_mode="direct")),
        "mlanet-conservative-l2": MLANet(MLANetConfig(**mlanet, force_mode="conservative")),
    }


@pytest.fixture(scope="module")
def structure() -> Atoms:
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=7)
    return atoms


@pytest.mark.parametrize(
    "build, save, load", list(itertools.product(DTYPES, repeat=3)), ids=str
)  # fmt: skip
@pytest.mark.parametrize("name", ["nemp", "mlanet-direct-l1", "mlanet-conservative-l2"])
def test_save_and_load_in_any_dtypes_reproduce_float64_energies(
    name: str,
    build: torch.dtype,
    save: torch.dtype,
    load: torch.dtype,
    structure: Atoms,
    tmp_path: Path,
) -> None:
    """Built in ``build``, saved in ``save``, loaded and cast to ``load``, then to float64:
    the constants and energy of a model built in float64 with the weights it ends up with."""
    with default_dtype(build), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tiny_models()[name]
    model.set_energy_reference({"H": -13.6, "C": -1029.5, "O": -2041.3}, energy_scale=0.4)
    model.to(save).save(tmp_path / "model.safetensors")
    model = load_checkpoint(tmp_path / "model.safetensors").to(load).to(torch.float64)
    reference = built_in_float64(model, model.state_dict())
    assert_same_buffers(model, reference)
    expected = energy(reference, structure)
    assert energy(model, structure) == pytest.approx(expected, rel=1e-12, abs=0)


def test_every_constant_is_re_derived_from_its_float64_master() -> None:
    """float32 → float16 → float64 still gives the constants of a float64 build."""
    for name, model in tiny_models().items():
        detour = constants_of(model.half().double())
        with default_dtype(torch.float64):
            direct = constants_of(type(model)(model.config))
        assert detour.keys() == direct.keys() and detour, name
        for key, value in detour.items():
            assert value.dtype == torch.float64 and torch.equal(value, direct[key]), key
    assert {"tensor_product.cg", "invariant_scale"} <= constants_of(tiny_models()["nemp"]).keys()


def test_casts_that_keep_the_dtype_leave_constants_in_place() -> None:
    """Device moves and ``share_memory`` act on the working copy, as on any buffer."""
    model = NEMP(NEMPConfig.preset("small", elements=["Cu"], cutoff=3.0))
    model.share_memory()
    assert model.tensor_product.cg.is_shared()
