"""i-PI driver: serve a calculator's energy, forces and virial to an i-PI server.

>>> from mlcalc.ipi import serve
>>> serve(NEMPCalculator.from_pretrained("water"), read("water.xyz"), "unix:mlcalc")

i-PI (path-integral MD, replica exchange, advanced thermostats) runs the dynamics and sends each
bead's positions and cell over its socket protocol; this side answers with energy, forces and,
for structures periodic in all directions, the virial. The client is ASE's
:class:`~ase.calculators.socketio.SocketClient`; i-PI's messages carry no elements, so a
template structure (the file i-PI initialises from, same atoms in the same order) gives them.
One driver evaluates one bead at a time; start several drivers on the same address to spread
the beads over processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.socketio import SocketClient, actualunixsocketname


def parse_address(address: str) -> dict[str, str | int]:
    """``"unix:NAME"`` → ``{"unixsocket": NAME}`` (i-PI's ``/tmp/ipi_NAME``);
    ``"HOST:PORT"`` → ``{"host": HOST, "port": PORT}``."""
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return {"unixsocket": rest}
    if kind and rest.isdigit():
        return {"host": kind, "port": int(rest)}
    raise ValueError(
        f"address {address!r} is neither unix:NAME (i-PI's <ffsocket mode='unix'>) nor "
        "HOST:PORT (mode='inet')"
    )


def connect(address: str, wait_s: float = 60.0) -> SocketClient:
    """A client connected to the i-PI server at ``address``, retrying every 0.5 s for up to
    ``wait_s`` seconds while the server starts."""
    target = parse_address(address)
    deadline = time.monotonic() + wait_s
    while True:
        unix = target.get("unixsocket")
        # a unix socket is looked for before connecting: a failed connect leaves ASE's socket
        # open until it is garbage-collected
        if unix is None or Path(actualunixsocketname(unix)).exists():
            try:
                return SocketClient(**target)
            except (TimeoutError, FileNotFoundError, ConnectionRefusedError):
                pass
        if time.monotonic() > deadline:
            where = f" (socket {actualunixsocketname(unix)})" if unix else ""
            raise RuntimeError(
                f"no i-PI server listening at {address}{where} after {wait_s:g} s; start i-pi "
                "with an <ffsocket> of that address first"
            )
        time.sleep(0.5)


def serve(
    calculator: Calculator,
    template: Atoms,
    address: str,
    wait_s: float = 60.0,
    on_step: Callable[[int], None] | None = None,
) -> int:
    """Answer an i-PI server's force requests until it says exit; returns the number of
    evaluations.

    Args:
        calculator: evaluates each bead (eV, eV/Å; i-PI's atomic units are converted by ASE).
        template: the atoms i-PI simulates, in i-PI's order; evaluated once before connecting,
            so that unknown elements or overlapping atoms are refused before the run. Its
            ``pbc`` (and charge and spin in ``info``) hold for every structure i-PI sends; the
            virial is computed only when it is periodic in all directions (zero otherwise,
            which i-PI's barostats cannot use).
        address: ``unix:NAME`` or ``HOST:PORT``.
        wait_s: how long to wait for the server to listen.
        on_step: called with the evaluation count after each evaluation.
    """
    atoms = template.copy()
    atoms.calc = calculator
    use_stress = bool(atoms.pbc.all())
    atoms.get_forces()
    if use_stress:
        atoms.get_stress()
    client = connect(address, wait_s)
    evaluations = 0
    try:
        for _ in client.irun(atoms, use_stress=use_stress):
            evaluations += 1
            if on_step is not None:
                on_step(evaluations)
    except ValueError as error:
        if "broadcast" not in str(error):
            raise
        raise ValueError(
            f"the i-PI server sent positions of a different number of atoms than the template "
            f"({len(template)} atoms); give the file i-PI initialises from"
        ) from None
    return evaluations
