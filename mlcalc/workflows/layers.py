"""Layered systems: finding the layers of a slab, and exfoliation (binding) curves.

This module and :mod:`mlcalc.workflows.sliding` (sliding potential-energy surfaces) take a
bilayer or multilayer slab: two periodic in-plane directions and a stacking axis that is either
non-periodic or periodic with a vacuum gap. Layers are found by clustering the atoms' heights
along the stacking normal; the top layer (or the atoms given by ``split``) moves rigidly. The
interlayer distance ``d`` is the gap along the normal between the lowest moving atom and the
highest fixed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from matplotlib.figure import Figure
from scipy.interpolate import CubicSpline

from mlcalc.progress import progress_bar
from mlcalc.workflows.result import WorkflowResult

#: 1 meV/Å² in J/m².
J_PER_M2_PER_MEV_PER_A2 = 1e-3 * units._e * 1e20

#: Default gap (Å) between consecutive atomic planes that separates two layers.
LAYER_GAP = 2.5
#: Default smallest gap (Å) that counts as vacuum along a periodic stacking axis.
MIN_VACUUM = 6.0


@dataclasses.dataclass(frozen=True)
class _Stack:
    """A working copy of a layered slab, unwrapped along its stacking axis."""

    atoms: Atoms
    axis: int
    normal: np.ndarray  # unit stacking normal, pointing from the fixed to the moving part
    moving: np.ndarray  # bool mask of the rigidly moved atoms
    distance: float  # interlayer distance of the input, Å
    area: float  # in-plane cell area, Å²

    @property
    def in_plane(self) -> np.ndarray:
        """The two in-plane cell vectors (rows), Å."""
        return self.atoms.cell.array[[i for i in range(3) if i != self.axis]]

    def gap(self, atoms: Atoms) -> float:
        """Interlayer distance of ``atoms`` (a displaced copy), Å."""
        heights = atoms.positions @ self.normal
        return float(heights[self.moving].min() - heights[~self.moving].max())

    def displaced(self, shift: np.ndarray, distance: float) -> Atoms:
        """A copy with the moving part shifted in-plane by ``shift`` (Cartesian, Å) and at
        interlayer distance ``distance`` (Å); a periodic stacking vector grows by the same
        amount, so that the vacuum stays as it was."""
        atoms = self.atoms.copy()
        delta = (distance - self.distance) * self.normal
        atoms.positions[self.moving] += shift + delta
        if atoms.pbc[self.axis]:
            cell = atoms.cell.array.copy()
            cell[self.axis] += delta
            atoms.set_cell(cell)
        return atoms


def _normal(cell: np.ndarray, axis: int) -> tuple[np.ndarray, float]:
    """Unit normal of the in-plane cell vectors (along ``cell[axis]`` when that is non-zero)
    and the in-plane area (Å²)."""
    first, second = cell[[i for i in range(3) if i != axis]]
    normal = np.cross(first, second)
    area = float(np.linalg.norm(normal))
    if area < 1e-8:
        raise ValueError(f"the in-plane cell vectors (all but axis {axis}) span no area")
    normal /= area
    return (-normal if cell[axis] @ normal < 0 else normal), area


def _vacuum(heights: np.ndarray, period: float) -> tuple[float, float]:
    """Largest gap (Å) between atomic planes along a periodic axis of length ``period``, and
    the height of the first atom above it."""
    ordered = np.sort(heights % period)
    gaps = np.diff(ordered, append=ordered[0] + period)
    largest = int(np.argmax(gaps))
    return float(gaps[largest]), float(ordered[(largest + 1) % len(ordered)])


def _stacking_axis(atoms: Atoms, axis: int | None, min_vacuum: float) -> int:
    pbc = atoms.pbc
    cell = atoms.cell.array

    def vacuum(index: int) -> float:
        normal, _ = _normal(cell, index)
        return _vacuum(atoms.positions @ normal, float(cell[index] @ normal))[0]

    if axis is None:
        if pbc.sum() == 2:
            axis = int(np.flatnonzero(~pbc)[0])
        elif pbc.all():
            candidates = [index for index in range(3) if vacuum(index) >= min_vacuum]
            if not candidates:
                raise ValueError(
                    "no vacuum axis: the structure is periodic in all three directions with no "
                    f"gap of at least {min_vacuum} Å along any cell vector; a layered slab needs "
                    "vacuum along the stacking direction (e.g. ase.build.add_vacuum) or a "
                    "non-periodic stacking direction"
                )
            if len(candidates) > 1:
                raise ValueError(f"vacuum along cell axes {candidates}: pass axis= to choose one")
            axis = candidates[0]
        else:
            raise ValueError(
                f"a layered slab needs two periodic in-plane directions, got pbc={pbc.tolist()}"
            )
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    if not np.delete(pbc, axis).all():
        raise ValueError(
            f"the in-plane directions (all but axis {axis}) must be periodic, "
            f"got pbc={pbc.tolist()}"
        )
    if pbc[axis] and vacuum(axis) < min_vacuum:
        raise ValueError(
            f"no vacuum along the periodic stacking axis {axis}: the largest gap between "
            f"atomic planes is {vacuum(axis):.2f} Å < min_vacuum={min_vacuum} Å"
        )
    return axis


def find_stack(
    structure: Atoms,
    axis: int | None,
    split: Sequence[int] | None,
    layer_gap: float,
    min_vacuum: float,
) -> _Stack:
    """Find the stacking axis and the moving part; unwrap a periodic axis at its vacuum (shared
    by :func:`exfoliation_curve` and :func:`mlcalc.workflows.sliding.sliding_pes`)."""
    atoms = structure.copy()
    del atoms.constraints
    axis = _stacking_axis(atoms, axis, min_vacuum)
    normal, area = _normal(atoms.cell.array, axis)
    heights = atoms.positions @ normal
    if atoms.pbc[axis]:
        period = float(atoms.cell.array[axis] @ normal)
        start = _vacuum(heights, period)[1]
        images = np.rint((start + (heights - start) % period - heights) / period)
        atoms.positions += images[:, None] * atoms.cell.array[axis]
        heights = atoms.positions @ normal
    if split is None:
        order = np.argsort(heights)
        layer = np.empty(len(atoms), dtype=int)
        layer[order] = np.concatenate([[0], np.cumsum(np.diff(heights[order]) > layer_gap)])
        if layer.max() < 1:
            raise ValueError(
                f"found fewer than 2 layers along axis {axis}: no gap larger than "
                f"layer_gap={layer_gap} Å between atomic planes; pass split= (indices of the "
                "moving atoms) or a smaller layer_gap"
            )
        moving = layer == layer.max()
    else:
        indices = np.asarray(split, dtype=int)
        if indices.size == 0 or np.any((indices < -len(atoms)) | (indices >= len(atoms))):
            raise ValueError(f"split must be non-empty indices of {len(atoms)} atoms")
        moving = np.zeros(len(atoms), dtype=bool)
        moving[indices] = True
        if moving.all():
            raise ValueError("split holds every atom: nothing is left fixed")
    distance = float(heights[moving].min() - heights[~moving].max())
    if distance <= 0:
        raise ValueError(
            "the moving atoms must lie above the fixed ones along the stacking normal "
            f"(gap {distance:.3f} Å)"
        )
    return _Stack(atoms, axis, normal, moving, distance, area)


def potential_energy(atoms: Atoms, calculator: BaseCalculator) -> float:
    """Energy of ``atoms`` with ``calculator`` attached, eV."""
    atoms.calc = calculator
    return float(atoms.get_potential_energy())


def _minimum(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Minimum of a cubic spline through sampled ``(x, y)``; it must lie inside the scan."""
    lowest = int(np.argmin(y))
    if lowest in (0, len(x) - 1):
        raise ValueError(
            f"the binding curve has its lowest point at the edge of the scan (d = "
            f"{x[lowest]:.3f} Å): extend separations to bracket the minimum"
        )
    spline = CubicSpline(x, y)
    candidates = np.append(spline.derivative().roots(extrapolate=False), x[lowest])
    values = spline(candidates)
    best = int(np.argmin(values))
    return float(candidates[best]), float(values[best])


