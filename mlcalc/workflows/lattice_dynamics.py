"""Harmonic phonons with phonopy: finite-displacement force constants from any ASE calculator,
band structure along a standard path, DOS and thermal properties.

>>> from ase.build import bulk
>>> from ase.calculators.emt import EMT
>>> result = phonons(bulk("Cu"), EMT(), supercell=(3, 3, 3))
>>> result.gamma_frequencies, result.has_imaginary_modes
>>> result.plot("phonons.png")

Units: frequencies THz (imaginary modes are reported as *negative* frequencies, phonopy's
convention), displacement Å, free energy kJ/mol, entropy and heat capacity J/K/mol — all per
mole of *primitive cells* (phonopy's convention: divide by ``n_atoms_primitive`` for per atom).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.cell import Cell
from ase.dft.kpoints import parse_path_string
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from phonopy import Phonopy
from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections
from phonopy.structure.atoms import PhonopyAtoms
from phonopy.structure.cells import get_primitive_matrix_with_auto

from mlcalc.progress import progress_bar
from mlcalc.workflows.checks import require_bulk
from mlcalc.workflows.result import WorkflowResult, not_in_json

#: Frequencies below ``-IMAGINARY_TOLERANCE`` THz count as imaginary modes.
IMAGINARY_TOLERANCE = 0.01
#: 0 to 1000 K in steps of 10 K.
DEFAULT_TEMPERATURES = tuple(range(0, 1001, 10))


@dataclasses.dataclass
class PhononResult(WorkflowResult):
    """Phonon band structure, DOS and thermal properties (THz, kJ/mol, J/K/mol).

    ``band_*`` hold one entry per straight segment of the path; ``band_frequencies[i]`` has
    shape ``(points, bands)``. Ticks of the plot are ``tick_labels`` at ``tick_distances``
    (``"K|U"`` where the path jumps). ``max_residual_force`` (eV/Å) is the largest force in the
    undisplaced supercell: well above ~1e-3 means the structure was not relaxed.
    """

    supercell_matrix: np.ndarray
    primitive_matrix: np.ndarray
    displacement: float
    n_atoms_primitive: int
    max_residual_force: float
    band_qpoints: list[np.ndarray]
    band_distances: list[np.ndarray]
    band_frequencies: list[np.ndarray]
    tick_distances: list[float]
    tick_labels: list[str]
    gamma_frequencies: np.ndarray
    mesh: list[int]
    dos_frequencies: np.ndarray
    dos: np.ndarray
    temperatures: np.ndarray
    free_energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray
    min_frequency: float
    max_frequency: float
    has_imaginary_modes: bool
    phonopy: Phonopy = not_in_json()

    def table(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """Thermal properties per temperature."""
        header = ["temperature_K", "free_energy_kJ_mol", "entropy_J_K_mol", "heat_capacity_J_K_mol"]
        rows = np.column_stack(
            [self.temperatures, self.free_energy, self.entropy, self.heat_capacity]
        )
        return header, rows.tolist()

    def draw(self, figure: Figure) -> None:
        """Band structure (left) and DOS (right) on a shared frequency axis."""
        bands, dos = figure.subplots(
            1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1], "wspace": 0.0}
        )
        for distances, frequencies in zip(self.band_distances, self.band_frequencies, strict=True):
            bands.plot(distances, frequencies, color="C0", linewidth=1.2)
        for axis in (bands, dos):
            axis.axhline(0.0, color="black", linewidth=0.6)
        for distance in self.tick_distances:
            bands.axvline(distance, color="grey", linewidth=0.5)
        bands.set_xticks(self.tick_distances, self.tick_labels)
        bands.set_xlim(self.tick_distances[0], self.tick_distances[-1])
        bands.set_ylim(min(0.0, 1.05 * self.min_frequency), 1.05 * self.max_frequency)
        bands.set_ylabel("frequency (THz)")
        dos.plot(self.dos, self.dos_frequencies, color="C0")
        dos.fill_betweenx(self.dos_frequencies, self.dos, color="C0", alpha=0.3)
        dos.set_xlim(left=0.0)
        dos.set_xticks([])
        dos.set_xlabel("DOS")
        if self.has_imaginary_modes:
            bands.set_title(
                f"imaginary modes (shown negative): min {self.min_frequency:.3f} THz", color="C3"
            )


def phonons(
    structure: Atoms,
    calculator: BaseCalculator,
    *,
    supercell: Sequence[int] | ArrayLike = (2, 2, 2),
    displacement: float = 0.01,
    primitive: str | ArrayLike | None = "auto",
    mesh: Sequence[int] | float = (20, 20, 20),
    band_path: str = "auto",
    special_points: Mapping[str, Sequence[float]] | None = None,
    band_points: int = 51,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    progress: bool | None = None,
) -> PhononResult:
    """Phonons of a periodic ``structure`` (left unchanged) by finite displacements.

    Args:
        structure: a crystal, periodic in all three directions, ideally relaxed.
        calculator: any ASE calculator giving forces (eV/Å).
        supercell: repeats ``(n1, n2, n3)`` or a 3×3 integer matrix of the structure's cell.
        displacement: atomic displacement (Å) of the finite differences.
        primitive: the primitive cell: ``"auto"`` (found by symmetry with spglib), ``None``
            (the structure's own cell), or a 3×3 matrix (or phonopy centring letter such as
            ``"F"``) relative to the structure's cell.
        mesh: Γ-centred q-point mesh for the DOS and thermal properties (numbers, or a
            length in Å as phonopy takes it).
        band_path: ``"auto"`` for ASE's standard path of the primitive cell's Bravais lattice
            (Setyawan–Curtarolo; no seekpath needed) or a path in ASE notation such as
            ``"GXWKGL,UX"`` (``,`` starts a new piece).
        special_points: extra or overriding labelled q-points in fractional coordinates of
            the primitive reciprocal cell, for ``band_path``.
        band_points: q-points on the longest segment (others in proportion).
        temperatures: temperatures (K) of the thermal properties.
        progress: a bar of the displaced supercells on stderr: ``None`` when stderr is a
            terminal, ``True`` always, ``False`` never.

    Force constants are symmetrised (translational invariance); the forces of the undisplaced
    supercell are subtracted from the displaced ones. Imaginary modes are kept as negative
    frequencies and flagged by ``has_imaginary_modes``; phonopy leaves them, and the three
    acoustic modes at Γ, out of the thermal properties.
    """
    require_bulk(
        structure,
        "phonons",
        "for a slab or 2D material add vacuum, set pbc=True and use supercell=(n, n, 1)",
    )
    if displacement <= 0:
        raise ValueError(f"displacement must be > 0 Å, got {displacement}")
    unitcell = PhonopyAtoms(
        symbols=structure.get_chemical_symbols(),
        cell=structure.cell[:],
        scaled_positions=structure.get_scaled_positions(),
        masses=structure.get_masses(),
    )
    # resolved here, explicitly, so that phonopy does not warn about its changed default
    matrix = get_primitive_matrix_with_auto(unitcell, "P" if primitive is None else primitive)
    phonon = Phonopy(unitcell, supercell_matrix=supercell, primitive_matrix=matrix)
    phonon.generate_displacements(distance=displacement)
    reference = _forces(phonon.supercell, calculator)
    displaced = progress_bar(
        phonon.supercells_with_displacements,
        desc="phonons",
        unit="displacements",
        enabled=progress,
    )
    phonon.forces = np.array([_forces(cell, calculator) - reference for cell in displaced])
    phonon.produce_force_constants(show_drift=False)
    phonon.symmetrize_force_constants(show_drift=False)

    qpoints, distances, frequencies, ticks, labels = _band_structure(
        phonon, band_path, special_points, band_points
    )
    phonon.run_mesh(mesh, is_gamma_center=True)
    phonon.run_total_dos()
    phonon.run_thermal_properties(
        temperatures=np.asarray(temperatures, dtype=float), exclude_gamma_acoustic=True
    )
    dos, thermal = phonon.total_dos, phonon.thermal_properties
    all_frequencies = np.concatenate(
        [*(f.ravel() for f in frequencies), phonon.mesh.frequencies.ravel()]
    )
    min_frequency = float(all_frequencies.min())
    return PhononResult(
        supercell_matrix=np.asarray(phonon.supercell_matrix),
        primitive_matrix=phonon.primitive_matrix,
        displacement=displacement,
        n_atoms_primitive=len(phonon.primitive),
        max_residual_force=float(np.linalg.norm(reference, axis=1).max()),
        band_qpoints=qpoints,
        band_distances=distances,
        band_frequencies=frequencies,
        tick_distances=ticks,
        tick_labels=labels,
        gamma_frequencies=phonon.run_qpoints([[0.0, 0.0, 0.0]]).frequencies[0],
        mesh=[int(n) for n in phonon.mesh.mesh_numbers],
        dos_frequencies=dos.frequency_points,
        dos=dos.dos,
        temperatures=thermal.temperatures,
        free_energy=thermal.free_energy,
        entropy=thermal.entropy,
        heat_capacity=thermal.heat_capacity,
        min_frequency=min_frequency,
        max_frequency=float(all_frequencies.max()),
        has_imaginary_modes=min_frequency < -IMAGINARY_TOLERANCE,
        phonopy=phonon,
    )


def _forces(cell: PhonopyAtoms, calculator: BaseCalculator) -> np.ndarray:
    """Forces (eV/Å) on a phonopy supercell."""
    atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
    atoms.calc = calculator
    return atoms.get_forces()


def _band_structure(
    phonon: Phonopy,
    band_path: str,
    special_points: Mapping[str, Sequence[float]] | None,
    band_points: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[float], list[str]]:
    """Run phonopy's band structure along ``band_path``; q-points, distances, frequencies
    per segment and the tick positions and labels of the special points."""
    cell = phonon.primitive.cell
    standard = Cell(cell).bandpath(npoints=0)
    points = {**standard.special_points, **(special_points or {})}
    pieces = parse_path_string(standard.path if band_path == "auto" else band_path)
    if any(len(piece) < 2 for piece in pieces):
        raise ValueError(f"band path {band_path!r}: every piece needs at least two points")
    unknown = sorted({label for piece in pieces for label in piece} - points.keys())
    if unknown:
        raise ValueError(
            f"band path {band_path!r}: {unknown} are not special points of this lattice "
            f"({sorted(points)}); give their fractional coordinates in special_points"
        )
    paths = [[np.asarray(points[label], dtype=float) for label in piece] for piece in pieces]
    qpoints, connections = get_band_qpoints_and_path_connections(
        paths, npoints=band_points, rec_lattice=np.linalg.inv(cell)
    )
    phonon.run_band_structure(qpoints, path_connections=connections)
    band = phonon.band_structure
    distances = [np.asarray(d) for d in band.distances]
    ticks = [float(distances[0][0])] + [float(d[-1]) for d in distances]
    names = [["Γ" if label == "G" else label for label in piece] for piece in pieces]
    labels = [names[0][0]]
    for index, piece in enumerate(names):
        labels += piece[1:]
        if index + 1 < len(names):
            labels[-1] += "|" + names[index + 1][0]
    return qpoints, distances, [np.asarray(f) for f in band.frequencies], ticks, labels
