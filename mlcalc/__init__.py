"""mlcalc: fast equivariant machine-learning interatomic potentials as ASE calculators.

>>> from mlcalc import NEMPCalculator
>>> atoms.calc = NEMPCalculator.from_pretrained("water")
>>> atoms.calc = NEMPCalculator.from_checkpoint("model.safetensors")
"""

from mlcalc._version import __version__
from mlcalc.calculators import MLANetCalculator, MLCalculator, NEMPCalculator
from mlcalc.committee import CommitteeCalculator
from mlcalc.performance import tune_memory_allocator
from mlcalc.pretrained import list_pretrained, load_model

__all__ = [
    "CommitteeCalculator",
    "MLANetCalculator",
    "MLCalculator",
    "NEMPCalculator",
    "__version__",
    "list_pretrained",
    "load_model",
    "tune_memory_allocator",
]
