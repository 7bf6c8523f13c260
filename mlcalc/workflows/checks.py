"""Input checks shared by the workflows."""

from __future__ import annotations

from ase import Atoms


def require_bulk(atoms: Atoms, what: str, hint: str = "") -> None:
    """``ValueError`` unless ``atoms`` is periodic in all three directions with a 3D cell.

    ``what`` names the calculation (it starts the message); ``hint`` says what to do instead.
    """
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(
            f"{what} needs a cell periodic in all three directions "
            f"(pbc={atoms.pbc.tolist()}, cell rank {atoms.cell.rank})"
            + (f"; {hint}" if hint else "")
        )
