"""MD step time of water in LAMMPS (``pair_style mlcalc``), both ghost-atom schemes, one run.

Usage::

    python bench/lammps.py --sizes 1536 12288 --steps 3 --json lammps.json

Cases per size (``engine:ranks:threads:scheme``, ``--cases``): LAMMPS (``fix nve``) on 1, 2
and 4 ranks × 1 thread (``mpiexec``) with ``scheme receptive`` (ghost shell of the receptive
field, no communication between layers) and ``scheme layers`` (one-cutoff shell, node
features exchanged between layers); optionally the ASE calculator (``ase:1:2``:
``NEMPCalculator``, ``skin=1.0``, Velocity-Verlet). Model: the shipped ``water`` NEMP (cutoff
5 Å, two interactions, so a 15 Å receptive field) in float32, on
:func:`mlcalc.structures.water_box` at 300 K, 0.5 fs steps. Each case runs in its own process;
one step is warmed up, then ``--steps`` are timed (ASE: median step; LAMMPS: its "Loop time"
divided by the steps).

Reported per case: step time; the ghost/owned atom ratio in the ranks' graphs (``compute pair
mlcalc``: none for one rank with a periodic box, which evaluates the periodic cell as the ASE
calculator does; on several ranks only those from the split directions); LAMMPS's own
``Nghost`` / ``Nlocal`` (the shell it communicates); the seconds per step a rank spends in the
exchanges between layers; and, on several ranks, the parallel efficiency ``t1 / (R tR)``
against the one-rank receptive run, from wall time and from the ranks' CPU time (LAMMPS's "%
CPU use"; with more ranks than cores only the CPU-time one means anything), and the cost of a
ghost atom relative to an owned one that the CPU time implies. The load average of the
machine before and after each case is recorded. Then, on paper, the efficiency of 64 and 512
ranks on a 10⁶-atom box for each scheme, on the processor grid with the fewest ghost atoms,
from the ghost cost measured for that scheme. Nothing here asserts on timings.
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

#: (engine, ranks, threads per rank, scheme)
CASES = [("lammps", ranks, 1, scheme) for ranks in (1, 2, 4) for scheme in ("receptive", "layers")]
SCHEMES = ("receptive", "layers")
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


def run_lammps(atoms: Any, script: str, ranks: int, threads: int = 1) -> str:
    """The output of ``mpiexec -n ranks lmp`` (``threads`` per rank) on ``script``, in a
    temporary folder where ``atoms`` (water) are ``water.data``."""
    from ase.io import write

    from mlcalc.lammps.build import lammps_environment, lammps_executable, mpiexec_command

    with tempfile.TemporaryDirectory() as folder:
        write(
            Path(folder) / "water.data",
            atoms,
            format="lammps-data",
            specorder=["H", "O"],
            masses=True,
            units="metal",
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
    return result.stdout


LAMMPS_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
processors {grid}
read_data water.data
replicate {replicas} 1 1
plugin load {plugin}
pair_style mlcalc {model} dtype {dtype} scheme {scheme}
pair_coeff * * H O
neighbor {skin} bin
velocity all create 300 1 dist gaussian
fix 1 all nve
timestep 0.0005
compute ghosts all pair mlcalc
thermo_style custom step pe c_ghosts[1] c_ghosts[2]
thermo 100
run 1
run {steps}
"""


def lammps_case(
    size: int,
    ranks: int,
    threads: int,
    scheme: str,
    steps: int,
    dtype: str,
    plugin: Path,
    weak: bool = False,
) -> dict[str, Any]:
    """Step time, ghost/owned ratio and exchange time of LAMMPS on ``ranks`` × ``threads``.
    ``weak``: the box of ``size`` atoms replicated ``ranks`` times along x on a ``ranks × 1 ×
    1`` grid, so every rank owns exactly that box's atoms."""
    from mlcalc.structures import water_box

    replicas = ranks if weak else 1
    script = LAMMPS_INPUT.format(
        plugin=plugin,
        model=MODEL,
        dtype=dtype,
        skin=SKIN,
        steps=steps,
        scheme=scheme,
        replicas=replicas,
        grid=f"{ranks} 1 1" if weak else "* * *",
    )
    output = run_lammps(water_box(repeats_for(size)), script, ranks, threads)
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps", output)
    owned = re.findall(r"Nlocal:\s+([\d.eE+-]+) ave", output)
    ghost = re.findall(r"Nghost:\s+([\d.eE+-]+) ave", output)
    # thermo rows "step pe ghosts seconds": the ghost atoms in the graphs of all ranks and the
    # seconds they spent in exchanges, summed over ranks
    rows = re.findall(r"^\s*\d+\s+[-\d.eE+]+\s+([\d.eE+]+)\s+([\d.eE+-]+)\s*$", output, re.M)
    seconds, counted = float(loops[-1][0]), int(loops[-1][1])
    # each rank's CPU time over its wall time in the loop: below 100 % when the ranks share
    # cores with other processes (MPICH's busy waiting counts as CPU use)
    cpu = float(re.findall(r"([\d.]+)% CPU use", output)[-1]) / 100.0
    return {
        "step_s": seconds / counted,
        "cpu_step_s": cpu * seconds / counted,
        "ghost_per_owned": float(rows[-1][0]) / (size * replicas),
        "lammps_ghost_per_owned": float(ghost[-1]) / float(owned[-1]),
        "exchange_s": float(rows[-1][1]) / ranks,
    }


