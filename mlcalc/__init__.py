"""mlcalc: fast equivariant machine-learning interatomic potentials as ASE calculators.

>>> from mlcalc import NEMPCalculator
>>> atoms.calc = NEMPCalculator.from_checkpoint("model.safetensors")
"""

from mlcalc._version import __version__
from mlcalc.calculators import MLANetCalculator, MLCalculator, NEMPCalculator
from mlcalc.performance import tune_memory_allocator

__all__ = [
    "MLANetCalculator",
    "MLCalculator",
    "NEMPCalculator",
    "__version__",
    "tune_memory_allocator",
]
