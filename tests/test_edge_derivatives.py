"""Forces, virial and per-atom virials from the energy's derivatives with respect to the edge
vectors (what ``pair_style mlcalc`` uses) equal those from positions and strain."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from conftest import build_model

from mlcalc.graph import build_graph
from mlcalc.models.physics import atomic_virials, conservative_outputs, edge_forces, edge_vectors


def triclinic_cell(elements: list[str]) -> Atoms:
    rng = np.random.default_rng(3)
    cell = np.array([[6.0, 0.0, 0.0], [1.1, 5.6, 0.0], [-0.7, 0.9, 6.3]])
    positions = rng.uniform(0, 1, (16, 3)) @ cell
    atoms = Atoms([elements[k % len(elements)] for k in range(16)], positions, cell=cell, pbc=True)
    # keep atoms apart: push pairs closer than 1 Å away from each other
    for _ in range(50):
        distances = atoms.get_all_distances(mic=True) + 10 * np.eye(16)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] > 1.0:
            break
        atoms.positions[j] += atoms.get_distance(i, j, mic=True, vector=True) * 0.5
    return atoms


def test_edge_gradients_give_the_forces_virial_and_per_atom_virials() -> None:
    model = build_model()
    atoms = triclinic_cell(model.elements)
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers)
    energies = model.atomic_energy_function()
    reference = conservative_outputs(energies, graph, compute_forces=True, compute_stress=True)

    vectors = edge_vectors(
        graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
    ).requires_grad_()
    (gradient,) = torch.autograd.grad(energies(graph, vectors).sum(), [vectors])
    forces = edge_forces(gradient, graph.edge_index, graph.num_atoms)
    per_atom = atomic_virials(vectors.detach(), gradient, graph.edge_index, graph.num_atoms)

    assert torch.allclose(forces, reference["forces"], rtol=0, atol=1e-12)
    virial = reference["virial"][0]
    assert torch.allclose(per_atom.sum(0), virial, rtol=0, atol=1e-12 * virial.abs().max())
    # each edge's term is split equally between its two atoms
    first = int(graph.edge_index[0, 0])
    mine = (graph.edge_index[0] == first) | (graph.edge_index[1] == first)
    own = -0.5 * torch.einsum("ea,eb->ab", vectors.detach()[mine], gradient[mine])
    assert torch.allclose(per_atom[first], own, rtol=0, atol=1e-14)
