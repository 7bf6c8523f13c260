"""Long-range electrostatics: learned latent atomic charges and their Coulomb energy.

Shared by NEMP and MLANet (``long_range="coulomb"``). A read-out of each atom's final invariant
features plus a learned offset per element gives a raw charge ``q̃_i``; the charges of a
structure are shifted evenly so that they sum to its total charge ``Q``
(``AtomicGraph.total_charge``):
``q_i = q̃_i + (Q - sum_g q̃) / n_g``. Their energy, with ``k_e = 14.399645 eV Å / e²``, is

``E = (k_e / 2) sum_{i≠j} q_i q_j φ(r_ij)``, ``φ(r) = [1 - erfc(r / 2σ) u(r / r_c)] / r``,

summed over all pairs of a molecule (no cutoff) and by Ewald summation over all periodic
images in a fully periodic cell. ``σ`` is the ``coulomb_smearing`` width (Å) and ``u`` the
polynomial envelope of the model's cutoff ``r_c``: inside the cutoff ``φ`` is the potential of
two Gaussian charges of width ``σ``, smoothly switched to the exact ``1/r`` at ``r_c``, so
``φ`` is finite at ``r = 0``, smooth, and ``1/r`` beyond the cutoff. Everything is computed in
float64, differentiable in the positions and the cell (forces and stress by autograd).

A charged periodic cell carries a uniform neutralising background (the Ewald convention; the
energy includes the ``-π Q² / (2 V α²)`` term that makes it independent of the splitting ``α``).
Structures periodic in only one or two directions (slabs, wires) are refused: they need a 2D or
1D Ewald sum, which is not implemented.

The Ewald sum here is plain (not PME): real-space pairs are the model's edges, ``α =
sqrt(-ln ε) / r_c`` and reciprocal vectors up to ``k_max = 2 α sqrt(-ln ε)`` (``ε =
EWALD_ACCURACY``), so its cost is O(N · V k_max³): fine for cells of a few hundred atoms.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from mlcalc.graph import AtomicGraph
from mlcalc.models.blocks import polynomial_envelope, scatter_sum

#: Coulomb constant ``e² / (4 π ε0)``, eV Å / e² (CODATA 2018).
COULOMB_CONSTANT = 14.399645478425668
#: Relative truncation error of the real- and reciprocal-space Ewald sums.
EWALD_ACCURACY = 1e-7
#: Envelope exponent of the switch from Gaussian-charge to point-charge interaction.
SWITCH_EXPONENT = 6


def ewald_alpha(cutoff: float, accuracy: float = EWALD_ACCURACY) -> float:
    """Splitting parameter ``α`` (Å⁻¹) for which ``erfc(α r_c)`` is about ``accuracy``."""
    return math.sqrt(-math.log(accuracy)) / cutoff


def reciprocal_vectors(cell: torch.Tensor, k_max: float) -> torch.Tensor:
    """``[K, 3]`` wave vectors ``k = 2π m · cell⁻ᵀ`` (Å⁻¹) with ``0 < |k| <= k_max``, one of each
    ``±k`` pair. The set is chosen from the detached cell; the vectors keep the cell's autograd."""
    reciprocal = 2.0 * math.pi * torch.linalg.inv(cell).transpose(0, 1)  # rows b_a, a·b = 2π
    with torch.no_grad():
        bounds = (k_max * torch.linalg.norm(cell, dim=1) / (2.0 * math.pi)).floor().long()
        ranges = [range(-int(m), int(m) + 1) for m in bounds.tolist()]
        grid = torch.tensor(list(itertools.product(*ranges)), dtype=cell.dtype, device=cell.device)
        m1, m2, m3 = grid.unbind(1)
        half = (m1 > 0) | ((m1 == 0) & (m2 > 0)) | ((m1 == 0) & (m2 == 0) & (m3 > 0))
        grid = grid[half]
        grid = grid[torch.linalg.norm(grid @ reciprocal.detach(), dim=1) <= k_max]
    return grid @ reciprocal


