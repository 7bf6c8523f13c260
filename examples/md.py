"""Molecular dynamics of copper: NPT with ASE's EMT potential, then an NVE energy check with a
freshly built float64 NEMP model.

    python examples/md.py --plot md.png --trajectory md.traj

The NEMP model is untrained (random weights): it shows that the integration conserves
energy with mlcalc's forces, not copper physics.
"""

from __future__ import annotations

import argparse

import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from mlcalc import NEMPCalculator
from mlcalc.models import NEMP, NEMPConfig
from mlcalc.workflows import md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="md.png", help="figure file (default: md.png)")
    parser.add_argument("--trajectory", default=None, help="optional ASE .traj of the NPT run")
    parser.add_argument("--steps", type=int, default=600, help="NPT steps of 2 fs (600)")
    args = parser.parse_args()

    crystal = bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)
    npt = md(
        crystal,
        EMT(),
        ensemble="npt-isotropic",
        temperature_K=600,
        timestep_fs=2.0,
        steps=args.steps,
        tdamp=50.0,
        pdamp=200.0,
        interval=5,
        trajectory=args.trajectory,
        progress=True,
    )
    expansion = npt.volume[len(npt.volume) // 2 :].mean() / npt.volume[0] - 1
    print(
        f"NPT (EMT, 600 K, 0 GPa): T = {npt.temperature_mean:.0f} ± {npt.temperature_std:.0f} K, "
        f"volume {100 * expansion:+.2f} % (thermal expansion)"
    )
    npt.plot(args.plot, dpi=100)
    print(f"wrote {args.plot}")

    torch.manual_seed(0)
    model = NEMP(NEMPConfig.preset("small", elements=["Cu"], cutoff=4.0))  # untrained
    nve = md(
        bulk("Cu", "fcc", a=3.61) * (3, 3, 3),
        NEMPCalculator(model, device="cpu", dtype="float64"),
        ensemble="nve",
        temperature_K=50,
        timestep_fs=1.0,
        steps=200,
        interval=1,
    )
    spread = (nve.total_energy.max() - nve.total_energy.min()) / nve.n_atoms
    print(
        f"NVE (untrained NEMP, float64): total energy within {1e3 * spread:.5f} meV/atom, "
        f"drift {1e3 * nve.energy_drift:.4f} meV/atom/ps"
    )


if __name__ == "__main__":
    main()
