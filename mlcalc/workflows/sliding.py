"""Sliding potential-energy surfaces of layered systems: rigid in-plane shifts of a layer.

The layers are found as for exfoliation curves (:func:`mlcalc.workflows.layers.find_stack`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.constraints import FixedLine
from ase.optimize import BFGS
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar

from mlcalc.progress import progress_bar
from mlcalc.workflows.layers import LAYER_GAP, MIN_VACUUM, find_stack, potential_energy
from mlcalc.workflows.result import WorkflowResult


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
    stack = find_stack(structure, axis, split, layer_gap, min_vacuum)
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
            return potential_energy(stack.displaced(shift, distance), calculator), distance
        found = minimize_scalar(
            lambda d: potential_energy(stack.displaced(shift, d), calculator),
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
