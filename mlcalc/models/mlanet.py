"""MLANet: equivariant message passing with dual-path dynamic attention (Bi et al.).

Implements ``shared/docs/architecture.md`` §3. Each layer attends over the neighbours of every
atom with scalar scores (so the softmax is invariant), mixes a gated neighbour ("value") path
with the complementary query path, and updates the node features with a linear map, an e3nn
gate nonlinearity and a residual. There are no per-edge Clebsch–Gordan products with ``l > 0``
output: per-edge work is gathers, ``l⊗l→0`` dot products and elementwise products.

Two force modes (``MLANetConfig.force_mode``):

* ``"direct"`` (the paper's design): the energy comes from sum/mean/max pooling of invariant
  node features followed by an MLP; forces and stress come from equivariant heads, without
  autograd. These forces are **not** the gradient of the energy (NVE MD drifts; use a
  thermostat) and the energy is **not** size-extensive (an n-fold supercell does not give n
  times the energy).
* ``"conservative"``: the energy is a sum of local atomic energies (the spec's design (L));
  forces and stress are its derivatives (:func:`mlcalc.models.physics.conservative_outputs`).

Layout: node and edge features use e3nn's flattened "mul_ir" layout of the hidden irreps
``H = C×0e + C×1o + ... + C×(lmax)`` (natural parity): block ``l`` starts at ``C l^2`` and holds
channel ``c``, component ``m`` at ``c (2l+1) + m``. The ``1o`` components are Cartesian
``(x, y, z)``, as e3nn's ``l = 1`` spherical harmonics are.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, ClassVar, Literal

import torch
from e3nn import o3
from torch import nn

from mlcalc.graph import AtomicGraph
from mlcalc.models.base import AtomisticModel, ModelConfig
from mlcalc.models.blocks import BesselBasis, polynomial_envelope, scatter_sum
from mlcalc.models.charge import charge_spin_embedding, long_range_module
from mlcalc.models.constants import ExactConstants
from mlcalc.models.exchange import FeatureExchange, num_centres, share
from mlcalc.models.mlanet_attention import DualPathAttention, EdgeAttributes
from mlcalc.models.mlanet_options import (
    GatedBlock,
    context_features,
    hidden_irreps,
    warn_context_pooling,
)
from mlcalc.models.physics import conservative_outputs, edge_vectors, stress_and_virial

#: Order ``p`` of MLANet's (unsquared) polynomial cutoff envelope ``u_p(r / r_c)``.
ENVELOPE_EXPONENT = 6


@dataclasses.dataclass
class MLANetConfig(ModelConfig):
    """Hyper-parameters of :class:`MLANet` (defaults from the spec, §3 and §4.2).

    Attributes:
        elements: chemical symbols the model handles.
        cutoff: cutoff radius ``r_c``, Å.
        channels: ``C``, multiplicity of every ``l`` in the hidden irreps.
        lmax: highest ``l`` of the node features and spherical harmonics, 1, 2 or 3.
        num_interactions: ``T``, attention layers.
        num_heads: attention heads; each owns ``channels / num_heads`` channels.
        num_bessel: ``N_b``, Bessel radial functions.
        trainable_bessel: learn the Bessel frequencies (initialised to ``n π``).
        readout_channels: ``C_r``, invariant features read out of the last layer.
        energy_mlp_hidden: hidden widths of the energy MLP (pooled features in direct mode,
            per-atom features in conservative mode).
        force_mode: ``"direct"`` (force and stress heads; not energy-conserving, energy not
            size-extensive) or ``"conservative"`` (local atomic energies, forces and stress by
            autograd).
        residual_scale: factor on ``h + update`` in every layer (``1`` is paper-literal).
        degree_scaling: multiply each aggregated message by ``sum_j f_env(r_ij) /
            avg_num_neighbors``, so that coordination numbers are not averaged away.
        avg_num_neighbors: the constant used with ``degree_scaling``.
        zero_net_force: direct mode: subtract each structure's mean force from its atoms.
        value_tp: the value path is a NequIP-style convolution ``TP(Lin_V(h_j), Y_ij)`` with
            radial weights (spec §3.2) instead of ``Lin_V(h_j)``: more capacity, per-edge
            Clebsch–Gordan products (slower).
        force_head_gate: direct mode: a gated block ``Linear → Gate → Linear`` before the
            force head (spec §3.4).
        context_pooling: conservative mode, **experimental** (warns): each atomic energy also
            sees its structure's mean and smooth maximum of the read-out features (spec §3.7,
            design C); extensive and smooth, but not local.

    Named presets (:meth:`preset`): ``"default"`` (the spec's direct model), ``"paper"``
    (paper-literal residual ``h + update``), ``"expressive"`` (``value_tp`` and the gated
    force block), ``"conservative"`` (for MD, with ``degree_scaling``), ``"small"`` (fast,
    for tests and trials).
    """

    cutoff: float = 5.0
    channels: int = 64
    lmax: int = 2
    num_interactions: int = 3
    num_heads: int = 4
    num_bessel: int = 8
    trainable_bessel: bool = False
    readout_channels: int = 64
    energy_mlp_hidden: list[int] = dataclasses.field(default_factory=lambda: [128, 64])
    force_mode: Literal["direct", "conservative"] = "direct"
    residual_scale: float = 1.0 / math.sqrt(2.0)
    degree_scaling: bool = False
    avg_num_neighbors: float = 1.0
    zero_net_force: bool = True
    value_tp: bool = False
    force_head_gate: bool = False
    context_pooling: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "paper": {"residual_scale": 1.0},
        "expressive": {"value_tp": True, "force_head_gate": True},
        "conservative": {"force_mode": "conservative", "degree_scaling": True},
        "small": {
            "channels": 16,
            "lmax": 1,
            "num_interactions": 2,
            "num_heads": 2,
            "readout_channels": 16,
            "energy_mlp_hidden": [32],
        },
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lmax not in (1, 2, 3):
            raise ValueError(f"lmax must be 1, 2 or 3, got {self.lmax}")
        self.require_at_least_one(
            "channels", "num_interactions", "num_heads", "num_bessel", "readout_channels"
        )
        if self.channels % self.num_heads:
            raise ValueError(
                f"channels ({self.channels}) must be a multiple of num_heads ({self.num_heads})"
            )
        self.energy_mlp_hidden = [int(width) for width in self.energy_mlp_hidden]
        if any(width < 1 for width in self.energy_mlp_hidden):
            raise ValueError(f"energy_mlp_hidden widths must be >= 1, got {self.energy_mlp_hidden}")
        self.require_choice("force_mode", ("direct", "conservative"))
        if self.long_range is not None and self.force_mode != "conservative":
            raise ValueError(
                "long_range needs force_mode='conservative' (its forces and stress come from "
                "the gradient of the Coulomb energy)"
            )
        if self.context_pooling and self.force_mode != "conservative":
            raise ValueError(
                "context_pooling is for force_mode='conservative' (direct mode already pools)"
            )
        if self.force_head_gate and self.force_mode != "direct":
            raise ValueError("force_head_gate needs force_mode='direct' (it feeds the force head)")
        self.require_positive("residual_scale", "avg_num_neighbors")


def symmetric_matrix_basis() -> torch.Tensor:
    """``[6, 3, 3]`` float64 map from ``0e ⊕ 2e`` (e3nn basis) to symmetric 3×3 matrices.

    Row 0 is ``I / sqrt 3``; rows 1–5 are the quadratic forms ``A_m`` of the ``l = 2`` spherical
    harmonics, ``Y_2m(u) = uᵀ A_m u``, recovered exactly by polarisation and scaled to unit
    Frobenius norm, so that ``sum_m (D_2(R) b)_m A_m = R (sum_m b_m A_m) Rᵀ``. (e3nn's
    ``CartesianTensor`` gives the same matrices to about 1e-8 only.)
    """
    eye = torch.eye(3, dtype=torch.float64)
    plus = (eye[:, None] + eye[None, :]).reshape(9, 3)
    minus = (eye[:, None] - eye[None, :]).reshape(9, 3)

    def quadratic(x: torch.Tensor) -> torch.Tensor:
        return o3.spherical_harmonics(2, x, normalize=False, normalization="component")

    forms = ((quadratic(plus) - quadratic(minus)) / 4.0).T.reshape(5, 3, 3)
    forms = forms / torch.linalg.norm(forms, dim=(1, 2), keepdim=True)
    return torch.cat([eye[None] / math.sqrt(3.0), forms])


class DirectStressHead(ExactConstants):
    """Per-atom symmetric tensors ``W_i [N, 3, 3]`` from node features (spec §3.5).

    A linear read-out gives ``0e`` (isotropic part) and, for ``lmax >= 2``, ``2e`` (traceless
    symmetric part). For ``lmax = 1`` the ``2e`` part is the channel-summed product
    ``1o ⊗ 1o → 2e`` of the ``1o`` features with a linear mix of themselves, which spans the
    same functions as e3nn's ``FullyConnectedTensorProduct(C×1o, C×1o → 1×2e)`` but uses the
    exact basis of :func:`symmetric_matrix_basis`.
    """

    def __init__(self, channels: int, lmax: int) -> None:
        super().__init__()
        hidden = hidden_irreps(channels, lmax)
        self.channels = channels
        self.products_of_vectors = lmax == 1
        out = f"1x0e + {channels}x1o" if self.products_of_vectors else "1x0e + 1x2e"
        self.linear = o3.Linear(hidden, out)
        self.register_constant("basis", symmetric_matrix_basis())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.linear(features)
        if self.products_of_vectors:
            vectors = features[:, self.channels : 4 * self.channels].unflatten(1, (-1, 3))
            mixed = out[:, 1:].unflatten(1, (-1, 3))
            rank2 = torch.einsum("nca,mab,ncb->nm", vectors, self.basis[1:], mixed)
            out = torch.cat([out[:, :1], rank2 / math.sqrt(self.channels)], dim=1)
        return torch.einsum("nk,kab->nab", out, self.basis)


def silu_mlp(widths: list[int]) -> nn.Sequential:
    """``Linear → SiLU → ... → Linear`` through the given widths, with biases."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        if index:
            layers.append(nn.SiLU())
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


class MLANet(AtomisticModel):
    """Dual-path dynamic-attention equivariant potential (spec §3); energies in eV.

    ``forward`` returns ``energy [B]`` (float64, eV), ``forces [N, 3]`` (eV/Å), and with
    ``compute_stress`` ``stress [B, 3, 3]`` (eV/Å³, ASE sign: positive is tensile) and
    ``virial [B, 3, 3]`` (eV), zero for structures that are not periodic in all directions.

    * ``force_mode="direct"``: ``E_g = sum_{i in g} E0_{Z_i} + σ · MLP_E([sum, mean, max]_g z)``
      over the graph's own atoms (with the per-species affine of the shared read-out applied to
      the graph term spread evenly over its atoms; at initialisation exactly the spec's
      formula). Forces ``σ · Linear(h_i → 1o)`` and stress ``σ sum_i W_i / V`` come from heads
      and are computed under the caller's grad mode, with no autograd graph on positions.
      **The forces are not energy-conserving** (not ``-dE/dx``; NVE MD drifts, use a
      thermostat) and **the energy is not size-extensive** (mean and max pooling do not scale
      with a supercell): do not use it across cell sizes or on mixed-size data sets.
    * ``force_mode="conservative"``: ``E = sum_i [E0_{Z_i} + σ (a_s MLP(z_i) + b_s)]`` (local,
      extensive, smooth at the cutoff); also returns ``node_energy [N]``; forces and stress are
      derivatives of the energy.

    Example:
        >>> model = MLANet(MLANetConfig(elements=["Cu"], lmax=2, force_mode="direct"))
    """

    architecture: ClassVar[str] = "mlanet"
    config_class: ClassVar[type[ModelConfig]] = MLANetConfig
    config: MLANetConfig
    #: Smaller than NEMP's: MLANet's per-edge tensors are wider (``[e, C (lmax+1)^2]``).
    max_edges_per_chunk: int | None = 2**12

    def __init__(self, config: MLANetConfig) -> None:
        super().__init__(config)
        c = config
        hidden = hidden_irreps(c.channels, c.lmax)
        self.feature_dim = hidden.dim
        self.radial_basis = BesselBasis(c.cutoff, c.num_bessel, c.trainable_bessel)
        self.species_embedding = nn.Embedding(len(c.elements), c.channels)
        self.interactions = nn.ModuleList(
            DualPathAttention(
                c.channels, c.lmax, c.num_heads, c.num_bessel, c.residual_scale, c.value_tp
            )
            for _ in range(c.num_interactions)
        )
        self.readout_features = o3.Linear(hidden, f"{c.readout_channels}x0e")
        if c.force_mode == "direct":
            pooled = 3 * c.readout_channels
            self.energy_mlp = silu_mlp([pooled, *c.energy_mlp_hidden, 1])
            self.force_head = o3.Linear(hidden, "1x1o")
            self.stress_head = DirectStressHead(c.channels, c.lmax)
            self.force_block = GatedBlock(c.channels, c.lmax) if c.force_head_gate else None
        else:
            width = (3 if c.context_pooling else 1) * c.readout_channels
            self.energy_mlp = silu_mlp([width, *c.energy_mlp_hidden, 1])
            if c.context_pooling:
                warn_context_pooling()
        self.charge_spin = charge_spin_embedding(c, c.channels)
        self.coulomb = long_range_module(c, c.readout_channels)

    def _edge_attributes(self, vectors: torch.Tensor) -> EdgeAttributes:
        """Envelope, radial basis and spherical harmonics of edge vectors ``[E, 3]`` (Å)."""
        lengths = torch.linalg.norm(vectors, dim=1)
        envelope = polynomial_envelope(lengths, self.config.cutoff, ENVELOPE_EXPONENT)
        sh = o3.spherical_harmonics(
            list(range(self.config.lmax + 1)), vectors, normalize=True, normalization="component"
        )
        return EdgeAttributes(
            envelope=envelope, radial=self.radial_basis(lengths) * envelope[:, None], sh=sh
        )

    def _interactions(
        self,
        graph: AtomicGraph,
        vectors: torch.Tensor,
        recompute: bool = False,
        chunked: bool = True,
        exchange: FeatureExchange | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Node features ``h^(0..T) [N, dim]`` and attention weights ``α^(1..T) [E, H]`` (in the
        graph's edge order).

        Per-edge work runs over :meth:`edge_chunks` (``recompute``, ``chunked``: see there).
        With an ``exchange`` (:meth:`atomic_energy_function`), ``h^(1..T)`` are the centres'
        features; ``h^(0)``, the species embedding, is every atom's.
        """
        centres = num_centres(graph.num_atoms, exchange)
        chunks = self.edge_chunks(graph, recompute, chunked, centres)
        edges = self._edge_attributes(chunks.sort(vectors))
        message_scale = None
        if self.config.degree_scaling:
            message_scale = (
                scatter_sum(edges.envelope, chunks.centre, centres) / self.config.avg_num_neighbors
            )
        embedding = self.species_embedding(graph.species)
        if self.charge_spin is not None:
            embedding = embedding + self.charge_spin(graph)
        features = [nn.functional.pad(embedding, (0, self.feature_dim - self.config.channels))]
        attention = []
        for t, layer in enumerate(self.interactions):
            # layer 1 reads the embedding of every atom; later ones the ghost atoms' features
            # from the exchange
            inputs = features[-1] if t == 0 else share(features[-1], exchange)
            updated, weights = layer(inputs, edges, chunks, message_scale)
            features.append(updated)
            attention.append(chunks.unsort(weights))
        return features, attention

    @property
    def has_atomic_energies(self) -> bool:
        """Conservative mode only; direct mode's forces come from a head."""
        return self.config.force_mode == "conservative"

    def _atomic_energies(
        self,
        graph: AtomicGraph,
        vectors: torch.Tensor,
        recompute: bool = False,
        chunked: bool = True,
        exchange: FeatureExchange | None = None,
        static_shapes: bool = False,
    ) -> torch.Tensor:
        """Conservative mode: ``[N]`` local atomic energies (float64, eV); with an
        ``exchange``, the centres' (:meth:`atomic_energy_function`). Its shapes never depend
        on the inputs' values, so ``static_shapes`` changes nothing."""
        features = self._interactions(graph, vectors, recompute, chunked, exchange)[0][-1]
        invariants = self.readout_features(features)
        inputs = context_features(invariants, graph) if self.config.context_pooling else invariants
        species = graph.species[: features.shape[0]]
        energies = self.readout(self.energy_mlp(inputs).squeeze(1), species)
        if self.coulomb is not None:
            centre, neighbor = graph.edge_index
            energies = energies + self.coulomb(invariants, graph, centre, neighbor, vectors)
        return energies

    def _pooled_energy(self, graph: AtomicGraph, features: torch.Tensor) -> torch.Tensor:
        """Direct mode: ``[B]`` energies (float64, eV) from sum/mean/max pooling per graph."""
        invariants = self.readout_features(features)
        num_graphs, batch = graph.num_graphs, graph.batch
        counts = graph.atoms_per_graph()
        pooled_sum = scatter_sum(invariants, batch, num_graphs)
        pooled_mean = pooled_sum / counts.clamp_min(1)[:, None]
        pooled_max = invariants.new_zeros(pooled_sum.shape).scatter_reduce(
            0, batch[:, None].expand_as(invariants), invariants, "amax", include_self=False
        )
        graph_term = self.energy_mlp(torch.cat([pooled_sum, pooled_mean, pooled_max], 1))
        share = (graph_term.squeeze(1) / counts.clamp_min(1)).index_select(0, batch)
        atom_terms = self.readout(share, graph.species)
        return atom_terms.new_zeros(num_graphs).index_add_(0, batch, atom_terms)

    def _direct_forces(self, graph: AtomicGraph, features: torch.Tensor) -> torch.Tensor:
        """Direct mode: ``[N, 3]`` forces (eV/Å) from the equivariant ``1o`` head."""
        if self.force_block is not None:
            features = self.force_block(features)
        forces = self.force_head(features) * self.readout.energy_scale
        if self.config.zero_net_force:
            counts = graph.atoms_per_graph().clamp_min(1)
            mean = scatter_sum(forces, graph.batch, graph.num_graphs) / counts[:, None]
            forces = forces - mean.index_select(0, graph.batch)
        return forces

    def _direct_stress(self, graph: AtomicGraph, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Direct mode: ``stress`` (eV/Å³) and ``virial`` (eV) ``[B, 3, 3]`` from per-atom
        tensors; zero for graphs that are not fully periodic."""
        atomic = self.stress_head(features) * self.readout.energy_scale
        return stress_and_virial(scatter_sum(atomic, graph.batch, graph.num_graphs), graph)

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies (eV), forces (eV/Å) and stress (eV/Å³) of a batch; see the class docstring.

        ``training`` keeps the autograd graph of conservative forces and stress for a loss; in
        direct mode the heads already run under the caller's grad mode and it has no effect.
        """
        energies = self.atomic_energy_function(recompute=not training)
        if energies is not None:
            return conservative_outputs(energies, graph, compute_forces, compute_stress, training)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        features = self._interactions(graph, vectors)[0][-1]
        out = {"energy": self._pooled_energy(graph, features)}
        if compute_forces:
            out["forces"] = self._direct_forces(graph, features)
        if compute_stress:
            out.update(self._direct_stress(graph, features))
        return out
