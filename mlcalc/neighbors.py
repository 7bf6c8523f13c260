"""Neighbour lists of one structure: molecules, slabs, wires and bulk, any cell.

Lists come from vesin (default, about 2.5x faster here) or matscipy; both give the same set of
``(i, j, S)``. Conventions as in :mod:`mlcalc.graph`: cell rows are lattice vectors (Å), the
list is full and ``r_ij = x_j - x_i + S @ cell``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import vesin
from matscipy.neighbours import neighbour_list

#: Neighbour-list implementations selectable by ``backend=``.
NeighborBackend = Literal["vesin", "matscipy"]


def _search_cell(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A cell and origin for the neighbour search that enclose all atoms.

    Periodic rows are kept. Each non-periodic row is replaced by a vector orthogonal to the
    periodic ones, long enough to hold every atom, so that the search stays O(N) for molecules,
    slabs and wires (matscipy degrades to O(N^2) for atoms outside non-periodic boundaries).
    """
    periodic = cell[pbc]
    # orthonormal basis: periodic subspace first, then its complement
    basis = np.linalg.svd(periodic, full_matrices=True)[2] if len(periodic) else np.eye(3)
    complement = basis[len(periodic) :]
    search = cell.copy()
    origin = np.zeros(3)
    for axis, normal in zip(np.flatnonzero(~pbc), complement, strict=True):
        projection = positions @ normal
        low, high = projection.min(), projection.max()
        search[axis] = normal * (high - low + 1.0)
        origin += normal * (low - 0.5)
    return search, origin


def check_backend(backend: str) -> None:
    """Refuse a ``backend`` that is not one of :data:`NeighborBackend`."""
    if backend not in get_args(NeighborBackend):
        raise ValueError(
            f"unknown neighbour-list backend {backend!r}; "
            f"choose one of {', '.join(get_args(NeighborBackend))}"
        )


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    backend: NeighborBackend = "vesin",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one structure.

    Args:
        positions: ``[N, 3]`` Cartesian positions, Å (need not lie inside the cell).
        cell: ``[3, 3]`` lattice vectors as rows, Å; rows of non-periodic directions may be zero.
        pbc: ``[3]`` bool; any mix of periodic and non-periodic directions.
        cutoff: radius, Å.
        backend: ``"vesin"`` (default, faster) or ``"matscipy"``; both return the same pairs.

    Returns:
        ``i [E]``, ``j [E]``, ``shifts [E, 3]`` (int) and distances ``[E]`` (Å) of all pairs with
        ``r <= cutoff``, including periodic images of an atom itself (but not an atom paired
        with itself in the same cell), in no particular order.
    """
    check_backend(backend)
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    # Both backends search in a cell that encloses every atom; shifts along non-periodic
    # directions are zero, so they refer to the original cell as well.
    search_cell, origin = _search_cell(positions, cell, pbc)
    if backend == "vesin":
        calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
        i, j, shifts, distances = calculator.compute(
            np.ascontiguousarray(positions - origin, dtype=np.float64),
            search_cell,
            np.asarray(pbc, dtype=bool),
            quantities="ijSd",
        )
    else:
        i, j, shifts, distances = neighbour_list(
            "ijSd",
            positions=positions,
            cell=search_cell,
            pbc=pbc,
            cutoff=float(cutoff),
            cell_origin=origin,
        )
    # drop only an atom paired with itself in the same cell (the backends should not return
    # those, but be safe); two *different* atoms at distance 0 must stay so they are refused
    keep = (i != j) | np.any(shifts != 0, axis=1)
    return (
        i[keep].astype(np.int64),
        j[keep].astype(np.int64),
        shifts[keep].astype(np.int64),
        distances[keep],
    )
