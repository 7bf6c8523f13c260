"""Training steps through one compiled graph of the energy *and* its edge gradients.

A force loss needs the gradient of the forces with respect to the weights, a double backward
pass, which ``torch.compile`` cannot run (torch 2.13: "aot_autograd does not currently support
double backward"). Here ``make_fx`` traces the atomic energies together with their gradient
with respect to the edge vectors into one graph of first-order operations; ``torch.compile``
compiles that graph, and the loss's backward pass differentiates it once, as it would any
forward pass. Forces and stress follow from the edge gradients outside the graph
(:func:`mlcalc.models.physics.outputs_from_edge_gradients`).

The graph is traced with *symbolic* numbers of atoms and edges, so that one graph serves
structures of every size and composition: data sets of mixed sizes need no padding and no
graph per size. The model runs with ``static_shapes=True`` for this (per-species linear maps
as one product over all species, :class:`mlcalc.models.blocks.SpeciesGroups`). What a traced
graph does fix is its :class:`StepKey` (structures per batch, stress or not, dtype, device)
and the relations between sizes that the trace met (its guards; a structure of one atom, for
instance, is a case of its own, since the tracer treats sizes 0 and 1 as constants). A batch
that fits no traced graph gets one of its own, up to :data:`MAX_GRAPHS`, and runs eagerly
after that.
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
from mlcalc.models import AtomisticModel
from mlcalc.models.physics import edge_vectors, outputs_from_edge_gradients
from mlcalc.training.config import TrainConfig
from mlcalc.training.graphs import GraphDataset

#: The graph fields a traced graph takes as inputs (``charge`` and ``spin`` are not used by
#: the models that can be traced), each with its dimension that counts atoms or edges (the
#: symbolic one; ``None``: a field of fixed shape per :class:`StepKey`).
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
#: Graphs traced and compiled per run; batches that fit none of them run eagerly.
MAX_GRAPHS = 2
#: ``compile: auto`` compiles where ``max_time`` is at least this (s) or, without one, where a
#: run has at least :data:`AUTO_MIN_STEPS` steps: compiling costs one to three minutes on one
#: CPU thread (3,000–3,500 eager steps of ethanol), which a 5-minute run does not win back
#: (docs/training.md).
AUTO_MIN_SECONDS = 600.0
AUTO_MIN_STEPS = 20_000


class StepKey(NamedTuple):
    """What one traced graph fixes of a training step besides the relations of its sizes."""

    structures: int
    stress: bool
    dtype: torch.dtype
    device: torch.device


def untraceable_reason(model: AtomisticModel) -> str | None:
    """Why ``model``'s training steps cannot be traced (``None``: they can)."""
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
class _TracedStep:
    """A compiled graph and what it was traced for."""

    run: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    shape_env: ShapeEnv
    inputs: list[torch.Tensor]  # the trace's (fake) inputs, for checking its guards
    guards: str  # the guards' code (empty: none)

    def fits(self, args: Sequence[torch.Tensor]) -> bool:
        """Whether the inputs ``args`` satisfy every size relation the trace relied on."""
        return not self.guards or self.shape_env.evaluate_guards_expression(self.guards, args)


