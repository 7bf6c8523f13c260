"""Layered systems: exfoliation (binding) curves and sliding potential-energy surfaces.

Both workflows take a bilayer or multilayer slab: two periodic in-plane directions and a
stacking axis that is either non-periodic or periodic with a vacuum gap. Layers are found by
clustering the atoms' heights along the stacking normal; the top layer (or the atoms given by
``split``) moves rigidly. The interlayer distance ``d`` is the gap along the normal between the
lowest moving atom and the highest fixed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from ase.constraints import FixedLine
from ase.optimize import BFGS
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.interpolate import CubicSpline
from scipy.optimize import minimize_scalar

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


def _stack(
    structure: Atoms,
    axis: int | None,
    split: Sequence[int] | None,
    layer_gap: float,
    min_vacuum: float,
) -> _Stack:
    """Find the stacking axis and the moving part; unwrap a periodic axis at its vacuum."""
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


def _energy(atoms: Atoms, calculator: BaseCalculator) -> float:
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
    stack = _stack(structure, axis, split, layer_gap, min_vacuum)
    if separations is None:
        steps = np.concatenate([np.arange(-0.6, 0.95, 0.1), np.arange(1.0, 6.01, 0.5)])
        distances = stack.distance + steps
    else:
        distances = np.unique(np.asarray(separations, dtype=float))
    if distances.ndim != 1 or distances.size < 4 or distances[0] <= 0:
        raise ValueError("separations must be at least 4 distinct positive distances (Å)")
    zero = np.zeros(3)
    scan = progress_bar(distances, desc="exfoliation", unit="separations", enabled=progress)
    energies = np.array([_energy(stack.displaced(zero, distance), calculator) for distance in scan])
    if reference == "largest":
        reference_energy = float(energies[-1])
    elif reference == "separated":
        parts = (stack.atoms[stack.moving], stack.atoms[~stack.moving])
        reference_energy = sum(_energy(part, calculator) for part in parts)
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


def _trigonometric_basis(fractions: np.ndarray, n: int) -> np.ndarray:
    """``exp(2πi k s)`` for the FFT frequencies k of an n-point periodic grid; the Nyquist term
    of an even grid is ``cos(π n s)``, so that real symmetric data interpolate symmetrically."""
    basis = np.exp(2j * np.pi * np.outer(fractions, np.fft.fftfreq(n, 1.0 / n)))
    if n % 2 == 0:
        basis[:, n // 2] = np.cos(np.pi * n * fractions)
    return basis


def _format_stop(stop: tuple[float, float]) -> str:
    return f"({stop[0]:.3g}, {stop[1]:.3g})"


@dataclasses.dataclass
class LineCut(WorkflowResult):
    """Sliding energy along straight segments between stackings (fractional shifts)."""

    labels: list[str]  #: names of the stops
    stops: np.ndarray  #: path length at each stop, Å
    fractional: np.ndarray  #: (k, 2) fractional shifts along the path
    path_length: np.ndarray  #: (k,) distance along the path, Å
    relative_per_area: np.ndarray  #: (k,) energy relative to the PES minimum, meV/Å²

    def table(self) -> tuple[list[str], np.ndarray]:
        header = ["path_A", "shift_a", "shift_b", "relative_meV_per_A2"]
        return header, np.column_stack((self.path_length, self.fractional, self.relative_per_area))

    def draw(self, figure: Figure) -> None:
        self.draw_on(figure.add_subplot())

    def draw_on(self, ax: Axes) -> None:
        """Draw the cut on the matplotlib axes ``ax``."""
        ax.plot(self.path_length, self.relative_per_area)
        for stop in self.stops:
            ax.axvline(stop, color="0.7", linewidth=0.8)
        ax.set_xticks(self.stops, self.labels)
        ax.set_xlim(self.stops[0], self.stops[-1])
        ax.set_xlabel("sliding path (Å)")
        ax.set_ylabel("ΔE (meV/Å²)")


@dataclasses.dataclass
class SlidingResult(WorkflowResult):
    """Sliding PES on an (n, m) grid of fractional in-plane shifts ``(i/n, j/m)`` of the moving
    part over the in-plane cell."""

    grid: tuple[int, int]
    shifts: np.ndarray  #: (n, m, 2) fractional shifts along the two in-plane cell vectors
    in_plane_cell: np.ndarray  #: (2, 2) in-plane cell vectors in plane coordinates (x ∥ a), Å
    energies: np.ndarray  #: (n, m) total energies, eV
    distances: np.ndarray  #: (n, m) interlayer distances, Å
    relative_per_area: np.ndarray  #: (n, m) energy above the grid minimum, meV/Å²
    corrugation: float  #: largest minus smallest energy on the grid, meV/Å²
    mode: str  #: "rigid" or "flexible"
    relax_atoms: bool
    area: float  #: in-plane cell area, Å²
    n_atoms: int
    axis: int  #: index of the stacking cell vector
    moving: list[int]  #: indices of the moved atoms
    path: dict[str, tuple[float, float]]  #: named stackings, fractional shifts

    def interpolate(self, fractional: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Energy relative to the grid minimum (meV/Å²) at fractional shifts ``(k, 2)``, by
        trigonometric (Fourier) interpolation of the periodic grid; exact on grid points."""
        points = np.asarray(fractional, dtype=float).reshape(-1, 2)
        n, m = self.relative_per_area.shape
        coefficients = np.fft.fft2(self.relative_per_area) / (n * m)
        first = _trigonometric_basis(points[:, 0], n)
        second = _trigonometric_basis(points[:, 1], m)
        return np.einsum("pk,kl,pl->p", first, coefficients, second).real

    def line_cut(self, *stops: str | Sequence[float], points: int = 60) -> LineCut:
        """Energy along straight segments through ``stops`` (names from ``path`` or fractional
        shifts); default: all named stackings of ``path`` in order. ``points`` per segment."""
        stops = stops or tuple(self.path)
        if len(stops) < 2:
            raise ValueError("a line cut needs at least two stackings (names from path or shifts)")
        if points < 2:
            raise ValueError(f"points must be at least 2 per segment, got {points}")
        unknown = [stop for stop in stops if isinstance(stop, str) and stop not in self.path]
        if unknown:
            raise ValueError(f"unknown stackings {unknown}; named ones: {sorted(self.path)}")
        corners = np.array(
            [self.path[stop] if isinstance(stop, str) else stop for stop in stops], dtype=float
        )
        if corners.shape != (len(stops), 2):
            raise ValueError("each stop must be a name or a pair of fractional shifts")
        t = np.linspace(0.0, 1.0, points)[None, :-1, None]
        segments = corners[:-1, None] + t * np.diff(corners, axis=0)[:, None]
        fractional = np.concatenate([segments.reshape(-1, 2), corners[-1:]])
        steps = np.linalg.norm(np.diff(fractional @ self.in_plane_cell, axis=0), axis=1)
        path_length = np.concatenate([[0.0], np.cumsum(steps)])
        return LineCut(
            labels=[stop if isinstance(stop, str) else _format_stop(stop) for stop in stops],
            stops=path_length[:: points - 1],
            fractional=fractional,
            path_length=path_length,
            relative_per_area=self.interpolate(fractional),
        )

    def table(self) -> tuple[list[str], np.ndarray]:
        header = ["shift_a", "shift_b", "x_A", "y_A", "distance_A", "energy_eV"]
        header.append("relative_meV_per_A2")
        columns = (
            self.shifts.reshape(-1, 2),
            self.shifts.reshape(-1, 2) @ self.in_plane_cell,
            self.distances.ravel(),
            self.energies.ravel(),
            self.relative_per_area.ravel(),
        )
        return header, np.column_stack(columns)

    def draw(self, figure: Figure) -> None:
        with_cut = len(self.path) >= 2
        axes = figure.subplots(
            2 if with_cut else 1, 1, squeeze=False, height_ratios=[3, 2] if with_cut else None
        )[:, 0]
        ax = axes[0]
        fine = np.linspace(0.0, 1.0, 61)
        mesh = np.stack(np.meshgrid(fine, fine, indexing="ij"), axis=-1)
        xy = mesh @ self.in_plane_cell
        values = self.interpolate(mesh.reshape(-1, 2)).reshape(mesh.shape[:2])
        image = ax.pcolormesh(xy[..., 0], xy[..., 1], values, shading="gouraud", cmap="viridis")
        figure.colorbar(image, ax=ax, label="ΔE (meV/Å²)")
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]) @ self.in_plane_cell
        ax.plot(corners[:, 0], corners[:, 1], "k-", linewidth=1.0)
        samples = self.shifts.reshape(-1, 2) @ self.in_plane_cell
        ax.plot(samples[:, 0], samples[:, 1], "k.", markersize=2)
        for name, shift in self.path.items():
            x, y = np.asarray(shift) @ self.in_plane_cell
            ax.plot(x, y, "o", color="w", markeredgecolor="k", markersize=5)
            ax.annotate(
                name,
                (x, y),
                xytext=(4, 4),
                textcoords="offset points",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "w", "alpha": 0.8, "lw": 0},
            )
        ax.set_aspect("equal")
        ax.set_xlabel("shift x (Å)")
        ax.set_ylabel("shift y (Å)")
        ax.set_title(
            f"{self.mode} sliding PES: corrugation {self.corrugation:.3g} meV/Å²",
            fontsize="medium",
        )
        if with_cut:
            self.line_cut().draw_on(axes[1])


