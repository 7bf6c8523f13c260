"""LAMMPS: ``pair_style mlcalc``, a plugin that runs mlcalc models across MPI ranks.

>>> from mlcalc.lammps import build_plugin
>>> build_plugin()  # then, in a LAMMPS input: plugin load <that path>

See ``docs/lammps.md``. :mod:`mlcalc.lammps.pair` is what the plugin calls on each rank;
:mod:`mlcalc.lammps.build` compiles the plugin from ``src/pair_mlcalc.cpp``.
"""

from mlcalc.lammps.build import build_plugin, lammps_environment, lammps_executable, mpiexec
from mlcalc.lammps.pair import PairEvaluator, d3_pair_style, receptive_field

__all__ = [
    "PairEvaluator",
    "build_plugin",
    "d3_pair_style",
    "lammps_environment",
    "lammps_executable",
    "mpiexec",
    "receptive_field",
]
