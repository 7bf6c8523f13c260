"""Geometry relaxation (ions, or ions and cell) and molecular dynamics with ASE's integrators.

>>> from ase.build import bulk
>>> from ase.calculators.emt import EMT
>>> relaxed = relax(bulk("Cu", a=3.7), EMT(), cell=True).atoms
>>> run = md(relaxed * (3, 3, 3), EMT(), ensemble="nvt-langevin", temperature_K=300, steps=500)
>>> run.temperature_mean, run.plot("md.png")

Both work on a copy of the structure and return the final one in ``result.atoms``.
Trajectories are ASE ``.traj`` files and logs are the text logs of ASE's optimisers and
``MDLogger``, written step by step as ASE writes them (overwritten, not appended).
Units: energy eV, force eV/Å, stress and pressure GPa, time fs (inputs) and ps (series),
temperature K, volume Å³.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from os import PathLike
from typing import IO, Any, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from ase.filters import FrechetCellFilter
from ase.md import (
    MTKNPT,
    IsotropicMTKNPT,
    Langevin,
    NoseHooverChainNVT,
    VelocityVerlet,
    thermalize_momenta,
)
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary
from matplotlib.figure import Figure

from mlcalc.progress import follow_steps, progress_bar
from mlcalc.workflows.checks import require_bulk
from mlcalc.workflows.optimizers import optimizer_class
from mlcalc.workflows.result import WorkflowResult, not_in_json

ENSEMBLES = ("nve", "nvt-langevin", "nvt-nose-hoover", "npt", "npt-isotropic")


def _open_log(stack: ExitStack, path: str | PathLike | None) -> IO[str] | None:
    """The log file opened for writing (replacing an old one), closed with ``stack``."""
    return None if path is None else stack.enter_context(open(path, "w", encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# relaxation


@dataclasses.dataclass
class RelaxResult(WorkflowResult):
    """A relaxation: per-step potential energy (eV) and largest force (eV/Å; with
    ``cell=True`` the cell's generalised forces count too, as the optimiser sees them),
    then the final energy, largest atomic force, stress (GPa, Voigt xx yy zz yz xz xy; ``None``
    if not fully periodic), cell (Å) and volume (Å³)."""

    optimizer: str
    cell_relaxed: bool
    pressure: float
    fmax: float
    converged: bool
    n_steps: int
    energies: np.ndarray
    max_forces: np.ndarray
    final_energy: float
    final_max_force: float
    final_stress: np.ndarray | None
    initial_volume: float | None
    final_volume: float | None
    final_cell: np.ndarray
    atoms: Atoms = not_in_json()

    def table(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """Energy and largest force per optimiser step."""
        steps = np.arange(len(self.energies))
        return ["step", "energy_eV", "max_force_eV_A"], np.column_stack(
            [steps, self.energies, self.max_forces]
        ).tolist()

    def draw(self, figure: Figure) -> None:
        """Energy relative to the final one, and the largest force, per step."""
        energy, force = figure.subplots(2, 1, sharex=True)
        energy.plot(self.energies - self.final_energy, marker=".", color="C0")
        energy.set_ylabel("E − E_final (eV)")
        force.semilogy(self.max_forces, marker=".", color="C1")
        force.axhline(self.fmax, color="grey", linestyle="--", label=f"fmax = {self.fmax} eV/Å")
        force.set_ylabel("max force (eV/Å)")
        force.set_xlabel("step")
        force.xaxis.get_major_locator().set_params(integer=True)
        force.legend()
        status = "converged" if self.converged else "NOT converged"
        energy.set_title(
            f"{self.optimizer}, {'ions + cell' if self.cell_relaxed else 'ions'}: "
            f"{status} in {self.n_steps} steps"
        )


def relax(
    structure: Atoms,
    calculator: BaseCalculator,
    *,
    fmax: float = 0.01,
    steps: int = 500,
    cell: bool = False,
    optimizer: str = "BFGS",
    trajectory: str | PathLike | None = None,
    logfile: str | PathLike | None = None,
    pressure: float = 0.0,
) -> RelaxResult:
    """Relax a copy of ``structure`` (left unchanged) until every force is below ``fmax``.

    Args:
        fmax: force threshold (eV/Å); with ``cell=True`` it applies to the cell's generalised
            forces (stress × volume) too.
        steps: most optimiser steps.
        cell: also relax the cell (``ase.filters.FrechetCellFilter``); needs a fully
            periodic structure.
        optimizer: ``"BFGS"``, ``"FIRE"``, ``"LBFGS"`` or ``"MDMin"`` from ``ase.optimize``.
        trajectory: ASE ``.traj`` file of every step (the atoms, without the filter).
        logfile: the optimiser's text log.
        pressure: external hydrostatic pressure (GPa) for the cell relaxation.
    """
    optimizer_type = optimizer_class(optimizer)
    if cell:
        require_bulk(structure, "relax(cell=True)")
    elif pressure != 0.0:
        raise ValueError("pressure needs cell=True (an ions-only relaxation keeps the cell)")
    if fmax <= 0 or steps < 0:
        raise ValueError(f"need fmax > 0 and steps >= 0, got fmax={fmax}, steps={steps}")
    atoms = structure.copy()
    atoms.calc = calculator
    target = FrechetCellFilter(atoms, scalar_pressure=pressure * units.GPa) if cell else atoms
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    initial_volume = atoms.get_volume() if periodic else None
    energies: list[float] = []
    max_forces: list[float] = []

    def record() -> None:
        energies.append(atoms.get_potential_energy())
        max_forces.append(float(np.linalg.norm(target.get_forces(), axis=1).max()))

    with ExitStack() as stack:
        dynamics = optimizer_type(target, logfile=_open_log(stack, logfile), trajectory=trajectory)
        dynamics.attach(record)
        converged = bool(dynamics.run(fmax=fmax, steps=steps))
    return RelaxResult(
        optimizer=optimizer,
        cell_relaxed=cell,
        pressure=pressure,
        fmax=fmax,
        converged=converged,
        n_steps=dynamics.nsteps,
        energies=np.array(energies),
        max_forces=np.array(max_forces),
        final_energy=atoms.get_potential_energy(),
        final_max_force=float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        final_stress=atoms.get_stress() / units.GPa if periodic else None,
        initial_volume=initial_volume,
        final_volume=atoms.get_volume() if periodic else None,
        final_cell=atoms.cell[:],
        atoms=atoms,
    )


# ---------------------------------------------------------------------------------------------
# molecular dynamics


@dataclasses.dataclass
class MDResult(WorkflowResult):
    """Time series of an MD run, sampled every ``interval`` steps (time ps, energies eV,
    temperature K, volume Å³ or ``None`` if not fully periodic).

    ``conserved_energy`` is the integrator's conserved quantity (the total energy for NVE,
    with the thermostat and barostat terms for Nosé–Hoover and MTK; ``None`` for Langevin)
    and ``energy_drift`` its fitted slope per atom (eV/atom/ps). ``temperature_mean`` and
    ``temperature_std`` are over the second half of the samples (the first is equilibration).
    """

    ensemble: str
    temperature_K: float
    timestep_fs: float
    steps: int
    interval: int
    n_atoms: int
    time: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature: np.ndarray
    volume: np.ndarray | None
    conserved_energy: np.ndarray | None
    temperature_mean: float
    temperature_std: float
    energy_drift: float | None
    atoms: Atoms = not_in_json()

    def table(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """One row per sample."""
        columns = {
            "time_ps": self.time,
            "potential_energy_eV": self.potential_energy,
            "kinetic_energy_eV": self.kinetic_energy,
            "total_energy_eV": self.total_energy,
            "temperature_K": self.temperature,
            "volume_A3": self.volume,
            "conserved_energy_eV": self.conserved_energy,
        }
        columns = {name: values for name, values in columns.items() if values is not None}
        return list(columns), np.column_stack(list(columns.values())).tolist()

    def draw(self, figure: Figure) -> None:
        """Energies per atom, temperature and (if periodic) volume against time."""
        axes = figure.subplots(2 if self.volume is None else 3, 1, sharex=True)
        per_atom = 1.0 / self.n_atoms
        energy = axes[0]
        energy.plot(
            self.time,
            (self.potential_energy - self.potential_energy[0]) * per_atom,
            label="potential",
        )
        energy.plot(
            self.time, (self.kinetic_energy - self.kinetic_energy[0]) * per_atom, label="kinetic"
        )
        energy.plot(self.time, (self.total_energy - self.total_energy[0]) * per_atom, label="total")
        if self.conserved_energy is not None and self.ensemble != "nve":
            energy.plot(
                self.time,
                (self.conserved_energy - self.conserved_energy[0]) * per_atom,
                label="conserved",
                linestyle="--",
            )
        energy.set_ylabel("ΔE (eV/atom)")
        energy.legend(fontsize="small", ncol=2)
        axes[1].plot(self.time, self.temperature, color="C3")
        axes[1].axhline(self.temperature_K, color="grey", linestyle="--")
        axes[1].set_ylabel("T (K)")
        if self.volume is not None:
            axes[2].plot(self.time, self.volume, color="C4")
            axes[2].set_ylabel("V (Å³)")
        axes[-1].set_xlabel("time (ps)")
        axes[0].set_title(
            f"{self.ensemble}: T = {self.temperature_mean:.0f} ± {self.temperature_std:.0f} K"
        )


def md(
    structure: Atoms,
    calculator: BaseCalculator,
    *,
    ensemble: Literal["nve", "nvt-langevin", "nvt-nose-hoover", "npt", "npt-isotropic"] = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    friction: float = 0.01,
    tdamp: float = 100.0,
    pdamp: float = 1000.0,
    pressure: float = 0.0,
    thermalize: bool = True,
    trajectory: str | PathLike | None = None,
    logfile: str | PathLike | None = None,
    interval: int = 10,
    seed: int | None = 0,
    progress: bool | None = False,
) -> MDResult:
    """Run MD on a copy of ``structure`` (left unchanged); the last frame is ``result.atoms``.

    Args:
        ensemble: ``"nve"`` (velocity Verlet), ``"nvt-langevin"`` (``Langevin``, no
            centre-of-mass constraint), ``"nvt-nose-hoover"`` (``NoseHooverChainNVT``),
            ``"npt"`` (``MTKNPT``: Nosé–Hoover chains, volume and shape of the cell) or
            ``"npt-isotropic"`` (``IsotropicMTKNPT``: volume only); NPT needs stress.
        temperature_K: thermostat target, and temperature of the initial velocities.
        timestep_fs: time step (fs).
        steps: number of steps.
        friction: Langevin friction (1/fs).
        tdamp: Nosé–Hoover thermostat time constant (fs), typically 100 time steps.
        pdamp: MTK barostat time constant (fs), typically 1000 time steps.
        pressure: NPT external pressure (GPa).
        thermalize: draw Maxwell–Boltzmann velocities at ``temperature_K`` (centre-of-mass
            motion removed); ``False`` keeps the structure's momenta.
        trajectory: ASE ``.traj`` file, a frame every ``interval`` steps (and step 0).
        logfile: ``MDLogger`` text log, a line every ``interval`` steps.
        interval: sampling interval of the time series, trajectory and log (steps).
        seed: seed of the initial velocities and the Langevin noise.
        progress: a progress bar on stderr: ``True`` always, ``None`` when stderr is a
            terminal, ``False`` never.
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {list(ENSEMBLES)}, got {ensemble!r}")
    if ensemble.startswith("npt"):
        require_bulk(structure, f"md(ensemble={ensemble!r})")
    if steps < 1 or interval < 1 or timestep_fs <= 0 or temperature_K < 0:
        raise ValueError(
            f"need steps >= 1, interval >= 1, timestep_fs > 0 and temperature_K >= 0, got "
            f"{steps}, {interval}, {timestep_fs}, {temperature_K}"
        )
    atoms = structure.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    if thermalize:
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
        Stationary(atoms)
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    integrator = integrator_for(
        ensemble,
        temperature_K,
        friction * (1 / units.fs),
        tdamp * units.fs,
        pdamp * units.fs,
        pressure * units.GPa,
        rng,
    )
    samples: list[tuple[float, ...]] = []

    with ExitStack() as stack:
        dynamics = integrator(
            atoms,
            timestep=timestep_fs * units.fs,
            trajectory=trajectory,
            logfile=_open_log(stack, logfile),
            loginterval=interval,
        )
        conserved = getattr(dynamics, "get_conserved_energy", None)
        if ensemble == "nve":
            conserved = atoms.get_total_energy

        def sample() -> None:
            samples.append(
                (
                    dynamics.get_time() / (1000 * units.fs),
                    atoms.get_potential_energy(),
                    atoms.get_kinetic_energy(),
                    atoms.get_temperature(),
                    atoms.get_volume() if periodic else np.nan,
                    conserved() if conserved is not None else np.nan,
                )
            )

        dynamics.attach(sample, interval=interval)
        bar = stack.enter_context(
            progress_bar(desc=f"md {ensemble}", unit="steps", total=steps, enabled=progress)
        )
        follow_steps(bar, dynamics)
        dynamics.run(steps)
    time_ps, potential, kinetic, temperature, volume, conserved_energy = np.array(samples).T
    second_half = temperature[len(temperature) // 2 :]
    drift = None
    if conserved is not None and len(time_ps) > 1:
        drift = float(np.polyfit(time_ps, conserved_energy, 1)[0]) / len(atoms)
    return MDResult(
        ensemble=ensemble,
        temperature_K=temperature_K,
        timestep_fs=timestep_fs,
        steps=steps,
        interval=interval,
        n_atoms=len(atoms),
        time=time_ps,
        potential_energy=potential,
        kinetic_energy=kinetic,
        total_energy=potential + kinetic,
        temperature=temperature,
        volume=volume if periodic else None,
        conserved_energy=conserved_energy if conserved is not None else None,
        temperature_mean=float(second_half.mean()),
        temperature_std=float(second_half.std()),
        energy_drift=drift,
        atoms=atoms,
    )


def integrator_for(
    ensemble: str,
    temperature_K: float,
    friction: float,
    tdamp: float,
    pdamp: float,
    pressure: float,
    rng: np.random.Generator,
) -> Callable[..., MolecularDynamics]:
    """The ASE integrator class of ``ensemble`` with its options bound (ASE units)."""
    thermostat = {"temperature_K": temperature_K, "tdamp": tdamp}
    barostat = {**thermostat, "pressure_au": pressure, "pdamp": pdamp}
    return {
        "nve": VelocityVerlet,
        "nvt-langevin": partial(
            Langevin, temperature_K=temperature_K, friction=friction, fixcm=False, rng=rng
        ),
        "nvt-nose-hoover": partial(NoseHooverChainNVT, **thermostat),
        "npt": partial(MTKNPT, **barostat),
        "npt-isotropic": partial(IsotropicMTKNPT, **barostat),
    }[ensemble]
