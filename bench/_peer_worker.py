"""Worker for ``bench/peers.py``: times one peer model inside that peer's own venv.

Run with a peer venv's python, never with the project's: it imports only the peer package,
ase, torch, numpy and the standard library (no mlcalc). Two modes::

    python _peer_worker.py --versions {mace,nequip,sevenn}   # one JSON line of versions
    python _peer_worker.py --measure '{"model": "mace-64", "dtype": "float32", ...}'

``--measure`` reads the water box that the parent wrote as extxyz (the same atoms as
``mlcalc.structures.water_box``) and times steps exactly as ``bench/speed.py`` does for our
models: every atom displaced by N(0, 0.01 Å), then one
``calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)`` through the package's
own ASE calculator, neighbour-list rebuild included; the first step is the warm-up, the step
time the median of the timed steps after it. It prints one JSON line (the same keys as a
``bench/speed.py`` row). Models are randomly initialised with an r_max of 5 Å and built as in
the peer measurements (shared/bench-peers/model_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

#: Peer model name → (venv / package key, configuration).
PEER_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    # ScaleShiftMACE, RealAgnosticResidualInteractionBlock, 2 interactions, correlation 3
    "mace-128": ("mace", {"hidden_irreps": "128x0e+128x1o"}),
    "mace-64": ("mace", {"hidden_irreps": "64x0e+64x1o"}),
    # NequIPGNNModel defaults: 32 features, l_max 1, 4 layers
    "nequip": ("nequip", {"num_features": 32, "l_max": 1, "num_layers": 4}),
    "nequip-l2": ("nequip", {"num_features": 32, "l_max": 2, "num_layers": 4}),
    # sevenn._const.model_defaults: 32 channels, lmax 1, 3 convolutions
    "sevenn": ("sevenn", {"channels": 32, "lmax": 1, "num_convolution": 3}),
    "sevenn-l2": ("sevenn", {"channels": 32, "lmax": 2, "num_convolution": 3}),
}
#: Package key → distributions whose versions are reported.
DISTRIBUTIONS = {
    "mace": ["mace-torch", "e3nn", "torch", "ase", "numpy", "matscipy"],
    "nequip": ["nequip", "e3nn", "torch", "ase", "numpy", "matscipy"],
    "sevenn": ["sevenn", "e3nn", "torch", "torch-geometric", "ase", "numpy"],
}
CUTOFF = 5.0
AVG_NUM_NEIGHBORS = 50.0


def import_torch() -> Any:
    import torch

    # e3nn 0.4.4 (pinned by mace-torch) torch.load()s a constants file that holds `slice`;
    # torch >= 2.6 loads with weights_only=True by default and refuses it unless allow-listed.
    torch.serialization.add_safe_globals([slice])
    return torch


def versions(package: str) -> dict[str, str]:
    """Versions of the package's distributions, after checking that the package imports."""
    from importlib import metadata

    import_torch()
    if package == "mace":
        import mace.calculators  # noqa: F401
        from e3nn import o3  # noqa: F401
    elif package == "nequip":
        import nequip.integrations.ase  # noqa: F401
        from nequip.model import NequIPGNNModel  # noqa: F401
    elif package == "sevenn":
        import sevenn.calculator  # noqa: F401
        from sevenn.model_build import build_E3_equivariant_model  # noqa: F401
    else:
        raise ValueError(f"unknown peer package {package!r}")
    found = {}
    for name in DISTRIBUTIONS[package]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = ".".join(map(str, sys.version_info[:3]))
    return found


