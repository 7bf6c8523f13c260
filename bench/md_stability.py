"""Is a trained model stable in molecular dynamics? NVT, then NVE, from a frame of its data.

Usage (from the repository root, with the project's venv python)::

    python bench/md_stability.py MODEL FRAMES --temperature 300 [--nvt-ps 10] [--nve-ps 1]
        [--frame 0] [--threads 1] [--json out.json]

``MODEL`` is a registry name or a checkpoint; ``FRAMES`` an ASE-readable file (the first
structure of the model's test set, say). The run:

1. Maxwell–Boltzmann velocities at ``--temperature``, zero total momentum, the
   centre of mass fixed (``FixCom``);
2. ``--nvt-ps`` of Langevin NVT (ASE's ``Langevin``, 0.5 fs steps, friction 0.01/fs; the
   velocities and the thermostat's noise come from one seeded generator);
3. ``--nve-ps`` of velocity Verlet from where the NVT run ends.

It prints, and with ``--json`` writes: the smallest interatomic distance seen during either
run (Å; "collapsed" when any pair comes closer than 0.5 Å), the largest distance of an atom
from its nearest neighbour (Å; a molecule that loses an atom shows it), the mean temperature
of the second half of the NVT run (K), and the NVE drift: the largest deviation of the total
energy from its start (meV/atom). A run whose energies stop being finite is reported as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.constraints import FixCom
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlcalc.calculators import CALCULATOR_FOR
from mlcalc.pretrained import load_model

TIMESTEP_FS = 0.5
COLLAPSED_A = 0.5


def pair_extremes(atoms: Atoms) -> tuple[float, float]:
    """(smallest interatomic distance, largest nearest-neighbour distance), Å (minimum image)."""
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    np.fill_diagonal(distances, np.inf)
    nearest = distances.min(axis=1)
    return float(nearest.min()), float(nearest.max())


def run(model: str, atoms: Atoms, temperature: float, nvt_ps: float, nve_ps: float) -> dict:
    """The stability record of one NVT + NVE run (see the module docstring)."""
    loaded = load_model(model)
    atoms.calc = CALCULATOR_FOR[loaded.architecture](loaded, device="cpu")
    rng = np.random.default_rng(0)  # velocities and the thermostat's noise: reproducible runs
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    record: dict[str, Any] = {"model": model, "atoms": len(atoms), "temperature_K": temperature}
    closest, loneliest = pair_extremes(atoms)
    temperatures: list[float] = []

    def watch() -> None:
        nonlocal closest, loneliest
        low, high = pair_extremes(atoms)
        closest, loneliest = min(closest, low), max(loneliest, high)

    step = TIMESTEP_FS * units.fs
    friction = 0.01 / units.fs
    nvt = Langevin(atoms, step, temperature_K=temperature, friction=friction, fixcm=False, rng=rng)
    nvt_steps = round(nvt_ps * 1000 / TIMESTEP_FS)
    nvt.attach(watch, interval=20)
    nvt.attach(lambda: temperatures.append(atoms.get_temperature()), interval=20)
    nvt.run(nvt_steps)
    energies: list[float] = []
    nve = VelocityVerlet(atoms, step)
    nve.attach(watch, interval=20)
    nve.attach(lambda: energies.append(atoms.get_total_energy()), interval=20)
    nve.run(round(nve_ps * 1000 / TIMESTEP_FS))
    finite = bool(np.all(np.isfinite(energies)) and np.all(np.isfinite(atoms.positions)))
    drift = np.abs(np.array(energies) - energies[0]).max() / len(atoms) if finite else None
    record.update(
        nvt_ps=nvt_ps,
        nve_ps=nve_ps,
        finite=finite,
        closest_pair_A=closest,
        largest_nearest_neighbour_A=loneliest,
        collapsed=closest < COLLAPSED_A,
        nvt_mean_temperature_K=float(np.mean(temperatures[len(temperatures) // 2 :])),
        nve_drift_meV_per_atom=None if drift is None else 1000 * float(drift),
    )
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("model", help="registry name or checkpoint path")
    parser.add_argument("frames", type=Path, help="ASE-readable file with the start structure")
    parser.add_argument("--frame", type=int, default=0, help="which frame (default 0)")
    parser.add_argument("--temperature", type=float, required=True, help="K")
    parser.add_argument("--nvt-ps", type=float, default=10.0)
    parser.add_argument("--nve-ps", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    atoms = read(args.frames, index=args.frame)
    record = run(args.model, atoms, args.temperature, args.nvt_ps, args.nve_ps)
    record["frames"] = f"{args.frames}@{args.frame}"
    for key, value in record.items():
        print(f"{key:28s} {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0 if record["finite"] and not record["collapsed"] else 1


if __name__ == "__main__":
    sys.exit(main())
