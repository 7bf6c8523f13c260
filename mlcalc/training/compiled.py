"""Training steps through one compiled graph of the energy *and* its edge gradients.

A force loss needs the gradient of the forces with respect to the weights, a double backward
pass, which ``torch.compile`` cannot run (torch 2.13: "aot_autograd does not currently support
double backward"). Here ``make_fx`` traces the atomic energies together with their gradient
with respect to the edge vectors into one graph of first-order operations; ``torch.compile``
compiles that graph, and the loss's backward pass differentiates it once, as it would any
forward pass. Forces and stress follow from the edge gradients outside the graph
(:func:`mlcalc.models.physics.outputs_from_edge_gradients`).

The traced graph has static shapes and also fixes, as constants, the atoms per species of the
batch it saw (per-species linear maps split the atoms by species). So a graph is compiled for
each *batch shape*: atoms, structures, atoms per species and whether stress is asked for.
Edges are padded up to a fixed capacity as for inference
(:func:`mlcalc.models.compiled.padded_edges`: edges beyond the cutoff, where every term is
exactly zero). A data set whose structures all have one size gives one shape for every full
batch; with one structure per batch, a data set of several sizes gives one shape per size, and
the most frequent of them are compiled (:func:`batch_shapes`). Other batches run eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from mlcalc.graph import AtomicGraph
from mlcalc.models import AtomisticModel
from mlcalc.models.compiled import padded_edges
from mlcalc.models.physics import edge_vectors, outputs_from_edge_gradients
from mlcalc.training.config import TrainConfig
from mlcalc.training.data import GraphDataset

#: The graph fields a traced graph takes as inputs (``charge`` and ``spin`` are not used by
#: the models that can be traced).
GRAPH_FIELDS: tuple[str, ...] = (
    "positions",
    "atomic_numbers",
    "species",
    "edge_index",
    "shifts",
    "cell",
    "pbc",
    "batch",
)
#: ``torch.compile`` backend of the traced graphs (``"aot_eager"`` runs the same graph through
#: AOTAutograd without generating code: quick to build, for tests).
BACKEND = "inductor"
#: Batch shapes compiled per run; batches of other shapes run eagerly.
MAX_SHAPES = 2
#: ``compile: auto`` compiles a batch shape whose steps take at least this much of
#: ``max_time`` (s) or, without one, at least :data:`AUTO_MIN_STEPS` steps: compiling one
#: shape costs one to two minutes on one CPU thread.
AUTO_MIN_SECONDS = 240.0
AUTO_MIN_STEPS = 5000


class BatchShape(NamedTuple):
    """What a compiled graph fixes of a batch besides its structure count."""

    atoms: int
    species_counts: tuple[int, ...]  # atoms of each of the model's species, in its order


class StepKey(NamedTuple):
    """What one traced graph fixes of a training step."""

    atoms: int
    structures: int
    species_counts: tuple[int, ...]
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
        energies = self.model.atomic_energy_function(chunked=False)
        assert energies is not None  # checked by untraceable_reason
        return energies(graph, vectors)


class CompiledTrainingForward:
    """``model(graph, compute_forces, compute_stress, training=True)`` for training steps,
    through a compiled graph per batch shape (up to :data:`MAX_SHAPES`; others run eagerly).

    Args:
        model: a model for which :func:`untraceable_reason` is ``None``.
        edge_capacity: edges a traced batch is padded to; batches with more run eagerly. One
            number: the first :data:`MAX_SHAPES` batch shapes met are compiled, all padded to
            it. A mapping (:func:`batch_shapes`): only its batch shapes are compiled, each
            padded to its own capacity.
        batch_size: structures of the batches that are compiled (``None``: any); the shorter
            last batch of an epoch runs eagerly rather than costing a compilation.

    The outputs are the eager model's to float rounding. If tracing or compiling fails (no C++
    compiler, an unsupported operation), a warning names the error and every later step runs
    eagerly.
    """

    def __init__(
        self,
        model: AtomisticModel,
        edge_capacity: int | Mapping[BatchShape, int],
        batch_size: int | None = None,
    ) -> None:
        reason = untraceable_reason(model)
        if reason is not None:
            raise ValueError(
                f"cannot compile training steps of this {model.architecture}: {reason}"
            )
        self.model = model
        self.edge_capacity: int | dict[BatchShape, int] = (
            int(edge_capacity)
            if isinstance(edge_capacity, int)
            else {shape: int(edges) for shape, edges in edge_capacity.items()}
        )
        self.batch_size = batch_size
        self.energies = _EnergiesOfEdges(model)
        self.names = [name for name, _ in self.energies.named_parameters()]
        self.parameters = [p for _, p in self.energies.named_parameters()]
        self.graphs: dict[StepKey, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}
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
        """What a traced graph fixes: atoms, structures, atoms per species, stress, dtype."""
        shape = structure_shape(graph, len(self.model.elements))
        return StepKey(
            shape.atoms,
            graph.num_graphs,
            shape.species_counts,
            compute_stress,
            graph.positions.dtype,
            graph.positions.device,
        )

    def runs_compiled(self, graph: AtomicGraph, compute_stress: bool) -> bool:
        """Whether a step on ``graph`` takes a compiled graph (compiling it if it is new)."""
        return self._compiled_key(graph, compute_stress) is not None

    def capacity(self, key: StepKey) -> int | None:
        """Edges a batch of :meth:`shape_key` ``key`` is padded to (``None``: not compiled)."""
        if isinstance(self.edge_capacity, int):
            return self.edge_capacity
        return self.edge_capacity.get(BatchShape(key.atoms, key.species_counts))

    def _compiled_key(self, graph: AtomicGraph, compute_stress: bool) -> tuple[StepKey, int] | None:
        """The :meth:`shape_key` and edge capacity of a step that takes a compiled graph, else
        ``None``."""
        if self.failed:
            return None
        if self.batch_size is not None and graph.num_graphs != self.batch_size:
            return None
        key = self.shape_key(graph, compute_stress)
        capacity = self.capacity(key)
        if capacity is None or graph.num_edges > capacity:
            return None
        if key not in self.graphs and len(self.graphs) >= MAX_SHAPES:
            return None
        return key, capacity

    def _compile(self, args: Sequence[Any]) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        with torch.enable_grad():
            traced = make_fx(self._energy_and_gradient)(*args)
        _remove_detaches(traced)
        return torch.compile(traced, backend=BACKEND, dynamic=False)

    def __call__(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = True,
    ) -> dict[str, torch.Tensor]:
        compiled = (
            self._compiled_key(graph, compute_stress) if training and compute_forces else None
        )
        if compiled is None:
            return self.model(graph, compute_forces, compute_stress, training)
        key, capacity = compiled
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        padded, padded_vectors = padded_edges(graph, vectors, capacity, self.model.cutoff)
        fields = [getattr(padded, name) for name in GRAPH_FIELDS]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", ".*autograd.function.Function.* should not be instantiated"
                )
                if key not in self.graphs:
                    detached = [p.detach() for p in self.parameters]
                    self.graphs[key] = self._compile([detached, padded_vectors.detach(), *fields])
                energies, gradient = self.graphs[key](self.parameters, padded_vectors, *fields)
        except Exception as error:  # any failure to trace or compile falls back to eager
            warnings.warn(
                f"compiling the training step failed ({type(error).__name__}: {error}); "
                "training eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            self.failed = True
            return self.model(graph, compute_forces, compute_stress, training)
        return outputs_from_edge_gradients(
            energies, gradient[: graph.num_edges], vectors, graph, compute_stress
        )


def edge_capacity(dataset: GraphDataset, batch_size: int) -> int:
    """The most edges a batch of ``batch_size`` structures of ``dataset`` can have."""
    counts = sorted((graph.num_edges for graph in dataset.graphs), reverse=True)
    return max(1, sum(counts[:batch_size]))


def structure_shape(graph: AtomicGraph, num_species: int) -> BatchShape:
    """The :class:`BatchShape` of a graph, all its structures together (``num_species``: the
    model's)."""
    counts = torch.bincount(graph.species, minlength=num_species)
    return BatchShape(graph.num_atoms, tuple(counts.tolist()))


def batch_shapes(
    dataset: GraphDataset, batch_size: int, num_species: int
) -> dict[BatchShape, tuple[float, int]]:
    """The shapes of ``dataset``'s full batches of ``batch_size`` structures (atoms per each of
    the model's ``num_species`` species, in its order): for each, the
    fraction of the full batches it has and the most edges such a batch can have; the most
    frequent first. Empty where batches have no fixed shapes (several structures per batch,
    structures of several sizes or compositions)."""
    shapes: dict[BatchShape, list[int]] = {}
    for graph in dataset.graphs:
        shapes.setdefault(structure_shape(graph, num_species), []).append(graph.num_edges)
    if batch_size > 1:
        if len(shapes) > 1:
            return {}
        ((atoms, counts),) = shapes
        shape = BatchShape(atoms * batch_size, tuple(count * batch_size for count in counts))
        return {shape: (1.0, edge_capacity(dataset, batch_size))}
    by_frequency = sorted(shapes.items(), key=lambda item: -len(item[1]))
    return {shape: (len(edges) / len(dataset), max(edges)) for shape, edges in by_frequency}


def training_forward(
    model: AtomisticModel,
    dataset: GraphDataset,
    config: TrainConfig,
    distributed: bool,
) -> tuple[CompiledTrainingForward | None, str]:
    """The compiled forward pass of ``config``'s training steps (``None``: eager) and a line
    saying why.

    ``compile: true`` asks for it (an error where it cannot be had); ``"auto"`` compiles only
    where it pays: a traceable model, one process, and batch shapes (:func:`batch_shapes`) of
    which each compiled one takes at least :data:`AUTO_MIN_SECONDS` of ``max_time`` (its share
    of the steps) or, without ``max_time``, at least :data:`AUTO_MIN_STEPS` steps.
    """
    setting = config.compile
    if setting is False:
        return None, "training steps run eagerly (compile: false)"
    reason = untraceable_reason(model)
    if reason is None and distributed:
        reason = "data-parallel training is not compiled"
    if reason is not None:
        if setting is True:
            raise ValueError(f"compile: true cannot be had: {reason}")
        return None, f"training steps run eagerly: {reason}"
    batch_size = int(config.batch_size or 1)
    shapes = list(batch_shapes(dataset, batch_size, len(model.elements)).items())[:MAX_SHAPES]
    if setting == "auto":
        if not shapes:
            return None, (
                f"training steps run eagerly: the structures differ in size, so batches of "
                f"{batch_size} have no fixed shape"
            )
        budget = config.max_time_seconds()
        steps = int(config.epochs or 0) * -(-len(dataset) // batch_size)
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        if budget is not None:
            shapes = [item for item in shapes if item[1][0] * budget >= AUTO_MIN_SECONDS]
            why = f"max_time under {AUTO_MIN_SECONDS:.0f} s for each batch shape"
        else:
            shapes = [item for item in shapes if item[1][0] * steps >= AUTO_MIN_STEPS]
            why = f"fewer than {AUTO_MIN_STEPS} steps of each batch shape"
        if not shapes:
            return None, f"training steps run eagerly: {why}"
    if not shapes:  # compile: true without fixed shapes: the first ones met
        forward = CompiledTrainingForward(model, edge_capacity(dataset, batch_size), batch_size)
        return forward, "training steps compiled (the first step of each batch shape compiles)"
    capacities = {shape: edges for shape, (_, edges) in shapes}
    share = sum(fraction for _, (fraction, _) in shapes)
    sizes = " and ".join(f"{atoms}" for atoms, _ in capacities)
    forward = CompiledTrainingForward(model, capacities, batch_size)
    return forward, (
        f"training steps compiled for batches of {sizes} atoms ({100 * share:.0f} % of the "
        "full batches; the first step of each compiles)"
    )
