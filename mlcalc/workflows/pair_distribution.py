"""Radial distribution functions: partial and total g(r) and running coordination numbers.

The one workflow without a calculator: it analyses frames that already exist (an MD
trajectory, an ASE ``.traj`` or extxyz file, or a list of ``Atoms``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from itertools import combinations_with_replacement
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from matplotlib.figure import Figure

from mlcalc.graph import validate_cell
from mlcalc.neighbors import neighbor_list
from mlcalc.workflows.result import WorkflowResult

TOTAL = "total"
#: Width (Å) of the Gaussian that smooths g(r) before its first minimum is looked for.
SMOOTHING = 0.1
#: Default bin width, Å: ``nbins = round(rmax / BIN_WIDTH)`` when ``nbins`` is not given.
BIN_WIDTH = 0.02


@dataclasses.dataclass
class RDFResult(WorkflowResult):
    """Frame-averaged g(r) and running coordination numbers.

    Keys of the dicts are ``"total"`` and one ``"A-B"`` per pair of elements. ``g`` is
    symmetric (``g["A-B"] == g["B-A"]``); ``coordination["A-B"]`` counts B atoms around an A
    atom (``n_BA = n_AB · N_A / N_B``), ``coordination["total"]`` all atoms around an atom.

    Attributes:
        r: ``[nbins]`` bin centres, Å.
        g: g(r) per key, dimensionless (→ 1 at large r).
        coordination: running coordination number n(r) per key: neighbours closer than ``r``
            (the bin at ``r`` counted half).
        first_minimum: position of the first minimum of g after its first peak, Å, found on g
            smoothed over :data:`SMOOTHING` Å (``None`` when not bracketed within ``rmax``).
        first_shell_coordination: ``coordination`` at ``first_minimum`` (``None`` likewise).
        rmax: largest distance histogrammed, Å.
        n_frames: number of frames averaged.
    """

    r: np.ndarray
    g: dict[str, np.ndarray]
    coordination: dict[str, np.ndarray]
    first_minimum: dict[str, float | None]
    first_shell_coordination: dict[str, float | None]
    rmax: float
    n_frames: int

    def table(self) -> tuple[list[str], list[list[Any]]]:
        header = ["r_angstrom"] + [f"g_{key}" for key in self.g]
        header += [f"n_{key}" for key in self.coordination]
        columns = np.column_stack([self.r, *self.g.values(), *self.coordination.values()])
        return header, columns.tolist()

    def draw(self, figure: Figure) -> None:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        for key, values in self.g.items():
            style = {"color": "k", "lw": 2.0} if key == TOTAL else {"lw": 1.2}
            top.plot(self.r, values, label=key, **style)
            bottom.plot(self.r, self.coordination[key], label=key, **style)
        r_min = self.first_minimum[TOTAL]
        if r_min is not None:
            for axes in (top, bottom):
                axes.axvline(r_min, color="0.5", ls=":", lw=1.0)
            bottom.set_title(
                f"first shell (total): {self.first_shell_coordination[TOTAL]:.2f} "
                f"neighbours within {r_min:.2f} Å",
                fontsize="small",
            )
        top.axhline(1.0, color="0.7", lw=0.8)
        top.set_ylabel("g(r)")
        top.set_title(f"radial distribution function ({self.n_frames} frames)")
        top.legend(fontsize="small")
        bottom.set_xlabel("r (Å)")
        bottom.set_ylabel("n(r)")
        bottom.set_xlim(0.0, self.rmax)


def _frames(
    trajectory: Atoms | Iterable[Atoms] | str | PathLike, start: int, stop: int | None, step: int
) -> Iterator[Atoms]:
    """The selected frames, streamed from a file or sliced from a sequence."""
    selection = slice(start, stop, step)
    if isinstance(trajectory, str | PathLike):
        from ase.io import iread

        if not Path(trajectory).is_file():
            raise FileNotFoundError(f"trajectory file not found: {trajectory}")
        return iread(trajectory, index=selection)
    if isinstance(trajectory, Atoms):
        trajectory = [trajectory]
    return iter(list(trajectory)[selection])


def _pair_numbers(pairs: Sequence[str | tuple[str, str]]) -> list[tuple[int, int]]:
    """``"Cu-Au"`` or ``("Cu", "Au")`` → ``(29, 79)``."""
    numbers = []
    for pair in pairs:
        symbols = pair.split("-") if isinstance(pair, str) else list(pair)
        unknown = [s for s in symbols if s not in atomic_numbers]
        if len(symbols) != 2 or unknown:
            raise ValueError(f"pair {pair!r} is not two element symbols like 'Cu-Au'")
        numbers.append((atomic_numbers[symbols[0]], atomic_numbers[symbols[1]]))
    return numbers


def _key(pair: tuple[int, int]) -> str:
    return f"{chemical_symbols[pair[0]]}-{chemical_symbols[pair[1]]}"


def _check_frame(atoms: Atoms, index: int | str) -> None:
    if len(atoms) == 0:
        raise ValueError(f"frame {index} has no atoms")
    if not atoms.pbc.all():
        raise ValueError(
            f"frame {index} is not periodic in all three directions (pbc={atoms.pbc.tolist()}): "
            "g(r) needs a density, i.e. a fully periodic cell"
        )
    validate_cell(atoms.cell[:], atoms.pbc)


def _histograms(
    atoms: Atoms, pairs: list[tuple[int, int]], edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """g(r) and running coordination of one frame: ``[1 + len(pairs), nbins]`` each, the total
    first, normalised by this frame's volume and composition."""
    rmax, nbins = edges[-1], len(edges) - 1
    species, kinds = np.unique(atoms.numbers, return_inverse=True)
    i, j, _, distances = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, rmax)
    inside = distances < rmax
    bins = np.minimum((distances[inside] / rmax * nbins).astype(np.int64), nbins - 1)
    code = (kinds[i[inside]] * len(species) + kinds[j[inside]]) * nbins + bins
    counts = np.bincount(code, minlength=len(species) ** 2 * nbins).astype(float)
    counts = counts.reshape(len(species), len(species), nbins)
    per_kind = np.bincount(kinds, minlength=len(species)).astype(float)
    a, b = np.searchsorted(species, np.array(pairs, dtype=np.int64).reshape(-1, 2)).T
    pair_counts = np.concatenate([counts.sum(axis=(0, 1))[None], counts[a, b]])
    centres = np.concatenate([[len(atoms)], per_kind[a]])[:, None]
    neighbours = np.concatenate([[len(atoms)], per_kind[b]])[:, None]
    shell_volumes = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    g = pair_counts / (centres * neighbours / atoms.cell.volume * shell_volumes)
    running = (np.cumsum(pair_counts, axis=1) - 0.5 * pair_counts) / centres
    return g, running


