"""The models shipped in registry/: usable offline, and stable in molecular dynamics."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from mlcalc import NEMPCalculator, list_pretrained
from mlcalc.structures import liquid_water

SHIPPED = ("water", "water-mlanet", "si", "3bpa", "acac", "ethanol")


def test_the_promised_models_are_in_the_registry_with_measured_errors():
    entries = {entry.name: entry for entry in list_pretrained()}
    for name in SHIPPED:
        assert name in entries, name
        errors = entries[name].test_errors
        assert errors["energy_mae_meV_per_atom"] > 0 and errors["force_mae_meV_per_A"] > 0
        card = entries[name].card_text()
        assert f"{errors['energy_mae_meV_per_atom']:.2f} meV/atom" in card, name
        assert entries[name].speed, name
    assert "stress_mae_meV_per_A3" in entries["si"].test_errors


def test_water_loads_offline_in_a_fresh_process(tmp_path):
    code = (
        "from mlcalc import NEMPCalculator\n"
        "from mlcalc.structures import water_box\n"
        "atoms = water_box(2)\n"
        "atoms.calc = NEMPCalculator.from_pretrained('water', device='cpu')\n"
        "print(atoms.calc.dtype, atoms.get_potential_energy() / len(atoms))\n"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    environment.pop("MLCALC_REGISTRY", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300
    )
    assert done.returncode == 0, done.stderr
    dtype, energy_per_atom = done.stdout.split()
    assert dtype == "torch.float32"
    assert -160 < float(energy_per_atom) < -150  # PBE0 pseudopotential totals: ~ -156 eV/atom


@pytest.mark.slow
def test_water_nve_for_one_picosecond_conserves_energy():
    """1 ps of NVE (0.5 fs steps) of 192 atoms of 300 K water: finite, drift < 5 meV/atom.

    It starts from the shipped equilibrated liquid (:func:`mlcalc.structures.liquid_water`,
    positions and momenta after 10 ps of Langevin NVT at 300 K with this model), so the run
    stays near 300 K. (Straight from ``water_box``'s lattice of rigid molecules, the released
    potential energy heats the box to about 590 K; the model stays stable there too, see its
    card.)
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        atoms = liquid_water()
        atoms.calc = NEMPCalculator.from_pretrained("water", device="cpu", skin=1.0)
        dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
        energies = [atoms.get_total_energy()]
        temperatures = [atoms.get_temperature()]
        dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=20)
        dynamics.attach(lambda: temperatures.append(atoms.get_temperature()), interval=20)
        dynamics.run(2000)
    finally:
        torch.set_num_threads(threads)
    energies = np.array(energies)
    assert np.all(np.isfinite(energies)) and np.all(np.isfinite(atoms.positions))
    drift = np.abs(energies - energies[0]).max() / len(atoms)
    assert drift < 5e-3, f"total energy drifted by {1000 * drift:.2f} meV/atom"
    assert 270 < np.mean(temperatures) < 330
