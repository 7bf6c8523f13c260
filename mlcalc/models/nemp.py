"""NEMP: node-equivariant message passing (Zhang & Guo, Chem. Sci. 2026).

Implements ``shared/docs/architecture.md`` §2. The only Clebsch–Gordan contraction runs once
per node, between the fresh spherical-harmonic expansion of the centre ``A`` and the
"virtual summed node" ``V`` of its neighbours; all per-edge work is elementwise products of
edge scalars with spherical harmonics followed by scatter sums.

Layouts: equivariant node features are ``[N, K, C]`` (lm-major, channel-last) with
``K = (l_max + 1)^2`` and ``k = l^2 + m + l``; spherical harmonics are e3nn's real basis in
"component" normalisation.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
from e3nn import o3
from torch import nn

from mlcalc.graph import AtomicGraph
from mlcalc.models.base import AtomisticModel, ModelConfig
from mlcalc.models.blocks import (
    MLPSpec,
    ScaledMLP,
    SpeciesGroups,
    gathered_product,
    polynomial_envelope,
    scatter_sum,
)
from mlcalc.models.charge import charge_spin_embedding, long_range_module
from mlcalc.models.exchange import FeatureExchange, num_centres, share
from mlcalc.models.nemp_config import SMALL_PRESET, NEMPConfig
from mlcalc.models.nemp_tensor_product import NodeTensorProduct, l_of_k
from mlcalc.models.physics import conservative_outputs

__all__ = ["NEMP", "SMALL_PRESET", "NEMPConfig", "NodeTensorProduct"]


class NEMP(AtomisticModel):
    """Node-equivariant message-passing potential; energy is a sum of atomic energies (eV).

    Example:
        >>> model = NEMP(NEMPConfig(elements=["H", "O"], cutoff=5.0))
    """

    architecture: ClassVar[str] = "nemp"
    config_class: ClassVar[type[ModelConfig]] = NEMPConfig
    config: NEMPConfig

    def __init__(self, config: NEMPConfig) -> None:
        super().__init__(config)
        c = config
        n_spec = len(c.elements)
        channels, n_layers = c.channels, c.num_interactions
        self.num_sh = (c.l_max + 1) ** 2
        self.num_sh_features = (c.l_max_features + 1) ** 2
        n_feature_l = c.l_max_features + 1
        self.rho0_row = c.l_max_features if c.share_rho0_row else c.l_max_features + 1
        self.edge_row = self.rho0_row + 1

        # element-pair embedding: pair code, sinc frequencies, pair weights
        numbers = self.element_numbers.double()
        self.register_constant("pair_numbers", torch.cartesian_prod(numbers, numbers))
        emb = MLPSpec.coerce(c.embedding_mlp)
        self.pair_code = ScaledMLP(2, c.pair_code_width, emb, bias=True, force_nonlinear=True)
        self.pair_frequencies = ScaledMLP(
            c.pair_code_width, c.num_radial, emb, bias=True, force_nonlinear=True
        )
        self.pair_weights = ScaledMLP(
            c.pair_code_width, c.num_radial + channels, emb, bias=False, force_nonlinear=True
        )
        with torch.no_grad():
            self.pair_code.output.bias.fill_(1.0)
            self.pair_frequencies.output.bias.uniform_(0.01, 12.01)

        # layer 0
        self.initial_edge = ScaledMLP(
            2 * c.num_radial, (self.edge_row + 1) * channels, MLPSpec.coerce(c.radial_mlp)
        )
        self.species_embedding = nn.Parameter(torch.randn(n_spec, channels, channels))

        # message passing: G_0..G_T coefficient MLPs and F_edge^1..F_edge^T
        mp = MLPSpec.coerce(c.interaction_mlp)
        self.coefficient_mlps = nn.ModuleList(
            ScaledMLP((2 + t) * channels, 3 * n_feature_l * channels, mp)
            for t in range(n_layers + 1)
        )
        self.edge_mlps = nn.ModuleList(
            ScaledMLP((2 + t) * channels, (n_feature_l + c.l_max + 1) * channels, mp)
            for t in range(1, n_layers + 1)
        )
        self.tensor_product = NodeTensorProduct(c.l_max, c.l_max_features, c.l_max_features)
        self.path_weights = nn.Parameter(
            torch.randn(n_layers, self.tensor_product.num_paths, n_spec, channels)
        )
        self.mixers = nn.Parameter(torch.randn(n_layers, 3, n_spec, channels, channels))
        self.atomic_mlp = ScaledMLP(
            (n_layers + 2) * channels,
            1,
            MLPSpec.coerce(c.readout_mlp),
            bias=c.use_readout_bias,
        )
        self.charge_spin = charge_spin_embedding(c, channels)
        self.coulomb = long_range_module(c, (n_layers + 2) * channels)

        l_values = l_of_k(c.l_max)
        self.register_buffer("l_of_k", l_values, persistent=False)
        # psi / sqrt((2l+1)(L'+1)): the l⊗l→0 CG factor and the average over l
        self.register_constant(
            "invariant_scale",
            1.0 / torch.sqrt((2.0 * l_values[: self.num_sh_features].double() + 1.0) * n_feature_l),
        )

    def _expand(self, coefficients: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        """``coefficients [E, L+1, C]`` times ``Y [E, K]`` → ``[E, K, C]`` (``K`` from ``sh``)."""
        return gathered_product(coefficients, self.l_of_k[: sh.shape[1]], sh[:, :, None], dim=1)

    def _contract(
        self, sh: torch.Tensor, features: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """``sum_m Y[e, lm] f[index[e], lm, c]`` → ``[E, L'+1, C]``."""
        products = gathered_product(features, index, sh[:, :, None])
        return scatter_sum(products, self.l_of_k[: sh.shape[1]], self.config.l_max_features + 1, 1)

    def _atomic_energies(
        self,
        graph: AtomicGraph,
        vectors: torch.Tensor,
        recompute: bool = False,
        chunked: bool = True,
        exchange: FeatureExchange | None = None,
        static_shapes: bool = False,
    ) -> torch.Tensor:
        """``[N]`` atomic energies (float64, eV) from edge vectors ``[E, 3]`` (Å).

        Per-edge work runs over :meth:`edge_chunks` (``recompute``, ``chunked``: see there);
        with an ``exchange``, the centres' energies; ``static_shapes``: see
        :meth:`atomic_energy_function`.
        """
        c = self.config
        species = graph.species
        centres = num_centres(graph.num_atoms, exchange)
        groups = SpeciesGroups(species, len(c.elements), static_shapes)
        if exchange is not None:
            groups_of_centres = SpeciesGroups(species[:centres], len(c.elements), static_shapes)
        else:
            groups_of_centres = groups
        inv_sqrt_c = 1.0 / math.sqrt(c.channels)
        chunks = self.edge_chunks(graph, recompute, chunked, centres)
        vectors = chunks.sort(vectors)
        sh = o3.spherical_harmonics(
            list(range(c.l_max + 1)), vectors, normalize=True, normalization="component"
        )

        # element-pair embedding on n_spec^2 rows, gathered per edge in layer 0
        pair_code = self.pair_code(self.pair_numbers)
        pair_tables = [self.pair_frequencies(pair_code), self.pair_weights(pair_code)]

        edge_state, smooth_count, rho0, expansion = chunks.map(
            self._initial_edges, [vectors, sh], [species, *pair_tables]
        )
        if c.neighbor_norm == "smooth_count":
            norm = smooth_count + 1e-6  # [centres]
        else:
            norm = torch.full_like(smooth_count, c.avg_num_neighbors)
        invariants = [rho0]
        psi = (
            groups_of_centres.linear(expansion / norm[:, None, None], self.species_embedding)
            * inv_sqrt_c
        )
        if self.charge_spin is not None:  # added to the l = 0 features
            charge_spin = self.charge_spin(graph)[:centres, None]
            psi = torch.cat([psi[:, :1] + charge_spin, psi[:, 1:]], dim=1)

        tp_norm = 1.0 / (norm * norm)
        for t in range(c.num_interactions):
            # every atom's features (the ghost atoms' from the exchange), for the neighbours
            psi_all = share(psi, exchange)
            psi_bar_all = psi_all * self.invariant_scale[:, None]
            sent = groups.linear(psi_all, self.mixers[t, 0]) * inv_sqrt_c
            # after the last interaction: the final expansion [centres, K', C] instead
            edge_output, node_sh, centre_expansion, virtual = chunks.map(
                functools.partial(self._interaction_edges, t),
                [sh, edge_state],
                [psi_bar_all, sent],
            )
            # (c) new node invariant
            psi_bar = psi_bar_all[:centres]
            invariants.append((psi_bar * node_sh).sum(1))
            # (g) node-space tensor product, (h) channel mixing with residual
            weights = self.path_weights[t][:, species[:centres]].transpose(0, 1)
            product = (
                self.tensor_product(centre_expansion, virtual, weights) * tp_norm[:, None, None]
            )
            psi = (
                groups_of_centres.linear(psi, self.mixers[t, 2])
                + groups_of_centres.linear(product, self.mixers[t, 1])
            ) * (inv_sqrt_c / math.sqrt(2.0))
            # (i) per-node RMS norm
            if c.use_norm:
                mean_square = psi.square().sum((1, 2)) / ((c.l_max_features + 1) * c.channels)
                psi = psi * torch.rsqrt(mean_square + 1e-6)[:, None, None]
            edge_state = edge_output

        final_expansion = edge_output
        invariants.append(
            (psi * self.invariant_scale[:, None] * final_expansion).sum(1) / math.sqrt(3.0)
        )
        descriptor = torch.cat(invariants, dim=1) / norm[:, None]
        raw = self.atomic_mlp(descriptor).squeeze(1)
        energies = self.readout(raw, species[:centres])
        if self.coulomb is not None:
            centre, neighbor = chunks.centre, chunks.neighbor
            energies = energies + self.coulomb(descriptor, graph, centre, neighbor, vectors)
        return energies

    def _coefficients(self, t: int, edge_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(j) ``G_t(edge_state)`` → ``k_centre, k_neighbor, k_node``, each ``[E, L'+1, C]``."""
        c = self.config
        coefficients = self.coefficient_mlps[t](edge_state)
        return coefficients.view(-1, 3, c.l_max_features + 1, c.channels).unbind(1)

    def _initial_edges(
        self,
        first_atom: int,
        num_atoms: int,
        centre: torch.Tensor,
        neighbor: torch.Tensor,
        vectors: torch.Tensor,
        sh: torch.Tensor,
        species: torch.Tensor,
        frequencies: torch.Tensor,
        pair_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Layer 0 on one chunk of edges.

        Returns the edge state ``[e, 2C]`` and, for the chunk's atoms, the smooth neighbour
        count ``[n]``, the first invariant ``[n, C]`` and the neighbour expansion ``[n, K', C]``.
        """
        c = self.config
        channels, n_spec = c.channels, len(c.elements)
        local = centre - first_atom
        r = torch.linalg.norm(vectors, dim=1)
        f_cut = polynomial_envelope(r, c.cutoff, c.envelope_exponent) ** 2
        pair = species.index_select(0, centre) * n_spec + species.index_select(0, neighbor)
        frequencies = frequencies.index_select(0, pair)
        pair_weights = pair_weights.index_select(0, pair)
        radial = torch.sinc(frequencies * (r / c.cutoff)[:, None]) * f_cut[:, None]
        edge_input = torch.cat([pair_weights[:, channels:] * f_cut[:, None], radial], dim=1)
        x0 = self.initial_edge(edge_input).view(-1, self.edge_row + 1, channels)
        edge_state = torch.cat(
            [pair_weights[:, :channels] * f_cut[:, None], x0[:, self.edge_row]], dim=1
        )
        sh_features = sh[:, : self.num_sh_features]
        return (
            edge_state,
            scatter_sum(f_cut, local, num_atoms),
            scatter_sum(x0[:, self.rho0_row], local, num_atoms),
            scatter_sum(self._expand(x0[:, : c.l_max_features + 1], sh_features), local, num_atoms),
        )

    def _interaction_edges(
        self,
        t: int,
        first_atom: int,
        num_atoms: int,
        centre: torch.Tensor,
        neighbor: torch.Tensor,
        sh: torch.Tensor,
        edge_state: torch.Tensor,
        psi_bar: torch.Tensor,
        sent: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Steps (b)–(f) of interaction ``t`` on one chunk of edges.

        Returns the grown edge state ``[e, (3 + t) C]`` (after the last interaction, instead,
        the chunk's atoms' expansion of the final coefficient triplet ``[n, K', C]``: no later
        layer needs the edge state, so it is never stored) and, for the chunk's atoms, the
        summed coefficient expansion ``[n, K', C]`` of step (c), the centre expansion
        ``A [n, K, C]`` and the virtual summed node ``V [n, K', C]``.
        """
        c = self.config
        local = centre - first_atom
        sh_features = sh[:, : self.num_sh_features]
        k_centre, k_neighbor, k_node = self._coefficients(t, edge_state)
        # (b) new edge invariant, appended to the edge state
        q = (
            k_centre * self._contract(sh_features, psi_bar, centre)
            + k_neighbor * self._contract(sh_features, psi_bar, neighbor)
        ).sum(1) * (1.0 / math.sqrt(2.0))
        edge_state = torch.cat([edge_state, q], dim=1)
        if t == c.num_interactions - 1:
            edge_output = self._final_expansion(local, num_atoms, sh_features, edge_state)
        else:
            edge_output = edge_state
        # (c) the coefficient expansion for the new node invariant
        node_sh = scatter_sum(self._expand(k_node, sh_features), local, num_atoms)
        # (d) new edge coefficients for the virtual node and the centre expansion
        x = self.edge_mlps[t](edge_state).view(-1, c.l_max_features + 1 + c.l_max + 1, c.channels)
        x_virtual, x_centre = x[:, : c.l_max_features + 1], x[:, c.l_max_features + 1 :]
        # (e) centre expansion A; (f) virtual summed node V
        centre_expansion = scatter_sum(self._expand(x_centre, sh), local, num_atoms)
        virtual = scatter_sum(
            gathered_product(
                sent, neighbor, x_virtual.index_select(1, self.l_of_k[: self.num_sh_features])
            ),
            local,
            num_atoms,
        )
        return edge_output, node_sh, centre_expansion, virtual

    def _final_expansion(
        self,
        local: torch.Tensor,
        num_atoms: int,
        sh_features: torch.Tensor,
        edge_state: torch.Tensor,
    ) -> torch.Tensor:
        """The last coefficient triplet's expansion ``[n, K', C]`` summed onto the chunk's
        atoms (``local [e]``: each edge's centre among them)."""
        k_centre, k_neighbor, k_node = self._coefficients(self.config.num_interactions, edge_state)
        return scatter_sum(
            self._expand(k_centre + k_neighbor + k_node, sh_features), local, num_atoms
        )

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies (eV), forces (eV/Å) and stress (eV/Å³) of a batch.

        Returns ``energy [B]`` and ``node_energy [N]`` (float64), ``forces [N, 3]`` and
        ``stress``/``virial [B, 3, 3]`` when asked for; see
        :func:`mlcalc.models.physics.conservative_outputs`.
        """
        energies = self.atomic_energy_function(recompute=not training)
        return conservative_outputs(energies, graph, compute_forces, compute_stress, training)
