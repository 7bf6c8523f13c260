"""Make the equilibrated liquid water that ships with mlcalc (``structures.liquid_water``).

64 H2O (192 atoms) at 1.00 g/cm³ from :func:`mlcalc.structures.water_box`, relaxed with FIRE
and then run for ``--ps`` ps (default 10) of Langevin NVT at 300 K with the pretrained
``water`` model (float32, 0.5 fs steps). The last frame, positions and momenta, is written as
extended XYZ with how it was made in its comment line. Takes about an hour on one CPU core:

    OMP_NUM_THREADS=1 python examples/make_liquid_water.py --out mlcalc/data/liquid_water_192.extxyz
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
from ase import units
from ase.io import write
from ase.md import thermalize_momenta
from ase.md.langevin import Langevin
from ase.optimize import FIRE

import mlcalc
from mlcalc import NEMPCalculator, tune_memory_allocator
from mlcalc.atomic import atomic_path
from mlcalc.structures import water_box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="extended XYZ file to write")
    parser.add_argument("--ps", type=float, default=10.0, help="length of the NVT run (ps)")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature-k", type=float, default=300.0)
    parser.add_argument("--friction-per-fs", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    tune_memory_allocator()
    atoms = water_box(4, seed=args.seed)
    atoms.calc = NEMPCalculator.from_pretrained("water", device=args.device, skin=1.0)
    FIRE(atoms, logfile=None).run(fmax=0.05, steps=2000)

    steps = round(args.ps * 1000.0 / args.timestep_fs)
    thermalize_momenta(
        atoms, temperature_K=args.temperature_k, rng=np.random.default_rng(args.seed + 1)
    )
    dynamics = Langevin(
        atoms,
        timestep=args.timestep_fs * units.fs,
        temperature_K=args.temperature_k,
        friction=args.friction_per_fs / units.fs,
        fixcm=False,
        rng=np.random.default_rng(args.seed),
    )
    temperatures: list[float] = []
    start = time.perf_counter()

    def sample() -> None:
        temperatures.append(atoms.get_temperature())
        if dynamics.nsteps % 1000 == 0:
            recent = np.mean(temperatures[-1000:])
            print(
                f"{dynamics.nsteps * args.timestep_fs / 1000:6.2f} ps  T(last 0.5 ps) "
                f"{recent:6.1f} K  Epot {atoms.get_potential_energy():10.3f} eV  "
                f"{time.perf_counter() - start:6.0f} s",
                flush=True,
            )

    dynamics.attach(sample, interval=1)
    dynamics.run(steps)
    second_half = np.mean(temperatures[len(temperatures) // 2 :])
    made = (
        f"mlcalc {mlcalc.__version__} pretrained water model (NEMP-small, float32): water_box(4, "
        f"seed={args.seed}) relaxed with FIRE to fmax 0.05 eV/A, then {args.ps:g} ps of Langevin "
        f"NVT at {args.temperature_k:g} K (friction {args.friction_per_fs:g}/fs, "
        f"{args.timestep_fs:g} fs steps; mean T over the second half {second_half:.1f} K; "
        "centre-of-mass momentum removed) by "
        f"examples/make_liquid_water.py on {datetime.date.today().isoformat()}"
    )
    frame = atoms.copy()  # positions, momenta and cell; no calculator results
    masses = frame.get_masses()[:, None]
    frame.set_momenta(frame.get_momenta() - masses * frame.get_momenta().sum(0) / masses.sum())
    frame.info = {"made_by": made}
    with atomic_path(args.out) as temporary:
        write(temporary, frame, format="extxyz")
    print(f"wrote {args.out}: {made}")


if __name__ == "__main__":
    main()