def sliding_pes(
    structure: Atoms,
    calculator: BaseCalculator,
    *,
    grid: tuple[int, int] = (6, 6),
    distance: float | None = None,
    mode: Literal["rigid", "flexible"] = "rigid",
    relax_atoms: bool = False,
    path: Mapping[str, Sequence[float]] | None = None,
    axis: int | None = None,
    split: Sequence[int] | None = None,
    distance_bounds: tuple[float, float] | None = None,
    fmax: float = 0.01,
    steps: int = 200,
    layer_gap: float = LAYER_GAP,
    min_vacuum: float = MIN_VACUUM,
    progress: bool | None = None,
) -> SlidingResult:
    """Sliding potential-energy surface: rigid in-plane shifts of the top layer (or ``split``)
    on a ``grid`` over the structure's in-plane cell (build the slab in its primitive in-plane
    cell).

    Args:
        structure: the slab (not modified); see :func:`exfoliation_curve` for the geometry.
        calculator: any ASE calculator.
        grid: (n, m) shifts ``(i/n, j/m)`` along the two in-plane cell vectors.
        distance: interlayer distance d (Å) in rigid mode and the start in flexible mode;
            default: that of the input.
        mode: ``"rigid"`` keeps d fixed; ``"flexible"`` minimises the energy over the rigid
            distance at each shift (bounded 1D search within ``distance_bounds``, default
            ``(0.75 d, 1.5 d)``).
        relax_atoms: flexible mode only: then relax every atom along the stacking normal (BFGS
            to ``fmax`` eV/Å in at most ``steps`` steps), which keeps the in-plane registry.
        path: named stackings as fractional shifts, e.g. ``{"AA": (0, 0), "AB": (1/3, 1/3)}``,
            for :meth:`SlidingResult.line_cut` and the plot.
        axis, split, layer_gap, min_vacuum: as for :func:`exfoliation_curve`.
        progress: a bar of the grid points on stderr: ``None`` when stderr is a terminal,
            ``True`` always, ``False`` never.

    Returns:
        energies (eV), distances (Å) and energies per area relative to the grid minimum
        (meV/Å²) on the grid.
    """
    if mode not in ("rigid", "flexible"):
        raise ValueError(f"mode must be 'rigid' or 'flexible', got {mode!r}")
    if relax_atoms and mode != "flexible":
        raise ValueError("relax_atoms=True needs mode='flexible'")
    if len(grid) != 2 or any(int(size) != size or size < 1 for size in grid):
        raise ValueError(f"grid must be two positive integers, got {grid!r}")
    n, m = int(grid[0]), int(grid[1])
    named = {name: tuple(float(value) for value in shift) for name, shift in (path or {}).items()}
    if any(len(shift) != 2 for shift in named.values()):
        raise ValueError("each stacking of path needs two fractional shifts")
    stack = _stack(structure, axis, split, layer_gap, min_vacuum)
    distance = stack.distance if distance is None else float(distance)
    if distance <= 0:
        raise ValueError(f"distance must be positive, got {distance} Å")
    bounds = (0.75 * distance, 1.5 * distance) if distance_bounds is None else distance_bounds
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"distance_bounds must be 0 < low < high (Å), got {bounds}")
    shifts = np.stack(np.meshgrid(np.arange(n) / n, np.arange(m) / m, indexing="ij"), axis=-1)
    cartesian = shifts @ stack.in_plane

    def evaluate(shift: np.ndarray) -> tuple[float, float]:
        if mode == "rigid":
            return _energy(stack.displaced(shift, distance), calculator), distance
        found = minimize_scalar(
            lambda d: _energy(stack.displaced(shift, d), calculator),
            bounds=bounds,
            method="bounded",
            options={"xatol": 1e-4},
        )
        if min(found.x - bounds[0], bounds[1] - found.x) < 1e-3:
            raise ValueError(
                f"flexible mode: the best distance {found.x:.3f} Å lies at the edge of "
                f"distance_bounds={bounds}; widen them"
            )
        if not relax_atoms:
            return float(found.fun), float(found.x)
        atoms = stack.displaced(shift, found.x)
        atoms.set_constraint(FixedLine(np.arange(len(atoms)), stack.normal))
        atoms.calc = calculator
        if not BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps):
            raise ValueError(f"relax_atoms: not converged to fmax={fmax} eV/Å in {steps} steps")
        return float(atoms.get_potential_energy()), stack.gap(atoms)

    scan = progress_bar(cartesian.reshape(-1, 3), desc="sliding", unit="shifts", enabled=progress)
    values = np.array([evaluate(shift) for shift in scan]).reshape(n, m, 2)
    energies = values[..., 0]
    relative = 1e3 * (energies - energies.min()) / stack.area
    first = stack.in_plane[0] / np.linalg.norm(stack.in_plane[0])
    plane = np.stack([first, np.cross(stack.normal, first)])
    return SlidingResult(
        grid=(n, m),
        shifts=shifts,
        in_plane_cell=stack.in_plane @ plane.T,
        energies=energies,
        distances=values[..., 1],
        relative_per_area=relative,
        corrugation=float(relative.max()),
        mode=mode,
        relax_atoms=relax_atoms,
        area=stack.area,
        n_atoms=len(stack.atoms),
        axis=stack.axis,
        moving=np.flatnonzero(stack.moving).tolist(),
        path=named,
    )
