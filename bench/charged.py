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
  random, centre-of-mass separations 5–16 Å: inside and well beyond the model cutoff;
* ``cations``: the like-charged pair Na2Cl⁺ · Na3Cl2⁺ (total charge +2), made the same way. Both
  fragments are closed-shell cations, so no charge moves between them as they part and xTB's
  fragment charges stay near +1 each: a clean q₁q₂/r tail. (Between the ion pair's fragments
  xTB moves charge back as they part, 0.71 e at 6 Å to 0.53 e at 30 Å.)

The same geometries appear in both charge states, so a model that cannot see the charge cannot
tell them apart. The split (80/10/10 train/validation/test) is by geometry: both labels of a
geometry land in the same set. Labelling takes a few milliseconds per frame; the data is cached
as ``data.extxyz`` under ``--out`` (keep it out of the repository).

Three NEMP models (``small`` preset, same frames, E0s, seed, cutoff and wall-clock budget) are
trained with ``mlcalc.training.train``: no charge input, ``charge_embedding``, and
``charge_embedding`` with ``long_range="coulomb"``. Errors are those of ``mlcalc eval``
(:func:`mlcalc.training.evaluation.evaluate_file`) on the test frames of each system and charge
state: energy RMSE (meV/atom) and force-component RMSE (meV/Å). The binding curves are the
energy of each rigid, perpendicular pair against the separation of the fragment centres,
relative to the largest separation, reference against each model (xTB's SCF of a separated
pair may need a smaller mixer damping: the curve retries with 0.1 and 0.05; training frames
whose SCF fails at tblite's default are dropped). Nothing here asserts on the numbers.
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


def linear(symbols: str, spacing: float) -> Atoms:
    """A linear chain of ``symbols`` ``spacing`` Å apart, centred at the origin along x."""
    atoms = Atoms(symbols)
    atoms.positions[:, 0] = spacing * np.arange(len(atoms))
    atoms.positions -= atoms.positions.mean(axis=0)
    return atoms


def ion_pair_fragments() -> tuple[Atoms, Atoms]:
    """Linear Na–Cl–Na⁺ (2.5 Å) and Cl–Na–Cl⁻ (2.45 Å)."""
    return linear("NaClNa", 2.5), linear("ClNaCl", 2.45)


def cation_pair_fragments() -> tuple[Atoms, Atoms]:
    """Linear Na–Cl–Na⁺ and Na–Cl–Na–Cl–Na⁺ (2.5 Å)."""
    return linear("NaClNa", 2.5), linear("NaClNaClNa", 2.5)


#: Two-fragment systems: name -> (fragments, total charge e, binding-curve title).
PAIRS = {
    "pair": (ion_pair_fragments, 0, "Na₂Cl⁺ · NaCl₂⁻"),
    "cations": (cation_pair_fragments, 2, "Na₂Cl⁺ · Na₃Cl₂⁺"),
}


def rigid_pair(system: str, distance: float) -> Atoms:
    """The unrattled pair of ``system``: the second fragment's axis perpendicular to the first's,
    centres ``distance`` Å apart along x (closest atoms ``distance - 2.5`` Å apart)."""
    first, second = PAIRS[system][0]()
    second.rotate(90, "z")
    second.positions += [distance, 0.0, 0.0]
    return first + second


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


def random_pair(system: str, rng: np.random.Generator) -> Atoms:
    """The fragments of ``system``, rattled, in random orientations, centres 5–16 Å apart,
    atoms ≥ 2.6 Å apart."""
    from scipy.spatial.transform import Rotation

    while True:
        parts = []
        for fragment in PAIRS[system][0]():
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
    for system in PAIRS:
        frames.extend(pair_frames(system, pairs, index, rng))
        index += pairs
    return frames


def pair_frames(system: str, count: int, first: int, rng: np.random.Generator) -> list[Atoms]:
    """``count`` labelled :func:`random_pair` frames of ``system`` (closed-shell, its total
    charge), numbered as geometries from ``first``."""
    frames: list[Atoms] = []
    while len(frames) < count:
        charge = PAIRS[system][1]
        atoms = label(random_pair(system, rng), charge, 1, system=system, geometry=first)
        if atoms is not None:
            frames.append(atoms)
            first += 1
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


def binding_curves(checkpoint: Path) -> dict[str, list[float]]:
    """Model energies (eV) of each :func:`rigid_pair` at :data:`CURVE` separations."""
    from mlcalc import NEMPCalculator

    calc = NEMPCalculator.from_checkpoint(checkpoint, device="cpu")
    curves = {}
    for system, (_, charge, _) in PAIRS.items():
        curves[system] = []
        for distance in CURVE:
            atoms = rigid_pair(system, distance)
            atoms.info.update(charge=charge, spin=1)
            atoms.calc = calc
            curves[system].append(float(atoms.get_potential_energy()))
    return curves


def reference_curve(system: str) -> list[float | None]:
    """xTB energies (eV) of :func:`rigid_pair` at :data:`CURVE` (``None`` where SCF fails)."""
    curve = []
    for distance in CURVE:
        atoms = label(rigid_pair(system, distance), PAIRS[system][1], 1, retry=True)
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
        for system in [n for n in PAIRS if n not in {a.info["system"] for a in frames}]:
            first = 1 + max(int(a.info["geometry"]) for a in frames)
            rng = np.random.default_rng([args.seed, first])
            frames.extend(pair_frames(system, args.pairs, first, rng))
            write(data, frames)
            print(f"added {args.pairs} {system} frames to {data}")
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
    references = results.setdefault("reference curves", {})
    for system in PAIRS:
        if system not in references:
            references[system] = reference_curve(system)
    results.update(frames=counts, distances=list(CURVE), budget=args.max_time)
    for name in args.variants:
        start = time.perf_counter()
        checkpoint = train_variant(name, VARIANTS[name], args.out, args)
        results[name] = {"errors": score(checkpoint, args.out, states)}
        results[name]["curves"] = binding_curves(checkpoint)
        results[name]["seconds"] = time.perf_counter() - start
        results_file.write_text(json.dumps(results, indent=1))
        print(f"trained and scored {name!r} in {results[name]['seconds']:.0f} s")
    print_tables(results, args.out)


def curve_figure(results: dict, cutoff: float) -> Figure:
    """E(d) − E(30 Å) of each pair (eV), xTB and each model, one panel per pair; the separation
    at which the closest atoms reach the cutoff is marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.0, 3.6), layout="constrained")
    distances = results["distances"]
    for axes, (system, (_, _, title)) in zip(
        figure.subplots(1, len(PAIRS)), PAIRS.items(), strict=True
    ):
        reference = results["reference curves"][system]
        axes.plot(distances, relative(reference), "ko-", label="GFN2-xTB")
        for name in [n for n in VARIANTS if n in results]:
            axes.plot(distances, relative(results[name]["curves"][system]), ".-", label=name)
        axes.axvline(cutoff + 2.5, color="grey", linestyle=":", label="closest atoms at cutoff")
        axes.set_xlabel(f"centre–centre distance of {title} (Å)")
        axes.set_ylabel("E(d) − E(30 Å) (eV)")
        axes.legend(frameon=False)
    return figure


def relative(curve: list[float | None]) -> list[float | None]:
    """``curve`` less its last point (``None`` where a point or the last one is missing)."""
    last = curve[-1]
    return [None if e is None or last is None else e - last for e in curve]


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
    for system, (_, charge, title) in PAIRS.items():
        reference = relative(results["reference curves"][system])
        curves = [relative(results[n]["curves"][system]) for n in names]
        print(f"\n{title} (total charge {charge:+d}), E(d) − E(30 Å) in eV:")
        print("| d (Å) | xTB | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for k, distance in enumerate(results["distances"]):
            ref = "—" if reference[k] is None else f"{reference[k]:.3f}"
            cells = [f"{curve[k]:.3f}" for curve in curves]
            print(f"| {distance:g} | {ref} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
