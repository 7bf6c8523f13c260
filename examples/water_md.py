"""Short Langevin MD of a 192-atom liquid-water box with the pretrained ``water`` model.

The model (NEMP-small trained on PBE0 liquid water, see ``registry/cards/water.md``) ships
inside the package, so this works offline on a fresh install.

    python examples/water_md.py --steps 50 --trajectory water_md.traj
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import units
from ase.io import Trajectory
from ase.md import thermalize_momenta
from ase.md.langevin import Langevin

from mlcalc import NEMPCalculator, tune_memory_allocator
from mlcalc.structures import water_box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature-k", type=float, default=300.0)
    parser.add_argument("--trajectory", default="water_md.traj")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()

    tune_memory_allocator()  # keep per-step buffers in the heap: faster steps (Linux)
    atoms = water_box(4)  # 64 H2O, 192 atoms, 1.00 g/cm³
    atoms.calc = NEMPCalculator.from_pretrained("water", device=args.device, skin=1.0)

    dynamics = Langevin(
        atoms,
        timestep=args.timestep_fs * units.fs,
        temperature_K=args.temperature_k,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(0),
    )
    thermalize_momenta(atoms, temperature_K=args.temperature_k, rng=np.random.default_rng(1))
    with Trajectory(args.trajectory, "w", atoms) as trajectory:
        dynamics.attach(trajectory.write, interval=10)
        start = time.perf_counter()

        def report() -> None:
            energy = atoms.get_potential_energy() + atoms.get_kinetic_energy()
            print(
                f"step {dynamics.nsteps:5d}  E_total {energy:12.4f} eV  "
                f"T {atoms.get_temperature():7.1f} K"
            )

        dynamics.attach(report, interval=10)
        dynamics.run(args.steps)
    elapsed = time.perf_counter() - start
    print(
        f"{args.steps} steps of {len(atoms)} atoms in {elapsed:.1f} s "
        f"({1e3 * elapsed / max(args.steps, 1):.0f} ms/step); trajectory: {args.trajectory}"
    )


if __name__ == "__main__":
    main()
