"""One compiled graph of a model's atomic energies *and* their edge gradients, for every size.

``make_fx`` traces the atomic energies together with the gradient of their sum with respect to
the edge vectors into one graph of first-order operations, and ``torch.compile`` compiles that
graph. Forces and stress follow from the edge gradients outside the graph
(:func:`mlcalc.models.physics.outputs_from_edge_gradients`). Two uses:

* inference (``differentiable=False``): one graph instead of a forward pass and autograd's
  backward pass, fused by the compiler (the calculators' ``compile=True``);
* training (``differentiable=True``): the gradient is kept differentiable in the weights, so
  that a force loss's backward pass differentiates the traced graph once, as it would any
  forward pass (``torch.compile`` alone cannot: "aot_autograd does not currently support double
  backward", torch 2.13).

The graph is traced with *symbolic* numbers of atoms and edges, so that one graph serves
structures of every size and composition: no padding and no graph per size. The model runs
with ``static_shapes=True`` for this (per-species linear maps as one product over all species,
:class:`mlcalc.models.blocks.SpeciesGroups`). What a traced graph does fix is its
:class:`GraphKey` (structures per batch, dtype, device) and the relations between sizes that the
trace met (its guards; a structure of one atom, for instance, is a case of its own, since the
tracer treats sizes 0 and 1 as constants). Inputs that fit no traced graph get one of their
own, up to ``max_graphs``; after that they are left to the eager model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

from mlcalc.graph import AtomicGraph
from mlcalc.models.base import AtomisticModel
from mlcalc.models.physics import edge_vectors, outputs_from_edge_gradients

#: The graph fields a traced graph takes as inputs (``charge`` and ``spin`` are not used by
#: the models that can be traced), each with its dimension that counts atoms or edges (the
#: symbolic one; ``None``: a field of fixed shape per :class:`GraphKey`).
GRAPH_FIELDS: dict[str, int | None] = {
    "positions": 0,
    "atomic_numbers": 0,
    "species": 0,
    "edge_index": 1,
    "shifts": 0,
    "cell": None,
    "pbc": None,
    "batch": 0,
}
#: ``torch.compile`` backend of the traced graphs (``"aot_eager"`` runs the same graph through
#: AOTAutograd without generating code: quick to build, for tests).
BACKEND = "inductor"
#: Graphs traced and compiled per :class:`TracedEnergies` by default.
MAX_GRAPHS = 2
#: Up to this many torch threads the generated loops run on one (``loop_threads=None``): on
#: two threads their atomic scatters made a step slower than on one (1,536 water atoms, the
#: shipped ``water`` model: 505 µs/atom with two-thread loops, 341 with one-thread loops and
#: two-thread matrix products, docs/benchmarks.md). More threads than two were not measured.
SERIAL_LOOPS_UP_TO = 2


class GraphKey(NamedTuple):
    """What one traced graph fixes besides the relations of its sizes."""

    structures: int
    dtype: torch.dtype
    device: torch.device


def untraceable_reason(model: AtomisticModel) -> str | None:
    """Why ``model``'s energies cannot be traced (``None``: they can)."""
    if not model.has_atomic_energies:
        return "its forces are not derivatives of atomic energies"
    if (
        getattr(model, "coulomb", None) is not None
        or getattr(model, "charge_spin", None) is not None
    ):
        return "it has charge, spin or long-range terms, which read the structures directly"
    return None


