"""Model cores: pure ``torch.nn.Module``s that map an :class:`~mlcalc.graph.AtomicGraph` to
energies, forces and stress. Nothing here knows ASE calculators."""

from mlcalc.models.architectures import ARCHITECTURES, load_checkpoint, save_checkpoint
from mlcalc.models.base import DTYPES, AtomisticModel, ModelConfig, torch_dtype
from mlcalc.models.mlanet import MLANet, MLANetConfig
from mlcalc.models.nemp import NEMP, NEMPConfig

__all__ = [
    "ARCHITECTURES",
    "DTYPES",
    "NEMP",
    "AtomisticModel",
    "MLANet",
    "MLANetConfig",
    "ModelConfig",
    "NEMPConfig",
    "load_checkpoint",
    "save_checkpoint",
    "torch_dtype",
]