def build_calculator(model: str, dtype: str) -> tuple[Any, int]:
    """The peer's ASE calculator around a randomly initialised model, and its parameter count."""
    import numpy as np

    torch = import_torch()
    torch.set_default_dtype(getattr(torch, dtype))
    torch.manual_seed(0)
    package, config = PEER_CONFIGS[model]
    if package == "mace":
        from e3nn import o3
        from mace import modules
        from mace.calculators import MACECalculator

        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        net = modules.ScaleShiftMACE(
            r_max=CUTOFF,
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=3,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=2,
            num_elements=2,
            hidden_irreps=o3.Irreps(config["hidden_irreps"]),
            MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.array([-13.6, -2040.0]),
            avg_num_neighbors=AVG_NUM_NEIGHBORS,
            atomic_numbers=[1, 8],
            correlation=3,
            gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64],
            atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        ).to(getattr(torch, dtype))
        net.eval()
        calc = MACECalculator(models=net, device="cpu", default_dtype=dtype)
    elif package == "nequip":
        from nequip.integrations.ase import NequIPCalculator
        from nequip.integrations.utils import basic_transforms
        from nequip.model import NequIPGNNModel
        from nequip.utils.global_state import set_global_state

        set_global_state(allow_tf32=False)
        net = NequIPGNNModel(
            seed=0,
            model_dtype=dtype,
            type_names=["H", "O"],
            r_max=CUTOFF,
            num_bessels=8,
            avg_num_neighbors=AVG_NUM_NEIGHBORS,
            **config,
        )
        net.eval()
        transforms = basic_transforms(net.metadata, CUTOFF, ["H", "O"], {"H": "H", "O": "O"})
        calc = NequIPCalculator(model=net, device="cpu", transforms=transforms)
    else:
        import sevenn._keys as key
        from sevenn._const import model_defaults
        from sevenn.calculator import SevenNetCalculator
        from sevenn.model_build import build_E3_equivariant_model

        cfg = model_defaults({})
        cfg.update(
            {
                key.CHEMICAL_SPECIES: ["H", "O"],
                key.NUM_SPECIES: 2,
                key.TYPE_MAP: {1: 0, 8: 1},
                key.CUTOFF: CUTOFF,
                key.CONV_DENOMINATOR: AVG_NUM_NEIGHBORS,
                key.SHIFT: 0.0,
                key.SCALE: 1.0,
                key.NODE_FEATURE_MULTIPLICITY: config["channels"],
                key.LMAX: config["lmax"],
                key.NUM_CONVOLUTION: config["num_convolution"],
                key.USE_BIAS_IN_LINEAR: False,
                key.IS_PARITY: True,
            }
        )
        net = build_E3_equivariant_model(cfg).to(getattr(torch, dtype)).eval()
        calc = SevenNetCalculator(model=net, device="cpu")
    return calc, sum(p.numel() for p in net.parameters())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine (as in bench/speed.py)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return float("nan")
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one (model, dtype, size); the same protocol and keys as bench/speed.py."""
    limit = int(spec["max_rss_gb"] * 2**30)  # address space >= RSS: a runaway raises an error
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    from ase.calculators.calculator import all_changes
    from ase.io import read

    torch = import_torch()
    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    calc, params = build_calculator(spec["model"], spec["dtype"])
    atoms = read(spec["structure"], format="extxyz")
    size = len(atoms)
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {
        "model": spec["model"],
        "dtype": spec["dtype"],
        "atoms": size,
        "threads": spec["threads"],
        "params": params,
        "rss_after_build_mb": peak_rss_mb(),
        "loadavg_start": os.getloadavg()[0],
    }

    def step() -> float:
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        return time.perf_counter() - start

    started = time.perf_counter()
    row["first_step_s"] = step()  # also the warm-up
    times: list[float] = []
    cpu = (time.perf_counter(), busy_cpu_s(), own_cpu_s())
    while len(times) < spec["repeats"] and (
        not times or time.perf_counter() - started + times[-1] < spec["budget_s"]
    ):
        times.append(step())
    now = (time.perf_counter(), busy_cpu_s(), own_cpu_s())
    wall, busy, own = (b - a for a, b in zip(cpu, now, strict=True))
    row["background_cpu"] = max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))
    median = statistics.median(times)
    row.update(
        median_ms=1e3 * median,
        min_ms=1e3 * min(times),
        steps=len(times),
        us_per_atom=1e6 * median / size,
        peak_rss_mb=peak_rss_mb(),
        loadavg_end=os.getloadavg()[0],
        energy=float(calc.results["energy"]),
        has_stress="stress" in calc.results,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--versions", choices=sorted(DISTRIBUTIONS))
    mode.add_argument("--measure", help="JSON: model, dtype, structure, threads, repeats, ...")
    args = parser.parse_args()
    if args.versions:
        print(json.dumps(versions(args.versions)), flush=True)
    else:
        print(json.dumps(measure(json.loads(args.measure))), flush=True)


if __name__ == "__main__":
    main()