def _remove_detaches(traced: torch.fx.GraphModule) -> None:
    """Drop the ``detach`` nodes of a traced backward pass, in place.

    Autograd saves some forward results for the backward pass (``rsqrt``, ``norm``, ``sigmoid``
    in SiLU) as detached aliases and re-attaches their history when it unpacks them; ``make_fx``
    records only the ``detach``, which would cut the weights' dependence of the force terms
    when the traced graph is differentiated again. The models have no ``detach`` of their own
    in the traced part (the one of the edge vectors goes too: they are inputs); MLANet's
    softmax shift, computed under ``no_grad``, is traced as a differentiable operation, which
    changes nothing since the softmax does not depend on it (the tests compare the weight
    gradients with the eager ones).
    """
    for node in list(traced.graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.detach.default:
            node.replace_all_uses_with(node.args[0])
            traced.graph.erase_node(node)
    traced.recompile()


class _EnergiesOfEdges(nn.Module):
    """``(edge vectors [E, 3], *graph fields) → [N]`` atomic energies (eV) of ``model``."""

    def __init__(self, model: AtomisticModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, vectors: torch.Tensor, *fields: torch.Tensor) -> torch.Tensor:
        graph = AtomicGraph(**dict(zip(GRAPH_FIELDS, fields, strict=True)))
        energies = self.model.atomic_energy_function(chunked=False, static_shapes=True)
        assert energies is not None  # checked by untraceable_reason
        return energies(graph, vectors)


@dataclass
class TracedGraph:
    """A compiled graph and what it was traced for."""

    run: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    shape_env: ShapeEnv
    guards: str  # the guards' code (empty: none)

    def fits(self, args: Sequence[torch.Tensor]) -> bool:
        """Whether the inputs ``args`` satisfy every size relation the trace relied on."""
        return not self.guards or self.shape_env.evaluate_guards_expression(self.guards, args)


class TracedEnergies:
    """``(graph, edge vectors [E, 3]) → (atomic energies [N] (eV), dE/dr [E, 3] (eV/Å))``
    through compiled graphs with symbolic numbers of atoms and edges (see the module).

    Args:
        model: a model for which :func:`untraceable_reason` is ``None``.
        differentiable: keep the outputs differentiable in the weights (training); otherwise
            the graph is called under ``no_grad`` (inference).
        fallback: what happens when compiling fails, for the warning (e.g. "training eagerly").
        max_graphs: graphs traced at most; later inputs that fit none are left to the caller.
        memory_bound: leave graphs above the model's ``recompute_above_edges`` edges (read at
            each call) to the caller: the compiled graph keeps every intermediate of the
            forward pass for the backward one, where the eager model recomputes them there to
            save memory.
        loop_threads: threads of the loops the compiler generates (inductor's ``cpp.threads``;
            the matrix products run on torch's threads either way). ``None``: one where torch
            runs on at most :data:`SERIAL_LOOPS_UP_TO` threads when the graph is compiled,
            else torch's thread count. On more than one thread the generated scatters add
            with atomic operations, which cost more than a second thread gains.

    Calls return ``None`` where the inputs fit no traced graph and no new one may be traced;
    the caller then runs the eager model. If tracing or compiling fails (no C++ compiler, an
    unsupported operation), a warning names the error and every later call returns ``None``.
    The outputs are the eager model's to float rounding.
    """

    def __init__(
        self,
        model: AtomisticModel,
        differentiable: bool,
        fallback: str,
        max_graphs: int = MAX_GRAPHS,
        memory_bound: bool = False,
        loop_threads: int | None = None,
    ) -> None:
        reason = untraceable_reason(model)
        if reason is not None:
            raise ValueError(f"cannot compile this {model.architecture}: {reason}")
        self.differentiable = differentiable
        self.fallback = fallback
        self.max_graphs = max_graphs
        self.memory_bound = memory_bound
        if loop_threads is not None and loop_threads < 1:
            raise ValueError(f"loop_threads must be at least 1 (or None), got {loop_threads}")
        self.loop_threads = loop_threads
        self.energies = _EnergiesOfEdges(model)
        self.names = [name for name, _ in self.energies.named_parameters()]
        self.parameters = [p for _, p in self.energies.named_parameters()]
        self.graphs: dict[GraphKey, list[TracedGraph]] = {}
        self.failed = False

    def threads_of_loops(self) -> int:
        """Threads of the generated loops of a graph compiled now (see ``loop_threads``)."""
        if self.loop_threads is not None:
            return self.loop_threads
        threads = torch.get_num_threads()
        return 1 if threads <= SERIAL_LOOPS_UP_TO else threads

    def _energy_and_gradient(
        self, parameters: Sequence[torch.Tensor], vectors: torch.Tensor, *fields: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N]`` atomic energies (eV) and ``[E, 3]`` their sum's gradient in the edge
        vectors (eV/Å), differentiable in ``parameters`` when :attr:`differentiable`."""
        vectors = vectors.detach().requires_grad_(True)
        state = dict(zip(self.names, parameters, strict=True))
        energies = torch.func.functional_call(self.energies, state, (vectors, *fields))
        (gradient,) = torch.autograd.grad(energies.sum(), vectors, create_graph=self.differentiable)
        return energies, gradient

    @staticmethod
    def key(graph: AtomicGraph) -> GraphKey:
        """What a traced graph fixes besides its guards."""
        positions = graph.positions
        return GraphKey(graph.num_graphs, positions.dtype, positions.device)

    @property
    def num_graphs(self) -> int:
        """Graphs traced so far."""
        return sum(len(traced) for traced in self.graphs.values())

    def _inputs(self, graph: AtomicGraph, vectors: torch.Tensor) -> list[torch.Tensor]:
        return [*self.parameters, vectors, *(getattr(graph, name) for name in GRAPH_FIELDS)]

    def _fitting(self, graph: AtomicGraph, inputs: Sequence[torch.Tensor]) -> TracedGraph | None:
        """A traced graph that ``inputs`` (:meth:`_inputs` of ``graph``) fit, if any."""
        for traced in self.graphs.get(self.key(graph), []):
            if traced.fits(inputs):
                return traced
        return None

    def _traceable(self, graph: AtomicGraph) -> bool:
        """Whether a new graph may be traced on ``graph``: fewer than :attr:`max_graphs` so far,
        and at least 2 atoms and 2 edges (a graph traced on 0 or 1 would serve that count
        only)."""
        return self.num_graphs < self.max_graphs and min(graph.num_atoms, graph.num_edges) >= 2

    def _compiles(self, graph: AtomicGraph) -> bool:
        """Whether graphs like ``graph`` are compiled at all: compiling has not failed and,
        with :attr:`memory_bound`, the model would not recompute on it."""
        limit = self.energies.model.recompute_above_edges if self.memory_bound else None
        return not self.failed and (limit is None or graph.num_edges <= limit)

    def runs_compiled(self, graph: AtomicGraph) -> bool:
        """Whether a call on ``graph`` takes a compiled graph (compiling one if it needs to)."""
        if not self._compiles(graph):
            return False
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        inputs = self._inputs(graph, vectors)
        return self._fitting(graph, inputs) is not None or self._traceable(graph)

    def _trace(self, inputs: Sequence[torch.Tensor]) -> TracedGraph:
        """Trace and compile a graph for ``inputs`` (:meth:`_inputs`), with the atom and edge
        counts symbolic and every other size fixed."""
        shape_env = ShapeEnv(duck_shape=False)  # equal sizes are not assumed to stay equal
        mode = FakeTensorMode(shape_env=shape_env, allow_non_fake_inputs=True)
        varying = [None] * (len(self.parameters) + 1) + list(GRAPH_FIELDS.values())
        varying[len(self.parameters)] = 0  # the edge vectors
        fakes = []
        for tensor, dim in zip(inputs, varying, strict=True):
            sizes = [
                DimDynamic.DYNAMIC if d == dim else DimDynamic.STATIC for d in range(tensor.dim())
            ]
            context = StatelessSymbolicContext(dynamic_sizes=sizes)
            fakes.append(mode.from_tensor(tensor.detach(), symbolic_context=context))
        count = len(self.parameters)
        with torch.enable_grad():
            traced = make_fx(self._energy_and_gradient, tracing_mode="symbolic")(
                fakes[:count], *fakes[count:]
            )
        _remove_detaches(traced)
        guards = shape_env.produce_guards_expression(fakes, ignore_static=False) or ""
        options = None
        if BACKEND == "inductor":
            options = {"cpp.threads": self.threads_of_loops()}
        compiled = torch.compile(traced, backend=BACKEND, dynamic=True, options=options)
        return TracedGraph(compiled, shape_env, guards)

    def __call__(
        self, graph: AtomicGraph, vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Atomic energies ``[N]`` (eV) and ``dE/dr [E, 3]`` (eV/Å) of ``graph`` with edge
        vectors ``vectors``, or ``None`` (run the eager model instead)."""
        if not self._compiles(graph):
            return None
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", ".*autograd.function.Function.* should not be instantiated"
                )
                inputs = self._inputs(graph, vectors)
                traced = self._fitting(graph, inputs)
                if traced is None:
                    if not self._traceable(graph):
                        return None
                    traced = self._trace(inputs)
                    self.graphs.setdefault(self.key(graph), []).append(traced)
                fields = [getattr(graph, name) for name in GRAPH_FIELDS]
                with torch.set_grad_enabled(self.differentiable):
                    return traced.run(self.parameters, vectors, *fields)
        except Exception as error:  # any failure to trace or compile falls back to eager
            warnings.warn(
                f"compiling failed ({type(error).__name__}: {error}); {self.fallback}",
                RuntimeWarning,
                stacklevel=3,
            )
            self.failed = True
            return None

    def outputs(
        self, graph: AtomicGraph, compute_stress: bool = False
    ) -> dict[str, torch.Tensor] | None:
        """What the model's forward pass gives with forces (``energy [B]``, ``node_energy [N]``
        (eV), ``forces [N, 3]`` (eV/Å), with ``compute_stress`` ``stress`` (eV/Å³) and
        ``virial [B, 3, 3]`` (eV)) through a traced graph, or ``None`` (run the eager model)."""
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        result = self(graph, vectors)
        if result is None:
            return None
        energies, gradient = result
        return outputs_from_edge_gradients(energies, gradient, vectors, graph, compute_stress)
