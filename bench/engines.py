"""mlcalc models in torch-sim, OpenMM and i-PI: agreement with the ASE calculator and cost.

Usage::

    python bench/engines.py --out runs/engines --threads 2          # every stage
    python bench/engines.py --out runs/engines --stages ipi         # one stage

Stages (each saved in ``OUT/results.json`` when done; rerun to do the missing ones):

* ``torchsim_agreement``: the ``water`` model in float64 through ``mlcalc.torchsim`` and through
  the ASE calculator, on a batch of molecules and a batch of periodic cells (liquid water, a
  sheared cell, a slab with vacuum, a cell smaller than the cutoff): largest differences.
* ``torchsim_speed``: Langevin NVT of ``--systems`` boxes of 192 water atoms, all in one
  torch-sim state, against the same boxes run one after another with ASE's ``Langevin`` and the
  calculator (both with a 1 Å neighbour-list skin); and the same for one box. Atom-steps per
  second, timed after one warm-up evaluation.
* ``openmm``: the 192-atom box as an OpenMM System (``MLPotential("mlcalc")``): agreement with
  the calculator (float64, kJ/mol) and time per Verlet step against ASE's ``VelocityVerlet``.
* ``mlmm``: one ``water``-model H2O in rigid TIP3P water (OpenMM-ML's mechanical embedding),
  0.5 fs Verlet NVE for ``--mlmm-ps``: drift of the total energy and time per step.
* ``ipi``: ``examples/ipi/water_pimd.py`` (8 beads, 0.1 ps, two drivers): quantum kinetic
  energy of hydrogen, force checks and wall time.

Nothing here asserts on timings; the table is for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.stress import full_3x3_to_voigt_6_stress

from mlcalc.calculators import load_calculator
from mlcalc.structures import liquid_water

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import run_stage

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("torchsim_agreement", "torchsim_speed", "openmm", "mlmm", "ipi")


def water_molecules() -> list[Atoms]:
    """A water molecule, a water dimer and a hydroxyl radical, non-periodic."""
    dimer = molecule("H2O") + molecule("H2O")
    dimer.positions[3:] += [2.85, 0.2, 0.3]
    return [molecule("H2O"), dimer, molecule("OH")]


def water_cells() -> list[Atoms]:
    """Liquid water, a sheared 24-atom cell, a slab of liquid water with 8 Å of vacuum
    (periodic in all directions, as torch-sim states are) and one molecule in a 3.1 Å cell."""
    liquid = liquid_water()
    sheared = liquid[:24]
    sheared.set_cell(liquid.cell[:] @ [[1, 0, 0], [0.2, 1, 0], [0.1, -0.15, 1]] * 0.6)
    slab = liquid.copy()
    slab.cell[2, 2] += 8.0
    small = molecule("H2O", cell=[3.1, 3.2, 3.3], pbc=True)
    small.rattle(0.01, seed=0)
    return [liquid, sheared, slab, small]


def torchsim_agreement(model_name: str) -> dict[str, float]:
    import torch
    import torch_sim as ts

    from mlcalc.torchsim import MLCalcModel

    model = MLCalcModel.from_pretrained(model_name, device="cpu", dtype="float64")
    calculator = load_calculator(model_name, device="cpu", dtype="float64")
    worst = {"energy_eV": 0.0, "forces_eV_per_A": 0.0, "stress_eV_per_A3": 0.0}
    for batch in (water_molecules(), water_cells()):
        out = model(ts.io.atoms_to_state(batch, torch.device("cpu"), torch.float64))
        start = 0
        for b, atoms in enumerate(batch):
            atoms = atoms.copy()
            atoms.calc = calculator
            forces = out["forces"][start : start + len(atoms)].numpy()
            start += len(atoms)
            differences = {
                "energy_eV": abs(float(out["energy"][b]) - atoms.get_potential_energy()),
                "forces_eV_per_A": float(np.abs(forces - atoms.get_forces()).max()),
            }
            if atoms.pbc.all():
                stress = full_3x3_to_voigt_6_stress(out["stress"][b].numpy())
                differences["stress_eV_per_A3"] = float(np.abs(stress - atoms.get_stress()).max())
            for name, value in differences.items():
                worst[name] = max(worst[name], value)
    return {**worst, "structures": len(water_molecules()) + len(water_cells())}


def torchsim_speed(model_name: str, systems: int, steps: int, dtype: str) -> dict[str, Any]:
    import torch
    import torch_sim as ts
    from ase.md.langevin import Langevin

    from mlcalc.torchsim import MLCalcModel

    model = MLCalcModel.from_pretrained(model_name, device="cpu", dtype=dtype, skin=1.0)
    calculator = load_calculator(model_name, device="cpu", dtype=dtype, skin=1.0)
    rows = {}
    for count in sorted({1, systems}):
        boxes = [liquid_water() for _ in range(count)]
        atom_steps = count * len(boxes[0]) * steps
        state = ts.io.atoms_to_state(boxes, model.device, model.dtype)
        model(state)  # warm-up
        start = time.perf_counter()
        ts.integrate(
            system=state,
            model=model,
            integrator=ts.nvt_langevin,
            n_steps=steps,
            temperature=300.0,
            timestep=0.0005,
        )
        batched = time.perf_counter() - start
        elapsed = 0.0
        for k, atoms in enumerate(boxes):
            atoms.calc = calculator
            atoms.get_forces()  # warm-up (and the first neighbour list)
            dynamics = Langevin(
                atoms,
                0.5 * units.fs,
                temperature_K=300,
                friction=0.01 / units.fs,
                rng=np.random.default_rng(k),
            )
            start = time.perf_counter()
            dynamics.run(steps)
            elapsed += time.perf_counter() - start
        rows[str(count)] = {
            "systems": count,
            "atoms_per_system": len(boxes[0]),
            "torchsim_atom_steps_per_s": atom_steps / batched,
            "ase_atom_steps_per_s": atom_steps / elapsed,
            "ratio": elapsed / batched,
        }
    return {"steps": steps, "dtype": dtype, "threads": torch.get_num_threads(), "rows": rows}


def _water_topology(atoms: Atoms) -> tuple[Any, np.ndarray]:
    from mlcalc.openmm import topology_from_atoms

    return topology_from_atoms(atoms)


def openmm_stage(model_name: str, steps: int, dtype: str) -> dict[str, Any]:
    import openmm
    from ase.md.verlet import VelocityVerlet
    from openmm import unit
    from openmmml import MLPotential

    atoms = liquid_water()
    topology, positions = _water_topology(atoms)
    potential = MLPotential("mlcalc", model=model_name)
    result: dict[str, Any] = {"atoms": len(atoms), "steps": steps, "dtype": dtype}
    precision = {"float32": "single", "float64": "double"}
    for name in ("float64", dtype):
        system = potential.createSystem(topology, precision=precision[name], device="cpu")
        integrator = openmm.VerletIntegrator(0.0005)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(positions)
        if name == "float64" and "energy_difference_kJ_per_mol" not in result:
            state = context.getState(getEnergy=True, getForces=True)
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces = state.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer
            )
            reference = atoms.copy()
            reference.calc = load_calculator(model_name, device="cpu", dtype="float64")
            kj = units.kJ / units.mol
            result["energy_difference_kJ_per_mol"] = abs(
                energy - reference.get_potential_energy() / kj
            )
            result["force_difference_kJ_per_mol_nm"] = float(
                np.abs(np.asarray(forces) - reference.get_forces() * 10 / kj).max()
            )
            result["energy_kJ_per_mol"] = energy
        if name != dtype:
            continue
        context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        integrator.step(1)
        start = time.perf_counter()
        integrator.step(steps)
        result["openmm_ms_per_step"] = 1e3 * (time.perf_counter() - start) / steps
    moving = atoms.copy()
    moving.calc = load_calculator(model_name, device="cpu", dtype=dtype, skin=1.0)
    moving.get_forces()
    dynamics = VelocityVerlet(moving, 0.5 * units.fs)
    start = time.perf_counter()
    dynamics.run(steps)
    result["ase_ms_per_step"] = 1e3 * (time.perf_counter() - start) / steps
    result["ratio"] = result["openmm_ms_per_step"] / result["ase_ms_per_step"]
    return result


def mlmm_stage(model_name: str, picoseconds: float) -> dict[str, Any]:
    import openmm
    from openmm import app, unit
    from openmmml import MLPotential

    topology = app.Topology()
    residue = topology.addResidue("HOH", topology.addChain())
    oxygen, h1, h2 = (
        topology.addAtom(name, app.Element.getBySymbol(name[0]), residue)
        for name in ("O", "H1", "H2")
    )
    topology.addBond(oxygen, h1)
    topology.addBond(oxygen, h2)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(topology, molecule("H2O").positions * 0.1)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(1.8, 1.8, 1.8))
    classical = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=0.8,
        rigidWater=True,  # the ML water's constraints are removed by createMixedSystem
        removeCMMotion=False,  # NVE: a CMMotionRemover changes the kinetic energy
        ewaldErrorTolerance=1e-5,
    )
    mixed = MLPotential("mlcalc", model=model_name).createMixedSystem(
        modeller.topology, classical, [0, 1, 2], precision="double", device="cpu"
    )
    timestep_ps = 0.0005
    integrator = openmm.VerletIntegrator(timestep_ps)
    context = openmm.Context(mixed, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, maxIterations=200)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    steps = round(picoseconds / timestep_ps)
    times, totals = [], []
    start = time.perf_counter()
    for chunk in range(0, steps, 20):
        state = context.getState(getEnergy=True)
        energy = state.getPotentialEnergy() + state.getKineticEnergy()
        times.append(chunk * timestep_ps)
        totals.append(energy.value_in_unit(unit.kilojoule_per_mole))
        integrator.step(20)
    elapsed = time.perf_counter() - start
    slope = float(np.polyfit(times, totals, 1)[0])
    atoms = modeller.topology.getNumAtoms()
    return {
        "atoms": atoms,
        "ml_atoms": 3,
        "picoseconds": picoseconds,
        "ms_per_step": 1e3 * elapsed / steps,
        "drift_kJ_per_mol_per_ps": slope,
        "drift_meV_per_atom_per_ps": slope * units.kJ / units.mol / atoms * 1e3,
        "total_energy_std_kJ_per_mol": float(np.std(totals)),
    }


def ipi_stage(out: Path, model_name: str, beads: int, steps: int, drivers: int) -> dict[str, Any]:
    folder = out / "ipi"
    command = [
        sys.executable,
        str(ROOT / "examples" / "ipi" / "water_pimd.py"),
        "--out",
        str(folder),
        "--model",
        model_name,
        "--beads",
        str(beads),
        "--steps",
        str(steps),
        "--drivers",
        str(drivers),
    ]
    subprocess.run(command, check=True)
    return json.loads((folder / "results.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="water")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--systems", type=int, default=16, help="torch-sim batch (16)")
    parser.add_argument("--steps", type=int, default=20, help="timed MD steps (20)")
    parser.add_argument("--mlmm-ps", type=float, default=1.0)
    parser.add_argument("--beads", type=int, default=8)
    parser.add_argument("--ipi-steps", type=int, default=200, help="0.5 fs each")
    parser.add_argument("--drivers", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    work = {
        "torchsim_agreement": lambda: torchsim_agreement(args.model),
        "torchsim_speed": lambda: torchsim_speed(args.model, args.systems, args.steps, args.dtype),
        "openmm": lambda: openmm_stage(args.model, args.steps, args.dtype),
        "mlmm": lambda: mlmm_stage(args.model, args.mlmm_ps),
        "ipi": lambda: ipi_stage(args.out, args.model, args.beads, args.ipi_steps, args.drivers),
    }
    for stage in args.stages:
        run_stage(results, path, stage, work[stage])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
