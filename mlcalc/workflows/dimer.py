"""Dimer scans: energy of isolated element pairs vs distance, relative to the free atoms."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import combinations_with_replacement

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.interpolate import CubicSpline

from mlcalc.progress import progress_bar
from mlcalc.workflows.result import WorkflowResult

#: Default distances (Å): 0.5 to 6 Å in steps of 0.05 Å.
DEFAULT_DISTANCES = np.linspace(0.5, 6.0, 111)


@dataclasses.dataclass
class DimerCurve:
    """One pair: ``energies`` (eV) at the scan's distances, relative to the two isolated atoms;
    the lowest point ``r_min`` (Å), ``e_min`` (eV; the well depth, negative for a bound pair),
    refined between grid points by a cubic spline. A minimum at the first or last distance
    means that no well was found inside the scanned range."""

    elements: tuple[str, str]
    energies: np.ndarray
    r_min: float
    e_min: float


@dataclasses.dataclass
class DimerResult(WorkflowResult):
    """Dimer curves keyed by ``"A-B"`` in ``curves``, all on the same ``distances`` (Å);
    ``atomic_energies`` are the isolated-atom energies (eV) they are relative to."""

    distances: np.ndarray
    atomic_energies: dict[str, float]
    curves: dict[str, DimerCurve]

    def table(self) -> tuple[list[str], list[list]]:
        rows = [
            [pair, distance, energy]
            for pair, curve in self.curves.items()
            for distance, energy in zip(self.distances, curve.energies, strict=True)
        ]
        return ["pair", "distance_A", "energy_eV"], rows

    def draw(self, figure: Figure) -> None:
        axes = figure.add_subplot()
        for index, (pair, curve) in enumerate(self.curves.items()):
            color = f"C{index % 10}"
            legend = f"{pair}: {curve.e_min:.3f} eV at {curve.r_min:.3f} Å"
            axes.plot(self.distances, curve.energies, color=color, label=legend)
            axes.plot(curve.r_min, curve.e_min, "o", color=color)
        deepest = min(min(curve.e_min for curve in self.curves.values()), -0.1)
        axes.set_ylim(1.25 * deepest, max(-deepest, 0.5))
        axes.axhline(0.0, color="0.6", linewidth=0.8)
        axes.set_xlabel("distance (Å)")
        axes.set_ylabel("E(dimer) - E(atoms) (eV)")
        axes.set_title("Dimer curves")
        axes.legend()


def dimer_scan(
    species: str | Sequence[str] | Sequence[tuple[str, str]],
    calculator: Calculator,
    *,
    distances: ArrayLike = DEFAULT_DISTANCES,
    progress: bool | None = None,
) -> DimerResult:
    """Energy vs distance of isolated dimers (no cell, not periodic), minus the energies of the
    two isolated atoms computed with the same calculator.

    Args:
        species: element symbols (every pair among them, like pairs included, is scanned) or
            explicit pairs such as ``[("Cu", "Ni"), ("Ni", "Ni")]``.
        calculator: any ASE calculator that handles non-periodic structures.
        distances: interatomic distances (Å), at least 4, all positive.
        progress: a bar of the dimers on stderr: ``None`` when stderr is a terminal, ``True``
            always, ``False`` never.

    Returns:
        :class:`DimerResult` with one :class:`DimerCurve` per pair.
    """
    pairs = _pairs(species)
    distances = np.unique(np.asarray(distances, dtype=float))
    if distances.size < 4 or distances[0] <= 0.0:
        raise ValueError(
            f"need at least 4 distinct positive distances (Å), got {distances.tolist()}"
        )
    elements = dict.fromkeys(symbol for pair in pairs for symbol in pair)
    atomic_energies = {symbol: float(_energy(Atoms(symbol), calculator)) for symbol in elements}
    curves = {}
    total = len(pairs) * distances.size
    bar = progress_bar(desc="dimers", unit="dimers", total=total, enabled=progress)
    for pair in pairs:
        dimers = [Atoms(pair, positions=[[0.0, 0.0, 0.0], [0.0, 0.0, d]]) for d in distances]
        energies = np.array([_energy(dimer, calculator) for dimer in dimers])
        bar.update(len(dimers))
        energies -= atomic_energies[pair[0]] + atomic_energies[pair[1]]
        r_min, e_min = _minimum(distances, energies)
        curves["-".join(pair)] = DimerCurve(pair, energies, r_min, e_min)
    bar.close()
    return DimerResult(distances=distances, atomic_energies=atomic_energies, curves=curves)


def _pairs(species: str | Sequence[str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Element pairs, each unordered pair once, in the order given."""
    species = [species] if isinstance(species, str) else list(species)
    if not species:
        raise ValueError("no elements or pairs given")
    if all(isinstance(item, str) for item in species):
        pairs = list(combinations_with_replacement(dict.fromkeys(species), 2))
    else:
        pairs = [tuple(pair) for pair in species]
        if any(len(pair) != 2 or not all(isinstance(s, str) for s in pair) for pair in pairs):
            raise ValueError(f"give element symbols or pairs of them, got {species}")
    unknown = sorted({s for pair in pairs for s in pair if atomic_numbers.get(s, 0) == 0})
    if unknown:
        raise ValueError(f"unknown element symbol(s): {', '.join(map(repr, unknown))}")
    unique: dict[frozenset[str], tuple[str, str]] = {}
    for pair in pairs:
        unique.setdefault(frozenset(pair), pair)
    return list(unique.values())


def _energy(atoms: Atoms, calculator: Calculator) -> float:
    """Potential energy (eV) of ``atoms`` with ``calculator``."""
    atoms.calc = calculator
    return atoms.get_potential_energy()


def _minimum(distances: np.ndarray, energies: np.ndarray) -> tuple[float, float]:
    """The lowest point of the curve, refined by a cubic spline next to the lowest sample."""
    lowest = int(np.argmin(energies))
    if lowest in (0, distances.size - 1):
        return float(distances[lowest]), float(energies[lowest])
    spline = CubicSpline(distances, energies)
    roots = spline.derivative().roots(extrapolate=False)
    inside = (roots > distances[lowest - 1]) & (roots < distances[lowest + 1])
    candidates = np.append(roots[inside], distances[lowest])
    best = candidates[np.argmin(spline(candidates))]
    return float(best), float(spline(best))
