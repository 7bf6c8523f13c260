"""Path-integral MD of liquid water (64 H2O, 300 K) through i-PI with the ``water`` model.

    python examples/ipi/water_pimd.py --out pimd            # 8 beads, 0.1 ps, 2 drivers

Starts an i-PI server on a local unix socket (input: ``water-pimd.xml`` beside this script),
starts ``mlcalc ipi`` drivers that serve it, waits for the run to end, then reports the
centroid-virial quantum kinetic energy of hydrogen (against the classical 3/2 kT) and checks
the forces i-PI received: each bead's forces, and the centroid force (their mean), against the
calculator evaluated here on the same bead positions. Writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from string import Template

import numpy as np
from ase import Atoms, units
from ase.io import read, write

from mlcalc.calculators import load_calculator
from mlcalc.structures import liquid_water

HERE = Path(__file__).resolve().parent


def last_frame(path: Path, quantity: str) -> np.ndarray:
    """``[N, 3]`` ``quantity`` (``forces`` or ``f_centroid``, eV/Å) of the last frame of an
    i-PI trajectory written with ``format='ase'`` (extxyz, unit ``{ase}``)."""
    frame = read(path, index=-1, format="extxyz")
    return frame.get_forces() if quantity == "forces" else frame.arrays[quantity]


def read_properties(path: Path) -> dict[str, np.ndarray]:
    """Columns of i-PI's properties file by name."""
    names = [
        line.split("-->")[1].split(":")[0].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# column")
    ]
    values = np.loadtxt(path, ndmin=2)
    return {name: values[:, k] for k, name in enumerate(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="water")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--beads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200, help="0.5 fs each (200: 0.1 ps)")
    parser.add_argument("--stride", type=int, default=10, help="steps between outputs")
    parser.add_argument("--drivers", type=int, default=2, help="mlcalc ipi processes")
    parser.add_argument("--structure", default=None, help="default: the packaged liquid water")
    parser.add_argument("--out", type=Path, default=Path("pimd"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    atoms = liquid_water() if args.structure is None else read(args.structure)
    write(args.out / "water.extxyz", atoms)
    address = f"mlcalc-pimd-{os.getpid()}"
    xml = Template((HERE / "water-pimd.xml").read_text()).substitute(
        prefix="sim",
        stride=args.stride,
        steps=args.steps,
        address=address,
        beads=args.beads,
        structure="water.extxyz",
    )
    (args.out / "input.xml").write_text(xml)
    for stale in args.out.glob("sim.*"):
        stale.unlink()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bin_dir = Path(sys.executable).parent
    start = time.perf_counter()
    with open(args.out / "server.log", "w") as server_log:
        server = subprocess.Popen(
            [str(bin_dir / "i-pi"), "input.xml"],
            cwd=args.out,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        drivers = [
            subprocess.Popen(
                [
                    str(bin_dir / "mlcalc"),
                    "ipi",
                    "--model",
                    args.model,
                    "--dtype",
                    args.dtype,
                    "--address",
                    f"unix:{address}",
                    "--structure",
                    "water.extxyz",
                ],
                cwd=args.out,
                env=env,
            )
            for _ in range(args.drivers)
        ]
        if server.wait() != 0:
            raise SystemExit(f"i-PI failed; see {args.out / 'server.log'}")
        for driver in drivers:
            driver.wait(timeout=60)
    elapsed = time.perf_counter() - start

    properties = read_properties(args.out / "sim.out")
    hydrogens = int(np.sum(atoms.numbers == 1))
    half = len(properties["step"]) // 2
    kinetic_h = properties["kinetic_cv{electronvolt}(H)"][half:] / hydrogens
    classical = 1.5 * units.kB * 300.0

    calculator = load_calculator(args.model, device="cpu", dtype=args.dtype)
    bead_forces, errors = [], []
    for bead in range(args.beads):
        # i-PI's frame (it turns a general cell into its upper-triangular form)
        written = read(args.out / f"sim.pos_{bead}.extxyz", index=-1, format="extxyz")
        received = last_frame(args.out / f"sim.frc_{bead}.extxyz", "forces")
        image = Atoms(atoms.numbers, positions=written.positions, cell=written.cell, pbc=atoms.pbc)
        image.calc = calculator
        bead_forces.append(image.get_forces())
        errors.append(float(np.abs(received - bead_forces[-1]).max()))
    centroid = last_frame(args.out / "sim.fcentroid.extxyz", "f_centroid")
    centroid_error = float(np.abs(centroid - np.mean(bead_forces, axis=0)).max())

    results = {
        "atoms": len(atoms),
        "beads": args.beads,
        "steps": args.steps,
        "simulated_ps": float(properties["time{picosecond}"][-1]),
        "wall_s": elapsed,
        "drivers": args.drivers,
        "dtype": args.dtype,
        "kinetic_cv_H_eV_per_atom": float(np.mean(kinetic_h)),
        "classical_kinetic_eV_per_atom": classical,
        "temperature_K": float(np.mean(properties["temperature{kelvin}"][half:])),
        "bead_forces_max_error_eV_per_A": max(errors),
        "centroid_force_max_error_eV_per_A": centroid_error,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{'quantity':42s} value")
    for name, value in results.items():
        print(f"{name:42s} {value:.6g}" if isinstance(value, float) else f"{name:42s} {value}")


if __name__ == "__main__":
    main()