def ewald_energies(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    centre: torch.Tensor,
    vectors: torch.Tensor,
    neighbor_charges: torch.Tensor,
    alpha: float,
    accuracy: float = EWALD_ACCURACY,
) -> torch.Tensor:
    """``[n]`` per-atom Ewald energies (eV) of point charges in one fully periodic cell.

    Args:
        charges: ``[n]`` charges, e.
        positions: ``[n, 3]`` positions, Å; cell: ``[3, 3]`` lattice vectors as rows, Å.
        centre: ``[e]`` local index of the centre atom of each real-space pair (a full list:
            both directions, periodic images included) within a radius ``r`` with
            ``erfc(α r)`` below ``accuracy``; vectors: ``[e, 3]`` their vectors, Å;
            neighbor_charges: ``[e]`` the charge of each pair's other atom, e.
        alpha: splitting parameter, Å⁻¹; the total does not depend on it (to ``accuracy``).
        accuracy: relative truncation of the reciprocal sum, ``k_max = 2 α sqrt(-ln ε)``.

    The energies sum to ``(k_e/2) sum_{i,j,n}' q_i q_j / |r_ij + n|`` with a uniform
    neutralising background for a net charge (spread evenly over the atoms).
    """
    n = charges.shape[0]
    volume = torch.linalg.det(cell).abs()
    distances = torch.linalg.norm(vectors, dim=1)
    pair = neighbor_charges * torch.special.erfc(alpha * distances) / distances
    real = 0.5 * charges * scatter_sum(pair, centre, n)
    k = reciprocal_vectors(cell, 2.0 * alpha * math.sqrt(-math.log(accuracy)))
    k2 = (k * k).sum(1)
    weights = torch.exp(-k2 / (4.0 * alpha**2)) / k2  # [K]
    phase = positions @ k.transpose(0, 1)  # [n, K]
    cos, sin = torch.cos(phase), torch.sin(phase)
    structure_cos, structure_sin = charges @ cos, charges @ sin  # [K]
    reciprocal = (
        (4.0 * math.pi / volume)
        * charges
        * (cos @ (weights * structure_cos) + sin @ (weights * structure_sin))
    )
    self_term = -alpha / math.sqrt(math.pi) * charges * charges
    background = -math.pi * charges.sum() ** 2 / (2.0 * volume * alpha**2) / n
    return COULOMB_CONSTANT * (real + reciprocal + self_term + background)


