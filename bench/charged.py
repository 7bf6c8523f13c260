"""Charged clusters: a charge-blind model against charge embedding and charge + long range.

Usage::

    OMP_NUM_THREADS=1 python bench/charged.py --max-time 8m --out /tmp/mlcalc-charged
    python bench/charged.py --report --figure docs/img/charged-binding.png --out /tmp/mlcalc-charged
    python bench/charged.py --geometries 8 --pairs 8 --epochs 2 --out /tmp/toy   # toy size

Data (issue #15, in the spirit of Ko et al., Nat. Commun. 12, 398 (2021)): GFN2-xTB
(``tblite``, ``pip install tblite``) energies and forces of

* ``chain``: the polyyne H–C10–H, snapshots of Langevin MD of the neutral chain at 300, 600
  and 1200 K, each labelled as neutral singlet (q = 0) and as cation doublet (q = +1);
* ``nacl``: a planar 3×3 rock-salt ``Na5Cl4`` cluster, MD of the closed-shell cation at the same
  temperatures, each snapshot labelled as cation singlet (q = +1) and neutral doublet (q = 0);
* ``pair``: the ion pair Na2Cl⁺ · NaCl2⁻ (total charge 0), both fragments rattled and rotated at
  random, centre-of-mass separations 5–16 Å: inside and well beyond the model cutoff.

The same geometries appear in both charge states, so a model that cannot see the charge cannot
tell them apart. The split (80/10/10 train/validation/test) is by geometry: both labels of a
geometry land in the same set. Labelling takes a few milliseconds per frame; the data is cached
as ``data.extxyz`` under ``--out`` (keep it out of the repository).

Three NEMP models (``small`` preset, same frames, E0s, seed, cutoff and wall-clock budget) are
trained with ``mlcalc.training.train``: no charge input, ``charge_embedding``, and
``charge_embedding`` with ``long_range="coulomb"``. Errors are those of ``mlcalc eval``
(:func:`mlcalc.training.evaluation.evaluate_file`) on the test frames of each system and charge
state: energy RMSE (meV/atom) and force-component RMSE (meV/Å). The binding curve is the energy
of the rigid, perpendicular ion pair against the separation of the fragment centres, relative to
the largest separation, reference against each model (xTB's SCF of the separated pair may need
a smaller mixer damping: the curve retries with 0.1 and 0.05; training frames whose SCF fails
at tblite's default are dropped). Nothing here asserts on the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms, units
from ase.io import read, write

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from tblite.ase import TBLite

#: Temperatures of the MD that gives the cluster geometries, K.
TEMPERATURES = (300.0, 600.0, 1200.0)
#: Rattle amplitudes of the ion-pair fragments, Å.
AMPLITUDES = (0.03, 0.06, 0.10)
#: Centre-of-mass separations of the binding curve, Å.
CURVE = (5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0, 16.0, 18.0, 22.0, 26.0, 30.0)
VARIANTS = {
    "no charge": {},
    "charge embedding": {"charge_embedding": True},
    "charge + long range": {"charge_embedding": True, "long_range": "coulomb"},
}


def chain() -> Atoms:
    """Linear polyyne H–C10–H along x (C–C 1.28 Å, C–H 1.06 Å)."""
    x = [0.0, *[1.06 + 1.28 * k for k in range(10)]]
    x.append(x[-1] + 1.06)
    return Atoms("HC10H", positions=[[v, 0.0, 0.0] for v in x])


def nacl() -> Atoms:
    """Planar 3×3 rock-salt Na5Cl4 (Na at the corners and centre, Na–Cl 2.6 Å)."""
    grid = [(i, j) for i in range(3) for j in range(3)]
    symbols = ["Na" if (i + j) % 2 == 0 else "Cl" for i, j in grid]
    return Atoms(symbols, positions=[[2.6 * i, 2.6 * j, 0.0] for i, j in grid])


def fragments() -> tuple[Atoms, Atoms]:
    """Linear Na–Cl–Na⁺ (2.5 Å) and Cl–Na–Cl⁻ (2.45 Å), centred at the origin along x."""
    cation = Atoms("NaClNa", positions=[[-2.5, 0, 0], [0, 0, 0], [2.5, 0, 0]])
    anion = Atoms("ClNaCl", positions=[[-2.45, 0, 0], [0, 0, 0], [2.45, 0, 0]])
    return cation, anion


def ion_pair(distance: float) -> Atoms:
    """Rigid ion pair: the anion's axis perpendicular to the cation's, centres ``distance`` Å
    apart along x (closest atoms ``distance - 2.5`` Å apart)."""
    cation, anion = fragments()
    anion.rotate(90, "z")
    anion.positions += [distance, 0.0, 0.0]
    return cation + anion


def xtb(charge: int, multiplicity: int, damping: float = 0.4) -> TBLite:
    """tblite's GFN2-xTB ASE calculator for the total charge (e), spin multiplicity and SCF mixer
    damping (tblite's default 0.4)."""
    from tblite.ase import TBLite

    return TBLite(
        method="GFN2-xTB",
        charge=charge,
        multiplicity=multiplicity,
        max_iterations=500,
        mixer_damping=damping,
        verbosity=0,
    )


def label(
    structure: Atoms, charge: int, multiplicity: int, retry: bool = False, **info: object
) -> Atoms | None:
    """``structure`` with xTB energy (eV) and forces (eV/Å) attached; ``None`` if SCF fails
    (``retry``: first try again with mixer damping 0.1 and 0.05)."""
    from ase.calculators.calculator import CalculationFailed
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = structure.copy()
    for damping in (0.4, 0.1, 0.05) if retry else (0.4,):
        atoms.calc = xtb(charge, multiplicity, damping)
        try:
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
            break
        except CalculationFailed:
            continue
    else:
        return None
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    atoms.info.update(charge=charge, spin=multiplicity, **info)
    return atoms


def md_snapshots(
    atoms: Atoms, charge: int, multiplicity: int, count: int, step: float, rng: np.random.Generator
) -> list[Atoms]:
    """``count`` snapshots per temperature of xTB Langevin MD (``step`` fs, every 10 steps after
    100 steps of equilibration), on the PES of the given charge state."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    snapshots = []
    for temperature in TEMPERATURES:
        system = atoms.copy()
        system.calc = xtb(charge, multiplicity)
        thermalize_momenta(system, temperature, rng=rng)
        dynamics = Langevin(
            system, step * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng
        )
        dynamics.run(100)
        for _ in range(count):
            dynamics.run(10)
            snapshot = Atoms(system.numbers, positions=system.positions)
            snapshot.info["temperature"] = temperature
            snapshots.append(snapshot)
    return snapshots


def random_pair(rng: np.random.Generator) -> Atoms:
    """Rattled fragments in random orientations, centres 5–16 Å apart, atoms ≥ 2.6 Å apart."""
    from scipy.spatial.transform import Rotation

    while True:
        parts = []
        for fragment in fragments():
            fragment.positions = Rotation.random(random_state=rng).apply(fragment.positions)
            amplitude = AMPLITUDES[rng.integers(len(AMPLITUDES))]
            fragment.positions += rng.normal(0.0, amplitude, fragment.positions.shape)
            parts.append(fragment)
        parts[1].positions += [rng.uniform(5.0, 16.0), 0.0, 0.0]
        pair = parts[0] + parts[1]
        gaps = np.linalg.norm(parts[0].positions[:, None] - parts[1].positions[None], axis=-1)
        if gaps.min() >= 2.6:
            return pair


def generate(geometries: int, pairs: int, seed: int) -> list[Atoms]:
    """All labelled frames; ``info``: system, geometry (index), charge (e), spin (2S+1)."""
    rng = np.random.default_rng(seed)
    per_temperature = -(-geometries // len(TEMPERATURES))
    frames: list[Atoms] = []
    index = 0
    plans = (
        ("chain", chain(), (0, 1), 0.5, [(0, 1), (1, 2)]),
        ("nacl", nacl(), (1, 1), 2.0, [(1, 1), (0, 2)]),
    )
    for name, start, md_state, step, states in plans:
        for geometry in md_snapshots(start, *md_state, per_temperature, step, rng):
            labelled = [label(geometry, q, m, system=name, geometry=index) for q, m in states]
            if all(atoms is not None for atoms in labelled):
                frames.extend(labelled)  # type: ignore[arg-type]
                index += 1
    done = 0
    while done < pairs:
        atoms = label(random_pair(rng), 0, 1, system="pair", geometry=index)
        if atoms is not None:
            frames.append(atoms)
            index += 1
            done += 1
    return frames


def split_frames(frames: list[Atoms], seed: int) -> dict[str, list[Atoms]]:
    """80/10/10 train/valid/test by geometry, seeded."""
    ids = sorted({int(f.info["geometry"]) for f in frames})
    order = np.random.default_rng(seed).permutation(ids)
    tenth = max(1, len(ids) // 10)
    sets = {"test": set(order[:tenth].tolist()), "valid": set(order[tenth : 2 * tenth].tolist())}
    which = {g: name for name, members in sets.items() for g in members}
    split: dict[str, list[Atoms]] = {"train": [], "valid": [], "test": []}
    for atoms in frames:
        split[which.get(int(atoms.info["geometry"]), "train")].append(atoms)
    return split


def state_name(atoms: Atoms) -> str:
    """``"<system> q=<charge>"``."""
    return f"{atoms.info['system']} q={int(atoms.info['charge']):+d}"


def train_variant(name: str, options: dict, folder: Path, args: argparse.Namespace) -> Path:
    """Train one variant on ``folder``'s train/valid files; returns its best checkpoint."""
    from mlcalc.training import TrainConfig, train

    output = folder / name.replace(" + ", "-and-").replace(" ", "-")
    config = TrainConfig.from_dict(
        {
            "train_file": str(folder / "train.extxyz"),
            "valid_file": str(folder / "valid.extxyz"),
            "model": {"preset": args.preset, "cutoff": args.cutoff, **options},
            "e0s": "fit",
            "batch_size": 4,
            "epochs": args.epochs,
            "max_time": args.max_time,
            "lr": 0.005,
            "forces_weight": 10.0,
            "dtype": "float64",
            "device": "cpu",
            "threads": args.threads,
            "seed": args.seed,
            "output_dir": str(output),
        }
    )
    result = train(config)
    print(f"  {name}: {result}")
    return output / "best.safetensors"


def score(checkpoint: Path, folder: Path, states: list[str]) -> dict[str, dict[str, float]]:
    """``mlcalc eval`` errors of ``checkpoint`` on each state's test file (meV/atom, meV/Å)."""
    from mlcalc.training.evaluation import evaluate_file

    table = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the charge-blind model warns that it ignores charge
        for state in [*states, "all"]:
            errors, _ = evaluate_file(checkpoint, folder / f"test-{slug(state)}.extxyz")
            table[state] = {k: float(v) for k, v in errors.items()}
    return table


def slug(state: str) -> str:
    """File-name form of a state name."""
    return state.replace(" q=", "-q").replace("+", "p").replace("-q-", "-qm")


def binding_curve(checkpoint: Path) -> list[float]:
    """Model energies (eV) of :func:`ion_pair` at :data:`CURVE` separations."""
    from mlcalc import NEMPCalculator

    calc = NEMPCalculator.from_checkpoint(checkpoint, device="cpu")
    energies = []
    for distance in CURVE:
        atoms = ion_pair(distance)
        atoms.info.update(charge=0, spin=1)
        atoms.calc = calc
        energies.append(float(atoms.get_potential_energy()))
    return energies


def reference_curve() -> list[float | None]:
    """xTB energies (eV) of :func:`ion_pair` at :data:`CURVE` (``None`` where SCF fails)."""
    curve = []
    for distance in CURVE:
        atoms = label(ion_pair(distance), 0, 1, retry=True)
        curve.append(None if atoms is None else float(atoms.get_potential_energy()))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--geometries", type=int, default=300, help="MD snapshots per cluster")
    parser.add_argument("--pairs", type=int, default=300, help="ion-pair frames")
    parser.add_argument("--epochs", type=int, default=10000)
    parser.add_argument("--max-time", default=None, help="per variant, e.g. 7m")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mlcalc-charged"))
    parser.add_argument("--report", action="store_true", help="print the tables of a past run")
    parser.add_argument("--figure", type=Path, help="with --report: the binding curve as PNG")
    args = parser.parse_args()
    if args.report:
        results = json.loads((args.out / "results.json").read_text())
        print_tables(results, args.out)
        if args.figure is not None:
            curve_figure(results, args.cutoff).savefig(args.figure, dpi=110)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data.extxyz"
    if data.is_file():
        frames = read(data, index=":")
        print(f"using {len(frames)} frames from {data}")
    else:
        start = time.perf_counter()
        frames = generate(args.geometries, args.pairs, args.seed)
        write(data, frames)
        print(f"{len(frames)} xTB single points in {time.perf_counter() - start:.0f} s")
    split = split_frames(frames, args.seed)
    for name, members in split.items():
        write(args.out / f"{name}.extxyz", members)
    states = sorted({state_name(a) for a in split["test"]})
    for state in states:
        write(
            args.out / f"test-{slug(state)}.extxyz",
            [a for a in split["test"] if state_name(a) == state],
        )
    write(args.out / "test-all.extxyz", split["test"])
    counts = {n: len(m) for n, m in split.items()}
    print(f"frames {counts}, test states {states}")
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "reference curve" not in results:
        results["reference curve"] = reference_curve()
    results.update(frames=counts, distances=list(CURVE), budget=args.max_time)
    for name in args.variants:
        start = time.perf_counter()
        checkpoint = train_variant(name, VARIANTS[name], args.out, args)
        results[name] = {"errors": score(checkpoint, args.out, states)}
        results[name]["curve"] = binding_curve(checkpoint)
        results[name]["seconds"] = time.perf_counter() - start
        results_file.write_text(json.dumps(results, indent=1))
        print(f"trained and scored {name!r} in {results[name]['seconds']:.0f} s")
    print_tables(results, args.out)


def curve_figure(results: dict, cutoff: float) -> Figure:
    """E(d) − E(30 Å) of the ion pair (eV), xTB and each model; the separation at which the
    closest atoms reach the cutoff is marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.6), layout="constrained")
    axes = figure.add_subplot()
    distances = results["distances"]
    reference = results["reference curve"]
    axes.plot(distances, [e - reference[-1] for e in reference], "ko-", label="GFN2-xTB")
    for name in [n for n in VARIANTS if n in results]:
        curve = results[name]["curve"]
        axes.plot(distances, [e - curve[-1] for e in curve], ".-", label=name)
    axes.axvline(cutoff + 2.5, color="grey", linestyle=":", label="closest atoms at cutoff")
    axes.set_xlabel("centre–centre distance of Na₂Cl⁺ and NaCl₂⁻ (Å)")
    axes.set_ylabel("E(d) − E(30 Å) (eV)")
    axes.legend(frameon=False)
    return figure


def blind_floor(folder: Path) -> dict[str, float]:
    """Least force RMSE (meV/Å) a charge-blind model can reach per system: it can at best give
    the mean of a geometry's two labels, so each state's error is half their difference."""
    floor = {}
    test = read(folder / "test.extxyz", index=":")
    for system in ("chain", "nacl"):
        frames = {}
        for atoms in test:
            if atoms.info["system"] == system:
                frames.setdefault(int(atoms.info["geometry"]), []).append(atoms.get_forces())
        if frames:
            half = np.concatenate([(a - b).ravel() / 2 for a, b in frames.values()])
            floor[system] = 1000 * float(np.sqrt(np.mean(half**2)))
    return floor


def print_tables(results: dict, folder: Path) -> None:
    """Markdown tables: errors per charge state, and the binding curve."""
    names = [n for n in VARIANTS if n in results]
    if not names:
        return
    print(
        "charge-blind force RMSE floor, meV/Å:",
        {k: round(v) for k, v in blind_floor(folder).items()},
    )
    states = list(results[names[0]]["errors"])
    print("| model | " + " | ".join(f"{s} E / F" for s in states) + " |")
    print("|---|" + "---|" * len(states))
    for name in names:
        row = results[name]["errors"]
        cells = [f"{row[s]['energy_rmse']:.1f} / {row[s]['forces_rmse']:.0f}" for s in states]
        print(f"| {name} | " + " | ".join(cells) + " |")
    reference = results["reference curve"]
    last = reference[-1]
    print("\n| d (Å) | xTB | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for k, distance in enumerate(results["distances"]):
        ref = "—" if reference[k] is None or last is None else f"{reference[k] - last:.3f}"
        cells = [f"{results[n]['curve'][k] - results[n]['curve'][-1]:.3f}" for n in names]
        print(f"| {distance:g} | {ref} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
