"""Compiled training steps (``mlcalc.training.compiled``) give the eager model's outputs and
weight gradients, fall back to eager where they cannot be had, and are chosen as documented."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from helpers import tiny_mlanet

from mlcalc.models import MLANet, MLANetConfig
from mlcalc.training import TrainConfig, train
from mlcalc.training import compiled as compiled_module
from mlcalc.training.compiled import (
    CompiledTrainingForward,
    batch_shapes,
    edge_capacity,
    training_forward,
    untraceable_reason,
)
from mlcalc.training.data import Batch, GraphDataset, LabeledStructure
from mlcalc.training.loss import residuals

ELEMENTS = ["Al", "Cu"]


def cu6al2_frames(count: int, seed: int = 0) -> list[LabeledStructure]:
    """Rattled, strained Cu6Al2 cells (one composition: one batch shape) with EMT labels."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
        atoms.symbols[[1, 6]] = "Al"
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        atoms.rattle(0.1, seed=seed * 100 + k)
        atoms.calc = EMT()
        energy, forces, stress = (
            atoms.get_potential_energy(),
            atoms.get_forces(),
            atoms.get_stress(voigt=False),
        )
        atoms.calc = None
        frames.append(LabeledStructure(atoms, energy, forces, stress, f"cu6al2:{k}"))
    return frames


def supercell(frame: LabeledStructure, repeat: int) -> LabeledStructure:
    """``frame`` repeated ``repeat`` times along a, with its labels repeated to match."""
    return dataclasses.replace(
        frame,
        atoms=frame.atoms * (repeat, 1, 1),
        energy=frame.energy * repeat,
        forces=np.tile(frame.forces, (repeat, 1)),
    )


def tiny_model(architecture: str, model_factory):
    if architecture == "nemp":
        return model_factory(elements=ELEMENTS, num_interactions=1)
    return tiny_mlanet({"Al": -1.5, "Cu": -2.0}, force_mode="conservative")


def loss_and_gradients(forward, model, batch: Batch) -> tuple[dict, list[torch.Tensor]]:
    """Outputs of ``forward`` and the weight gradients of an energy + force + stress loss."""
    model.zero_grad(set_to_none=True)
    outputs = forward(batch.graph, compute_forces=True, compute_stress=True, training=True)
    loss = sum(r.square().sum() for r in residuals(outputs, batch).values())
    loss.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    return outputs, grads


def assert_step_matches_eager(forward, model, batch: Batch, keys=("forces",)) -> None:
    """``forward``'s outputs ``keys`` and weight gradients on ``batch`` equal ``model``'s."""
    expected, expected_grads = loss_and_gradients(model, model, batch)
    got, grads = loss_and_gradients(forward, model, batch)
    for key in keys:
        torch.testing.assert_close(got[key], expected[key], atol=1e-9, rtol=1e-9, msg=key)
    for name, g, e in zip(dict(model.named_parameters()), grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-8, rtol=1e-7, msg=name)


@pytest.mark.parametrize(
    ("architecture", "backend"), [("nemp", "inductor"), ("mlanet", "aot_eager")]
)
def test_compiled_step_equals_eager(architecture, backend, model_factory, monkeypatch):
    # inductor's code generation is tested once (NEMP); MLANet's traced graph runs through
    # AOTAutograd alone, which is what differentiates it (and a minute faster to build)
    monkeypatch.setattr(compiled_module, "BACKEND", backend)
    model = tiny_model(architecture, model_factory)
    dataset = GraphDataset(cu6al2_frames(5), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, edge_capacity(dataset, 2), batch_size=2)
    # two batches of one shape (different edges), then a shorter one that runs eagerly
    for indices in ([0, 1], [2, 3], [4]):
        batch = dataset.batch(indices)
        assert_step_matches_eager(forward, model, batch, ("energy", "forces", "stress"))
    assert len(forward.graphs) == 1  # compiled once, reused for the second batch
    assert not forward.failed


def test_batches_of_one_structure_compile_per_size(model_factory, monkeypatch):
    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")  # inductor: tested above
    model = tiny_model("nemp", model_factory)
    frames = cu6al2_frames(3)
    bigger, biggest = (supercell(frames[k], n) for k, n in ((0, 2), (1, 3)))
    dataset = GraphDataset([*frames, bigger, biggest], model.cutoff, model.elements, torch.float64)
    shapes = batch_shapes(dataset, 1, len(model.elements))
    capacities = {shape: edges for shape, (_, edges) in list(shapes.items())[:2]}
    forward = CompiledTrainingForward(model, capacities, batch_size=1)
    for index, compiles in ((0, True), (3, True), (4, False), (1, True)):
        batch = dataset.batch([index])
        assert forward.runs_compiled(batch.graph, True) is compiles
        assert_step_matches_eager(forward, model, batch)
    assert len(forward.graphs) == 2 and not forward.failed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_compiled_step_equals_eager_on_cuda(model_factory):
    model = tiny_model("nemp", model_factory).to("cuda")
    dataset = GraphDataset(cu6al2_frames(4), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, edge_capacity(dataset, 2), batch_size=2)
    for indices in ([0, 1], [2, 3]):
        batch = dataset.batch(indices).to("cuda")
        assert_step_matches_eager(forward, model, batch)
    assert len(forward.graphs) == 1 and not forward.failed