def run_case(
    case: tuple[str, int, int, str],
    size: int,
    steps: int,
    dtype: str,
    plugin: Path,
    weak: bool = False,
) -> dict[str, Any]:
    engine, ranks, threads, scheme = case
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
        result = lammps_case(size, ranks, threads, scheme, steps, dtype, plugin, weak)
    return {
        "engine": engine,
        "ranks": ranks,
        "threads": threads,
        "scheme": scheme if engine == "lammps" else "",
        "atoms": size * ranks if weak else size,
        "weak": weak,
        **result,
        "load_before": before,
        "load_after": load(),
    }


NVE_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
read_data water.data
plugin load {plugin}
pair_style mlcalc {model} dtype float64 scheme {scheme}
pair_coeff * * H O
neighbor {skin} bin
velocity all create 300 1 dist gaussian mom yes rot yes
fix 1 all nve
timestep 0.0005
thermo_style custom step pe ke etotal
thermo_modify format float %.17g
thermo 20
run {steps}
"""


def nve_drift(
    ranks: int, scheme: str, picoseconds: float, plugin: Path, repeats: int = 2
) -> dict[str, Any]:
    """Energy drift of NVE (0.5 fs steps, float64, 300 K) of a ``3 repeats³``-atom water box
    on ``ranks`` ranks: the slope of the total energy (eV/atom/ps, least squares) and its
    spread (eV/atom)."""
    import numpy as np

    from mlcalc.structures import water_box

    atoms = water_box(repeats)
    steps = round(picoseconds / 0.0005)
    script = NVE_INPUT.format(plugin=plugin, model=MODEL, skin=SKIN, scheme=scheme, steps=steps)
    output = run_lammps(atoms, script, ranks)
    rows = np.array(
        [
            [float(value) for value in line.split()]
            for line in output.splitlines()
            if len(line.split()) == 4 and line.split()[0].isdigit()
        ]
    )
    time_ps, total = rows[:, 0] * 0.0005, rows[:, 3] / len(atoms)
    return {
        "ranks": ranks,
        "scheme": scheme,
        "atoms": len(atoms),
        "picoseconds": picoseconds,
        "drift_eV_per_atom_ps": float(np.polyfit(time_ps, total, 1)[0]),
        "spread_eV_per_atom": float(np.ptp(total)),
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


def on_paper(cutoff: float, hops: int, ghost_costs: dict[str, float]) -> list[dict[str, Any]]:
    """Parallel-efficiency estimates on 10⁶ atoms: ``1 / (1 + cost × ghost/owned)`` with each
    scheme's shell and the measured ``ghost_costs[scheme]`` of a ghost atom relative to an
    owned one (for the layers scheme it includes the exchanges, which scale with the ghosts)."""
    rows = []
    for ranks in (64, 512):
        for scheme, shell in [("receptive", hops * cutoff + SKIN), ("layers", cutoff + SKIN)]:
            grid, ratio = best_grid(1e6, ranks, shell)
            excess = ratio - 1.0
            cost = ghost_costs.get(scheme, 1.0)
            rows.append(
                {
                    "ranks": ranks,
                    "scheme": scheme,
                    "grid": "×".join(map(str, grid)),
                    "shell_A": shell,
                    "ghost_per_owned": excess,
                    "ghost_cost": cost,
                    "efficiency": 1.0 / (1.0 + cost * excess),
                }
            )
    return rows


def parse_case(text: str) -> tuple[str, int, int, str]:
    """``engine:ranks:threads[:scheme]`` → a case (scheme ``auto`` when left out)."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or parts[0] not in ("ase", "lammps"):
        raise argparse.ArgumentTypeError(f"expected engine:ranks:threads[:scheme], got {text}")
    scheme = parts[3] if len(parts) == 4 else "auto"
    return parts[0], int(parts[1]), int(parts[2]), scheme


