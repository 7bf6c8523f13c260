"""Building blocks shared by the NEMP and MLANet models.

Everything here is a pure tensor operation; shapes use ``N`` atoms, ``E`` edges, ``C`` channels.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mlcalc.models.constants import ExactConstants

#: Gain that roughly preserves the second moment through SiLU (NEMP reference init).
SILU_GAIN = 1.67462


class _ScatterSum(torch.autograd.Function):
    """``index_add_`` into zeros whose backward keeps only the index.

    Autograd's own ``index_add`` keeps the whole ``source`` tensor for its backward (it needs
    only its shape); on per-edge tensors that was a fifth of what NEMP's forward pass kept.
    The backward is a differentiable ``index_select``, so double backward (force training) works.
    """

    @staticmethod
    def forward(values: torch.Tensor, index: torch.Tensor, size: int, dim: int) -> torch.Tensor:
        shape = list(values.shape)
        shape[dim] = size
        return values.new_zeros(shape).index_add_(dim, index, values)

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor
    ) -> None:
        ctx.save_for_backward(inputs[1])
        ctx.dim = inputs[3]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        (index,) = ctx.saved_tensors
        return grad.index_select(ctx.dim, index), None, None, None


class _GatheredProduct(torch.autograd.Function):
    """``source.index_select(dim, index) * other`` whose backward gathers ``source`` again
    instead of keeping the gathered tensor (autograd's ``mul`` keeps both factors)."""

    @staticmethod
    def forward(
        source: torch.Tensor, index: torch.Tensor, dim: int, other: torch.Tensor
    ) -> torch.Tensor:
        return source.index_select(dim, index) * other

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor
    ) -> None:
        source, index, dim, other = inputs
        ctx.save_for_backward(source, index, other)
        ctx.dim = dim

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        source, index, other = ctx.saved_tensors
        dim = ctx.dim
        grad_source = grad_other = None
        if ctx.needs_input_grad[0]:
            gathered_shape = list(source.shape)
            gathered_shape[dim] = index.shape[0]
            grad_gathered = (grad * other).sum_to_size(gathered_shape)
            grad_source = scatter_sum(grad_gathered, index, source.shape[dim], dim)
        if ctx.needs_input_grad[3]:
            grad_other = (grad * source.index_select(dim, index)).sum_to_size(other.shape)
        return grad_source, None, None, grad_other


def gathered_product(
    source: torch.Tensor, index: torch.Tensor, other: torch.Tensor, dim: int = 0
) -> torch.Tensor:
    """``source.index_select(dim, index) * other`` (``other`` broadcasts against the gathered
    tensor), keeping ``source``, ``index`` and ``other`` for the backward rather than the
    gathered tensor: a gather of node features keeps no per-edge copy for the backward."""
    return _GatheredProduct.apply(source, index, dim, other)


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int, dim: int = 0) -> torch.Tensor:
    """Sum ``values`` along ``dim`` into ``size`` slots given by ``index [values.shape[dim]]``.

    With ``dim=0``: ``values [E, ...]`` → ``[size, ...]``. Keeps only ``index`` for the backward.
    """
    return _ScatterSum.apply(values, index, size, dim)


def polynomial_envelope(r: torch.Tensor, cutoff: float, p: int) -> torch.Tensor:
    """DimeNet polynomial envelope ``u_p(r / cutoff)``, zero for ``r >= cutoff``.

    ``u_p`` and its first two derivatives vanish at the cutoff. Shape follows ``r``.
    """
    x = r / cutoff
    value = (
        1.0
        - 0.5 * (p + 1) * (p + 2) * x**p
        + p * (p + 2) * x ** (p + 1)
        - 0.5 * p * (p + 1) * x ** (p + 2)
    )
    return torch.where(x < 1.0, value, torch.zeros_like(value))