def _first_shell(g: np.ndarray, bin_width: float) -> int | None:
    """Bin of the first minimum of ``g`` after its first peak, on ``g`` smoothed with a
    Gaussian of :data:`SMOOTHING` Å: the lowest bin between the end of the first region with
    g > 1 and the start of the next one; ``None`` if not bracketed within ``rmax``."""
    sigma = SMOOTHING / bin_width
    half = int(np.ceil(3.0 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    smooth = np.convolve(np.pad(g, half, mode="edge"), kernel / kernel.sum(), mode="valid")
    above = smooth > 1.0
    if not above.any():
        return None
    start = int(np.argmax(above))
    below = np.flatnonzero(~above[start:])
    if len(below) == 0:
        return None
    end = start + int(below[0])
    rises = np.flatnonzero(above[end:])
    if len(rises) == 0:
        return None
    return end + int(np.argmin(smooth[end : end + int(rises[0])]))


def rdf(
    trajectory: Atoms | Iterable[Atoms] | str | PathLike,
    *,
    rmax: float,
    nbins: int | None = None,
    pairs: Sequence[str | tuple[str, str]] | None = None,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
) -> RDFResult:
    """Partial and total g(r) of a periodic trajectory, averaged over frames.

    Needs no calculator. Pairs are counted with a periodic neighbour list, so ``rmax`` may
    exceed half the cell width (periodic images are counted as neighbours). Each frame is
    normalised by its own volume and composition before averaging, so the cell may change
    (NPT). The convention is that of :func:`ase.geometry.rdf.get_rdf` (and LAMMPS):
    ``g_AB(r) = n_AB(r, r+dr) / (4π r² dr · N_B / V)`` per A atom, and
    ``g(r) = Σ_AB c_A c_B g_AB(r)``.

    Args:
        trajectory: frames: a list of ``Atoms`` (or one), or the path of any ASE-readable
            trajectory (``.traj``, extxyz, ...), read frame by frame. Every frame must be
            periodic in all three directions.
        rmax: largest distance, Å.
        nbins: number of bins of width ``rmax / nbins``; default ``round(rmax / 0.02)``
            (:data:`BIN_WIDTH`: bins of about 0.02 Å, e.g. 300 for ``rmax=6``).
        pairs: element pairs as ``"A-B"`` or ``("A", "B")``; default all pairs of the elements
            present (which must then be the same in every frame). ``[]`` gives only the total.
            Every frame must contain the elements of the requested pairs.
        start, stop, step: frame selection, as in ``frames[start:stop:step]``.
    """
    if not rmax > 0.0:
        raise ValueError(f"rmax must be positive, got {rmax}")
    if nbins is None:
        nbins = max(1, round(rmax / BIN_WIDTH))
    if nbins < 1:
        raise ValueError(f"nbins must be >= 1, got {nbins}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    requested = None if pairs is None else _pair_numbers(pairs)
    edges = np.linspace(0.0, rmax, nbins + 1)
    g_sum = n_sum = None
    first_species: np.ndarray | None = None
    n_frames = 0
    for k, atoms in enumerate(_frames(trajectory, start, stop, step)):
        index = start + k * step if start >= 0 else f"{k} of those selected"
        _check_frame(atoms, index)
        species = np.unique(atoms.numbers)
        if first_species is None:
            first_species = species
            if requested is None:
                requested = list(combinations_with_replacement(species.tolist(), 2))
        elif pairs is None and not np.array_equal(species, first_species):
            raise ValueError(
                f"frame {index} has elements {[chemical_symbols[z] for z in species]} but the "
                f"first frame has {[chemical_symbols[z] for z in first_species]}; pass pairs= "
                "(or pairs=[] for the total g(r) only)"
            )
        missing = sorted({z for pair in requested for z in pair} - set(species.tolist()))
        if missing:
            raise ValueError(
                f"frame {index} has no {', '.join(chemical_symbols[z] for z in missing)} atoms, "
                f"needed for pairs {[_key(p) for p in requested]}"
            )
        g, running = _histograms(atoms, requested, edges)
        g_sum = g if g_sum is None else g_sum + g
        n_sum = running if n_sum is None else n_sum + running
        n_frames += 1
    if g_sum is None or n_sum is None:
        raise ValueError(
            f"no frames to analyse (trajectory empty, or none selected by "
            f"start={start}, stop={stop}, step={step})"
        )
    g_mean, n_mean = g_sum / n_frames, n_sum / n_frames
    keys = [TOTAL] + [_key(p) for p in requested]
    minima = {key: _first_shell(g, rmax / nbins) for key, g in zip(keys, g_mean, strict=True)}
    r = 0.5 * (edges[:-1] + edges[1:])
    return RDFResult(
        r=r,
        g=dict(zip(keys, g_mean, strict=True)),
        coordination=dict(zip(keys, n_mean, strict=True)),
        first_minimum={k: None if m is None else float(r[m]) for k, m in minima.items()},
        first_shell_coordination={
            k: None if m is None else float(n_mean[keys.index(k), m]) for k, m in minima.items()
        },
        rmax=float(rmax),
        n_frames=n_frames,
    )
