"""Graphs of labelled structures, and their batches for training and evaluation."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ase.data import atomic_numbers

from mlcalc.graph import AtomicGraph, batch_graphs, build_graph
from mlcalc.training.data import LabeledStructure


@dataclass
class Batch:
    """A batch of labelled graphs; masks say which labels exist.

    Attributes:
        graph: the batched :class:`AtomicGraph`.
        energy: ``[B]`` float64, eV; ``energy_mask [B]`` bool.
        forces: ``[N, 3]``, eV/Å; ``forces_mask [N]`` bool.
        stress: ``[B, 3, 3]``, eV/Å³; ``stress_mask [B]`` bool.
        num_atoms: ``[B]`` atoms per structure.
    """

    graph: AtomicGraph
    energy: torch.Tensor
    energy_mask: torch.Tensor
    forces: torch.Tensor
    forces_mask: torch.Tensor
    stress: torch.Tensor
    stress_mask: torch.Tensor
    num_atoms: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            graph=self.graph.to(device=device),
            **{
                name: getattr(self, name).to(device)
                for name in (
                    "energy",
                    "energy_mask",
                    "forces",
                    "forces_mask",
                    "stress",
                    "stress_mask",
                    "num_atoms",
                )
            },
        )


def graph_bytes(graph: AtomicGraph) -> int:
    """Bytes a graph's tensors hold."""
    return sum(
        value.nbytes
        for value in (getattr(graph, field.name) for field in dataclasses.fields(graph))
        if isinstance(value, torch.Tensor)
    )


class GraphDataset:
    """Structures with their graphs (fixed cutoff, elements and dtype).

    Every graph is built once here, which checks every structure (errors name the frame) and
    counts its edges. Graphs are kept in memory up to ``max_graph_bytes`` in all; the others
    are built again each time a batch takes them (about a millisecond for a 60-atom cell), so
    that data sets larger than memory allows (a 60-atom cell's graph holds about 67 kB in
    float32: 10⁶ of them, 67 GB) still train.

    Args:
        structures: the labelled frames.
        cutoff: neighbour cutoff, Å.
        elements: the model's elements; an atom of another element is a ``KeyError`` naming
            the frame.
        dtype: floating dtype of graphs and labels.
        max_graph_bytes: memory for kept graphs (``None``: keep all).

    Attributes:
        num_edges: edges of each structure's graph.
        kept_bytes: memory the kept graphs hold.
    """

    def __init__(
        self,
        structures: Sequence[LabeledStructure],
        cutoff: float,
        elements: Sequence[str],
        dtype: torch.dtype,
        max_graph_bytes: int | None = None,
    ) -> None:
        self.structures = list(structures)
        self.dtype = dtype
        self.cutoff = cutoff
        self.numbers = [atomic_numbers[s] for s in elements]
        self.num_edges: list[int] = []
        self._kept: list[AtomicGraph | None] = []
        self.kept_bytes = 0
        for structure in self.structures:
            graph = self._build(structure)
            self.num_edges.append(graph.num_edges)
            size = graph_bytes(graph)
            keep = max_graph_bytes is None or self.kept_bytes + size <= max_graph_bytes
            self._kept.append(graph if keep else None)
            self.kept_bytes += size if keep else 0

    def _build(self, structure: LabeledStructure) -> AtomicGraph:
        try:
            return build_graph(structure.atoms, self.cutoff, self.numbers, dtype=self.dtype)
        except (KeyError, ValueError) as error:
            message = error.args[0] if error.args else str(error)
            raise type(error)(f"{structure.source}: {message}") from error

    def graph(self, index: int) -> AtomicGraph:
        """The graph of structure ``index`` (built now if it is not kept)."""
        kept = self._kept[index]
        return kept if kept is not None else self._build(self.structures[index])

    @property
    def num_kept(self) -> int:
        """Graphs held in memory."""
        return sum(graph is not None for graph in self._kept)

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def has_forces(self) -> bool:
        return any(s.forces is not None for s in self.structures)

    @property
    def has_stress(self) -> bool:
        return any(s.stress is not None for s in self.structures)

    def average_num_neighbors(self) -> float:
        return sum(self.num_edges) / sum(len(s) for s in self.structures)

    def label_counts(self, indices: Sequence[int]) -> dict[str, int]:
        """Labelled items among the structures at ``indices``: structures with an energy, force
        components and stress components (as :func:`mlcalc.training.loss.label_counts`)."""
        chosen = [self.structures[k] for k in indices]
        return {
            "energy": sum(s.energy is not None for s in chosen),
            "forces": sum(3 * len(s) for s in chosen if s.forces is not None),
            "stress": sum(9 for s in chosen if s.stress is not None),
        }

    def batch(self, indices: Sequence[int]) -> Batch:
        """Collate the structures at ``indices`` into one :class:`Batch` (on the CPU)."""
        chosen = [self.structures[k] for k in indices]
        float_type = self.dtype
        energy = torch.tensor(
            [s.energy if s.energy is not None else 0.0 for s in chosen], dtype=torch.float64
        )
        forces = torch.cat(
            [
                torch.tensor(s.forces, dtype=float_type)
                if s.forces is not None
                else torch.zeros((len(s), 3), dtype=float_type)
                for s in chosen
            ]
        )
        stress = torch.stack(
            [
                torch.tensor(s.stress, dtype=float_type)
                if s.stress is not None
                else torch.zeros((3, 3), dtype=float_type)
                for s in chosen
            ]
        )
        sizes = torch.tensor([len(s) for s in chosen])
        return Batch(
            graph=batch_graphs([self.graph(k) for k in indices]),
            energy=energy,
            energy_mask=torch.tensor([s.energy is not None for s in chosen]),
            forces=forces,
            forces_mask=torch.repeat_interleave(
                torch.tensor([s.forces is not None for s in chosen]), sizes
            ),
            stress=stress,
            stress_mask=torch.tensor([s.stress is not None for s in chosen]),
            num_atoms=sizes,
        )

    def batches_by_atoms(
        self, max_atoms: int, indices: Sequence[int] | None = None
    ) -> list[list[int]]:
        """Consecutive groups of ``indices`` (default all) of at most ``max_atoms`` atoms each
        (a larger structure gets a group of its own)."""
        groups: list[list[int]] = []
        current: list[int] = []
        count = 0
        for k in range(len(self)) if indices is None else indices:
            size = len(self.structures[k])
            if current and count + size > max_atoms:
                groups.append(current)
                current, count = [], 0
            current.append(k)
            count += size
        if current:
            groups.append(current)
        return groups


def graphs_summary(*datasets: GraphDataset) -> str:
    """How many of the ``datasets``' graphs are kept in memory, and how much they hold."""
    kept = sum(d.num_kept for d in datasets)
    total = sum(len(d) for d in datasets)
    gib = sum(d.kept_bytes for d in datasets) / 2**30
    if kept == total:
        return f"graphs: all {total:,} kept in memory ({gib:.2f} GiB)"
    return (
        f"graphs: {kept:,} of {total:,} kept in memory ({gib:.2f} GiB, graph_memory), the "
        "others built when a batch takes them"
    )
