"""Training and evaluation of mlcalc models on labelled structures (``mlcalc train``/``eval``)."""

from mlcalc.training.config import TrainConfig
from mlcalc.training.data import LabeledStructure, LabelKeys, read_structures
from mlcalc.training.graphs import GraphDataset
from mlcalc.training.metrics import ErrorSums, evaluate, format_errors
from mlcalc.training.trainer import Trainer, TrainResult, train

__all__ = [
    "ErrorSums",
    "GraphDataset",
    "LabelKeys",
    "LabeledStructure",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "format_errors",
    "read_structures",
    "train",
]
