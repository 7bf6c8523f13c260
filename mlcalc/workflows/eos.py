"""Energy–volume curves: isotropic strain scans and equation-of-state fits (``ase.eos``)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.eos import EquationOfState, eos_names
from ase.optimize import BFGS
from ase.optimize.optimize import Optimizer
from matplotlib.figure import Figure
from tqdm import tqdm

from mlcalc.progress import progress_bar
from mlcalc.workflows.checks import require_bulk
from mlcalc.workflows.result import WorkflowResult, not_in_json

#: Equations of state whose third fit parameter is B′ (``ase.eos`` order: E0, B0, B′, V0).
_BPRIME_IS_PARAMETER = frozenset(
    {"murnaghan", "birch", "birchmurnaghan", "pouriertarantola", "vinet", "anton-schmidt"}
)
#: Smallest number of volumes: one more than the four parameters of the fits.
MIN_POINTS = 5


@dataclasses.dataclass
class EOSFit:
    """The scan and the equation-of-state fit of one structure.

    ``volumes`` (Å³) and ``energies`` (eV) are for the whole cell, one per strain;
    ``v0``/``e0`` are the fitted equilibrium volume (Å³) and energy (eV) of the cell and
    ``v0_per_atom``/``e0_per_atom`` the same per atom; ``b0`` is the bulk modulus (GPa) and
    ``bprime`` its pressure derivative B′ = dB/dP at V0 (dimensionless).
    """

    num_atoms: int
    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    v0_per_atom: float
    e0: float
    e0_per_atom: float
    b0: float
    bprime: float
    #: ASE's fitted equation of state, in per-atom units (Å³/atom, eV/atom); memory only.
    equation_of_state: EquationOfState = not_in_json()


@dataclasses.dataclass
class EVResult(WorkflowResult):
    """E–V curves of one or more structures (polymorphs), keyed by label in ``fits``.

    ``strains`` are the linear strains applied to every cell (cell × (1 + strain)).
    """

    eos: str
    strains: np.ndarray
    relax_ions: bool
    fits: dict[str, EOSFit]

    def table(self) -> tuple[list[str], list[list]]:
        header = [
            "label",
            "strain",
            "volume_A3_per_atom",
            "energy_eV_per_atom",
            "volume_A3",
            "energy_eV",
        ]
        rows = [
            [label, strain, volume / fit.num_atoms, energy / fit.num_atoms, volume, energy]
            for label, fit in self.fits.items()
            for strain, volume, energy in zip(self.strains, fit.volumes, fit.energies, strict=True)
        ]
        return header, rows

    def draw(self, figure: Figure) -> None:
        axes = figure.add_subplot()
        for index, (label, fit) in enumerate(self.fits.items()):
            color = f"C{index}"
            *_, curve_v, curve_e, _, _ = fit.equation_of_state.getplotdata()
            legend = f"{label}: B0 = {fit.b0:.1f} GPa, B′ = {fit.bprime:.2f}"
            axes.plot(curve_v, curve_e, color=color, label=legend)
            axes.plot(fit.volumes / fit.num_atoms, fit.energies / fit.num_atoms, "o", color=color)
            axes.plot(fit.v0_per_atom, fit.e0_per_atom, "x", color=color, markersize=9)
        axes.set_xlabel("volume (Å³/atom)")
        axes.set_ylabel("energy (eV/atom)")
        relaxed = ", ions relaxed" if self.relax_ions else ""
        axes.set_title(f"E–V curves, {self.eos} fit{relaxed}")
        axes.legend()


def ev_curve(
    structures: Atoms | Sequence[Atoms],
    calculator: Calculator,
    *,
    strains: float | Sequence[float] = 0.03,
    num_points: int | None = None,
    relax_ions: bool = False,
    fmax: float = 0.01,
    max_steps: int = 200,
    optimizer: type[Optimizer] = BFGS,
    eos: str = "birchmurnaghan",
    labels: Sequence[str] | None = None,
    progress: bool | None = None,
) -> EVResult:
    """Scale each cell isotropically around the given structure and fit an equation of state.

    Args:
        structures: one periodic structure or a list (e.g. polymorphs, plotted together);
            they are not modified. Start near equilibrium: the fitted minimum must lie inside
            the scanned volumes.
        calculator: any ASE calculator, used for every structure.
        strains: linear strains of the cell (cell × (1 + strain); volume × (1 + strain)³):
            a number ``s`` for ``num_points`` (default 9) strains evenly spaced in [-s, s], or
            the strains themselves.
        num_points: number of strains when ``strains`` is a number.
        relax_ions: relax the atomic positions at each volume (cell fixed) with
            ``optimizer`` down to ``fmax`` (eV/Å) in at most ``max_steps`` steps.
        eos: an ``ase.eos`` equation of state (default Birch–Murnaghan). Where B′ is not one
            of its parameters (``sj``, ``taylor``, ``p3``) it is taken from the fitted curve as
            B′ = -1 - V0 E‴(V0) / E″(V0).
        labels: one name per structure (default: chemical formulas, numbered if repeated).
        progress: a bar of the volumes on stderr: ``None`` when stderr is a terminal,
            ``True`` always, ``False`` never.

    Returns:
        :class:`EVResult` with V0 (Å³ and Å³/atom), E0 (eV and eV/atom), B0 (GPa) and B′ per
        structure plus the raw volumes and energies.
    """
    structures = [structures] if isinstance(structures, Atoms) else list(structures)
    strains = _strain_grid(strains, num_points)
    if eos not in eos_names:
        raise ValueError(f"unknown equation of state {eos!r}; choose from {eos_names}")
    labels = _labels(structures, labels)
    for label, atoms in zip(labels, structures, strict=True):
        require_bulk(atoms, f"{label}: an E–V curve", "a molecule or slab has no bulk volume")
    fits = {}
    total = len(structures) * len(strains)
    with progress_bar(desc="ev", unit="volumes", total=total, enabled=progress) as bar:
        for label, atoms in zip(labels, structures, strict=True):
            volumes, energies = _scan(
                atoms, calculator, strains, relax_ions, fmax, max_steps, optimizer, label, bar
            )
            fits[label] = _fit(volumes, energies, len(atoms), eos, label)
    return EVResult(eos=eos, strains=strains, relax_ions=relax_ions, fits=fits)


def _strain_grid(strains: float | Sequence[float], num_points: int | None) -> np.ndarray:
    if np.ndim(strains) == 0:
        strains = np.linspace(-strains, strains, 9 if num_points is None else num_points)
    elif num_points is not None:
        raise ValueError("give num_points only with a single maximum strain, not a strain list")
    strains = np.unique(np.asarray(strains, dtype=float))
    if strains.size < MIN_POINTS:
        raise ValueError(
            f"an equation-of-state fit needs at least {MIN_POINTS} distinct volumes, "
            f"got {strains.size}"
        )
    if strains.min() <= -1.0:
        raise ValueError(f"strains must be > -1 (the cell would invert), got {strains.min()}")
    return strains


def _labels(structures: list[Atoms], labels: Sequence[str] | None) -> list[str]:
    if not structures:
        raise ValueError("no structures given")
    if labels is None:
        labels = [atoms.get_chemical_formula() for atoms in structures]
        if len(set(labels)) < len(labels):
            labels = [f"{label} #{index + 1}" for index, label in enumerate(labels)]
    labels = list(labels)
    if len(labels) != len(structures) or len(set(labels)) < len(labels):
        raise ValueError(f"need one distinct label per structure, got {labels}")
    return labels


def _scan(
    structure: Atoms,
    calculator: Calculator,
    strains: np.ndarray,
    relax_ions: bool,
    fmax: float,
    max_steps: int,
    optimizer: type[Optimizer],
    label: str,
    bar: tqdm,
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (Å³) and energies (eV) of copies of ``structure`` scaled by ``1 + strains``
    (``bar`` advances once per volume)."""
    volumes, energies = [], []
    for strain in strains:
        atoms = structure.copy()
        atoms.set_cell(structure.cell[:] * (1.0 + strain), scale_atoms=True)
        atoms.calc = calculator
        if relax_ions and not optimizer(atoms, logfile=None).run(fmax=fmax, steps=max_steps):
            warnings.warn(
                f"{label}: ions not relaxed to fmax={fmax} eV/Å in {max_steps} steps at "
                f"strain {strain:+.4f}",
                stacklevel=3,
            )
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
        bar.update()
    return np.array(volumes), np.array(energies)


