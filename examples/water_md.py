"""Langevin MD of liquid water at 300 K with the pretrained ``water`` model.

The model (NEMP-small trained on PBE0 liquid water, see ``registry/cards/water.md``) and the
starting configuration (64 H2O equilibrated at 300 K, :func:`mlcalc.structures.liquid_water`)
ship inside the package, so this works offline on a fresh install. Every report line gives
the temperature averaged over the steps since the previous one.

    python examples/water_md.py --steps 1000 --trajectory water_md.traj
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import units
from ase.io import Trajectory
from ase.md.langevin import Langevin

from mlcalc import NEMPCalculator, tune_memory_allocator
from mlcalc.structures import liquid_water


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--report-every", type=int, default=100, help="steps per report line")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature-k", type=float, default=300.0)
    parser.add_argument("--friction-per-fs", type=float, default=0.02)
    parser.add_argument("--trajectory", default="water_md.traj")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()

    tune_memory_allocator()  # keep per-step buffers in the heap: faster steps (Linux)
    atoms = liquid_water()  # 64 H2O, 192 atoms, 1.00 g/cm³, positions and momenta at 300 K
    atoms.calc = NEMPCalculator.from_pretrained("water", device=args.device, skin=1.0)
    dynamics = Langevin(
        atoms,
        timestep=args.timestep_fs * units.fs,
        temperature_K=args.temperature_k,
        friction=args.friction_per_fs / units.fs,
        fixcm=False,
        rng=np.random.default_rng(0),
    )
    temperatures: list[float] = []

    def report() -> None:
        temperatures.append(atoms.get_temperature())
        if dynamics.nsteps > 0 and dynamics.nsteps % args.report_every == 0:
            picoseconds = dynamics.nsteps * args.timestep_fs / 1000.0
            print(
                f"{picoseconds:6.3f} ps  T {np.mean(temperatures):6.1f} K  "
                f"E_pot {atoms.get_potential_energy():11.3f} eV",
                flush=True,
            )
            temperatures.clear()

    print(f"{len(atoms)} atoms of liquid water, Langevin at {args.temperature_k:g} K:")
    with Trajectory(args.trajectory, "w", atoms) as trajectory:
        dynamics.attach(trajectory.write, interval=args.report_every)
        dynamics.attach(report, interval=1)
        start = time.perf_counter()
        dynamics.run(args.steps)
        elapsed = time.perf_counter() - start
    print(
        f"{args.steps} steps in {elapsed:.1f} s "
        f"({1e3 * elapsed / max(args.steps, 1):.0f} ms/step); trajectory: {args.trajectory}"
    )


if __name__ == "__main__":
    main()
