"""Models evaluated on part of a system, with node features exchanged between layers
(:mod:`mlcalc.models.exchange`, what ``pair_style mlcalc`` does across MPI ranks).

A domain's owned atoms are the graph's centres; its ghost atoms get their features from a
run over the whole system. With a ghost shell of one cutoff the owned atoms' energies are
those of the whole system; with less they are not (so the test can fail).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase import Atoms

from mlcalc.graph import build_graph
from mlcalc.models import NEMP, MLANet, MLANetConfig, NEMPConfig
from mlcalc.models.physics import edge_vectors

ELEMENTS = ["H", "C", "O"]
CUTOFF = 2.5


def nemp_model() -> NEMP:
    torch.manual_seed(0)
    config = NEMPConfig.preset("small", elements=ELEMENTS, cutoff=CUTOFF, num_interactions=3)
    return NEMP(config).double()


def mlanet_model() -> MLANet:
    torch.manual_seed(1)
    config = MLANetConfig(
        elements=ELEMENTS,
        cutoff=CUTOFF,
        lmax=1,
        channels=8,
        num_interactions=3,
        force_mode="conservative",
    )
    return MLANet(config).double()


def cluster() -> Atoms:
    """About 700 atoms on a jittered grid, 1.3 Å apart (every atom has neighbours)."""
    grid = np.stack(np.meshgrid(*[np.arange(9)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.3
    positions = grid + np.random.default_rng(0).normal(0.0, 0.1, grid.shape)
    symbols = [ELEMENTS[k % 3] for k in range(len(positions))]
    return Atoms(symbols, positions)


class RecordingExchange:
    """Every atom is a centre; keeps the features of each exchange."""

    def __init__(self, num_atoms: int) -> None:
        self.num_centres = num_atoms
        self.features: list[torch.Tensor] = []

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        self.features.append(features.detach())
        return features


class ReplayExchange:
    """The ghost atoms' features from a :class:`RecordingExchange` of the whole system."""

    def __init__(self, owned: int, ghost_ids: np.ndarray, recorded: list[torch.Tensor]) -> None:
        self.num_centres = owned
        self.ghost_ids = torch.as_tensor(ghost_ids)
        self.recorded = recorded
        self.calls = 0

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        ghosts = self.recorded[self.calls].index_select(0, self.ghost_ids)
        self.calls += 1
        return torch.cat([features, ghosts])


def energies(model, atoms: Atoms, exchange, owned: int | None = None) -> torch.Tensor:
    """Atomic energies through ``model.atomic_energy_function(exchange=...)``, on the graph of
    ``atoms`` cut to the edges of its first ``owned`` atoms."""
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers)
    if owned is not None:
        keep = graph.edge_index[0] < owned
        graph = dataclasses.replace(
            graph, edge_index=graph.edge_index[:, keep], shifts=graph.shifts[keep]
        )
    vectors = edge_vectors(graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch)
    return model.atomic_energy_function(exchange=exchange)(graph, vectors).detach()


@pytest.mark.parametrize("make_model", [nemp_model, mlanet_model], ids=["nemp", "mlanet"])
def test_ghost_shell_of_one_cutoff_is_exact(make_model) -> None:
    model = make_model()
    atoms = cluster()
    recorder = RecordingExchange(len(atoms))
    reference = energies(model, atoms, recorder)
    # NEMP: after layer 0 and each interaction but the last; MLANet: after each layer but the
    # last (the first reads the species embedding)
    expected = model.config.num_interactions - (1 if isinstance(model, MLANet) else 0)
    assert len(recorder.features) == expected
    # without an exchange: the same numbers
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers)
    assert torch.equal(model(graph, compute_forces=False)["node_energy"].detach(), reference)

    x = atoms.positions[:, 0]
    owned_ids = np.flatnonzero((x > 4.0) & (x < 6.5))  # a slab narrower than the receptive field
    for shell, exact in [(CUTOFF + 0.5, True), (CUTOFF + 1e-6, True), (0.6 * CUTOFF, False)]:
        distance = np.linalg.norm(
            atoms.positions[:, None] - atoms.positions[owned_ids][None], axis=2
        ).min(1)
        ghost_ids = np.flatnonzero((distance > 0) & (distance <= shell))
        part = atoms[np.concatenate([owned_ids, ghost_ids])]
        exchange = ReplayExchange(len(owned_ids), ghost_ids, recorder.features)
        found = energies(model, part, exchange, owned=len(owned_ids))
        assert exchange.calls == expected
        assert found.shape == (len(owned_ids),)
        error = (found - reference[owned_ids]).abs().max().item()
        if exact:
            assert error < 1e-12, f"shell {shell}: owned energies differ by {error:.2e}"
        else:
            assert error > 1e-6, f"shell {shell} below a cutoff gave the exact energies"
