"""Node features between the model's layers on one MPI rank, through LAMMPS's communication.

With ``scheme layers`` the C++ pair style hands the evaluator a callback into LAMMPS's forward
and reverse communication of per-atom rows (``comm->forward_comm(pair)`` and
``comm->reverse_comm(pair)`` with the pair style's pack/unpack). :class:`RankExchange` is the
rank's :class:`~mlcalc.models.exchange.FeatureExchange`: forward, the ghost atoms' features
become their owners'; backward, the gradients on ghost atoms' features are summed onto their
owners' on whatever rank those live. Every rank makes the same calls in the same order — the
model's exchanges forward, then the same in reverse order during the backward pass — also a
rank with no atoms of the model (:meth:`RankExchange.relay`), since LAMMPS's communication
relays ghost atoms through intermediate ranks.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

import numpy as np
import torch
from ase import Atoms

from mlcalc.graph import build_graph
from mlcalc.models import AtomisticModel
from mlcalc.models.physics import edge_vectors

FORWARD, REVERSE = 0, 1

#: ``communicate(direction, buffer)``: LAMMPS communication of ``buffer [nall, width]``
#: (float64, C order) in place, ``FORWARD`` or ``REVERSE``.
Communicate = Callable[[int, np.ndarray], None]

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int)


def lammps_communicator(callback: int, pair: int) -> Communicate:
    """The pair style's communication: ``callback`` is the address of its C function
    ``void (void *pair, int reverse, double *buffer, int width)``, ``pair`` its instance."""
    function = _CALLBACK(callback)

    def communicate(direction: int, buffer: np.ndarray) -> None:
        if not (buffer.dtype == np.float64 and buffer.flags.c_contiguous and buffer.ndim == 2):
            raise ValueError("the exchange buffer must be a C-ordered float64 [nall, width]")
        function(pair, direction, buffer.ctypes.data, buffer.shape[1])

    return communicate


def exchange_widths(model: AtomisticModel) -> list[int]:
    """Values per atom of each exchange of ``model``'s layered evaluation, in order (found
    by evaluating a two-atom molecule with an exchange that records them)."""

    class Recorder:
        def __init__(self, num_atoms: int) -> None:
            self.num_centres = num_atoms
            self.widths: list[int] = []

        def __call__(self, features: torch.Tensor) -> torch.Tensor:
            self.widths.append(int(features[0].numel()))
            return features

    element = model.elements[0]
    atoms = Atoms([element, element], positions=[[0.0, 0.0, 0.0], [0.5 * model.cutoff, 0, 0]])
    parameter = next(model.parameters())
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers, dtype=parameter.dtype)
    graph = graph.to(parameter.device)
    recorder = Recorder(graph.num_atoms)
    energies = model.atomic_energy_function(exchange=recorder)
    if energies is None:
        raise ValueError(f"{type(model).__name__} has no atomic energies to evaluate by layers")
    with torch.no_grad():
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        )
        energies(graph, vectors)
    return recorder.widths


class RankExchange:
    """One rank's exchange for one evaluation.

    Args:
        communicate: LAMMPS's communication (:func:`lammps_communicator`).
        rows: ``[n]`` LAMMPS index (``0 .. nall-1``) of each atom of the rank's graph; the
            first ``num_centres`` are owned atoms.
        num_centres: the owned atoms of the graph (its centres).
        num_local: ``nall``, owned + ghost atoms LAMMPS holds (the buffer's rows).
    """

    def __init__(
        self, communicate: Communicate, rows: np.ndarray, num_centres: int, num_local: int
    ) -> None:
        self.communicate = communicate
        self.rows = np.asarray(rows, dtype=np.int64)
        self.num_centres = num_centres
        self.num_local = num_local
        self.widths: list[int] = []  # of the forward exchanges made
        self.reversed = 0  # backward exchanges made
        self.seconds = 0.0  # in LAMMPS's communication, forward and reverse

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return _Exchange.apply(features, self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[num_centres, ...]`` owned atoms' features → ``[n, ...]`` the graph's."""
        shape = features.shape[1:]
        buffer = self._buffer(features[0].numel())
        rows = features.detach().reshape(len(features), buffer.shape[1]).cpu()
        buffer[self.rows[: self.num_centres]] = rows
        self._communicate(FORWARD, buffer)
        ghosts = torch.from_numpy(buffer[self.rows[self.num_centres :]])
        ghosts = ghosts.to(features.device, features.dtype).reshape(-1, *shape)
        self.widths.append(buffer.shape[1])
        return torch.cat([features, ghosts])

    def backward(self, gradient: torch.Tensor) -> torch.Tensor:
        """``[n, ...]`` gradient on the graph's features → ``[num_centres, ...]`` on the owned
        atoms' own, with what their ghost copies on every rank received."""
        owned, ghosts = gradient[: self.num_centres], gradient[self.num_centres :]
        buffer = self._buffer(gradient[0].numel())
        rows = ghosts.detach().reshape(len(ghosts), buffer.shape[1]).cpu()
        buffer[self.rows[self.num_centres :]] = rows
        self._communicate(REVERSE, buffer)
        returned = torch.from_numpy(buffer[self.rows[: self.num_centres]])
        self.reversed += 1
        return owned + returned.to(owned.device, owned.dtype).reshape(owned.shape)

    def relay(self, widths: list[int]) -> None:
        """The exchanges of a rank with no atoms of the model: it passes on the ghost atoms
        that LAMMPS routes through it, forward then in reverse."""
        for width in widths:
            self._communicate(FORWARD, self._buffer(width))
        for width in reversed(widths):
            self._communicate(REVERSE, self._buffer(width))

    def _communicate(self, direction: int, buffer: np.ndarray) -> None:
        start = time.perf_counter()
        self.communicate(direction, buffer)
        self.seconds += time.perf_counter() - start

    def _buffer(self, width: int) -> np.ndarray:
        return np.zeros((self.num_local, width), dtype=np.float64)


class _Exchange(torch.autograd.Function):
    """:meth:`RankExchange.forward` with :meth:`RankExchange.backward` as its derivative."""

    @staticmethod
    def forward(features: torch.Tensor, exchange: RankExchange) -> torch.Tensor:
        return exchange.forward(features)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output) -> None:
        ctx.exchange = inputs[1]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, gradient: torch.Tensor) -> tuple:
        return ctx.exchange.backward(gradient), None
