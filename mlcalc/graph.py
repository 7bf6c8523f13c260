"""Atomic graphs: neighbour lists and batching of ASE structures.

This module knows ASE ``Atoms`` and numpy, and nothing about models. It turns structures into
an :class:`AtomicGraph`: a batch of graphs in PyG style (all atoms and edges concatenated,
``batch`` tells which graph an atom belongs to).

Conventions (see ``docs/conventions.md``):

* cell rows are lattice vectors (ASE), lengths in Å;
* ``edge_index[0]`` is the centre atom ``i``, ``edge_index[1]`` the neighbour ``j``; the list is
  full (both ``(i, j)`` and ``(j, i)``) and includes periodic images of ``i`` itself;
* the edge vector is ``r_ij = x_j - x_i + shift @ cell`` and points from ``i`` to ``j``;
  positions are never wrapped, the integer shifts account for images.

Neighbour lists come from :func:`mlcalc.neighbors.neighbor_list`. :class:`NeighborCache`
reuses one structure's list between calls (Verlet skin), for calculators in molecular dynamics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from mlcalc.electrons import read_charge_state
from mlcalc.neighbors import NeighborBackend, check_backend, neighbor_list

#: Two atoms closer than this (Å) are refused as unphysical input.
MIN_DISTANCE = 0.1


@dataclass
class AtomicGraph:
    """A batch of ``B`` atomic graphs with ``N`` atoms and ``E`` directed edges in total.

    Attributes:
        positions: ``[N, 3]`` Cartesian positions, Å.
        atomic_numbers: ``[N]`` int64.
        species: ``[N]`` int64 index of each atom's element in the model's element list.
        edge_index: ``[2, E]`` int64, rows (centre ``i``, neighbour ``j``).
        shifts: ``[E, 3]`` integer-valued cell shifts (stored in the float dtype).
        cell: ``[B, 3, 3]`` lattice vectors as rows, Å (zero rows in non-periodic directions).
        pbc: ``[B, 3]`` bool.
        batch: ``[N]`` int64 graph index of each atom.
        charge: ``[B]`` int64 total charge of each structure, e (``None``: all neutral).
        spin: ``[B]`` int64 spin multiplicity ``2S + 1`` of each structure (``None``: the
            lowest one for its electron count, see :mod:`mlcalc.electrons`).
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    species: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    charge: torch.Tensor | None = None
    spin: torch.Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]  # not int(): symbolic under tracing

    @property
    def num_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def atoms_per_graph(self) -> torch.Tensor:
        """``[B]`` number of atoms in each graph."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def total_charge(self) -> torch.Tensor:
        """``[B]`` int64 total charge of each structure, e (zeros when not given)."""
        if self.charge is not None:
            return self.charge
        return torch.zeros(self.num_graphs, dtype=torch.int64, device=self.batch.device)

    def spin_multiplicity(self) -> torch.Tensor:
        """``[B]`` int64 spin multiplicity ``2S + 1`` (default: 1 for an even electron count,
        2 for an odd one)."""
        if self.spin is not None:
            return self.spin
        protons = torch.zeros_like(self.total_charge()).index_add_(
            0, self.batch, self.atomic_numbers
        )
        return 1 + (protons - self.total_charge()) % 2

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AtomicGraph:
        """Copy to ``device``; floating-point fields are cast to ``dtype``."""
        moved = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                moved[field.name] = None
            elif value.is_floating_point():
                moved[field.name] = value.to(device=device, dtype=dtype)
            else:
                moved[field.name] = value.to(device=device)
        return AtomicGraph(**moved)


def batch_graphs(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate already-built graphs (each a batch itself) into one batch, in order."""
    if len(graphs) == 0:
        raise ValueError("no graphs given")
    atom_offsets = np.cumsum([0, *[g.num_atoms for g in graphs[:-1]]])
    graph_offsets = np.cumsum([0, *[g.num_graphs for g in graphs[:-1]]])
    return AtomicGraph(
        positions=torch.cat([g.positions for g in graphs]),
        atomic_numbers=torch.cat([g.atomic_numbers for g in graphs]),
        species=torch.cat([g.species for g in graphs]),
        edge_index=torch.cat(
            [g.edge_index + int(o) for g, o in zip(graphs, atom_offsets, strict=True)], dim=1
        ),
        shifts=torch.cat([g.shifts for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, graph_offsets, strict=True)]),
        charge=torch.cat([g.total_charge() for g in graphs]),
        spin=torch.cat([g.spin_multiplicity() for g in graphs]),
    )


