"""MLANet's optional pieces (spec §3.2, §3.4, §3.7): value convolution, gated force block and
context pooling. Each is off by default; :mod:`mlcalc.models.mlanet` builds the ones its
config asks for.
"""

from __future__ import annotations

import warnings

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from mlcalc.graph import AtomicGraph
from mlcalc.models.blocks import scatter_sum

#: Inverse temperature ``β`` of the smooth maximum in context pooling (per invariant unit).
CONTEXT_BETA = 1.0

CONTEXT_POOLING_WARNING = (
    "context_pooling is experimental (spec §3.7, design C): every atom's energy depends on "
    "its whole structure's mean and smooth maximum of the read-out features, so the model is "
    "not local (no domain decomposition, no LAMMPS) and couples all atoms as 1/N; the local "
    "sum (context_pooling=False) is the recommended conservative design"
)


def hidden_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``C×0e + C×1o + ... + C×(lmax)`` with natural parity ``(-1)^l``."""
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


def gate_activation(channels: int, lmax: int) -> e3nn_nn.Gate:
    """e3nn gate on the hidden irreps: SiLU on the ``C`` scalars, sigmoid gates (``C lmax``
    extra scalars) on each ``l > 0`` channel; its ``irreps_in`` is what a linear must give."""
    return e3nn_nn.Gate(
        f"{channels}x0e",
        [nn.functional.silu],
        f"{channels * lmax}x0e",
        [torch.sigmoid],
        hidden_irreps(channels, lmax)[1:],
    )


class GatedBlock(nn.Module):
    """``Linear → Gate → Linear`` on the hidden irreps (spec §3.4, before the force head)."""

    def __init__(self, channels: int, lmax: int) -> None:
        super().__init__()
        hidden = hidden_irreps(channels, lmax)
        self.activation = gate_activation(channels, lmax)
        self.first = o3.Linear(hidden, self.activation.irreps_in)
        self.second = o3.Linear(hidden, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, dim]`` → ``[N, dim]``, equivariant."""
        return self.second(self.activation(self.first(features)))


class ValueConvolution(nn.Module):
    """NequIP-style value path (spec §3.2, ``value_tp``): ``t_ij = TP(Lin_V(h_j), Y_ij)``.

    A ``"uvu"`` tensor product of the neighbour's values (``H``) with the edge's spherical
    harmonics into ``H``, one path per allowed ``(l1, l2, l_out)``, weighted per edge by an MLP
    of the (envelope-multiplied) radial basis.
    """

    def __init__(self, channels: int, lmax: int, num_bessel: int, hidden: int = 32) -> None:
        super().__init__()
        irreps = hidden_irreps(channels, lmax)
        sh = o3.Irreps.spherical_harmonics(lmax)
        instructions = [
            (i1, i2, out, "uvu", True)
            for i1, (_, ir1) in enumerate(irreps)
            for i2, (_, ir2) in enumerate(sh)
            for out, (_, ir_out) in enumerate(irreps)
            if ir_out in ir1 * ir2
        ]
        self.tensor_product = o3.TensorProduct(
            irreps, sh, irreps, instructions, shared_weights=False, internal_weights=False
        )
        self.radial = nn.Sequential(
            nn.Linear(num_bessel, hidden),
            nn.SiLU(),
            nn.Linear(hidden, self.tensor_product.weight_numel),
        )

    def forward(self, values: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
        """``values [e, dim]``, ``sh [e, (lmax+1)^2]``, ``radial [e, N_b]`` → ``[e, dim]``."""
        return self.tensor_product(values, sh, self.radial(radial))


def smooth_max(values: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """``[B, F]`` per-graph smooth maximum ``(1/β) log((1/n_g) sum_i exp(β v_i))`` of
    ``values [N, F]`` (replication-invariant and differentiable, unlike a hard max)."""
    with torch.no_grad():
        shift = values.new_full((num_graphs, values.shape[1]), -torch.inf).scatter_reduce(
            0, batch[:, None].expand_as(values), values, "amax"
        )
        shift = torch.where(torch.isfinite(shift), shift, 0.0)
    sums = scatter_sum(torch.exp(CONTEXT_BETA * (values - shift[batch])), batch, num_graphs)
    counts = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(values.dtype)
    return shift + torch.log(sums.clamp_min(1e-300) / counts[:, None]) / CONTEXT_BETA


def context_features(invariants: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
    """``[N, 3F]``: each atom's ``z_i`` with its structure's mean and smooth max of
    ``invariants [N, F]`` (spec §3.7, design C)."""
    counts = graph.atoms_per_graph().clamp_min(1).to(invariants.dtype)
    mean = scatter_sum(invariants, graph.batch, graph.num_graphs) / counts[:, None]
    maximum = smooth_max(invariants, graph.batch, graph.num_graphs)
    return torch.cat(
        [invariants, mean.index_select(0, graph.batch), maximum.index_select(0, graph.batch)],
        dim=1,
    )


def warn_context_pooling() -> None:
    """The experimental-feature warning of ``context_pooling``."""
    warnings.warn(CONTEXT_POOLING_WARNING, UserWarning, stacklevel=3)


__all__ = [
    "CONTEXT_POOLING_WARNING",
    "GatedBlock",
    "ValueConvolution",
    "context_features",
    "gate_activation",
    "hidden_irreps",
    "warn_context_pooling",
]
