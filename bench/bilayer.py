"""Coronene dimer: a local model, latent-charge Coulomb and D3 on the interaction tail.

Usage::

    OMP_NUM_THREADS=1 python bench/bilayer.py --max-time 8m --out /tmp/mlcalc-bilayer
    python bench/bilayer.py --report --figure docs/img/bilayer-binding.png --out /tmp/mlcalc-bilayer
    python bench/bilayer.py --monomer benzene --frames 8 --epochs 1 --curve 3.4 6 9 20 --out /tmp/t

Data (issue #15): GFN1-xTB (``tblite``, ``pip install tblite``) energies and forces of the
stacked coronene dimer (C24H12)2, 72 atoms, a graphene-flake bilayer and a classic
dispersion-bound benchmark, as a molecule (no cell): tblite's periodic xTB (0.8.0) is not
converged in the vacuum direction (a lone h-BN monolayer's energy falls by 47 meV/atom from 15
to 30 Å cell height and by 89 meV/atom to 90 Å, all electronic), so a periodic bilayer's tail
is an artefact of the cell. The monomer (D6h, C–C 1.42 Å, C–H 1.09 Å) is relaxed once with xTB
(BFGS, fmax 0.01 eV/Å) and cached under ``--out``. Each frame stacks a second monomer at a
spacing d of the mean planes drawn from 3–8 Å (``info["spacing"]``), turned about the normal at
random, tilted by up to 5°, shifted laterally by up to 1.5 Å, every atom then rattled (normal,
σ drawn from 0.01–0.05 Å); closest intermolecular atoms ≥ 2.2 Å (else drawn again). Frames
whose SCF fails are dropped; the rest are split 80/10/10 (seeded) and cached as ``data.extxyz``
under ``--out`` (keep it out of the repository).

Three NEMP models (``medium`` preset, the recipe's model; float64, same frames, E0s, seed,
cutoff and wall-clock budget; lr and force weight as ``bench/charged.py``; TrainConfig's batch
of about 45 atoms, one 72-atom frame) are trained with ``mlcalc.training.train`` on energies
and forces:

* ``local``: no options;
* ``long range``: ``long_range="coulomb"`` (it needs no ``charge_embedding``; charge 0);
* ``local + D3``: trained on xTB − D3-BJ(PBE) (simple-dftd3, ``pip install dftd3``) and used
  with ``dispersion="d3-bj", dispersion_xc="pbe"``, so its predictions are model + D3.

Errors are each ASE calculator's (D3 included) against the full xTB labels of the test frames:
energy RMSE (meV/atom), force-component RMSE (meV/Å). The binding curve is the interaction
energy E(d) − 2 E(monomer) (eV, whole dimer) of the unrattled, eclipsed, parallel (AA) dimer,
xTB, D3-BJ(PBE) alone and each model, with its minimum and its mean absolute deviation from xTB
for d > cutoff (closest intermolecular atoms, d apart, beyond it). Nothing asserts on numbers.

Why GFN1 and not GFN2 (measured with tblite 0.8.0): GFN2's D4 has the three-body (ATM) term
scaled by s9 = 5 (tblite's non-self-consistent "dispersion energy", cut off at 25 bohr =
13.2 Å), which makes the AA coronene dimer repulsive from 6 to 13 Å: +0.075 eV at 7 Å (ATM
+0.126 eV, the rest −0.051 eV; D3-BJ(PBE) alone −0.048 eV), ~0 from 13.2 Å on. GFN1's
dispersion is two-body D3(BJ) with its own damping, attractive all the way out (−0.064 eV at
7 Å), the tail that a DFT-D reference has.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms
from ase.io import read, write

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from mlcalc import NEMPCalculator
    from mlcalc.dispersion import D3Dispersion

#: Bond lengths of the unrelaxed monomer, Å.
CC, CH = 1.42, 1.09
#: Range of the spacing and of the rattle amplitude of the frames, Å.
SPACINGS, RATTLES = (3.0, 8.0), (0.01, 0.05)
#: Largest lateral shift (Å) and tilt (degrees) of the frames' upper monomer; closest
#: intermolecular atoms allowed (Å).
SHIFT, TILT, CLOSEST = 1.5, 5.0, 2.2
#: tblite method of the reference (see the module docstring for why not GFN2-xTB).
METHOD = "GFN1-xTB"
#: Spacings of the binding curve, Å.
CURVE = (3.0, 3.2, 3.4, 3.6, 3.8, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 20.0)
#: Variant name → (model config options, whether it is trained and used with D3).
VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "local": ({}, False),
    "long range": ({"long_range": "coulomb"}, False),
    "local + D3": ({}, True),
}
#: The D3 of the ``local + D3`` variant: (damping, functional).
D3 = ("d3-bj", "pbe")
#: Training settings of every variant (as ``bench/charged.py``).
TRAINING = {"e0s": "fit", "lr": 0.005, "forces_weight": 10.0, "dtype": "float64", "device": "cpu"}
#: The reference curves, before the variants.
REFERENCES = ("xTB", "D3-BJ alone")


def flake(name: str) -> Atoms:
    """Unrelaxed planar benzene or coronene (D6h, :data:`CC`, :data:`CH`) in the xy plane,
    centred at the origin."""
    rings = 7 if name == "coronene" else 1
    angles = np.radians(60.0 * np.arange(6))
    centres = [np.zeros(2), *(np.sqrt(3) * CC * np.c_[np.cos(angles), np.sin(angles)])][:rings]
    corners = CC * np.c_[np.cos(angles + np.pi / 6), np.sin(angles + np.pi / 6)]
    carbons: list[np.ndarray] = []
    for point in (centre + corner for centre in centres for corner in corners):
        if all(np.linalg.norm(point - other) > 0.1 for other in carbons):
            carbons.append(point)
    c = np.array(carbons)
    bonded = np.linalg.norm(c[:, None] - c[None], axis=-1) < 1.1 * CC
    np.fill_diagonal(bonded, False)
    hydrogens = []
    for k in np.flatnonzero(bonded.sum(axis=1) == 2):  # edge carbons: one H each, outward
        outward = c[k] - c[bonded[k]].mean(axis=0)
        hydrogens.append(c[k] + CH * outward / np.linalg.norm(outward))
    positions = np.c_[np.vstack([c, hydrogens]), np.zeros(len(c) + len(hydrogens))]
    return Atoms(f"C{len(c)}H{len(hydrogens)}", positions=positions)


def label(structure: Atoms, **info: float) -> Atoms | None:
    """``structure`` (neutral singlet) with :data:`METHOD` energy (eV) and forces (eV/Å) attached;
    ``None`` if its SCF fails."""
    from ase.calculators.calculator import CalculationFailed
    from ase.calculators.singlepoint import SinglePointCalculator
    from tblite.ase import TBLite

    atoms = structure.copy()
    atoms.calc = TBLite(method=METHOD, verbosity=0)
    try:
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    except CalculationFailed:
        return None
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    atoms.info.update(charge=0, spin=1, **info)
    return atoms


def relaxed_monomer(name: str, out: Path) -> Atoms:
    """The xTB-relaxed :func:`flake` (energy attached), centred, its plane turned into xy;
    cached as ``{name}.extxyz`` under ``out``."""
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    cache = out / f"{name}.extxyz"
    if cache.is_file():
        return read(cache)
    atoms = flake(name)
    atoms.calc = TBLite(method=METHOD, verbosity=0)
    start, optimizer = time.perf_counter(), BFGS(atoms, logfile=None)
    optimizer.run(fmax=0.01, steps=500)
    print(f"relaxed {name}: {optimizer.nsteps} BFGS steps, {time.perf_counter() - start:.1f} s")
    centred = atoms.positions - atoms.positions.mean(axis=0)
    axes = np.linalg.svd(centred)[2]  # rows: principal axes, the plane normal last
    axes[2] *= np.linalg.det(axes)  # a rotation, not a reflection
    monomer = label(Atoms(atoms.numbers, positions=centred @ axes.T))
    if monomer is None:
        raise SystemExit(f"xTB SCF failed on the relaxed {name}")
    write(cache, monomer)
    return monomer


def dimer(
    monomer: Atoms, spacing: float, turn: ArrayLike = (0, 0, 0), shift: ArrayLike = (0, 0)
) -> Atoms:
    """``monomer`` (in the xy plane, centred) and a copy ``spacing`` Å above it, turned by
    ``turn = (angle, tilt, axis)``: ``angle`` about z, then ``tilt`` about the in-plane direction
    at ``axis`` (all degrees), and shifted in-plane by ``shift [2]`` (Å). Defaults: the
    eclipsed, parallel (AA) dimer. Tags: 0 lower, 1 upper."""
    angle, tilt, axis = np.asarray(turn, dtype=float)
    lower = Atoms(monomer.numbers, positions=monomer.positions, tags=[0] * len(monomer))
    upper = Atoms(monomer.numbers, positions=monomer.positions, tags=[1] * len(monomer))
    upper.rotate(angle, "z")
    upper.rotate(tilt, (np.cos(np.radians(axis)), np.sin(np.radians(axis)), 0.0))
    upper.positions += np.append(shift, spacing)
    return lower + upper


def closest(atoms: Atoms) -> float:
    """Smallest distance (Å) between the lower (tag 0) and the upper (tag 1) monomer."""
    tags = atoms.get_tags()
    lower, upper = atoms.positions[tags == 0], atoms.positions[tags == 1]
    return float(np.linalg.norm(lower[:, None] - upper[None], axis=-1).min())


def generate(monomer: Atoms, count: int, seed: int) -> list[Atoms]:
    """``count`` random frames (see the module docstring), labelled; failed SCFs dropped."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        while True:
            spacing, sigma = float(rng.uniform(*SPACINGS)), float(rng.uniform(*RATTLES))
            radius, direction = SHIFT * np.sqrt(rng.uniform()), rng.uniform(0.0, 2 * np.pi)
            shift = radius * np.array([np.cos(direction), np.sin(direction)])
            turn = rng.uniform(0.0, [360.0, TILT, 360.0])
            structure = dimer(monomer, spacing, turn, shift)
            structure.positions += rng.normal(0.0, sigma, structure.positions.shape)
            if closest(structure) >= CLOSEST:
                break
        atoms = label(structure, spacing=spacing, rattle=sigma)
        if atoms is not None:
            frames.append(atoms)
    return frames


