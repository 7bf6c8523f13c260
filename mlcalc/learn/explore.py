"""Where new labels come from: perturbed copies of the start (round 0), then MD driven by the
committee, stopped where it stops knowing; and which of the frames to label.

Force uncertainty of a structure: the largest per-atom ``forces_std`` of the committee (eV/Å),
as MACE's and FLARE's loops use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import ase.io
import numpy as np
from ase import Atoms, units
from ase.md import thermalize_momenta
from ase.md.velocitydistribution import Stationary

from mlcalc.learn.labels import ID_KEY, ROUND_KEY, SOURCE_KEY
from mlcalc.neighbors import neighbor_list
from mlcalc.workflows.dynamics import integrator_for


def read_structures_of(paths: Sequence[str]) -> list[Atoms]:
    """Every frame of the ASE-readable files ``paths``, without calculators."""
    structures = []
    for path in paths:
        try:
            frames = ase.io.read(path, ":")
        except Exception as error:
            raise ValueError(f"cannot read start file {path}: {error}") from error
        for atoms in frames if isinstance(frames, list) else [frames]:
            atoms.calc = None
            structures.append(atoms)
    if not structures:
        raise ValueError(f"no structures in {', '.join(paths)}")
    return structures


def perturbed_copies(
    starts: Sequence[Atoms], count: int, rattle: float, strain: float, seed: int
) -> list[Atoms]:
    """``count`` copies of the start structures (in turn), each rattled by Gaussian
    displacements of ``rattle`` Å and, for fully periodic cells, strained by a random symmetric
    strain with components up to ``strain``."""
    rng = np.random.default_rng(seed)
    copies = []
    for k in range(count):
        atoms = starts[k % len(starts)].copy()
        atoms.calc = None
        if atoms.pbc.all() and strain > 0:
            eps = rng.uniform(-strain, strain, (3, 3))
            eps = 0.5 * (eps + eps.T)
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        atoms.info[SOURCE_KEY] = f"start {k % len(starts)} rattled"
        copies.append(atoms)
    return copies


@dataclass
class Trajectory:
    """One exploration run: its sampled frames, their force uncertainties (eV/Å), and why it
    ended (``"steps"``, ``"uncertainty"`` or the error that stopped it)."""

    source: str
    frames: list[Atoms] = field(default_factory=list)
    uncertainty: list[float] = field(default_factory=list)
    ended: str = "steps"


def explore(
    starts: Sequence[Atoms],
    committee: object,
    temperatures: Sequence[float],
    pressures: Sequence[float] | None,
    steps: int,
    timestep_fs: float,
    interval: int,
    stop_above: float,
    seed: int,
) -> list[Trajectory]:
    """MD of every start structure at every temperature (and, for fully periodic cells, every
    pressure: MTK NPT; NVT Langevin otherwise), driven by the committee mean. A frame is taken
    every ``interval`` steps; a run stops at the first frame whose uncertainty exceeds
    ``stop_above`` (that frame is not kept), or when the committee refuses a structure (atoms
    too close)."""
    runs = []
    for s, start in enumerate(starts):
        periodic = bool(start.pbc.all())
        conditions = (
            [(t, p) for t in temperatures for p in (pressures or [None])]
            if periodic
            else [(t, None) for t in temperatures]
        )
        for temperature, pressure in conditions:
            rng = np.random.default_rng([seed, s, int(temperature), len(runs)])
            name = f"md {temperature:g} K" + ("" if pressure is None else f" {pressure:g} GPa")
            runs.append(
                _run(
                    start,
                    committee,
                    temperature,
                    pressure,
                    steps,
                    timestep_fs,
                    interval,
                    stop_above,
                    rng,
                    f"start {s} {name}",
                )
            )
    return runs


def _run(
    start: Atoms,
    committee: object,
    temperature: float,
    pressure: float | None,
    steps: int,
    timestep_fs: float,
    interval: int,
    stop_above: float,
    rng: np.random.Generator,
    source: str,
) -> Trajectory:
    atoms = start.copy()
    atoms.calc = committee
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ensemble = "nvt-langevin" if pressure is None else "npt"
    integrator = integrator_for(
        ensemble,
        temperature,
        0.01 / units.fs,
        100 * units.fs,
        1000 * units.fs,
        (pressure or 0.0) * units.GPa,
        rng,
    )(atoms, timestep=timestep_fs * units.fs)
    run = Trajectory(source)

    class Stop(Exception):
        pass

    def sample() -> None:
        atoms.get_forces()
        sigma = float(np.max(committee.results["forces_std"]))  # type: ignore[attr-defined]
        if sigma > stop_above:
            run.ended = "uncertainty"
            raise Stop
        frame = atoms.copy()
        frame.calc = None
        frame.info[SOURCE_KEY] = f"{source} step {integrator.nsteps}"
        run.frames.append(frame)
        run.uncertainty.append(sigma)

    integrator.attach(sample, interval=interval)
    try:
        integrator.run(steps)
    except Stop:
        pass
    except (ValueError, FloatingPointError) as error:  # atoms collided, cell collapsed...
        run.ended = f"{type(error).__name__}: {error}"
    return run


def fingerprints(structures: Sequence[Atoms], cutoff: float, bins: int = 24) -> np.ndarray:
    """``[S, F]`` invariant descriptors: per element pair, the Gaussian-smeared histogram of
    neighbour distances up to ``cutoff`` (Å), per atom of the centre element."""
    elements = sorted({int(z) for s in structures for z in s.numbers})
    pairs = {(a, b): k for k, (a, b) in enumerate((a, b) for a in elements for b in elements)}
    grid = np.linspace(0.0, cutoff, bins)
    width = cutoff / bins
    result = np.zeros((len(structures), len(pairs) * bins))
    for s, atoms in enumerate(structures):
        i, j, _, d = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
        numbers = atoms.numbers
        smear = np.exp(-0.5 * ((d[:, None] - grid[None, :]) / width) ** 2)
        counts = {z: max(1, int(np.sum(numbers == z))) for z in elements}
        for (a, b), k in pairs.items():
            mask = (numbers[i] == a) & (numbers[j] == b)
            result[s, k * bins : (k + 1) * bins] = smear[mask].sum(axis=0) / counts[a]
    return result


def farthest_points(features: np.ndarray, count: int, first: int) -> list[int]:
    """Greedy farthest-point sampling of ``count`` rows of ``features``, from row ``first``."""
    chosen = [first]
    distance = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < min(count, len(features)):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
    return chosen


def select(
    runs: Sequence[Trajectory],
    count: int,
    threshold: float,
    cutoff: float,
    random: bool,
    seed: int,
    pool: float | None = None,
) -> list[Atoms]:
    """Frames to label: with ``random``, ``count`` frames drawn uniformly from everything
    explored; else those above ``threshold``, thinned to ``count`` by farthest-point sampling
    on :func:`fingerprints`, starting from the most uncertain. With a ``pool``, the sampling
    runs among the ``ceil(pool * count)`` most uncertain of them only (diversity among the
    frames the committee knows least, rather than among everything above the threshold)."""
    frames = [f for r in runs for f in r.frames]
    sigma = np.array([u for r in runs for u in r.uncertainty])
    for frame, value in zip(frames, sigma, strict=True):
        frame.info["uncertainty"] = float(value)
    if random:
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(frames), size=min(count, len(frames)), replace=False).tolist()
        return [frames[k] for k in sorted(picked)]
    above = np.flatnonzero(sigma > threshold)
    if pool is not None:
        most_uncertain = np.argsort(-sigma[above], kind="stable")[: math.ceil(pool * count)]
        above = np.sort(above[most_uncertain])
    if len(above) <= count:
        return [frames[k] for k in above]
    features = fingerprints([frames[k] for k in above], cutoff)
    scale = features.std(axis=0)
    features = features / np.where(scale > 0, scale, 1.0)
    picked = farthest_points(features, count, int(np.argmax(sigma[above])))
    return [frames[above[k]] for k in sorted(picked)]


def tag(candidates: Sequence[Atoms], round_index: int) -> list[Atoms]:
    """Give each candidate its id (``r<round>-<k>``) and round in ``info``."""
    for k, atoms in enumerate(candidates):
        atoms.info[ID_KEY] = f"r{round_index}-{k}"
        atoms.info[ROUND_KEY] = round_index
    return list(candidates)
