"""Charged clusters: a charge-blind model against charge embedding and charge + long range.

Usage::

    python bench/charged.py --structures 400 --epochs 200 --max-time 2h --out bench-charged
    python bench/charged.py --structures 12 --epochs 2          # toy size: proves it runs

Data (issue #15, in the spirit of Ko et al., Nat. Commun. 12, 398 (2021)): GFN2-xTB
(``tblite``, ``pip install tblite``) energies and forces of

* a polyyne chain ``C6H2`` as neutral singlet and as cation doublet (same atoms), and
* a ``Na4Cl4`` rock-salt cluster as neutral singlet and as cation doublet,

each geometry rattled by Gaussian displacements of several amplitudes (a stand-in for short
MD at several temperatures; each frame is one single point). Frames carry
``atoms.info["charge"]`` and ``["spin"]``. The same geometries appear in both charge states, so a
model that cannot see the charge cannot tell them apart.

Three NEMP models (``small`` preset, same data, seed and epoch budget) are trained with
``mlcalc.training.train``: no charge input, ``charge_embedding``, and ``charge_embedding`` with
``long_range="coulomb"``. The table gives the energy (meV/atom) and force (meV/Å) RMSE of
each model on the test set, per system and charge state. Nothing here asserts on the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

#: System name → (structure builder, charge states as (charge e, multiplicity)).
CHARGE_STATES = {"chain": [(0, 1), (1, 2)], "nacl": [(0, 1), (1, 2)]}
#: Rattle amplitudes, Å (a proxy for several MD temperatures).
AMPLITUDES = (0.03, 0.06, 0.10)
VARIANTS = {
    "no charge": {},
    "charge embedding": {"charge_embedding": True},
    "charge + long range": {"charge_embedding": True, "long_range": "coulomb"},
}


def chain() -> Atoms:
    """Linear polyyne H–C≡C–C≡C–C≡C–H along x (C–C 1.28 Å, C–H 1.06 Å)."""
    x = [0.0, 1.06, *[1.06 + 1.28 * k for k in range(1, 6)]]
    x.append(x[-1] + 1.06)
    atoms = Atoms("HC6H", positions=[[v, 0.0, 0.0] for v in x])
    atoms.center(vacuum=5.0)
    return atoms


def nacl() -> Atoms:
    """A 2×2×2 rock-salt Na4Cl4 cube (Na–Cl 2.6 Å)."""
    d = 2.6
    positions, symbols = [], []
    for i in range(2):
        for j in range(2):
            for k in range(2):
                positions.append([i * d, j * d, k * d])
                symbols.append("Na" if (i + j + k) % 2 == 0 else "Cl")
    atoms = Atoms(symbols, positions=positions)
    atoms.center(vacuum=5.0)
    return atoms


def generate(count: int, seed: int) -> list[Atoms]:
    """``count`` rattled geometries per system, each in every charge state, with xTB labels."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from tblite.ase import TBLite

    rng = np.random.default_rng(seed)
    frames = []
    for name, build in (("chain", chain), ("nacl", nacl)):
        for index in range(count):
            geometry = build()
            amplitude = AMPLITUDES[index % len(AMPLITUDES)]
            geometry.positions += rng.normal(0.0, amplitude, geometry.positions.shape)
            for charge, multiplicity in CHARGE_STATES[name]:
                atoms = geometry.copy()
                atoms.calc = TBLite(
                    method="GFN2-xTB", charge=charge, multiplicity=multiplicity, verbosity=0
                )
                energy, forces = atoms.get_potential_energy(), atoms.get_forces()
                atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
                atoms.info.update(system=name, charge=charge, spin=multiplicity)
                frames.append(atoms)
    return frames


def split_frames(frames: list[Atoms], seed: int) -> tuple[list[Atoms], list[Atoms]]:
    """80/20 split by geometry (both charge states of a geometry land on the same side)."""
    geometries = len(frames) // 2
    order = np.random.default_rng(seed).permutation(geometries)
    test = set(order[: max(1, geometries // 5)].tolist())
    train = [f for k, f in enumerate(frames) if k // 2 not in test]
    return train, [f for k, f in enumerate(frames) if k // 2 in test]


def train_variant(name: str, options: dict, folder: Path, args: argparse.Namespace) -> Path:
    """Train one variant; returns its best checkpoint."""
    from mlcalc.training import TrainConfig, train

    output = folder / name.replace(" ", "-").replace("+", "and")
    config = TrainConfig.from_dict(
        {
            "train_file": str(folder / "train.extxyz"),
            "valid_fraction": 0.1,
            "model": {"preset": "small", "cutoff": args.cutoff, **options},
            "batch_size": 4,
            "epochs": args.epochs,
            "max_time": args.max_time,
            "lr": 0.005,
            "forces_weight": 10.0,
            "dtype": "float64",
            "threads": args.threads,
            "seed": args.seed,
            "output_dir": str(output),
        }
    )
    train(config)
    return output / "best.safetensors"


def errors_by_state(checkpoint: Path, test: list[Atoms]) -> dict[str, tuple[float, float]]:
    """``"system q=..." → (energy RMSE meV/atom, force RMSE meV/Å)`` on ``test``."""
    import warnings

    from mlcalc import NEMPCalculator

    calc = NEMPCalculator.from_checkpoint(checkpoint, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the charge-blind model warns that it ignores charge
        results = calc.calculate_batch(test)
    sums: dict[str, list[float]] = {}
    for atoms, result in zip(test, results, strict=True):
        key = f"{atoms.info['system']} q={int(atoms.info['charge'])}"
        entry = sums.setdefault(key, [0.0, 0, 0.0, 0])
        entry[0] += ((result["energy"] - atoms.get_potential_energy()) / len(atoms)) ** 2
        entry[1] += 1
        entry[2] += float(np.square(result["forces"] - atoms.get_forces()).sum())
        entry[3] += 3 * len(atoms)
    return {
        key: (1000 * math.sqrt(e / n), 1000 * math.sqrt(f / m))
        for key, (e, n, f, m) in sorted(sums.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--structures", type=int, default=400, help="geometries per system")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--max-time", default=None, help="per variant, e.g. 30m")
    parser.add_argument("--cutoff", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-charged"))
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data.extxyz"
    if data.is_file():
        frames = read(data, index=":")
        print(f"using {len(frames)} frames from {data}")
    else:
        start = time.perf_counter()
        frames = generate(args.structures, args.seed)
        write(data, frames)
        print(f"{len(frames)} xTB single points in {time.perf_counter() - start:.0f} s")
    train_frames, test = split_frames(frames, args.seed)
    write(args.out / "train.extxyz", train_frames)
    table = {}
    for name, options in VARIANTS.items():
        start = time.perf_counter()
        checkpoint = train_variant(name, options, args.out, args)
        table[name] = errors_by_state(checkpoint, test)
        print(f"trained {name!r} in {time.perf_counter() - start:.0f} s")
    states = list(next(iter(table.values())))
    print(f"\n{len(train_frames)} training / {len(test)} test frames, {args.epochs} epochs")
    print(f"{'model':<22}" + "".join(f"{s:>22}" for s in states))
    print(f"{'':<22}" + "".join(f"{'E meV/at  F meV/Å':>22}" for _ in states))
    for name, row in table.items():
        cells = "".join(f"{row[s][0]:10.1f}{row[s][1]:12.1f}" for s in states)
        print(f"{name:<22}{cells}")
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