class CompiledTrainingForward:
    """``model(graph, compute_forces, compute_stress, training=True)`` for training steps,
    through compiled graphs with symbolic numbers of atoms and edges (see the module).

    Args:
        model: a model for which :func:`untraceable_reason` is ``None``.
        batch_size: structures of the batches that are compiled (``None``: any); the shorter
            last batch of an epoch runs eagerly rather than costing a compilation.

    The outputs are the eager model's to float rounding. If tracing or compiling fails (no C++
    compiler, an unsupported operation), a warning names the error and every later step runs
    eagerly.
    """

    def __init__(self, model: AtomisticModel, batch_size: int | None = None) -> None:
        reason = untraceable_reason(model)
        if reason is not None:
            raise ValueError(
                f"cannot compile training steps of this {model.architecture}: {reason}"
            )
        self.model = model
        self.batch_size = batch_size
        self.energies = _EnergiesOfEdges(model)
        self.names = [name for name, _ in self.energies.named_parameters()]
        self.parameters = [p for _, p in self.energies.named_parameters()]
        self.graphs: dict[StepKey, list[_TracedStep]] = {}
        self.failed = False

    def _energy_and_gradient(
        self, parameters: Sequence[torch.Tensor], vectors: torch.Tensor, *fields: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N]`` atomic energies (eV) and ``[E, 3]`` their sum's gradient in the edge
        vectors (eV/Å), kept differentiable in ``parameters``."""
        vectors = vectors.detach().requires_grad_(True)
        state = dict(zip(self.names, parameters, strict=True))
        energies = torch.func.functional_call(self.energies, state, (vectors, *fields))
        (gradient,) = torch.autograd.grad(energies.sum(), vectors, create_graph=True)
        return energies, gradient

    def shape_key(self, graph: AtomicGraph, compute_stress: bool) -> StepKey:
        """What a traced graph fixes besides its guards."""
        positions = graph.positions
        return StepKey(graph.num_graphs, compute_stress, positions.dtype, positions.device)

    @property
    def num_graphs(self) -> int:
        """Graphs traced so far."""
        return sum(len(steps) for steps in self.graphs.values())

    def runs_compiled(self, graph: AtomicGraph, compute_stress: bool) -> bool:
        """Whether a step on ``graph`` takes a compiled graph (compiling one if it needs to)."""
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        inputs = self._inputs(graph, vectors)
        return self._fitting(graph, inputs, compute_stress) is not None or self._traceable(
            graph, inputs
        )

    def _inputs(self, graph: AtomicGraph, vectors: torch.Tensor) -> list[torch.Tensor]:
        return [*self.parameters, vectors, *(getattr(graph, name) for name in GRAPH_FIELDS)]

    def _fitting(
        self, graph: AtomicGraph, inputs: Sequence[torch.Tensor], compute_stress: bool
    ) -> _TracedStep | None:
        """A traced graph that a step on ``graph`` with ``inputs`` fits, if any."""
        if not self._compiles(graph):
            return None
        for step in self.graphs.get(self.shape_key(graph, compute_stress), []):
            if step.fits(inputs):
                return step
        return None

    def _traceable(self, graph: AtomicGraph, inputs: Sequence[torch.Tensor]) -> bool:
        """Whether a new graph may be traced on ``graph``: fewer than :data:`MAX_GRAPHS` so
        far, and at least 2 atoms and 2 edges (a graph traced on 0 or 1 would serve that count
        only)."""
        return (
            self._compiles(graph)
            and self.num_graphs < MAX_GRAPHS
            and min(graph.num_atoms, graph.num_edges) >= 2
        )

    def _compiles(self, graph: AtomicGraph) -> bool:
        """Whether batches like ``graph`` are compiled at all: compiling has not failed, and
        it holds :attr:`batch_size` structures (when one is set)."""
        return not self.failed and self.batch_size in (None, graph.num_graphs)

    def _trace(self, inputs: Sequence[torch.Tensor]) -> _TracedStep:
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
        compiled = torch.compile(traced, backend=BACKEND, dynamic=True)
        return _TracedStep(compiled, shape_env, fakes, guards)

    def __call__(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = True,
    ) -> dict[str, torch.Tensor]:
        if not (training and compute_forces) or self.failed:
            return self.model(graph, compute_forces, compute_stress, training)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", ".*autograd.function.Function.* should not be instantiated"
                )
                inputs = self._inputs(graph, vectors)
                step = self._fitting(graph, inputs, compute_stress)
                if step is None:
                    if not self._traceable(graph, inputs):
                        return self.model(graph, compute_forces, compute_stress, training)
                    step = self._trace(inputs)
                    key = self.shape_key(graph, compute_stress)
                    self.graphs.setdefault(key, []).append(step)
                fields = [getattr(graph, name) for name in GRAPH_FIELDS]
                energies, gradient = step.run(self.parameters, vectors, *fields)
        except Exception as error:  # any failure to trace or compile falls back to eager
            warnings.warn(
                f"compiling the training step failed ({type(error).__name__}: {error}); "
                "training eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            self.failed = True
            return self.model(graph, compute_forces, compute_stress, training)
        return outputs_from_edge_gradients(energies, gradient, vectors, graph, compute_stress)


def training_forward(
    model: AtomisticModel,
    dataset: GraphDataset,
    config: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[CompiledTrainingForward | None, str]:
    """The compiled forward pass of ``config``'s training steps (``None``: eager) and a line
    saying why.

    ``compile: true`` asks for it (an error where it cannot be had); ``"auto"`` compiles only
    where it pays: a traceable model, and ``max_time`` of at least
    :data:`AUTO_MIN_SECONDS` or, without ``max_time``, at least :data:`AUTO_MIN_STEPS` steps.
    In a data-parallel run (process ``rank`` of ``world_size``), this process's share of each
    full batch is compiled.
    """
    setting = config.compile
    if setting is False:
        return None, "training steps run eagerly (compile: false)"
    reason = untraceable_reason(model)
    if reason is not None:
        if setting is True:
            raise ValueError(f"compile: true cannot be had: {reason}")
        return None, f"training steps run eagerly: {reason}"
    batch_size = int(config.batch_size or 1)
    if setting == "auto":
        budget = config.max_time_seconds()
        steps = int(config.epochs or 0) * -(-len(dataset) // batch_size)
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        if budget is not None and budget < AUTO_MIN_SECONDS:
            return None, f"training steps run eagerly: max_time under {AUTO_MIN_SECONDS:.0f} s"
        if budget is None and steps < AUTO_MIN_STEPS:
            return None, f"training steps run eagerly: fewer than {AUTO_MIN_STEPS} steps"
    # this process's share of a full batch: structures rank, rank + world, ... of it
    share = len(range(rank, batch_size, world_size))
    forward = CompiledTrainingForward(model, share)
    return forward, (
        f"training steps compiled (batches of {batch_size}, every structure size; the first "
        "step compiles)"
    )
