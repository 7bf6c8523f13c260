"""Minimum-energy paths with the nudged elastic band (``ase.mep.NEB``): barriers and profiles."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic
from ase.mep import NEB, idpp_interpolate, interpolate
from ase.optimize.optimize import Optimizer
from ase.utils.forcecurve import fit_images
from matplotlib.figure import Figure

from mlcalc.progress import follow_steps, progress_bar
from mlcalc.workflows.optimizers import optimizer_class
from mlcalc.workflows.result import WorkflowResult, not_in_json


@dataclasses.dataclass
class NEBResult(WorkflowResult):
    """A relaxed band from initial (image 0) to final (image -1) state.

    Attributes:
        energies: energy of each image, eV.
        path: reaction coordinate of each image: cumulative distance along the band, Å.
        fit_path, fit_energies: ASE's force-informed cubic spline through the images
            (``ase.utils.forcecurve.fit_images``, as ``NEBTools``): Å and eV relative to the
            initial state.
        barrier_forward: maximum of the spline relative to the initial state, eV.
        barrier_reverse: the same relative to the final state, eV.
        reaction_energy: ``E_final - E_initial``, eV.
        climbing_image: index of the climbing image (the highest one), ``None`` without.
        saddle_max_force: largest force on an atom of the highest image, eV/Å (fixed atoms
            excluded).
        max_force: largest NEB force (spring and projected) on any interior atom, eV/Å: the
            quantity the optimiser converged below ``fmax``.
        converged: whether ``max_force < fmax`` was reached within ``steps``.
        steps: optimiser steps taken.
        images: the final band, each image with its energy and forces (in memory only).
    """

    energies: np.ndarray
    path: np.ndarray
    fit_path: np.ndarray
    fit_energies: np.ndarray
    barrier_forward: float
    barrier_reverse: float
    reaction_energy: float
    climbing_image: int | None
    saddle_max_force: float
    max_force: float
    converged: bool
    steps: int
    images: list[Atoms] = not_in_json()

    def table(self) -> tuple[list[str], list[list[Any]]]:
        relative = self.energies - self.energies[0]
        rows = [
            [k, s, e, de]
            for k, (s, e, de) in enumerate(zip(self.path, self.energies, relative, strict=True))
        ]
        return ["image", "path_angstrom", "energy_eV", "relative_energy_eV"], rows

    def draw(self, figure: Figure) -> None:
        axes = figure.subplots()
        axes.plot(self.fit_path, self.fit_energies, "k-", lw=1.5, label="spline")
        axes.plot(self.path, self.energies - self.energies[0], "o", color="C0", label="images")
        if self.climbing_image is not None:
            k = self.climbing_image
            axes.plot(
                self.path[k],
                self.energies[k] - self.energies[0],
                "*",
                ms=14,
                color="C3",
                label="climbing image",
            )
        axes.set_xlabel("reaction coordinate (Å)")
        axes.set_ylabel("E - E(initial) (eV)")
        axes.set_title(
            f"barrier {self.barrier_forward:.3f} eV (reverse {self.barrier_reverse:.3f} eV), "
            f"ΔE = {self.reaction_energy:.3f} eV"
        )
        axes.legend(fontsize="small")


def _check_compatible(images: Sequence[Atoms], names: Sequence[str]) -> None:
    """Refuse images that cannot form one band, naming the problem."""
    first, name0 = images[0], names[0]
    for atoms, name in zip(images[1:], names[1:], strict=True):
        if len(atoms) != len(first):
            raise ValueError(
                f"{name} has {len(atoms)} atoms but {name0} has {len(first)}: "
                "NEB end points need the same atoms"
            )
        if not np.array_equal(atoms.numbers, first.numbers):
            if sorted(atoms.numbers) != sorted(first.numbers):
                what = f"a different composition ({atoms.symbols} vs {first.symbols})"
            else:
                k = int(np.flatnonzero(atoms.numbers != first.numbers)[0])
                what = (
                    f"the same atoms in a different order (atom {k} is {atoms.symbols[k]} in "
                    f"{name} but {first.symbols[k]} in {name0}); reorder them"
                )
            raise ValueError(f"{name} and {name0} have {what}")
        if not np.array_equal(atoms.pbc, first.pbc):
            raise ValueError(
                f"{name} has pbc={atoms.pbc.tolist()} but {name0} has pbc={first.pbc.tolist()}"
            )
        if not np.allclose(atoms.cell[:], first.cell[:], atol=1e-6):
            raise ValueError(
                f"{name} and {name0} have different cells ({atoms.cell[:].tolist()} vs "
                f"{first.cell[:].tolist()}): NEB needs a fixed cell"
            )


def _freeze(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` carrying its current energy and (unconstrained) forces."""
    frozen = atoms.copy()
    frozen.calc = SinglePointCalculator(
        frozen,
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(apply_constraint=False),
    )
    return frozen


def _make_continuous(band: list[Atoms]) -> None:
    """Translate atoms of each image by lattice vectors to their shortest periodic
    displacement from the previous image, so that the band has no jumps."""
    for previous, atoms in pairwise(band):
        step = find_mic(atoms.positions - previous.positions, atoms.cell, atoms.pbc)[0]
        atoms.set_positions(previous.positions + step, apply_constraint=False)


