"""Labelled structures for training and evaluation: reading, checking, splitting (their graphs
and batches: :mod:`mlcalc.training.graphs`).

Labels (any may be missing per structure; a missing label is masked out of losses and errors,
never replaced by a number): total energy (eV), forces ``[n, 3]`` (eV/Å) and stress ``[3, 3]``
(eV/Å³, ASE's sign: positive is tensile). Stress may also come from a virial (eV) as
``-virial / volume``.

Inputs besides the geometry: the total charge (e) and spin multiplicity of each frame, read
from ``atoms.info`` at :class:`LabelKeys` ``charge`` and ``spin`` (defaults and checks as in
:mod:`mlcalc.electrons`) and kept in the clean structure's ``info["charge"]``/``["spin"]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from mlcalc.electrons import CHARGE_KEY, SPIN_KEY, read_charge_state


@dataclass(frozen=True)
class LabelKeys:
    """Where labels live in a frame: ``atoms.info`` / ``atoms.arrays`` or the results of the
    ``SinglePointCalculator`` ASE's readers attach (for the standard names)."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    virial: str = "virial"
    charge: str = CHARGE_KEY
    spin: str = SPIN_KEY


@dataclass
class LabeledStructure:
    """One structure and its reference labels (``None`` when the frame has no such label).

    Attributes:
        atoms: positions, numbers, cell and pbc (no calculator attached).
        energy: total energy, eV.
        forces: ``[n_atoms, 3]``, eV/Å.
        stress: ``[3, 3]``, eV/Å³ (ASE sign).
        source: ``"file:frame"`` for messages.
    """

    atoms: Atoms
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.atoms)


def _raw_label(atoms: Atoms, key: str, per_atom: bool) -> object | None:
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(key)