def species_index(atomic_numbers: np.ndarray, elements: Sequence[int] | None) -> np.ndarray:
    """Map atomic numbers to indices in ``elements``; ``KeyError`` names unknown elements."""
    if elements is None:
        return np.zeros(len(atomic_numbers), dtype=np.int64)
    lookup = np.full(max(max(elements, default=0), int(np.max(atomic_numbers, initial=0))) + 1, -1)
    lookup[list(elements)] = np.arange(len(elements))
    index = lookup[atomic_numbers]
    if np.any(index < 0):
        unknown = sorted({chemical_symbols[z] for z in atomic_numbers[index < 0]})
        supported = ", ".join(chemical_symbols[z] for z in elements)
        raise KeyError(
            f"element(s) {', '.join(unknown)} not supported by this model; "
            f"it was trained on: {supported}"
        )
    return index.astype(np.int64)


def validate_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    """Refuse periodic directions whose lattice vectors are zero or linearly dependent."""
    lengths = np.linalg.norm(cell, axis=1)
    for axis in np.flatnonzero(pbc):
        if lengths[axis] < 1e-8:
            raise ValueError(
                f"cell vector {axis} has zero length but the structure is periodic along it "
                f"(pbc={pbc.tolist()}); set a cell or make that direction non-periodic"
            )
    periodic = cell[pbc]
    if len(periodic) > 0:
        gram = periodic @ periodic.T
        volume = np.sqrt(max(np.linalg.det(gram), 0.0))
        if volume < 1e-6 * np.prod(lengths[pbc]):
            what = "cell has zero volume" if pbc.all() else "periodic cell vectors are parallel"
            raise ValueError(f"{what} (cell={cell.tolist()}, pbc={pbc.tolist()})")


def _check_close_atoms(i: np.ndarray, j: np.ndarray, distances: np.ndarray, index: int) -> None:
    if len(distances) and distances.min() < MIN_DISTANCE:
        e = int(np.argmin(distances))
        where = f"structure {index}: "
        which = (
            f"atom {i[e]} and a periodic image of itself"
            if i[e] == j[e]
            else f"atoms {i[e]} and {j[e]}"
        )
        raise ValueError(
            f"{where}{which} are {distances[e]:.4f} Å apart, closer than {MIN_DISTANCE} Å"
        )


@dataclass
class _Structure:
    """One validated structure as float64/int64 numpy arrays (positions and cell in Å), with
    its total charge (e) and spin multiplicity."""

    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    numbers: np.ndarray
    charge: int = 0
    spin: int = 1


def _validated(atoms: Atoms, index: int) -> _Structure:
    """Arrays of ``atoms`` (structure ``index`` in error messages): finite positions and cell,
    a valid periodic cell, and a valid charge and spin (:mod:`mlcalc.electrons`)."""
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        raise ValueError(
            f"structure {index}: positions of atoms {bad[:10].tolist()} are not finite"
        )
    cell = np.asarray(atoms.get_cell()[:], dtype=np.float64)
    if not np.all(np.isfinite(cell)):
        raise ValueError(f"structure {index}: cell is not finite: {cell.tolist()}")
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    validate_cell(cell, pbc)
    numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int64)
    charge, spin = read_charge_state(atoms.info, numbers, f"structure {index}: ")
    return _Structure(positions, cell, pbc, numbers, charge, spin)


def _assemble(
    structures: Sequence[_Structure],
    edges: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    elements: Sequence[int] | None,
    dtype: torch.dtype,
) -> AtomicGraph:
    """Concatenate structures and their edges ``(i, j, shifts)`` into one batched graph."""
    sizes = [len(s.positions) for s in structures]
    offsets = np.cumsum([0, *sizes[:-1]])
    return AtomicGraph(
        positions=torch.tensor(np.concatenate([s.positions for s in structures]), dtype=dtype),
        atomic_numbers=torch.from_numpy(np.concatenate([s.numbers for s in structures])),
        species=torch.from_numpy(
            np.concatenate([species_index(s.numbers, elements) for s in structures])
        ),
        edge_index=torch.from_numpy(
            np.concatenate(
                [
                    np.stack([i, j]) + offset
                    for (i, j, _), offset in zip(edges, offsets, strict=True)
                ],
                axis=1,
            )
        ),
        shifts=torch.tensor(np.concatenate([shifts for _, _, shifts in edges]), dtype=dtype),
        cell=torch.tensor(np.stack([s.cell for s in structures]), dtype=dtype),
        pbc=torch.from_numpy(np.stack([s.pbc for s in structures])),
        batch=torch.from_numpy(np.repeat(np.arange(len(structures), dtype=np.int64), sizes)),
        charge=torch.tensor([s.charge for s in structures], dtype=torch.int64),
        spin=torch.tensor([s.spin for s in structures], dtype=torch.int64),
    )


