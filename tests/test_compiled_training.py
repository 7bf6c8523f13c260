"""Compiled training steps (``mlcalc.training.compiled``) give the eager model's outputs, loss
and weight gradients for structures of every size through one graph, fall back to eager where
they cannot be had, and are chosen as documented."""

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
from mlcalc.models import traced as traced_module
from mlcalc.models.physics import edge_vectors
from mlcalc.models.traced import untraceable_reason
from mlcalc.training import TrainConfig, train
from mlcalc.training.compiled import CompiledTrainingForward, training_forward
from mlcalc.training.data import LabeledStructure
from mlcalc.training.graphs import Batch, GraphDataset
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


def loss_and_gradients(forward, model, batch: Batch) -> tuple[dict, torch.Tensor, list]:
    """Outputs of ``forward``, an energy + force + stress loss and its weight gradients."""
    model.zero_grad(set_to_none=True)
    outputs = forward(batch.graph, compute_forces=True, compute_stress=True, training=True)
    loss = sum(r.square().sum() for r in residuals(outputs, batch).values())
    loss.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    return outputs, loss.detach(), grads


def assert_step_matches_eager(forward, model, batch: Batch, keys=("forces",)) -> None:
    """``forward``'s outputs ``keys``, loss and weight gradients on ``batch`` equal ``model``'s
    (float64: to 1e-10)."""
    expected, expected_loss, expected_grads = loss_and_gradients(model, model, batch)
    got, loss, grads = loss_and_gradients(forward, model, batch)
    for key in keys:
        torch.testing.assert_close(got[key], expected[key], atol=1e-10, rtol=1e-10, msg=key)
    torch.testing.assert_close(loss, expected_loss, atol=0, rtol=1e-10)
    for name, g, e in zip(dict(model.named_parameters()), grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10, msg=name)


def mixed_frames() -> list[LabeledStructure]:
    """Cells of 8, 16, 24 and 8 atoms, two compositions (the last is Cu7Al)."""
    frames = cu6al2_frames(5)
    other = frames[4].atoms.copy()
    other.symbols[[1, 6]] = "Cu"
    other.symbols[3] = "Al"
    other.calc = EMT()
    energy, forces = other.get_potential_energy(), other.get_forces()
    other.calc = None
    cu7al = LabeledStructure(other, energy, forces, None, "cu7al")
    return [frames[0], supercell(frames[1], 2), supercell(frames[2], 3), frames[3], cu7al]


@pytest.mark.parametrize(
    ("architecture", "backend"), [("nemp", "inductor"), ("mlanet", "aot_eager")]
)
def test_one_compiled_graph_serves_every_size(architecture, backend, model_factory, monkeypatch):
    # inductor's code generation is tested once (NEMP); MLANet's traced graph runs through
    # AOTAutograd alone, which is what differentiates it (and a minute faster to build)
    monkeypatch.setattr(traced_module, "BACKEND", backend)
    model = tiny_model(architecture, model_factory)
    dataset = GraphDataset(mixed_frames(), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, batch_size=2)
    # batches of 24, 32, 16 and 16 atoms in two compositions, then a shorter one (eager)
    for indices in ([0, 1], [0, 2], [3, 4], [4, 0], [1]):
        batch = dataset.batch(indices)
        assert forward.runs_compiled(batch.graph) is (len(indices) == 2)
        assert_step_matches_eager(forward, model, batch, ("energy", "forces", "stress"))
    assert forward.num_graphs == 1 and not forward.failed


def test_static_shapes_give_the_same_energies(model_factory):
    model = model_factory(elements=ELEMENTS, num_interactions=2)
    graph = (
        GraphDataset(mixed_frames(), model.cutoff, model.elements, torch.float64)
        .batch([4, 2])
        .graph
    )
    vectors = edge_vectors(graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch)
    grouped = model.atomic_energy_function(chunked=False)(graph, vectors)
    static = model.atomic_energy_function(chunked=False, static_shapes=True)(graph, vectors)
    torch.testing.assert_close(static, grouped, atol=1e-12, rtol=1e-12)