def _as_array(value: object, where: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {what} is not numeric: {value!r}") from error
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {what} contains NaN or infinite values")
    return array


def labeled_structure(atoms: Atoms, keys: LabelKeys, source: str) -> LabeledStructure:
    """Extract and check the labels of one frame; ``ValueError`` naming ``source`` if bad."""
    n = len(atoms)
    if n == 0:
        raise ValueError(f"{source}: frame has no atoms")
    energy = _raw_label(atoms, keys.energy, per_atom=False)
    if energy is not None:
        energy_array = _as_array(energy, source, f"energy ({keys.energy!r})")
        if energy_array.size != 1:
            raise ValueError(f"{source}: energy ({keys.energy!r}) must be one number")
        energy = float(energy_array.reshape(()))
    forces = _raw_label(atoms, keys.forces, per_atom=True)
    if forces is not None:
        forces = _as_array(forces, source, f"forces ({keys.forces!r})")
        if forces.shape != (n, 3):
            raise ValueError(
                f"{source}: forces ({keys.forces!r}) have shape {forces.shape}, "
                f"expected ({n}, 3) for {n} atoms"
            )
    stress = _raw_label(atoms, keys.stress, per_atom=False)
    virial = _raw_label(atoms, keys.virial, per_atom=False)
    if stress is not None or virial is not None:
        what = f"stress ({keys.stress!r})" if stress is not None else f"virial ({keys.virial!r})"
        tensor = _as_array(stress if stress is not None else virial, source, what)
        if tensor.shape == (6,):
            tensor = voigt_6_to_full_3x3_stress(tensor)
        elif tensor.shape == (9,):
            tensor = tensor.reshape(3, 3)
        if tensor.shape != (3, 3):
            raise ValueError(f"{source}: {what} has shape {tensor.shape}; need 6, 9 or 3x3")
        if not atoms.pbc.all():
            raise ValueError(f"{source}: {what} given for a structure that is not periodic")
        if stress is None:
            tensor = -tensor / atoms.get_volume()
        stress = tensor
    clean = Atoms(
        numbers=atoms.get_atomic_numbers(),
        positions=atoms.get_positions(),
        cell=atoms.get_cell(),
        pbc=atoms.get_pbc(),
    )
    for key, standard in ((keys.charge, CHARGE_KEY), (keys.spin, SPIN_KEY)):
        if atoms.info.get(key) is not None:
            clean.info[standard] = atoms.info[key]
    read_charge_state(clean.info, clean.numbers, f"{source}: ")  # refuse bad values early
    return LabeledStructure(clean, energy, forces, stress, source)


def _database_frames(path: Path) -> Iterator[Atoms]:
    """The rows of an ASE database as ``Atoms``, labels where :func:`labeled_structure` looks:
    the stored calculator results, the key-value pairs in ``info``, and the ``data`` entries
    in ``arrays`` (one row per atom) or ``info`` (anything else)."""
    from ase.db import connect

    with connect(path) as database:
        for row in database.select():
            atoms = row.toatoms()
            atoms.info.update(row.key_value_pairs)
            for key, value in row.data.items():
                value = np.asarray(value)
                per_atom = value.ndim > 1 and value.shape[0] == len(atoms)
                (atoms.arrays if per_atom else atoms.info)[key] = value
            yield atoms


def _is_database(path: Path) -> bool:
    """Whether ``path`` is an ASE database (SQLite ``.db`` or its JSON form)."""
    from ase.io.formats import filetype

    try:
        return filetype(str(path)) in ("db", "json")
    except Exception:  # not a format ASE knows: iread says why
        return False


def read_structures(path: str | PathLike, keys: LabelKeys = LabelKeys()) -> list[LabeledStructure]:
    """All frames of an ASE-readable file with their labels (an ASE database: its rows, see
    :func:`_database_frames`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, or a frame with bad labels (the message names the file
            and the 0-based frame number).
    """
    from ase.io import iread

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    structures: list[LabeledStructure] = []
    try:
        frames = _database_frames(path) if _is_database(path) else iread(path, index=":")
        for frame, atoms in enumerate(frames):
            structures.append(labeled_structure(atoms, keys, f"{path}, frame {frame}"))
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read frame {len(structures)}: {error}") from error
    except (KeyError, IndexError, TypeError, AttributeError, StopIteration, OSError) as error:
        raise ValueError(
            f"{path}: cannot read frame {len(structures)}: {type(error).__name__}: {error}"
        ) from error
    if not structures:
        raise ValueError(f"{path}: no structures in the file")
    return structures


def split(
    structures: Sequence[LabeledStructure], valid_fraction: float, seed: int
) -> tuple[list[LabeledStructure], list[LabeledStructure]]:
    """Seeded random split into (train, valid) with ``round(fraction * n)`` >= 1 valid frames."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    n_valid = max(1, round(valid_fraction * len(structures)))
    if n_valid >= len(structures):
        raise ValueError(
            f"cannot split {len(structures)} structure(s) into training and validation sets"
        )
    order = np.random.default_rng(seed).permutation(len(structures))
    valid = sorted(order[:n_valid].tolist())
    chosen = set(valid)
    return (
        [s for k, s in enumerate(structures) if k not in chosen],
        [structures[k] for k in valid],
    )


def elements_of(structures: Iterable[LabeledStructure]) -> list[str]:
    """Chemical symbols present, sorted by atomic number."""
    numbers = sorted({int(z) for s in structures for z in s.atoms.numbers})
    return [chemical_symbols[z] for z in numbers]


def fit_atomic_energies(
    structures: Sequence[LabeledStructure], elements: Sequence[str]
) -> dict[str, float]:
    """Least-squares E0 per element (eV) from total energies.

    Where the compositions cannot separate the elements (every water frame is H128 O64), the
    solution closest to the mean energy per atom is taken: ``E0 = ē + lstsq(A, E - A ē)``
    with the minimum-norm deviation, so well-determined sets get the plain least squares fit.
    """
    labelled = [s for s in structures if s.energy is not None]
    if not labelled:
        raise ValueError("cannot fit E0s: no structure in the training set has an energy")
    index = {symbol: k for k, symbol in enumerate(elements)}
    counts = np.zeros((len(labelled), len(elements)))
    for row, structure in enumerate(labelled):
        for z in structure.atoms.numbers:
            counts[row, index[chemical_symbols[z]]] += 1
    energies = np.array([s.energy for s in labelled])
    mean = energies.sum() / counts.sum()
    deviation = np.linalg.lstsq(counts, energies - counts.sum(axis=1) * mean, rcond=None)[0]
    e0 = mean + deviation
    return {symbol: float(e0[k]) for symbol, k in index.items()}


def read_atomic_energies(path: str | PathLike, keys: LabelKeys = LabelKeys()) -> dict[str, float]:
    """E0 per element (eV) from a file of isolated atoms (one atom per frame)."""
    energies: dict[str, float] = {}
    for structure in read_structures(path, keys):
        if len(structure) != 1:
            raise ValueError(
                f"{structure.source}: an isolated-atoms file needs one atom per frame, "
                f"found {len(structure)}"
            )
        if structure.energy is None:
            raise ValueError(f"{structure.source}: isolated atom without an energy")
        symbol = structure.atoms.get_chemical_symbols()[0]
        if symbol in energies:
            raise ValueError(f"{structure.source}: second isolated {symbol} atom")
        energies[symbol] = structure.energy
    return energies


def atomic_energies_from(
    spec: str | Mapping[str, float],
    structures: Sequence[LabeledStructure],
    elements: Sequence[str],
    keys: LabelKeys = LabelKeys(),
) -> dict[str, float]:
    """E0s from ``"fit"``, a path to an isolated-atoms file, or a mapping symbol -> eV."""
    if isinstance(spec, Mapping):
        energies = {str(k): float(v) for k, v in spec.items()}
        unknown = [k for k in energies if k not in atomic_numbers]
        if unknown:
            raise ValueError(f"e0s: unknown element(s) {unknown}")
    elif spec == "fit":
        return fit_atomic_energies(structures, elements)
    else:
        energies = read_atomic_energies(spec, keys)
    missing = [symbol for symbol in elements if symbol not in energies]
    if missing:
        raise ValueError(f"e0s: no reference energy for element(s) {', '.join(missing)}")
    return {symbol: energies[symbol] for symbol in elements}


def force_rms(structures: Sequence[LabeledStructure]) -> float | None:
    """RMS of all reference force components, eV/Å (``None`` without force labels)."""
    squares = [np.square(s.forces).sum() for s in structures if s.forces is not None]
    components = sum(3 * len(s) for s in structures if s.forces is not None)
    if components == 0:
        return None
    return math.sqrt(float(sum(squares)) / components)
