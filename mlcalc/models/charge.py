"""Total charge and spin as model inputs, shared by NEMP and MLANet (``charge_embedding``).

Each structure's total charge ``Q`` (e) and number of unpaired electrons ``2S`` (multiplicity
minus one; see :mod:`mlcalc.electrons` for defaults and checks) pass through a small MLP; the
result, one vector of ``C`` invariants per structure, is added to the initial invariant
(``l = 0``) node features of every atom of that structure, before the first interaction. The
message passing then lets it act differently on each element and environment. This is the
embedding of MACE-OMOL and fairchem's UMA in spirit (their code is not used here).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from mlcalc.graph import AtomicGraph
from mlcalc.models.base import AtomisticModel, ModelConfig
from mlcalc.models.electrostatics import LatentCoulomb


class ChargeSpinEmbedding(nn.Module):
    """``[N, C]`` per-atom invariants from the charge and spin of each atom's structure.

    Args:
        channels: ``C``, width of the initial invariant node features.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, channels))

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """``[N, C]``, in the dtype of the module's weights."""
        dtype = self.mlp[0].weight.dtype
        states = torch.stack([graph.total_charge(), graph.spin_multiplicity() - 1], dim=1)
        return self.mlp(states.to(dtype)).index_select(0, graph.batch)


def charge_spin_embedding(config: ModelConfig, channels: int) -> ChargeSpinEmbedding | None:
    """The embedding of a model with ``config.charge_embedding``, else ``None``."""
    return ChargeSpinEmbedding(channels) if config.charge_embedding else None


def long_range_module(config: ModelConfig, num_features: int) -> LatentCoulomb | None:
    """The long-range term of a model with ``config.long_range == "coulomb"``, else ``None``."""
    if config.long_range is None:
        return None
    return LatentCoulomb(num_features, len(config.elements), config.cutoff, config.coulomb_smearing)


def warn_if_charge_ignored(model: AtomisticModel, graph: AtomicGraph) -> None:
    """Warn (once per model instance) when ``graph`` has a charged structure but ``model``
    takes no charge (neither ``charge_embedding`` nor ``long_range``), or a structure of
    non-default spin but the model has no ``charge_embedding``."""
    config = model.config
    if config.charge_embedding or getattr(model, "_warned_ignored_charge", False):
        return
    charged = config.long_range is None and bool((graph.total_charge() != 0).any())
    default_spin = dataclasses.replace(graph, spin=None).spin_multiplicity()
    high_spin = bool((graph.spin_multiplicity() != default_spin).any())
    if not (charged or high_spin):
        return
    model._warned_ignored_charge = True
    what = "a non-zero total charge" if charged else "a non-default spin multiplicity"
    warnings.warn(
        f"a structure has {what} (atoms.info['charge'] / ['spin']), but this "
        f"{type(model).__name__} has no charge_embedding and ignores it: it gets the energy "
        "of the neutral, lowest-spin species",
        UserWarning,
        stacklevel=3,
    )