@dataclasses.dataclass
class ExfoliationResult(WorkflowResult):
    """Binding curve of a layered slab. Binding energies are ``E(d) - E_ref`` (negative when
    bound); per atom over all atoms of the slab, per area over the in-plane cell."""

    separations: np.ndarray  #: interlayer distances d, Å
    energies: np.ndarray  #: total energies, eV
    reference_energy: float  #: E_ref, eV
    reference: str  #: "largest" (E at the largest d) or "separated" (parts computed apart)
    binding_per_atom: np.ndarray  #: meV/atom
    binding_per_area: np.ndarray  #: meV/Å²
    equilibrium_distance: float  #: Å, minimum of a cubic spline through the curve
    binding_energy_per_atom: float  #: at the equilibrium distance, meV/atom
    binding_energy_per_area: float  #: meV/Å²
    binding_energy_j_per_m2: float  #: J/m²
    area: float  #: in-plane cell area, Å²
    n_atoms: int
    axis: int  #: index of the stacking cell vector
    moving: list[int]  #: indices of the rigidly moved atoms

    def table(self) -> tuple[list[str], np.ndarray]:
        header = ["distance_A", "energy_eV", "binding_meV_per_atom", "binding_meV_per_A2"]
        columns = (self.separations, self.energies, self.binding_per_atom, self.binding_per_area)
        return header, np.column_stack(columns)

    def draw(self, figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.plot(self.separations, self.binding_per_area, "o-", markersize=3)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.plot(
            self.equilibrium_distance,
            self.binding_energy_per_area,
            "*",
            markersize=12,
            label=(
                f"d = {self.equilibrium_distance:.3f} Å, "
                f"E_b = {self.binding_energy_per_area:.2f} meV/Å² "
                f"({self.binding_energy_j_per_m2:.3f} J/m², "
                f"{self.binding_energy_per_atom:.1f} meV/atom)"
            ),
        )
        per_atom = self.area / self.n_atoms
        ax.secondary_yaxis(
            "right", functions=(lambda e: e * per_atom, lambda e: e / per_atom)
        ).set_ylabel("binding energy (meV/atom)")
        # the repulsive wall is cut off so that the well stays readable
        depth = self.binding_energy_per_area
        span = abs(depth) or 1.0
        ax.set_ylim(min(depth, 0.0) - 0.3 * span, max(depth, 0.0) + 0.8 * span)
        ax.set_xlabel("interlayer distance d (Å)")
        ax.set_ylabel("binding energy (meV/Å²)")
        ax.set_title(f"exfoliation curve (reference: {self.reference})")
        ax.legend(loc="lower right", fontsize="small")


def exfoliation_curve(
    structure: Atoms,
    calculator: BaseCalculator,
    *,
    separations: Sequence[float] | np.ndarray | None = None,
    axis: int | None = None,
    split: Sequence[int] | None = None,
    reference: Literal["largest", "separated"] = "largest",
    layer_gap: float = LAYER_GAP,
    min_vacuum: float = MIN_VACUUM,
    progress: bool | None = None,
) -> ExfoliationResult:
    """Rigid interlayer separation scan of a bilayer or multilayer slab.

    Args:
        structure: the slab (not modified); in-plane directions periodic, the stacking axis
            non-periodic or periodic with a vacuum gap of at least ``min_vacuum`` Å.
        calculator: any ASE calculator.
        separations: interlayer distances d (Å) to evaluate; default ``d0 - 0.6 … d0 + 1`` in
            0.1 Å steps, then to ``d0 + 6`` in 0.5 Å steps, around the input's distance d0.
        axis: index of the stacking cell vector (default: the non-periodic direction, or the
            periodic one with vacuum).
        split: indices of the atoms that move (default: the top layer).
        reference: ``"largest"`` takes E at the largest separation as zero; ``"separated"``
            computes the moving and fixed parts on their own (same cell) and takes the sum.
        layer_gap: a gap between consecutive atomic planes larger than this (Å) separates
            layers.
        min_vacuum: smallest gap (Å) counted as vacuum along a periodic stacking axis.
        progress: a bar of the separations on stderr: ``None`` when stderr is a terminal,
            ``True`` always, ``False`` never.

    Returns:
        energies, binding energies per atom (meV/atom) and per area (meV/Å²), and the
        equilibrium distance (Å) and binding energy (meV/atom, meV/Å², J/m²) at the minimum.
    """
    stack = find_stack(structure, axis, split, layer_gap, min_vacuum)
    if separations is None:
        steps = np.concatenate([np.arange(-0.6, 0.95, 0.1), np.arange(1.0, 6.01, 0.5)])
        distances = stack.distance + steps
    else:
        distances = np.unique(np.asarray(separations, dtype=float))
    if distances.ndim != 1 or distances.size < 4 or distances[0] <= 0:
        raise ValueError("separations must be at least 4 distinct positive distances (Å)")
    zero = np.zeros(3)
    scan = progress_bar(distances, desc="exfoliation", unit="separations", enabled=progress)
    energies = np.array(
        [potential_energy(stack.displaced(zero, distance), calculator) for distance in scan]
    )
    if reference == "largest":
        reference_energy = float(energies[-1])
    elif reference == "separated":
        parts = (stack.atoms[stack.moving], stack.atoms[~stack.moving])
        reference_energy = sum(potential_energy(part, calculator) for part in parts)
    else:
        raise ValueError(f"reference must be 'largest' or 'separated', got {reference!r}")
    binding = energies - reference_energy
    distance, minimum = _minimum(distances, binding)
    n_atoms = len(stack.atoms)
    return ExfoliationResult(
        separations=distances,
        energies=energies,
        reference_energy=reference_energy,
        reference=reference,
        binding_per_atom=1e3 * binding / n_atoms,
        binding_per_area=1e3 * binding / stack.area,
        equilibrium_distance=distance,
        binding_energy_per_atom=1e3 * minimum / n_atoms,
        binding_energy_per_area=1e3 * minimum / stack.area,
        binding_energy_j_per_m2=1e3 * minimum / stack.area * J_PER_M2_PER_MEV_PER_A2,
        area=stack.area,
        n_atoms=n_atoms,
        axis=stack.axis,
        moving=np.flatnonzero(stack.moving).tolist(),
    )