def with_efficiency(row: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """``row`` on several ranks with its efficiencies against the one-rank ``baseline`` and
    the ghost cost its CPU time implies: ``t1 / (R tR)`` for the same box (strong scaling),
    ``t1 / tR`` when every rank owns the baseline's box (``row["weak"]``)."""
    ranks = row["ranks"]
    if baseline is None or ranks == 1 or row["engine"] != "lammps":
        return row
    work = 1 if row.get("weak") else ranks  # owned atoms per rank, in baseline boxes: 1 / work
    row["efficiency"] = baseline["step_s"] / (work * row["step_s"])
    row["cpu_efficiency"] = baseline["cpu_step_s"] / (work * row["cpu_step_s"])
    row["bound"] = 1.0 / (1.0 + row["ghost_per_owned"])
    # cost of a ghost atom relative to an owned atom, from R tR / t1 in CPU time
    excess = work * row["cpu_step_s"] / baseline["cpu_step_s"] - 1.0
    row["ghost_cost"] = excess / row["ghost_per_owned"] if row["ghost_per_owned"] else 0.0
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1536, 12288])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        default=CASES,
        help="engine:ranks:threads[:scheme], e.g. lammps:2:1:layers or ase:1:2 "
        "(default: LAMMPS on 1, 2 and 4 ranks, both schemes)",
    )
    parser.add_argument(
        "--nve",
        type=float,
        metavar="PS",
        help="instead: the energy drift of PS picoseconds of NVE of 24 atoms of water (a "
        "6.2 Å cell, so 4 ranks hold sub-domains 3.1 Å wide) on 1 rank (receptive) and 4 ranks "
        "(layers)",
    )
    parser.add_argument(
        "--weak",
        action="store_true",
        help="every rank owns a box of SIZE atoms (the box replicated along x, an R × 1 × 1 "
        "grid): the ghost cost at equal work per rank, for the on-paper estimate",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(ase_worker(args.sizes[0], args.threads, args.steps, args.dtype)))
        return

    from mlcalc.lammps import build_plugin, receptive_field
    from mlcalc.pretrained import load_model

    plugin = build_plugin()
    if args.nve:
        runs = [
            nve_drift(ranks, scheme, args.nve, plugin)
            for ranks, scheme in [(1, "receptive"), (4, "layers")]
        ]
        print("| ranks | scheme | atoms | ps | drift (eV/atom/ps) | spread (eV/atom) |")
        print("|---" * 6 + "|")
        for run in runs:
            print(
                f"| {run['ranks']} | {run['scheme']} | {run['atoms']} | {run['picoseconds']:g} | "
                f"{run['drift_eV_per_atom_ps']:.2e} | {run['spread_eV_per_atom']:.2e} |"
            )
        ratio = abs(runs[1]["drift_eV_per_atom_ps"]) / abs(runs[0]["drift_eV_per_atom_ps"])
        print(f"\n|drift| on 4 ranks / 1 rank: {ratio:.2f}")
        if args.json:
            args.json.write_text(json.dumps({"nve": runs, "ratio": ratio}, indent=2))
        return
    rows = []
    print(
        "| engine | scheme | ranks × threads | atoms | step (s) | ghost/owned | LAMMPS "
        "ghost/owned | exchanges (s/step) | efficiency | CPU-time efficiency | ghost cost | "
        "load before/after |"
    )
    print("|---" * 12 + "|")
    for size in args.sizes:
        baseline = None
        for case in args.cases:
            row = run_case(case, size, args.steps, args.dtype, plugin, args.weak)
            if case[0] == "lammps" and case[1] == 1 and case[3] in ("receptive", "auto"):
                baseline = row
            rows.append(with_efficiency(row, baseline))
            print(format_row(row), flush=True)
    model = load_model(MODEL)
    hops = round(receptive_field(model) / model.cutoff)
    # each scheme's ghost cost from its 2-rank run (the cores are not shared) on the largest
    # size, else from its run with the most ranks
    ghost_costs = {}

    def preference(row: dict[str, Any]) -> tuple:
        box = row["atoms"] // row["ranks"] if row["weak"] else row["atoms"]
        return box, row["ranks"] == 2, row["ranks"]

    for row in sorted(rows, key=preference):
        if "ghost_cost" in row:
            ghost_costs[row["scheme"]] = row["ghost_cost"]
    paper = on_paper(model.cutoff, hops, ghost_costs)
    print("\nOn paper, 10⁶ atoms of water, from the measured ghost costs:")
    print("| ranks | scheme | grid | shell (Å) | ghost/owned | ghost cost | efficiency |")
    print("|---" * 7 + "|")
    for row in paper:
        print(
            f"| {row['ranks']} | {row['scheme']} | {row['grid']} | {row['shell_A']:.0f} | "
            f"{row['ghost_per_owned']:.2f} | {row['ghost_cost']:.2f} | {row['efficiency']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "on_paper": paper}, indent=2))


def format_row(row: dict[str, Any]) -> str:
    """One case as a markdown table row."""

    def value(key: str, digits: int) -> str:
        return f"{row[key]:.{digits}f}" if key in row else ""

    return (
        f"| {row['engine']} | {row['scheme']} | {row['ranks']} × {row['threads']} | "
        f"{row['atoms']:,} | {row['step_s']:.3f} | {row['ghost_per_owned']:.2f} | "
        f"{value('lammps_ghost_per_owned', 2)} | {value('exchange_s', 4)} | "
        f"{value('efficiency', 3)} | {value('cpu_efficiency', 3)} | {value('ghost_cost', 2)} | "
        f"{row['load_before']:.1f}/{row['load_after']:.1f} |"
    )


if __name__ == "__main__":
    main()
