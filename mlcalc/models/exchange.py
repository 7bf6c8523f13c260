"""Node features shared between the layers of a model evaluated on part of a system.

A model evaluated by domain decomposition (``pair_style mlcalc`` on several MPI ranks) sees
its *centres* (the atoms it owns, first in the graph) and, after them, ghost atoms within one
cutoff. Only the centres' edges are in the graph, so each layer updates the centres' node
features only; between layers a :class:`FeatureExchange` puts the ghost atoms' features (their
owners' values) after them. Given one, :meth:`AtomisticModel.atomic_energy_function` returns
the centres' energies. Without one (the ASE path) every atom is a centre and the same code
runs in one go.
"""

from __future__ import annotations

from typing import Protocol

import torch


class FeatureExchange(Protocol):
    """Fills in the ghost atoms' node features between two layers.

    Attributes:
        num_centres: the atoms whose edges are in the graph (the first ones); the rest are
            ghost atoms, neighbours whose features come from the exchange.
    """

    num_centres: int

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Centres' features ``[num_centres, ...]`` → every atom's ``[num_atoms, ...]``.

        The backward pass must give each centre the gradients that its ghost copies (in this
        and other domains) received, so that derivatives of the total energy stay exact."""
        ...


def share(features: torch.Tensor, exchange: FeatureExchange | None) -> torch.Tensor:
    """``features`` of the centres as features of every atom: ``exchange(features)``, or
    ``features`` themselves when every atom is a centre (``exchange`` is ``None``)."""
    return features if exchange is None else exchange(features)


def num_centres(num_atoms: int, exchange: FeatureExchange | None) -> int:
    """The number of centres: ``exchange.num_centres``, or every atom without an exchange."""
    return num_atoms if exchange is None else exchange.num_centres
