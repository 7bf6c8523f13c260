"""Edge vectors, and conservative forces and stress by one backward pass through a strain.

Sign conventions (ASE): forces ``F = -dE/dx`` in eV/Å; stress ``sigma = (1/V) dE/d(eps)`` in
eV/Å³ for a symmetric strain ``x' = x (I + eps)`` applied to positions and cell, so positive
stress is tensile; virial ``W = -V sigma`` in eV.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from mlcalc.graph import AtomicGraph


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    shifts: torch.Tensor,
    edge_index: torch.Tensor,
    batch: torch.Tensor,
) -> torch.Tensor:
    """``[E, 3]`` edge vectors ``r_ij = x_j - x_i + shift @ cell`` (Å), from centre i to j."""
    i, j = edge_index[0], edge_index[1]
    image = torch.einsum("ea,eab->eb", shifts, cell.index_select(0, batch.index_select(0, i)))
    return positions.index_select(0, j) - positions.index_select(0, i) + image


def fully_periodic(graph: AtomicGraph) -> torch.Tensor:
    """``[B]`` bool: graphs periodic in all three directions (the only ones with a stress)."""
    return graph.pbc.all(dim=1)


def stress_and_virial(
    strain_derivative: torch.Tensor, graph: AtomicGraph
) -> dict[str, torch.Tensor]:
    """``stress = (dE/d eps) / V`` (eV/Å³) and ``virial = -dE/d eps`` (eV), both ``[B, 3, 3]``.

    ``strain_derivative [B, 3, 3]`` is ``dE/d eps`` per graph (eV); graphs that are not periodic
    in all three directions get zeros.
    """
    periodic = fully_periodic(graph)
    volume = torch.where(
        periodic, torch.linalg.det(graph.cell).abs(), torch.ones_like(graph.cell[:, 0, 0])
    )
    mask = periodic[:, None, None].to(strain_derivative.dtype)
    return {
        "stress": strain_derivative / volume[:, None, None] * mask,
        "virial": -strain_derivative * mask,
    }


def conservative_outputs(
    atomic_energy_fn: Callable[[AtomicGraph, torch.Tensor], torch.Tensor],
    graph: AtomicGraph,
    compute_forces: bool = True,
    compute_stress: bool = False,
    training: bool = False,
) -> dict[str, torch.Tensor]:
    """Energies, forces and stress of a model whose energy is a sum of atomic terms.

    Args:
        atomic_energy_fn: maps ``(graph, edge_vectors [E, 3])`` to ``[N]`` atomic energies (eV);
            the graph it gets holds the positions and cell the edge vectors come from (with
            the strain, when stress is asked for).
        graph: the batch.
        compute_forces, compute_stress: which derivatives to take (one backward pass for both).
        training: keep the graph of the derivatives for a force/stress loss.

    Returns:
        ``node_energy [N]`` and ``energy [B]`` (float64, eV); with forces ``forces [N, 3]``
        (eV/Å); with stress ``stress [B, 3, 3]`` (eV/Å³) and ``virial [B, 3, 3]`` (eV), zero
        for graphs that are not periodic in all directions.
    """
    positions, cell = graph.positions, graph.cell
    strain = None
    if compute_forces or compute_stress:
        positions = positions.detach().requires_grad_(compute_forces)
    if compute_stress:
        displacement = torch.zeros_like(cell, requires_grad=True)
        strain = 0.5 * (displacement + displacement.transpose(1, 2))
        positions_strained = positions + torch.einsum("na,nab->nb", positions, strain[graph.batch])
        cell = cell + torch.bmm(cell, strain)
    else:
        positions_strained = positions
    vectors = edge_vectors(positions_strained, cell, graph.shifts, graph.edge_index, graph.batch)
    # the graph seen by the model holds the strained positions and cell (long-range terms)
    strained = dataclasses.replace(graph, positions=positions_strained, cell=cell)
    node_energy = atomic_energy_fn(strained, vectors)
    energy = node_energy.new_zeros(graph.num_graphs).index_add_(0, graph.batch, node_energy)
    out = {"node_energy": node_energy, "energy": energy}
    if not (compute_forces or compute_stress):
        return out

    inputs = [positions] if compute_forces else []
    if compute_stress:
        inputs.append(displacement)
    grads = torch.autograd.grad(
        energy.sum(),
        inputs,
        create_graph=training,
        allow_unused=True,
    )
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]
    if compute_forces:
        out["forces"] = -grads[0]
    if compute_stress:
        out.update(stress_and_virial(grads[-1], graph))
    return out


def outputs_from_edge_gradients(
    node_energy: torch.Tensor,
    edge_gradient: torch.Tensor,
    vectors: torch.Tensor,
    graph: AtomicGraph,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """What :func:`conservative_outputs` returns, from the derivatives of the energy with
    respect to the edge vectors (for energies that depend on the positions only through them).

    Args:
        node_energy: ``[N]`` atomic energies (eV).
        edge_gradient: ``[E, 3]`` ``dE/dr_ij`` (eV/Å) of the edge vectors ``vectors [E, 3]``
            (Å) of ``graph``.
        compute_stress: add ``stress`` and ``virial``; the strain ``eps`` moves every edge
            vector to ``r (I + eps)``, so ``dE/d eps = sum_ij r_ij ⊗ dE/dr_ij`` per graph.
    """
    centre = graph.edge_index[0]
    energy = node_energy.new_zeros(graph.num_graphs).index_add_(0, graph.batch, node_energy)
    forces = edge_forces(edge_gradient, graph.edge_index, graph.num_atoms)
    out = {"node_energy": node_energy, "energy": energy, "forces": forces}
    if compute_stress:
        per_edge = vectors[:, :, None] * edge_gradient[:, None, :]
        edge_graph = graph.batch.index_select(0, centre)
        moment = per_edge.new_zeros((graph.num_graphs, 3, 3)).index_add_(0, edge_graph, per_edge)
        out.update(stress_and_virial(0.5 * (moment + moment.transpose(1, 2)), graph))
    return out


def edge_forces(
    edge_gradient: torch.Tensor, edge_index: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """``[N, 3]`` forces ``-dE/dx`` (eV/Å) from ``dE/dr_ij [E, 3]`` (eV/Å) of the edges
    ``[2, E]``: ``r_ij = x_j - x_i + shift``, so ``dE/dx_j`` gains ``dE/dr_ij`` and ``dE/dx_i``
    loses it."""
    return (
        edge_gradient.new_zeros((num_atoms, 3))
        .index_add_(0, edge_index[0], edge_gradient)
        .index_add_(0, edge_index[1], -edge_gradient)
    )


def atomic_virials(
    vectors: torch.Tensor, edge_gradient: torch.Tensor, edge_index: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """``[N, 3, 3]`` per-atom virials (eV): each edge's ``-r_ij ⊗ dE/dr_ij`` split equally
    between its two atoms (the edge-based partition; equal to the centroid form for edge
    terms). They sum to the virial ``-dE/d eps`` of an energy that depends on the positions
    only through the edge vectors ``vectors [E, 3]`` (Å)."""
    half = -0.5 * vectors[:, :, None] * edge_gradient[:, None, :]
    return (
        half.new_zeros((num_atoms, 3, 3))
        .index_add_(0, edge_index[0], half)
        .index_add_(0, edge_index[1], half)
    )