def test_a_failed_compilation_falls_back_to_eager(model_factory, monkeypatch):
    model = tiny_model("nemp", model_factory)
    dataset = GraphDataset(cu6al2_frames(2), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, edge_capacity(dataset, 2), batch_size=2)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled_module.torch, "compile", no_compiler)
    batch = dataset.batch([0, 1])
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*training eagerly"):
        got = forward(batch.graph, compute_forces=True, compute_stress=True)
    expected = model(batch.graph, compute_forces=True, compute_stress=True, training=True)
    torch.testing.assert_close(got["forces"], expected["forces"])
    assert forward.failed and not forward.runs_compiled(batch.graph, True)


def test_compile_auto_compiles_only_where_it_pays(model_factory, tmp_path):
    model = tiny_model("nemp", model_factory)
    frames = cu6al2_frames(4)
    dataset = GraphDataset(frames, model.cutoff, model.elements, torch.float64)

    def decide(data=dataset, distributed=False, test_model=model, **keys):
        values = {"train_file": "train.xyz", "batch_size": 2, "output_dir": str(tmp_path), **keys}
        return training_forward(test_model, data, TrainConfig.from_dict(values), distributed)

    forward, line = decide(max_time="5m")
    assert isinstance(forward, CompiledTrainingForward) and "compiled" in line
    # one shape: two Cu6Al2 cells (species in the model's order, Al then Cu)
    assert forward.edge_capacity == {(16, (4, 12)): edge_capacity(dataset, 2)}
    assert forward.batch_size == 2
    assert decide(max_time="5m", compile=False) == (
        None,
        "training steps run eagerly (compile: false)",
    )
    assert "under 240 s" in decide(max_time="2m")[1]
    assert "fewer than 5000 steps" in decide(epochs=100)[1]
    assert isinstance(decide(epochs=100, compile=True)[0], CompiledTrainingForward)
    assert "data-parallel" in decide(max_time="1h", distributed=True)[1]
    # structures of two sizes: no single shape for the full batches
    mixed = GraphDataset(
        [*frames, supercell(frames[0], 2)], model.cutoff, model.elements, torch.float64
    )
    assert "differ in size" in decide(data=mixed, max_time="1h")[1]
    # one structure per batch: a shape per size, each compiled if its share of max_time pays
    shapes = batch_shapes(mixed, 1, len(ELEMENTS))
    assert list(shapes) == [(8, (2, 6)), (16, (4, 12))]  # most frequent first
    assert shapes[(8, (2, 6))] == (0.8, max(g.num_edges for g in dataset.graphs))
    assert shapes[(16, (4, 12))] == (0.2, mixed.graphs[-1].num_edges)
    forward, line = decide(data=mixed, batch_size=1, max_time="30m")
    assert set(forward.edge_capacity) == set(shapes) and "8 and 16 atoms (100 %" in line
    forward, line = decide(data=mixed, batch_size=1, max_time="5m")  # 0.2 x 5 min < 240 s
    assert set(forward.edge_capacity) == {(8, (2, 6))} and "8 atoms (80 %" in line
    assert "under 240 s for each batch shape" in decide(data=mixed, batch_size=1, max_time="4m")[1]
    # a model with a long-range term reads the structures directly: not traceable
    coulomb = model_factory(elements=ELEMENTS, long_range="coulomb")
    assert untraceable_reason(coulomb) is not None
    assert "long-range" in decide(test_model=coulomb, max_time="1h")[1]
    with pytest.raises(ValueError, match=r"compile: true cannot be had.*long-range"):
        decide(test_model=coulomb, compile=True)
    direct = MLANet(MLANetConfig(elements=ELEMENTS, force_mode="direct"))
    assert "not derivatives" in untraceable_reason(direct)
    for bad in ("yes", 1, 0):  # 1 == True, but a number is not a setting
        with pytest.raises(ValueError, match="compile must be true, false or 'auto'"):
            TrainConfig.from_dict({"train_file": "x.xyz", "compile": bad})


def test_training_with_compile_true_equals_eager_training(tmp_path, monkeypatch):
    from ase.io import write

    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")  # inductor: tested above

    frames = cu6al2_frames(12, seed=3)
    atoms = []
    for frame in frames:
        copy = frame.atoms.copy()
        copy.info["energy"] = frame.energy
        copy.arrays["forces"] = frame.forces
        copy.info["stress"] = frame.stress
        atoms.append(copy)
    write(tmp_path / "train.xyz", atoms)
    losses = {}
    for setting in (False, True):
        config = TrainConfig.from_dict(
            {
                "train_file": str(tmp_path / "train.xyz"),
                "valid_fraction": 0.25,
                "model": {"preset": "small", "cutoff": 4.0, "num_interactions": 1},
                "batch_size": 3,
                "epochs": 3,
                "dtype": "float64",
                "threads": 1,
                "compile": setting,
                "output_dir": str(tmp_path / f"compile-{setting}"),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
            train(config)
        rows = (tmp_path / f"compile-{setting}" / "metrics.csv").read_text().splitlines()[1:]
        losses[setting] = [float(row.split(",")[3]) for row in rows]  # train_loss
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-7)
