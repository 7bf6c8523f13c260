"""MD step time of water in LAMMPS (``pair_style mlcalc``) against the ASE calculator, one run.

Usage::

    python bench/lammps.py --sizes 1536 12288 --steps 5 --json lammps.json

Cases per size: the ASE calculator (``NEMPCalculator``, ``skin=1.0``, Velocity-Verlet) on 2 and
1 threads, and LAMMPS (``fix nve``) as 1 rank × 2 threads, 1 rank × 1 thread and 2 ranks × 1
thread (``mpiexec``). Model: the shipped ``water`` NEMP (cutoff 5 Å, two interactions, so a
15 Å receptive field) in float32, on :func:`mlcalc.structures.water_box` at 300 K, 0.5 fs
steps. Each case runs in its own process; one step is warmed up, then ``--steps`` are timed
(ASE: median step; LAMMPS: its "Loop time" divided by the steps).

Reported per case: step time, the ghost/owned atom ratio per rank (the ghost atoms in the
ranks' graphs, from ``compute pair mlcalc``: none for one rank with a periodic box, which
evaluates the periodic cell as the ASE calculator does; on 2 ranks only those from the split
direction, the others being periodic images), LAMMPS's own ``Nghost`` / ``Nlocal`` (the shell
it communicates) and, for 2 ranks, the parallel efficiency ``t(1 rank) / (2 t(2 ranks))``
against its bound ``owned / (owned + ghost)``, also from the ranks' CPU time (LAMMPS's
"% CPU use"), which leaves out what sharing the cores with other processes costs.
The load average of the machine before and after each case is recorded: on a shared machine
it is most of the noise. Then, on paper, the efficiency of 64 and 512 ranks on a 10⁶-atom box
with a receptive-field ghost shell and with a per-layer feature exchange (one-cutoff shell),
each on the processor grid with the fewest ghost atoms (unsplit directions need none).
Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: (engine, ranks, threads per rank)
CASES = [("ase", 1, 2), ("ase", 1, 1), ("lammps", 1, 2), ("lammps", 1, 1), ("lammps", 2, 1)]
MODEL = "water"
#: atoms per Å³ of water at 1.00 g/cm³ (3 atoms per 29.9 Å³)
DENSITY = 3 * 0.033428
SKIN = 1.0


def repeats_for(size: int) -> int:
    repeats = round((size / 3) ** (1 / 3))
    if 3 * repeats**3 != size:
        raise ValueError(f"{size} atoms is not a water box; use 3*n**3 (192, 1536, 12288)")
    return repeats


def load() -> float:
    """One-minute load average of the machine."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def ase_worker(size: int, threads: int, steps: int, dtype: str) -> dict[str, Any]:
    """Step times of the ASE calculator in this process (called with ``--worker``)."""
    import numpy as np
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from mlcalc import NEMPCalculator
    from mlcalc.structures import water_box

    torch.set_num_threads(threads)
    atoms = water_box(repeats_for(size))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = NEMPCalculator.from_pretrained(MODEL, device="cpu", dtype=dtype, skin=SKIN)
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dynamics.run(1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        dynamics.run(1)
        times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "ghost_per_owned": 0.0}