def _check_cutoff(cutoff: float) -> None:
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")


def build_graph(
    structures: Atoms | Sequence[Atoms],
    cutoff: float,
    elements: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    backend: NeighborBackend = "vesin",
) -> AtomicGraph:
    """Build a batched :class:`AtomicGraph` from one or many ASE structures.

    Args:
        structures: an ``Atoms`` or a sequence of them (molecules, slabs, wires, bulk).
        cutoff: neighbour cutoff radius, Å.
        elements: atomic numbers known to the model, in species-index order; ``None`` gives
            every atom species 0.
        dtype: floating dtype of positions, shifts and cells.
        backend: neighbour-list implementation, ``"vesin"`` (default) or ``"matscipy"``.

    Raises:
        KeyError: an element not in ``elements``.
        ValueError: non-finite positions, a zero or degenerate periodic cell, two atoms
            closer than 0.1 Å, an unknown backend, or an invalid ``atoms.info["charge"]`` or
            ``atoms.info["spin"]`` (see :mod:`mlcalc.electrons`).
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    if len(structures) == 0:
        raise ValueError("no structures given")
    _check_cutoff(cutoff)
    validated, edges = [], []
    for index, atoms in enumerate(structures):
        structure = _validated(atoms, index)
        i, j, shifts, distances = neighbor_list(
            structure.positions, structure.cell, structure.pbc, cutoff, backend
        )
        _check_close_atoms(i, j, distances, index)
        validated.append(structure)
        edges.append((i, j, shifts))
    return _assemble(validated, edges, elements, dtype)


class NeighborCache:
    """Neighbour list of one structure, reused between calls with a Verlet skin.

    The list is built at ``cutoff + skin`` and kept while the cell, periodicity, atomic
    numbers and number of atoms stay the same and no atom has moved more than ``skin / 2``
    (Å) from where it was at the build; then no pair can have come closer than ``cutoff``
    without being in the list. Each call keeps only the pairs that are within ``cutoff`` at
    the current positions, so the graph has exactly the edges of a fresh
    :func:`build_graph` (possibly in another order, which changes results only by rounding).
    Positions are compared unwrapped: an atom wrapped back into the cell counts as moved.

    Args:
        cutoff: neighbour cutoff radius, Å.
        skin: extra radius of the stored list, Å (``0`` rebuilds whenever anything moved).
        backend: neighbour-list implementation, ``"vesin"`` (default) or ``"matscipy"``.

    Attributes:
        builds: number of neighbour lists built so far.
    """

    def __init__(self, cutoff: float, skin: float = 0.0, backend: NeighborBackend = "vesin"):
        _check_cutoff(cutoff)
        if not skin >= 0:
            raise ValueError(f"skin must be zero or positive (Å), got {skin}")
        check_backend(backend)
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.backend = backend
        self.builds = 0
        # the structure at the last build and its edges (i, j, shifts) within cutoff + skin
        self._reference: _Structure | None = None
        self._edges: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 3), dtype=np.int64),
        )

    def _is_valid_for(self, structure: _Structure) -> bool:
        reference = self._reference
        if reference is None or reference.positions.shape != structure.positions.shape:
            return False
        if not (
            np.array_equal(reference.cell, structure.cell)
            and np.array_equal(reference.pbc, structure.pbc)
            and np.array_equal(reference.numbers, structure.numbers)
        ):
            return False
        moved = np.linalg.norm(structure.positions - reference.positions, axis=1)
        return len(moved) == 0 or float(moved.max()) <= 0.5 * self.skin

    def graph(
        self,
        atoms: Atoms,
        elements: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float64,
        index: int = 0,
    ) -> AtomicGraph:
        """The graph of ``atoms`` at ``cutoff``, as :func:`build_graph` would build it
        (same arguments, same validation), from the stored list when it is still valid;
        errors call the structure number ``index``."""
        structure = _validated(atoms, index)
        if not self._is_valid_for(structure):
            i, j, shifts, _ = neighbor_list(
                structure.positions,
                structure.cell,
                structure.pbc,
                self.cutoff + self.skin,
                self.backend,
            )
            self._reference, self._edges = structure, (i, j, shifts)
            self.builds += 1
        i, j, shifts = self._edges
        vectors = structure.positions[j] - structure.positions[i] + shifts @ structure.cell
        distances = np.linalg.norm(vectors, axis=1)
        inside = distances <= self.cutoff
        i, j, shifts, distances = i[inside], j[inside], shifts[inside], distances[inside]
        _check_close_atoms(i, j, distances, index)
        return _assemble([structure], [(i, j, shifts)], elements, dtype)