@dataclass(frozen=True)
class MLPSpec:
    """Shape of a :class:`ScaledMLP`: ``[n_blocks, width, layers_per_block, linear]``."""

    n_blocks: int
    width: int
    layers_per_block: int
    linear: bool = False

    @classmethod
    def coerce(cls, value: MLPSpec | Sequence | dict) -> MLPSpec:
        """Accept an ``MLPSpec``, a list ``[n_blocks, width, layers, linear?]`` or a dict."""
        if isinstance(value, MLPSpec):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if not 3 <= len(value) <= 4:
            raise ValueError(f"MLP spec must be [n_blocks, width, layers, linear?], got {value}")
        return cls(int(value[0]), int(value[1]), int(value[2]), bool(value[3:4] and value[3]))

    def as_list(self) -> list:
        return [self.n_blocks, self.width, self.layers_per_block, self.linear]


class ScaledDense(nn.Module):
    """``y = x @ (W * gain / sqrt(in)) (+ b)`` with ``W ~ N(0, 1)``.

    With a bias the effective weight is further divided by 100, so that raw inputs such as
    atomic numbers stay well scaled and the initial output is close to the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = SILU_GAIN,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features) / (100.0 if bias else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ (self.weight * self.scale)
        return y if self.bias is None else y + self.bias


class ScaledMLP(nn.Module):
    """Residual SiLU MLP of the NEMP reference.

    ``Dense(in→F)``, then ``n_blocks`` pre-activation residual blocks of ``layers_per_block``
    ``SiLU → Dense(F→F)`` layers with ``x ← (x + y) / sqrt 2``, then ``SiLU → Dense(F→out)``.
    A ``linear`` spec is a single ``Dense(in→out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        spec: MLPSpec,
        bias: bool = False,
        force_nonlinear: bool = False,
    ) -> None:
        super().__init__()
        self.linear = spec.linear and not force_nonlinear
        if self.linear:
            self.input = None
            self.blocks = nn.ModuleList()
            self.output = ScaledDense(in_features, out_features, gain=1.0, bias=bias)
            return
        width = spec.width
        self.input = ScaledDense(in_features, width, bias=bias)
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                ScaledDense(width, width, bias=bias) for _ in range(spec.layers_per_block)
            )
            for _ in range(spec.n_blocks)
        )
        self.output = ScaledDense(width, out_features, gain=1.0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input is not None:
            x = self.input(x)
            for block in self.blocks:
                y = x
                for layer in block:
                    y = layer(nn.functional.silu(y))
                x = (x + y) * (1.0 / math.sqrt(2.0))
            x = nn.functional.silu(x)
        return self.output(x)


class SpeciesGroups:
    """Atoms grouped by species, for per-species linear maps without per-atom weight copies.

    With ``static_shapes=True`` no tensor's shape depends on how many atoms each species has
    (for tracing with symbolic shapes, :mod:`mlcalc.training.compiled`): each map is one
    product with every species' weights, ``[N, ..., S * D]``, of which each atom keeps its
    own species' ``D`` columns (``S`` times the arithmetic of the grouped products).
    """

    def __init__(
        self, species: torch.Tensor, num_species: int, static_shapes: bool = False
    ) -> None:
        self.species = species
        self.static_shapes = static_shapes
        if not static_shapes:
            self.order = torch.argsort(species, stable=True)
            self.inverse = torch.empty_like(self.order)
            self.inverse[self.order] = torch.arange(len(species), device=species.device)
            self.counts: list[int] = torch.bincount(species, minlength=num_species).tolist()

    def linear(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-atom ``x[n] @ weights[species[n]]`` for ``x [N, ..., C]``, ``weights [S, C, D]``."""
        if self.static_shapes:
            num_species, channels, width = weights.shape
            every = x @ weights.permute(1, 0, 2).reshape(channels, num_species * width)
            every = every.unflatten(-1, (num_species, width))  # [N, ..., S, D]
            own = self.species.view(-1, *[1] * (x.dim() - 1), 1)
            return every.gather(-2, own.expand(*x.shape[:-1], 1, width)).squeeze(-2)
        chunks = torch.split(x.index_select(0, self.order), self.counts)
        mixed = [chunk @ weights[s] for s, chunk in enumerate(chunks) if len(chunk)]
        if not mixed:
            return x.new_zeros((*x.shape[:-1], weights.shape[-1]))
        return torch.cat(mixed).index_select(0, self.inverse)


class EdgeChunks:
    """The edges of a graph in chunks of whole atoms, for cache- and memory-bounded per-edge work.

    With ``max_edges=None`` (or no more edges than that) there is one chunk: the edges in their
    given order. Otherwise the edges are sorted by centre atom (stably) and cut at atom
    boundaries into chunks of at most about ``max_edges`` edges (an atom with more edges than
    that gets a chunk of its own). Per-edge work then runs chunk by chunk through :meth:`map`,
    on tensors small enough to stay in cache. With ``recompute=True`` each chunk's intermediate
    tensors are also dropped after the forward pass and recomputed in the backward pass
    (activation checkpointing; only under grad mode), so the memory a forward and backward
    pass keeps per edge is that of the chunk functions' inputs and outputs only.

    Attributes:
        num_atoms: the atoms the chunks' per-atom outputs cover (every centre is one of them;
            neighbours may lie beyond).
        centre, neighbor: ``[E]`` int64 centre ``i`` and neighbour ``j`` in chunk order.
        order: ``[E]`` permutation from the given edge order to chunk order, or ``None``.
        bounds: ``(first_edge, end_edge, first_atom, end_atom)`` of each chunk.
    """

    def __init__(
        self,
        edge_index: torch.Tensor,
        num_atoms: int,
        max_edges: int | None,
        recompute: bool = False,
    ) -> None:
        self.recompute = recompute
        self.num_atoms = num_atoms
        centre, neighbor = edge_index[0], edge_index[1]
        num_edges = centre.shape[0]
        if max_edges is not None and max_edges < 1:
            raise ValueError(f"max_edges must be a positive number of edges, got {max_edges}")
        if max_edges is None or num_edges <= max_edges:
            self.order = None
            self.bounds = [(0, num_edges, 0, num_atoms)]
        else:
            self.order = torch.argsort(centre, stable=True)
            centre, neighbor = centre[self.order], neighbor[self.order]
            atoms = torch.arange(num_atoms + 1, device=centre.device)
            first_edge = torch.searchsorted(centre, atoms).tolist()  # [N + 1] per-atom offsets
            self.bounds = []
            start = 0
            while start < num_atoms:
                limit = first_edge[start] + max_edges
                end = max(start + 1, bisect.bisect_right(first_edge, limit, lo=start) - 1)
                self.bounds.append((first_edge[start], first_edge[end], start, end))
                start = end
        self.centre, self.neighbor = centre, neighbor

    def __len__(self) -> int:
        return len(self.bounds)

    def sort(self, values: torch.Tensor) -> torch.Tensor:
        """Per-edge ``values [E, ...]`` in the given edge order → chunk order."""
        return values if self.order is None else values.index_select(0, self.order)

    def unsort(self, values: torch.Tensor) -> torch.Tensor:
        """Per-edge ``values [E, ...]`` in chunk order → the given edge order."""
        if self.order is None:
            return values
        return values.new_empty(values.shape).index_copy_(0, self.order, values)

    def map(
        self,
        fn: Callable[..., tuple[torch.Tensor, ...]],
        edge_inputs: Sequence[torch.Tensor],
        node_inputs: Sequence[torch.Tensor] = (),
    ) -> tuple[torch.Tensor, ...]:
        """Run ``fn`` on every chunk and concatenate each of its outputs along dim 0.

        ``fn(first_atom, num_atoms, centre, neighbor, *edge_inputs, *node_inputs)`` sees the
        chunk's slice of ``centre``, ``neighbor`` (global atom indices) and of each per-edge input
        (chunk order), and the whole per-node inputs. Each output must be either per-edge (rows
        for the chunk's edges) or per-atom (rows for the chunk's ``num_atoms`` atoms, starting at
        ``first_atom``); concatenated, they cover all edges, respectively all atoms, in order.
        """
        if len(self.bounds) == 1:
            return fn(0, self.bounds[0][3], self.centre, self.neighbor, *edge_inputs, *node_inputs)
        # split, not sliced: the backward of one split is one concatenation, while every slice
        # would get a gradient the size of the whole input (quadratic in the number of chunks)
        sizes = [e1 - e0 for e0, e1, _, _ in self.bounds]
        edge_pieces = list(zip(*(x.split(sizes) for x in edge_inputs), strict=True))
        pieces = []
        for k, (e0, e1, a0, a1) in enumerate(self.bounds):
            args = (
                a0,
                a1 - a0,
                self.centre[e0:e1],
                self.neighbor[e0:e1],
                *(edge_pieces[k] if edge_inputs else ()),
                *node_inputs,
            )
            if self.recompute and torch.is_grad_enabled():
                pieces.append(checkpoint(fn, *args, use_reentrant=False))
            else:
                pieces.append(fn(*args))
        return tuple(torch.cat(outputs) for outputs in zip(*pieces, strict=True))


class AtomicEnergyReadout(nn.Module):
    """Per-atom energy ``E0[s] + scale * (a[s] * eps + b[s])``, eV, accumulated in float64.

    ``E0`` (eV, per element) and ``scale`` (eV) come from the training data; the per-species
    affine ``(a, b)`` is learnable and starts at ``(1, 0)``. ``E0`` is kept in float64 whatever
    the model dtype: it is stored as the raw bits of a float64 tensor in an int64 buffer,
    which ``Module.to(dtype)`` leaves alone.
    """

    def __init__(self, num_species: int) -> None:
        super().__init__()
        self.species_scale = nn.Parameter(torch.ones(num_species))
        self.species_shift = nn.Parameter(torch.zeros(num_species))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer(
            "atomic_energies_bits", torch.zeros(num_species, dtype=torch.float64).view(torch.int64)
        )

    @property
    def atomic_energies(self) -> torch.Tensor:
        """``[S]`` float64 reference energies E0, eV."""
        return self.atomic_energies_bits.view(torch.float64)

    def set_reference(self, atomic_energies: Sequence[float], energy_scale: float) -> None:
        values = torch.as_tensor(atomic_energies, dtype=torch.float64).reshape(-1)
        if values.shape != self.atomic_energies.shape:
            raise ValueError(
                f"expected {len(self.atomic_energies)} atomic energies, got {len(values)}"
            )
        if not math.isfinite(energy_scale) or energy_scale <= 0:
            raise ValueError(f"energy scale must be a positive number, got {energy_scale}")
        self.atomic_energies_bits.copy_(
            values.to(self.atomic_energies_bits.device).view(torch.int64)
        )
        self.energy_scale.fill_(energy_scale)

    def forward(self, raw: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``raw [N]`` network outputs → ``[N]`` float64 atomic energies, eV."""
        scaled = self.energy_scale * (
            self.species_scale[species] * raw + self.species_shift[species]
        )
        return self.atomic_energies[species] + scaled.double()


class BesselBasis(ExactConstants):
    """Zeroth-order spherical Bessel radial basis (DimeNet/NequIP), used by MLANet.

    ``B_n(r) = sqrt(2 / r_c) · sin(w_n r / r_c) / r`` for ``n = 1..num_basis``, with frequencies
    ``w_n = n π``: orthonormal on ``[0, r_c]``. With ``trainable=True`` the frequencies are
    learnable parameters (initialised to ``n π``); otherwise they are fixed. The basis does not
    vanish at the cutoff: multiply it by an envelope.
    """

    def __init__(self, cutoff: float, num_basis: int, trainable: bool = False) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        frequencies = math.pi * torch.arange(1, num_basis + 1, dtype=torch.float64)
        if trainable:
            self.frequencies = nn.Parameter(frequencies.to(torch.get_default_dtype()))
        else:
            self.register_constant("frequencies", frequencies)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Distances ``r [E]`` (Å, > 0) → ``[E, num_basis]`` basis values, Å^-3/2."""
        prefactor = math.sqrt(2.0 / self.cutoff)
        return prefactor * torch.sin(self.frequencies * (r / self.cutoff)[:, None]) / r[:, None]
