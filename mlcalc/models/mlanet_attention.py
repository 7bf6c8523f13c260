"""MLANet's attention layer (``shared/docs/architecture.md`` §3.2): scalar-score attention over
each atom's neighbours, a gated dual-path (value and query) message and a gated update.

Features use the layout of :func:`mlcalc.models.mlanet_options.hidden_irreps`; see
:mod:`mlcalc.models.mlanet`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from e3nn import o3
from torch import nn

from mlcalc.models.blocks import EdgeChunks, scatter_sum
from mlcalc.models.mlanet_options import ValueConvolution, gate_activation, hidden_irreps

#: Lower bound of the learnable attention temperatures.
MIN_TEMPERATURE = 1e-2


def envelope_weighted_softmax(
    scores: torch.Tensor, envelope: torch.Tensor, centre: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """``α_e = f_e exp(s_e) / sum_{e' with the same centre} f_e' exp(s_e')``, per head.

    Args:
        scores: ``[E, H]`` attention scores.
        envelope: ``[E]`` cutoff envelope ``f_env(r)`` (zero at the cutoff).
        centre: ``[E]`` centre atom of each edge.
        num_atoms: ``N``.

    Returns:
        ``[E, H]`` weights summing to 1 over the edges of every centre that has an edge inside
        the cutoff; edges at the cutoff get exactly 0.

    Before ``exp``, the detached per-centre max of ``s + log f`` is subtracted. This changes
    nothing mathematically; it avoids overflow and makes the best edge contribute exactly 1 to
    the denominator, so the denominator cannot underflow (subtracting the max of ``s`` alone
    can, when the best-scoring neighbour sits at the cutoff). The floor on the denominator only
    matters for a centre whose edges all sit exactly at the cutoff, whose weights are then 0.
    """
    with torch.no_grad():
        inside = (envelope > 0)[:, None]
        logits = torch.where(inside, scores + torch.log(envelope)[:, None], -torch.inf)
        shift = logits.new_full((num_atoms, logits.shape[1]), -torch.inf).scatter_reduce(
            0, centre[:, None].expand_as(logits), logits, "amax"
        )
        shift = torch.where(torch.isfinite(shift), shift, 0.0)
    exponent = torch.where(inside, scores - shift.index_select(0, centre), -torch.inf)
    weights = envelope[:, None] * torch.exp(exponent)
    norm = scatter_sum(weights, centre, num_atoms).clamp_min(0.5)
    return weights / norm.index_select(0, centre)


class ChannelIrreps:
    """Per-channel views of features ``[..., dim]`` in the layout of :func:`hidden_irreps`.

    Block ``l`` of a feature vector is viewed as ``[..., C, 2l+1]``; a per-channel scalar acts on
    all ``2l+1`` components of its channel, which keeps every operation equivariant. Working on
    the blocks avoids concatenating large per-edge tensors.
    """

    def __init__(self, channels: int, lmax: int) -> None:
        self.channels, self.lmax = channels, lmax

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Views ``[..., C, 2l+1]`` of the ``l = 0..lmax`` blocks of ``x [..., dim]``."""
        c = self.channels
        return [
            x[..., c * l * l : c * (l + 1) ** 2].unflatten(-1, (c, 2 * l + 1))
            for l in range(self.lmax + 1)
        ]

    @staticmethod
    def dots(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """``[..., lmax+1, C]`` invariants ``(1/sqrt(2l+1)) sum_m a_lmc b_lmc`` of two block lists.

        ``1/sqrt(2l+1)`` is the ``l⊗l→0`` Clebsch–Gordan coefficient in e3nn's real basis.
        """
        pairs = enumerate(zip(a, b, strict=True))
        return torch.stack(
            [(a_l * b_l).sum(-1) / math.sqrt(2 * l + 1) for l, (a_l, b_l) in pairs], dim=-2
        )


class EdgeAttributes(NamedTuple):
    """Geometry of the ``E`` edges of a batch (in chunk order), shared by all attention layers."""

    envelope: torch.Tensor  #: [E] f_env(r_ij)
    radial: torch.Tensor  #: [E, N_b] Bessel basis times f_env
    sh: torch.Tensor  #: [E, (lmax+1)^2] spherical harmonics of u_ij, "component" norm


class DualPathAttention(nn.Module):
    """One MLANet layer (spec §3.2): attention, gated dual-path message, gated update."""

    def __init__(
        self,
        channels: int,
        lmax: int,
        num_heads: int,
        num_bessel: int,
        residual_scale: float,
        value_tp: bool = False,
    ) -> None:
        super().__init__()
        hidden = hidden_irreps(channels, lmax)
        self.channels, self.num_heads = channels, num_heads
        self.residual_scale = residual_scale
        self.layout = ChannelIrreps(channels, lmax)
        self.radial_linear = o3.Linear(f"{num_bessel}x0e", f"{channels}x0e")
        self.sh_linear = o3.Linear(o3.Irreps.spherical_harmonics(lmax), hidden)
        self.query = o3.Linear(hidden, hidden)
        self.key = o3.Linear(hidden, hidden)
        self.value = o3.Linear(hidden, hidden)
        self.score_weights = nn.Parameter(torch.ones(lmax + 1, channels))
        initial_temperature = math.sqrt(channels // num_heads * (lmax + 1))
        self.temperature_parameter = nn.Parameter(  # softplus^-1(τ0 - min)
            torch.full((num_heads,), math.log(math.expm1(initial_temperature - MIN_TEMPERATURE)))
        )
        self.gate_weights = nn.Parameter(torch.randn(lmax + 1, channels))
        self.gate_bias = nn.Parameter(torch.zeros(channels))
        self.gate_norm = 1.0 / math.sqrt(lmax + 1)
        self.activation = gate_activation(channels, lmax)
        self.update = o3.Linear(hidden, self.activation.irreps_in)
        self.value_tp = ValueConvolution(channels, lmax, num_bessel) if value_tp else None

    def temperature(self) -> torch.Tensor:
        """``[H]`` attention temperatures ``τ_h = softplus(θ_h) + 0.01``."""
        return nn.functional.softplus(self.temperature_parameter) + MIN_TEMPERATURE

    def forward(
        self,
        features: torch.Tensor,
        edges: EdgeAttributes,
        chunks: EdgeChunks,
        message_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [N, dim]`` → ``(new features [n, dim], attention [E, H])`` of the
        ``n = chunks.num_atoms`` atoms the edges are centred on (the first ones; all by
        default).

        ``message_scale [N]`` (optional) multiplies each atom's aggregated message. The per-edge
        work runs over ``chunks``; the attention weights are in chunk order.
        """
        centres = features[: chunks.num_atoms]
        aggregated, attention = chunks.map(
            self._messages,
            [edges.envelope, edges.radial, edges.sh],
            [self.query(centres), self.key(features), self.value(features)],
        )
        if message_scale is not None:
            aggregated = aggregated * message_scale[:, None]
        update = self.activation(self.update(aggregated))
        return (centres + update) * self.residual_scale, attention

    def _messages(
        self,
        first_atom: int,
        num_atoms: int,
        centre: torch.Tensor,
        neighbor: torch.Tensor,
        envelope: torch.Tensor,
        radial: torch.Tensor,
        sh: torch.Tensor,
        node_queries: torch.Tensor,
        node_keys: torch.Tensor,
        node_values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregated messages ``[n, dim]`` of the chunk's atoms and attention ``[e, H]`` of its
        edges (all of each atom's edges are in its chunk, so the softmax is complete)."""
        layout = self.layout
        local = centre - first_atom
        # per-edge features as lists of [e, C, 2l+1] blocks
        edge_features = layout.blocks(self.sh_linear(sh))
        edge_features[0] = edge_features[0] + self.radial_linear(radial)[:, :, None]
        centre_queries = layout.blocks(node_queries.index_select(0, centre))
        neighbor_keys = layout.blocks(node_keys.index_select(0, neighbor))
        values = node_values.index_select(0, neighbor)
        if self.value_tp is not None:
            values = self.value_tp(values, sh, radial)
        values = layout.blocks(values)
        queries = [q + e for q, e in zip(centre_queries, edge_features, strict=True)]
        keys = [k + e for k, e in zip(neighbor_keys, edge_features, strict=True)]

        channel_scores = (layout.dots(queries, keys) * self.score_weights).sum(1)
        scores = channel_scores.unflatten(1, (self.num_heads, -1)).sum(2) / self.temperature()
        attention = envelope_weighted_softmax(scores, envelope, local, num_atoms)

        gate_logits = (layout.dots(values, edge_features) * self.gate_weights).sum(1)
        gate = torch.sigmoid(gate_logits * self.gate_norm + self.gate_bias)  # [e, C]
        # message α f_env (g ⊙ t + (1 - g) ⊙ q), with the per-channel factors combined first
        edge_weights = (attention * envelope[:, None]).repeat_interleave(
            self.channels // self.num_heads, dim=1
        )
        value_weights = (edge_weights * gate)[:, :, None]
        query_weights = (edge_weights * (1.0 - gate))[:, :, None]
        messages = [
            t * value_weights + q * query_weights for t, q in zip(values, queries, strict=True)
        ]
        aggregated = [scatter_sum(m, local, num_atoms).flatten(1) for m in messages]
        return torch.cat(aggregated, dim=1), attention
