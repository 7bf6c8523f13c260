"""``torch.compile`` of a model's atomic energies for inference, with static shapes.

Dynamic shapes (``torch.compile(dynamic=True)``) fail in the backward pass with torch 2.13, so
the edges are padded up to a bucket size and each bucket is compiled once. Padding edges run
from atom 0 to itself with length ``2 r_c``: every per-edge term of NEMP and MLANet carries the
cutoff envelope, which is exactly zero (with a zero derivative) beyond ``r_c``, so they change
neither the energies nor any derivative. Results equal the eager model's to float rounding.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import torch

from mlcalc.graph import AtomicGraph

#: Padded edge counts are multiples of ``2**k`` with ``2**k ≈ edges / 16`` (≤ ~12 % padding),
#: so that the few-percent fluctuations of an MD run rarely meet a new bucket.
BUCKETS_PER_OCTAVE = 16
#: Smallest padding granule, edges.
MIN_GRANULE = 256


def padded_edge_count(num_edges: int) -> int:
    """Bucket size for ``num_edges`` edges: the next multiple of a power-of-two granule."""
    granule = MIN_GRANULE
    while granule * BUCKETS_PER_OCTAVE < num_edges:
        granule *= 2
    return -(-max(num_edges, 1) // granule) * granule


def padded_edges(
    graph: AtomicGraph, vectors: torch.Tensor, num_edges: int, cutoff: float
) -> tuple[AtomicGraph, torch.Tensor]:
    """``graph`` and its edge vectors ``[E, 3]`` (Å) padded to ``num_edges`` edges.

    The padding edges run from atom 0 to itself with length ``2 cutoff`` (Å) and no cell
    shift: beyond the cutoff, where every per-edge term of NEMP and MLANet is exactly zero.
    """
    extra = num_edges - graph.num_edges
    if extra <= 0:
        return graph, vectors
    filler = vectors.new_zeros((extra, 3))
    filler[:, 0] = 2.0 * cutoff
    edge_index = torch.cat([graph.edge_index, graph.edge_index.new_zeros((2, extra))], dim=1)
    shifts = torch.cat([graph.shifts, graph.shifts.new_zeros((extra, 3))])
    padded = dataclasses.replace(graph, edge_index=edge_index, shifts=shifts)
    return padded, torch.cat([vectors, filler])


class CompiledAtomicEnergies:
    """``(graph, vectors [E, 3]) → [N]`` atomic energies (eV), compiled once per shape bucket.

    Args:
        function: the map to compile, e.g. ``model.atomic_energy_function(chunked=False)``
            (one chunk: a chunk loop would compile anew for every new set of chunk bounds).
        cutoff: the model's cutoff, Å (padding edges are twice as long).
        max_edges: padded edge counts above this run ``eager`` instead.
        eager: the map for those, and for every call once compiling failed; default
            ``function``.

    If compiling fails (no C++ compiler, an unsupported operation), a warning names the error
    and every later call runs eagerly.
    """

    def __init__(
        self,
        function: Callable[[AtomicGraph, torch.Tensor], torch.Tensor],
        cutoff: float,
        max_edges: int | None = None,
        eager: Callable[[AtomicGraph, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.eager = function if eager is None else eager
        self.cutoff = float(cutoff)
        self.max_edges = max_edges
        self.compiled: Callable[[AtomicGraph, torch.Tensor], torch.Tensor] | None = torch.compile(
            function, dynamic=False
        )

    def runs_compiled(self, num_edges: int) -> bool:
        """Whether a graph of ``num_edges`` edges takes the compiled path (not eager)."""
        padded = padded_edge_count(num_edges)
        return self.compiled is not None and (self.max_edges is None or padded <= self.max_edges)

    def __call__(self, graph: AtomicGraph, vectors: torch.Tensor) -> torch.Tensor:
        num_edges = vectors.shape[0]
        if not self.runs_compiled(num_edges):
            return self.eager(graph, vectors)
        graph, vectors = padded_edges(graph, vectors, padded_edge_count(num_edges), self.cutoff)
        try:
            with warnings.catch_warnings():
                # dynamo's tracing reads .grad of non-leaf tensors (a torch-internal warning)
                warnings.filterwarnings("ignore", "The .grad attribute of a Tensor", UserWarning)
                # and instantiates the custom autograd Functions of mlcalc.models.blocks
                warnings.filterwarnings(
                    "ignore", ".*autograd.function.Function.* should not be instantiated"
                )
                return self.compiled(graph, vectors)
        except Exception as error:  # any failure to compile falls back to eager
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {error}); running eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compiled = None
            return self.eager(graph, vectors)
