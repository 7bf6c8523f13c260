"""ASE optimisers that the workflows accept by name."""

from __future__ import annotations

from ase.optimize import BFGS, FIRE, LBFGS, MDMin
from ase.optimize.optimize import Optimizer

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "BFGS": BFGS,
    "FIRE": FIRE,
    "LBFGS": LBFGS,
    "MDMin": MDMin,
}


def optimizer_class(optimizer: str | type[Optimizer]) -> type[Optimizer]:
    """The optimiser class named by ``optimizer`` (a class is returned as it is)."""
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        return OPTIMIZERS[optimizer]
    return optimizer
