"""The structures mlcalc ships and builds for tests, examples and benchmarks."""

from __future__ import annotations

import numpy as np

from mlcalc.neighbors import neighbor_list
from mlcalc.structures import liquid_water, water_box


def test_liquid_water_is_an_equilibrated_300_kelvin_box_of_64_molecules():
    atoms = liquid_water()
    assert atoms.get_chemical_formula() == "H128O64"
    assert atoms.pbc.all() and atoms.calc is None
    density = atoms.get_masses().sum() / atoms.get_volume() * 1.66053907  # amu/Å³ -> g/cm³
    assert abs(density - 1.00) < 0.01
    assert 250.0 < atoms.get_temperature() < 350.0  # momenta of the last equilibration frame
    assert abs(atoms.get_momenta().sum(axis=0)).max() < 1.0  # no flying ice cube
    assert "10 ps of Langevin NVT at 300 K" in atoms.info["made_by"]
    # a liquid, not the starting lattice, and no collapsed contacts: every O keeps its two H
    i, j, _, distances = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, 1.2)
    oxygen_hydrogen = (atoms.numbers[i] == 8) & (atoms.numbers[j] == 1)
    assert (
        np.bincount(i[oxygen_hydrogen], minlength=len(atoms))[atoms.numbers == 8].tolist()
        == [2] * 64
    )
    assert distances.min() > 0.85
    assert not np.allclose(atoms.positions, water_box(4).positions, atol=0.5)


def test_liquid_water_is_a_fresh_copy_each_time():
    first = liquid_water()
    first.positions += 1.0
    assert not np.allclose(first.positions, liquid_water().positions)