def direct_coulomb_energies(charges: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``[n]`` per-atom energies (eV) ``(k_e/2) q_i sum_{j≠i} q_j / r_ij`` of one molecule."""
    n = charges.shape[0]
    eye = torch.eye(n, dtype=positions.dtype, device=positions.device)
    difference = positions[:, None, :] - positions[None, :, :]
    inverse = (1.0 - eye) / torch.sqrt((difference * difference).sum(-1) + eye)
    return 0.5 * COULOMB_CONSTANT * charges * (inverse @ charges)


def normalized_charges(raw: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
    """``[N]`` charges (e): ``raw [N]`` shifted evenly per structure to sum to its total charge."""
    counts = graph.atoms_per_graph().clamp_min(1).to(raw.dtype)
    excess = graph.total_charge().to(raw.dtype) - scatter_sum(raw, graph.batch, graph.num_graphs)
    return raw + (excess / counts).index_select(0, graph.batch)


def graph_bounds(graph: AtomicGraph) -> list[int]:
    """First atom of each structure and the end, ``[B + 1]``; structures must be contiguous."""
    if graph.num_atoms > 1 and bool((graph.batch[1:] < graph.batch[:-1]).any()):
        raise ValueError("long-range electrostatics needs each structure's atoms contiguous")
    return [0, *torch.cumsum(graph.atoms_per_graph(), 0).tolist()]


class LatentCoulomb(nn.Module):
    """Latent charges from invariant node features and their long-range Coulomb energy.

    Args:
        num_features: width ``F`` of the invariant node features read out.
        num_species: number of elements (each has a learned charge offset, initially 0; the
            features of an isolated atom need not tell its element).
        cutoff: the model's cutoff ``r_c``, Å (the Ewald real-space radius and the switch).
        smearing: Gaussian width ``σ`` of the charges inside the cutoff, Å.
        hidden: width of the charge read-out MLP.

    Attributes:
        last_charges: ``[N]`` the (detached) charges of the last forward pass, e, for
            reporting (the calculators' ``charges``); ``None`` before the first.
    """

    def __init__(
        self,
        num_features: int,
        num_species: int,
        cutoff: float,
        smearing: float,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        self.cutoff, self.smearing = float(cutoff), float(smearing)
        self.charge_mlp = nn.Sequential(
            nn.Linear(num_features, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )
        self.species_charge = nn.Parameter(torch.zeros(num_species))
        self.last_charges: torch.Tensor | None = None

    def charges(self, features: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
        """``[N]`` float64 latent charges (e) from ``features [N, F]``, summing per structure
        to its total charge."""
        raw = self.charge_mlp(features).squeeze(1) + self.species_charge[graph.species]
        return normalized_charges(raw.double(), graph)

    def forward(
        self,
        features: torch.Tensor,
        graph: AtomicGraph,
        centre: torch.Tensor,
        neighbor: torch.Tensor,
        vectors: torch.Tensor,
    ) -> torch.Tensor:
        """``[N]`` float64 per-atom Coulomb energies (eV).

        Args:
            features: ``[N, F]`` invariant node features.
            graph: the batch; ``graph.positions`` and ``graph.cell`` must be the (strained)
                tensors the edge vectors come from, so that forces and stress are complete.
            centre, neighbor: ``[E]`` the atoms of each edge (the model's full list within
                the cutoff, in any order); vectors: ``[E, 3]`` their vectors, Å.
        """
        periodic = graph.pbc.all(dim=1)
        partial = graph.pbc.any(dim=1) & ~periodic
        if bool(partial.any()):
            b = int(torch.nonzero(partial)[0])
            raise ValueError(
                f"long_range='coulomb' handles molecules (no periodic direction) and fully "
                f"periodic cells; structure {b} has pbc={graph.pbc[b].tolist()} (slabs and "
                "wires need a 2D/1D Ewald sum, which is not implemented)"
            )
        charges = self.charges(features, graph)
        self.last_charges = charges.detach()
        positions, cell = graph.positions.double(), graph.cell.double()
        vectors = vectors.double()
        distances = torch.linalg.norm(vectors, dim=1)
        # Gaussian charges inside the cutoff: φ - 1/r = -erfc(r / 2σ) u(r / r_c) / r
        switch = polynomial_envelope(distances, self.cutoff, SWITCH_EXPONENT)
        damping = -torch.special.erfc(distances / (2.0 * self.smearing)) * switch / distances
        pair = charges.index_select(0, neighbor) * damping
        energies = 0.5 * COULOMB_CONSTANT * charges * scatter_sum(pair, centre, graph.num_atoms)
        bounds = graph_bounds(graph)
        alpha = ewald_alpha(self.cutoff)
        per_structure = []
        for b, is_periodic in enumerate(periodic.tolist()):
            a0, a1 = bounds[b], bounds[b + 1]
            q, x = charges[a0:a1], positions[a0:a1]
            if a1 == a0:
                continue
            if not is_periodic:
                per_structure.append(direct_coulomb_energies(q, x))
                continue
            mine = (centre >= a0) & (centre < a1)
            per_structure.append(
                ewald_energies(
                    q,
                    x,
                    cell[b],
                    centre[mine] - a0,
                    vectors[mine],
                    charges.index_select(0, neighbor[mine]),
                    alpha,
                )
            )
        return energies + torch.cat(per_structure)