def neb(
    initial: Atoms | None,
    final: Atoms | None,
    calculator: BaseCalculator | Callable[[], BaseCalculator],
    *,
    n_images: int = 5,
    images: Sequence[Atoms] | None = None,
    climb: bool = True,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str | type[Optimizer] = "FIRE",
    interpolation: str = "idpp",
    method: str = "improvedtangent",
    spring_constant: float = 0.1,
    relax_endpoints: bool = False,
    mic: bool = True,
    allow_shared_calculator: bool = False,
    logfile: str | None = None,
    progress: bool | None = None,
) -> NEBResult:
    """Nudged elastic band between two structures, with a climbing image.

    The caller's structures are not modified (the band is built from copies).

    Args:
        initial, final: end points: same atoms in the same order, same cell and pbc.
            Constraints (e.g. ``FixAtoms`` on a slab's bottom layers) are kept.
        calculator: a calculator factory, called once per image, end points included (e.g.
            ``EMT`` or ``lambda: NEMPCalculator(model)``); or one calculator shared by all
            images when ``allow_shared_calculator=True``. Sharing is safe for calculators that
            recompute whenever the positions change (EMT, mlcalc's, most ML potentials) and
            costs nothing extra, since every interior image moves at every step and the end
            points are evaluated once; it is not for calculators that keep per-structure state
            (e.g. DFT codes restarting from the previous wavefunction).
        n_images: number of interior images (ignored when ``images`` is given).
        images: instead of ``initial``/``final`` (which must then be ``None``), a whole
            starting band ``[initial, ..., final]``, e.g. from an earlier run; it is not
            re-interpolated.
        climb: use a climbing image (the highest one climbs to the saddle point).
        fmax: convergence threshold on the NEB forces, eV/Å.
        steps: maximum optimiser steps.
        optimizer: ``"FIRE"``, ``"BFGS"``, ``"LBFGS"``, ``"MDMin"`` or an ASE optimiser class.
        interpolation: ``"idpp"`` (image-dependent pair potential) or ``"linear"``.
        method: ``ase.mep.NEB`` tangent method (``"improvedtangent"``, ``"eb"``, ...).
        spring_constant: spring constant between images, eV/Å².
        relax_endpoints: first relax the end points (copies) with the same optimiser to
            ``fmax``.
        mic: in periodic directions, move every atom along its shortest periodic displacement
            between consecutive images (the final state's atoms are translated by lattice
            vectors accordingly); ``False`` takes the positions as given.
        logfile: optimiser log (``"-"`` for stdout); default none.
        progress: a count of the band's optimiser steps on stderr: ``None`` when stderr is a
            terminal, ``True`` always, ``False`` never.
    """
    if images is not None:
        if initial is not None or final is not None:
            raise ValueError("give either initial and final, or images, not both")
        if len(images) < 3:
            raise ValueError(f"images must hold at least 3 structures, got {len(images)}")
        _check_compatible(images, ["images[0]"] + [f"images[{k}]" for k in range(1, len(images))])
        band = [atoms.copy() for atoms in images]
    else:
        if initial is None or final is None:
            raise ValueError("give initial and final structures (or images)")
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        _check_compatible([initial, final], ["initial", "final"])
        band = [initial.copy() for _ in range(n_images + 1)] + [final.copy()]
    if interpolation not in ("idpp", "linear"):
        raise ValueError(f"interpolation must be 'idpp' or 'linear', got {interpolation!r}")
    if isinstance(calculator, BaseCalculator):
        if not allow_shared_calculator:
            raise ValueError(
                "NEB images need their own calculators: pass a factory (e.g. EMT, or "
                "lambda: NEMPCalculator(model)), or allow_shared_calculator=True"
            )
        calculators = [calculator] * len(band)
    else:
        calculators = [calculator() for _ in band]
    optimizer_type = optimizer_class(optimizer)
    for atoms, calc in zip(band, calculators, strict=True):
        atoms.calc = calc
    if relax_endpoints:
        for atoms, name in ((band[0], "initial"), (band[-1], "final")):
            with optimizer_type(atoms, logfile=logfile) as relaxation:
                if not relaxation.run(fmax=fmax, steps=steps):
                    raise RuntimeError(
                        f"relaxing the {name} state did not converge in {steps} steps"
                    )
    if mic:
        _make_continuous(band)
    band[0], band[-1] = _freeze(band[0]), _freeze(band[-1])

    elastic_band = NEB(
        band,
        k=spring_constant,
        climb=climb,
        method=method,
        allow_shared_calculator=allow_shared_calculator,
    )
    if images is None:
        interpolate(band, apply_constraint=False)
        if interpolation == "idpp":
            idpp_interpolate(elastic_band, traj=None, log=None, mic=mic)
    bar = progress_bar(desc="neb", unit="steps", enabled=progress)
    with optimizer_type(elastic_band, logfile=logfile) as relaxation, bar:
        follow_steps(bar, relaxation)
        converged = bool(relaxation.run(fmax=fmax, steps=steps))
        taken = relaxation.nsteps
    max_force = float(np.linalg.norm(elastic_band.get_forces(), axis=1).max())
    relaxed = [band[0], *(_freeze(atoms) for atoms in band[1:-1]), band[-1]]
    fit = fit_images(relaxed)
    energies = np.array([atoms.get_potential_energy() for atoms in relaxed])
    highest = 1 + int(np.argmax(energies[1:-1]))
    barrier = float(np.max(fit.fit_energies))
    reaction = float(energies[-1] - energies[0])
    return NEBResult(
        energies=energies,
        path=np.asarray(fit.path),
        fit_path=np.asarray(fit.fit_path),
        fit_energies=np.asarray(fit.fit_energies),
        barrier_forward=barrier,
        barrier_reverse=barrier - reaction,
        reaction_energy=reaction,
        climbing_image=highest if climb else None,
        saddle_max_force=float(np.linalg.norm(relaxed[highest].get_forces(), axis=1).max()),
        max_force=max_force,
        converged=converged,
        steps=int(taken),
        images=relaxed,
    )