def test_one_atom_structures_run_eagerly(model_factory, monkeypatch):
    monkeypatch.setattr(traced_module, "BACKEND", "aot_eager")  # inductor: tested above
    model = tiny_model("nemp", model_factory)
    single = bulk("Cu", "fcc", a=3.6)  # one atom, periodic: edges to its own images
    single.calc = EMT()
    one = LabeledStructure(single, single.get_potential_energy(), single.get_forces(), None, "cu1")
    single.calc = None
    frames = [one, *mixed_frames()]
    dataset = GraphDataset(frames, model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, batch_size=1)
    # a one-atom batch first: no graph is traced on it (it would fix the atom count to 1)
    for index, compiles in ((0, False), (1, True), (3, True), (0, False), (5, True)):
        batch = dataset.batch([index])
        assert forward.runs_compiled(batch.graph) is compiles
        assert_step_matches_eager(forward, model, batch)
    assert forward.num_graphs == 1


def test_graphs_are_traced_per_structure_count_up_to_the_limit(model_factory, monkeypatch):
    monkeypatch.setattr(traced_module, "BACKEND", "aot_eager")
    model = tiny_model("nemp", model_factory)
    dataset = GraphDataset(mixed_frames(), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model)  # any batch size
    for indices, compiles in (([0, 1], True), ([2], True), ([3, 4, 0], False), ([1, 2], True)):
        batch = dataset.batch(indices)
        assert forward.runs_compiled(batch.graph) is compiles
        assert_step_matches_eager(forward, model, batch)
    assert forward.num_graphs == traced_module.MAX_GRAPHS == 2
    assert [key.structures for key in forward.traced.graphs] == [2, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_compiled_step_equals_eager_on_cuda(model_factory):
    model = tiny_model("nemp", model_factory).to("cuda")
    dataset = GraphDataset(mixed_frames(), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, batch_size=2)
    for indices in ([0, 1], [2, 3]):
        batch = dataset.batch(indices).to("cuda")
        assert_step_matches_eager(forward, model, batch)
    assert forward.num_graphs == 1 and not forward.failed


def test_a_failed_compilation_falls_back_to_eager(model_factory, monkeypatch):
    model = tiny_model("nemp", model_factory)
    dataset = GraphDataset(cu6al2_frames(2), model.cutoff, model.elements, torch.float64)
    forward = CompiledTrainingForward(model, batch_size=2)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(traced_module.torch, "compile", no_compiler)
    batch = dataset.batch([0, 1])
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*training eagerly"):
        got = forward(batch.graph, compute_forces=True, compute_stress=True)
    expected = model(batch.graph, compute_forces=True, compute_stress=True, training=True)
    torch.testing.assert_close(got["forces"], expected["forces"])
    assert forward.failed and not forward.runs_compiled(batch.graph)


def test_compile_auto_compiles_only_where_it_pays(model_factory, tmp_path):
    model = tiny_model("nemp", model_factory)
    dataset = GraphDataset(mixed_frames(), model.cutoff, model.elements, torch.float64)

    def decide(test_model=model, **keys):
        values = {"train_file": "train.xyz", "batch_size": 2, "output_dir": str(tmp_path), **keys}
        return training_forward(test_model, dataset, TrainConfig.from_dict(values))

    # structures of several sizes: one graph for all of them
    forward, line = decide(max_time="10m")
    assert isinstance(forward, CompiledTrainingForward) and "every structure size" in line
    assert forward.batch_size == 2
    assert decide(max_time="10m", compile=False) == (
        None,
        "training steps run eagerly (compile: false)",
    )
    assert "max_time under 600 s" in decide(max_time="9m")[1]
    assert "fewer than 20000 steps" in decide(epochs=6000)[1]  # 3 steps an epoch
    assert isinstance(decide(epochs=7000)[0], CompiledTrainingForward)  # 21,000 steps
    assert isinstance(decide(epochs=100, compile=True)[0], CompiledTrainingForward)
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

    monkeypatch.setattr(traced_module, "BACKEND", "aot_eager")  # inductor: tested above

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