def _fit(volumes: np.ndarray, energies: np.ndarray, num_atoms: int, eos: str, label: str) -> EOSFit:
    fit = EquationOfState(volumes / num_atoms, energies / num_atoms, eos=eos)
    v0, e0, b0 = fit.fit(warn=False)
    if not volumes.min() / num_atoms < v0 < volumes.max() / num_atoms:
        raise ValueError(
            f"{label}: the fitted minimum V0 = {v0:.3f} Å³/atom lies outside the scanned "
            f"{volumes.min() / num_atoms:.3f}–{volumes.max() / num_atoms:.3f} Å³/atom; start "
            "nearer equilibrium or widen the strains"
        )
    return EOSFit(
        num_atoms=num_atoms,
        volumes=volumes,
        energies=energies,
        v0=float(v0 * num_atoms),
        v0_per_atom=float(v0),
        e0=float(e0 * num_atoms),
        e0_per_atom=float(e0),
        b0=float(b0 / units.GPa),
        bprime=pressure_derivative(fit),
        equation_of_state=fit,
    )


def pressure_derivative(fit: EquationOfState) -> float:
    """B′ = dB/dP at V0 of a fitted ``ase.eos.EquationOfState``.

    The fit parameter itself where the equation of state has one; otherwise (``sj``,
    ``taylor``, ``p3``) from B = V E″ and P = -E′ of the fitted curve,
    B′ = -1 - V0 E‴(V0) / E″(V0), with five-point finite differences (step 10⁻³ V0).
    """
    if fit.eos_string in _BPRIME_IS_PARAMETER:
        return float(fit.eos_parameters[2])
    step = 1e-3 * fit.v0
    volumes = fit.v0 + step * np.arange(-2, 3)
    if fit.eos_string == "sj":
        energies = fit.fit0(volumes ** (-1.0 / 3.0))
    else:
        energies = fit.func(volumes, *fit.eos_parameters)
    second = np.dot([-1.0, 16.0, -30.0, 16.0, -1.0], energies) / (12.0 * step**2)
    third = np.dot([-1.0, 2.0, 0.0, -2.0, 1.0], energies) / (2.0 * step**3)
    return float(-1.0 - fit.v0 * third / second)