def split_frames(frames: list[Atoms], seed: int) -> dict[str, list[Atoms]]:
    """80/10/10 train/valid/test, seeded."""
    order = np.random.default_rng(seed).permutation(len(frames))
    tenth = max(1, len(frames) // 10)
    parts = {"test": order[:tenth], "valid": order[tenth : 2 * tenth], "train": order[2 * tenth :]}
    return {name: [frames[k] for k in sorted(index)] for name, index in parts.items()}


def minus_d3(frames: list[Atoms], d3: D3Dispersion) -> list[Atoms]:
    """Copies of ``frames`` labelled with energy and forces minus those of ``d3``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for frame in frames:
        atoms, dispersion = frame.copy(), d3(frame)
        energy = frame.get_potential_energy() - dispersion["energy"]
        forces = frame.get_forces() - dispersion["forces"]
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        out.append(atoms)
    return out


def train_variant(name: str, options: dict[str, str], data: str, args: argparse.Namespace) -> Path:
    """Train one variant on ``{data}-train.extxyz`` / ``-valid`` under ``--out``; returns its
    best checkpoint."""
    from mlcalc.training import TrainConfig, train

    output = args.out / name.replace(" + ", "-and-").replace(" ", "-")
    files = {f"{k}_file": str(args.out / f"{data}-{k}.extxyz") for k in ("train", "valid")}
    settings = {k: vars(args)[k] for k in ("batch_size", "epochs", "max_time", "threads", "seed")}
    model = {"preset": args.preset, "cutoff": args.cutoff, **options}
    config = {**files, **TRAINING, **settings, "model": model, "output_dir": str(output)}
    result = train(TrainConfig.from_dict(config))
    print(f"  {name}: {result}")
    return output / "best.safetensors"


def score(calc: NEMPCalculator, test: list[Atoms]) -> dict[str, float]:
    """Energy RMSE (meV/atom) and force-component RMSE (meV/Å) of ``calc`` on ``test``."""
    energy, forces = [], []
    for frame in test:
        atoms = frame.copy()
        atoms.calc = calc
        energy.append((atoms.get_potential_energy() - frame.get_potential_energy()) / len(atoms))
        forces.append((atoms.get_forces() - frame.get_forces()).ravel())
    return {
        "energy_rmse": 1000 * float(np.sqrt(np.mean(np.square(energy)))),
        "forces_rmse": 1000 * float(np.sqrt(np.mean(np.square(np.concatenate(forces))))),
    }


def xtb_energy(atoms: Atoms) -> float | None:
    """xTB (:data:`METHOD`) energy (eV) of ``atoms``; ``None`` if its SCF fails."""
    labelled = label(atoms)
    return None if labelled is None else float(labelled.get_potential_energy())


def model_energy(calc: NEMPCalculator, structure: Atoms) -> float:
    """``calc``'s energy (eV) of ``structure`` (neutral singlet)."""
    atoms = structure.copy()
    atoms.info.update(charge=0, spin=1)
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def curve(energy: Callable[[Atoms], float | None], monomer: Atoms, distances: list[float]) -> dict:
    """``energy`` (eV) of ``monomer`` and (``curve``) of the AA dimer at ``distances`` (Å)."""
    return {"monomer": energy(monomer), "curve": [energy(dimer(monomer, d)) for d in distances]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="random frames to label")
    parser.add_argument("--monomer", default="coronene", choices=["coronene", "benzene"])
    parser.add_argument("--curve", type=float, nargs="+", default=list(CURVE), help="d, Å")
    parser.add_argument("--epochs", type=int, default=10000)
    parser.add_argument("--max-time", default=None, help="per variant, e.g. 8m")
    parser.add_argument("--batch-size", type=int, default=None, help="default: TrainConfig's")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mlcalc-bilayer"))
    parser.add_argument("--report", action="store_true", help="print the tables of a past run")
    parser.add_argument("--figure", type=Path, help="with --report: the binding curve as PNG")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from mlcalc import NEMPCalculator
    from mlcalc.dispersion import D3Dispersion

    args = parse_args(argv)
    results_file = args.out / "results.json"
    if args.report:
        results = json.loads(results_file.read_text())
        print_tables(results)
        if args.figure is not None:
            curve_figure(results).savefig(args.figure, dpi=110)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    monomer = relaxed_monomer(args.monomer, args.out)
    atoms = 2 * len(monomer)
    data = args.out / "data.extxyz"
    if data.is_file():
        frames = read(data, index=":")
        if len(frames[0]) != atoms:
            raise SystemExit(f"{data} has {len(frames[0])}-atom frames, not {atoms}: new --out")
        print(f"using {len(frames)} frames from {data}")
    else:
        start = time.perf_counter()
        write(data, frames := generate(monomer, args.frames, args.seed))
        each = (time.perf_counter() - start) / args.frames
        print(f"{len(frames)} of {args.frames} xTB frames, {each:.2f} s per frame")
    split = split_frames(frames, args.seed)
    d3 = D3Dispersion(*D3)
    for name in ("train", "valid"):
        write(args.out / f"xtb-{name}.extxyz", split[name])
        write(args.out / f"xtb-minus-d3-{name}.extxyz", minus_d3(split[name], d3))
    counts = {n: len(m) for n, m in split.items()}
    print(f"frames {counts}")
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if results.get("distances") != args.curve or results.get("monomer") != args.monomer:
        results = {"distances": args.curve, "monomer": args.monomer, "atoms": atoms}
        results["xTB"] = curve(xtb_energy, monomer, args.curve)
        results["D3-BJ alone"] = curve(lambda atoms: d3(atoms)["energy"], monomer, args.curve)
    results.update(frames=counts, budget=args.max_time, cutoff=args.cutoff)
    for name in args.variants:
        start = time.perf_counter()
        options, dispersion = VARIANTS[name]
        data_name = "xtb-minus-d3" if dispersion else "xtb"
        checkpoint = train_variant(name, options, data_name, args)
        extra = {"dispersion": D3[0], "dispersion_xc": D3[1]} if dispersion else {}
        calc = NEMPCalculator.from_checkpoint(checkpoint, device="cpu", **extra)
        results[name] = {
            "errors": score(calc, split["test"]),
            **curve(partial(model_energy, calc), monomer, args.curve),
            "seconds": time.perf_counter() - start,
        }
        results_file.write_text(json.dumps(results, indent=1))
        print(f"trained and scored {name!r} in {results[name]['seconds']:.0f} s")
    print_tables(results)


def curve_names(results: dict) -> list[str]:
    """The curves of ``results``: references first, then the variants present."""
    return [*REFERENCES, *[n for n in VARIANTS if n in results]]


def interaction(results: dict, name: str) -> np.ndarray:
    """E(d) − 2 E(monomer) of one curve of ``results``, eV (NaN where xTB failed)."""
    curve = np.array([np.nan if e is None else e for e in results[name]["curve"]], dtype=float)
    return curve - 2 * results[name]["monomer"]


def minimum(distances: list[float], values: np.ndarray) -> tuple[float, float]:
    """Spacing (Å) and value (eV) of a curve's lowest point, refined by the parabola through it
    and its neighbours where these are evenly spaced and both higher by over 0.1 meV."""
    k = int(np.nanargmin(values))
    if 0 < k < len(values) - 1:
        x, y = distances[k - 1 : k + 2], values[k - 1 : k + 2]
        c = np.polyfit(x, y, 2)
        if np.isclose(x[1] - x[0], x[2] - x[1]) and min(y[0], y[2]) - y[1] > 1e-4 and c[0] > 0:
            at = -c[1] / (2 * c[0])
            return float(at), float(np.polyval(c, at))
    return distances[k], float(values[k])


def curve_figure(results: dict) -> Figure:
    """Interaction energy (eV, meV/atom on the right) against the spacing d: xTB, D3 alone and
    each model; the spacing at which the closest atoms reach the cutoff is marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    axes = figure.add_subplot()
    styles = {"xTB": "ko-", "D3-BJ alone": "--"}
    for name in curve_names(results):
        style, label = styles.get(name, ".-"), METHOD if name == "xTB" else name
        axes.plot(results["distances"], interaction(results, name), style, label=label)
    axes.axvline(results["cutoff"], color="grey", linestyle=":", label="closest atoms at cutoff")
    axes.axhline(0.0, color="grey", linewidth=0.5)
    per_atom = 1000 / results["atoms"]
    scale = (lambda e: e * per_atom, lambda m: m / per_atom)
    right = axes.secondary_yaxis("right", functions=scale)
    right.set_ylabel("(meV/atom)")
    axes.set_xlabel(f"spacing d of the AA {results['monomer']} dimer (Å)")
    axes.set_ylabel("E(d) − 2 E(monomer) (eV)")
    axes.legend(frameon=False)
    return figure


def print_tables(results: dict) -> None:
    """Markdown tables: test errors, minimum and tail deviation per curve, and the curve."""
    distances, cutoff, per_atom = results["distances"], results["cutoff"], 1000 / results["atoms"]
    names = curve_names(results)
    curves = {name: interaction(results, name) for name in names}
    beyond = np.array(distances) > cutoff
    print(
        f"\n| curve | E RMSE (meV/atom) | F RMSE (meV/Å) | minimum (eV) | (meV/atom) | at d (Å) "
        f"| MAD vs xTB, d > {cutoff:g} Å (eV) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        at, depth = minimum(distances, curves[name])
        errors = "— | —"
        if name in VARIANTS:
            rmse = results[name]["errors"]
            errors = f"{rmse['energy_rmse']:.2f} | {rmse['forces_rmse']:.1f}"
        tail = np.abs(curves[name] - curves["xTB"])[beyond]
        mad = f"{np.nanmean(tail):.4f}" if name != "xTB" and beyond.any() else "—"
        print(f"| {name} | {errors} | {depth:.3f} | {depth * per_atom:.2f} | {at:.2f} | {mad} |")
    print(
        f"\nE(d) − 2 E(monomer) of the AA {results['monomer']} dimer, eV for the whole "
        f"{results['atoms']}-atom dimer (× {per_atom:.2f} for meV/atom; E(d) − E({distances[-1]:g}"
        f" Å) is a row less the last). *: d > cutoff, the closest intermolecular atoms (d apart) "
        "beyond it.\n"
    )
    print("| d (Å) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k, spacing in enumerate(distances):
        cells = ["—" if np.isnan(curves[n][k]) else f"{curves[n][k]:.3f}" for n in names]
        print(f"| {spacing:g}{'*' if beyond[k] else ''} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