LAMMPS_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
read_data water.data
plugin load {plugin}
pair_style mlcalc {model} dtype {dtype}
pair_coeff * * H O
neighbor {skin} bin
velocity all create 300 1 dist gaussian
fix 1 all nve
timestep 0.0005
compute ghosts all pair mlcalc
thermo_style custom step pe c_ghosts[1]
thermo 100
run 1
run {steps}
"""


def lammps_case(
    size: int, ranks: int, threads: int, steps: int, dtype: str, plugin: Path
) -> dict[str, Any]:
    """Step time and ghost/owned ratio of LAMMPS on ``ranks`` × ``threads``."""
    from ase.io import write

    from mlcalc.lammps.build import lammps_environment, lammps_executable, mpiexec_command
    from mlcalc.structures import water_box

    with tempfile.TemporaryDirectory() as folder:
        write(
            Path(folder) / "water.data",
            water_box(repeats_for(size)),
            format="lammps-data",
            specorder=["H", "O"],
            masses=True,
            units="metal",
        )
        script = LAMMPS_INPUT.format(
            plugin=plugin, model=MODEL, dtype=dtype, skin=SKIN, steps=steps
        )
        (Path(folder) / "in.lmp").write_text(script)
        env = lammps_environment()
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        command = [*mpiexec_command(ranks), str(lammps_executable()), "-in", "in.lmp"]
        result = subprocess.run(
            [*command, "-log", "none", "-nocite"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps", result.stdout)
    owned = re.findall(r"Nlocal:\s+([\d.eE+-]+) ave", result.stdout)
    ghost = re.findall(r"Nghost:\s+([\d.eE+-]+) ave", result.stdout)
    # thermo rows "step pe ghosts": the ghost atoms in the graphs of all ranks, summed
    rows = re.findall(r"^\s*\d+\s+[-\d.eE+]+\s+([\d.eE+]+)\s*$", result.stdout, re.M)
    seconds, counted = float(loops[-1][0]), int(loops[-1][1])
    # each rank's CPU time over its wall time in the loop: below 100 % when the ranks share
    # cores with other processes (MPICH's busy waiting counts as CPU use)
    cpu = float(re.findall(r"([\d.]+)% CPU use", result.stdout)[-1]) / 100.0
    return {
        "step_s": seconds / counted,
        "cpu_step_s": cpu * seconds / counted,
        "ghost_per_owned": float(rows[-1]) / size,
        "lammps_ghost_per_owned": float(ghost[-1]) / float(owned[-1]),
    }


def run_case(
    engine: str, ranks: int, threads: int, size: int, steps: int, dtype: str, plugin: Path
) -> dict[str, Any]:
    before = load()
    if engine == "ase":
        command = [sys.executable, __file__, "--worker", "--sizes", str(size)]
        command += ["--threads", str(threads), "--steps", str(steps), "--dtype", dtype]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        result = lammps_case(size, ranks, threads, steps, dtype, plugin)
    return {
        "engine": engine,
        "ranks": ranks,
        "threads": threads,
        "atoms": size,
        **result,
        "load_before": before,
        "load_after": load(),
    }


def ghost_ratio(atoms: float, grid: tuple[int, ...], shell: float) -> float:
    """(owned + ghost) / owned of one sub-domain of a cubic, periodic water box on the
    processor ``grid``: ghost atoms come from the split directions only."""
    side = (atoms / DENSITY) ** (1 / 3)
    ratio = 1.0
    for ranks in grid:
        if ranks > 1:
            ratio *= (side / ranks + 2 * shell) / (side / ranks)
    return ratio


def best_grid(atoms: float, ranks: int, shell: float) -> tuple[tuple[int, ...], float]:
    """The processor grid of ``ranks`` with the fewest ghost atoms, and its ratio."""
    grids = [
        g for g in itertools.product(range(1, ranks + 1), repeat=3) if g[0] * g[1] * g[2] == ranks
    ]
    return min(((g, ghost_ratio(atoms, g, shell)) for g in grids), key=lambda pair: pair[1])


def on_paper(cutoff: float, hops: int, ghost_cost: float) -> list[dict[str, Any]]:
    """Parallel-efficiency estimates on 10⁶ atoms. ``ghost_cost``: the measured cost of a
    ghost atom relative to an owned one (2 ranks), which scales the ghost term."""
    rows = []
    for ranks in (64, 512):
        for scheme, shell in [
            ("receptive-field shell", hops * cutoff + SKIN),
            ("per-layer exchange", cutoff + SKIN),
        ]:
            grid, ratio = best_grid(1e6, ranks, shell)
            excess = ratio - 1.0
            rows.append(
                {
                    "ranks": ranks,
                    "scheme": scheme,
                    "grid": "×".join(map(str, grid)),
                    "shell_A": shell,
                    "ghost_per_owned": excess,
                    "efficiency": 1.0 / (1.0 + ghost_cost * excess),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1536, 12288])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[f"{e}:{r}:{t}" for e, r, t in CASES],
        help="engine:ranks:threads, e.g. lammps:2:1 (default: all five)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(ase_worker(args.sizes[0], args.threads, args.steps, args.dtype)))
        return

    from mlcalc.lammps import build_plugin, receptive_field
    from mlcalc.pretrained import load_model

    plugin = build_plugin()
    rows = []
    header = "| engine | ranks × threads | atoms | step (s) | ghost/owned | LAMMPS ghost/owned |"
    print(header + " efficiency | bound | CPU-time efficiency | load before/after |")
    print("|---" * 10 + "|")
    for size in args.sizes:
        measured: dict[tuple[str, int, int], dict[str, Any]] = {}
        for case in args.cases:
            engine, ranks, threads = case.split(":")[0], *map(int, case.split(":")[1:])
            row = run_case(engine, ranks, threads, size, args.steps, args.dtype, plugin)
            measured[engine, ranks, threads] = row
            if (engine, ranks) == ("lammps", 2) and ("lammps", 1, 1) in measured:
                one = measured["lammps", 1, 1]["step_s"]
                row["efficiency"] = one / (2 * row["step_s"])
                row["bound"] = 1.0 / (1.0 + row["ghost_per_owned"])
                # the same from CPU time per rank: what the efficiency would be on idle cores
                cpu_one = measured["lammps", 1, 1]["cpu_step_s"]
                row["cpu_efficiency"] = cpu_one / (2 * row["cpu_step_s"])
                # cost of a ghost atom relative to an owned atom, from t2 / (t1 / 2) in CPU
                # time (wall time also counts the cores being shared with other processes)
                excess = 2 * row["cpu_step_s"] / cpu_one - 1.0
                row["ghost_cost"] = excess / row["ghost_per_owned"]
            rows.append(row)
            efficiency = f"{row['efficiency']:.3f}" if "efficiency" in row else ""
            bound = f"{row['bound']:.3f}" if "bound" in row else ""
            cpu = f"{row['cpu_efficiency']:.3f}" if "cpu_efficiency" in row else ""
            print(
                f"| {engine} | {ranks} × {threads} | {size:,} | {row['step_s']:.3f} | "
                f"{row['ghost_per_owned']:.2f} | {row.get('lammps_ghost_per_owned', 0.0):.2f} | "
                f"{efficiency} | {bound} | {cpu} | "
                f"{row['load_before']:.1f}/{row['load_after']:.1f} |",
                flush=True,
            )
    model = load_model(MODEL)
    hops = round(receptive_field(model) / model.cutoff)
    costs = [row["ghost_cost"] for row in rows if "ghost_cost" in row]
    ghost_cost = costs[-1] if costs else 1.0
    paper = on_paper(model.cutoff, hops, ghost_cost)
    print(f"\nOn paper, 10⁶ atoms (ghost atom cost {ghost_cost:.2f} × an owned atom's):")
    print("| ranks | scheme | grid | shell (Å) | ghost/owned | efficiency |")
    print("|---" * 6 + "|")
    for row in paper:
        print(
            f"| {row['ranks']} | {row['scheme']} | {row['grid']} | {row['shell_A']:.0f} | "
            f"{row['ghost_per_owned']:.2f} | {row['efficiency']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "on_paper": paper}, indent=2))


if __name__ == "__main__":
    main()
