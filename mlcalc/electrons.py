"""Total charge and spin multiplicity of a structure: where they are read, defaults, checks.

A structure's electronic state is two integers, read from ``atoms.info``:

* ``atoms.info["charge"]``: the total charge ``Q`` in units of the elementary charge ``e``
  (``+1`` for a cation). Default ``0``. Integer-valued floats (``1.0``) are accepted.
* ``atoms.info["spin"]``: the spin multiplicity ``2S + 1`` (``1`` singlet, ``2`` doublet...).
  Default: the lowest multiplicity the electron count allows, ``1`` for an even number of
  electrons and ``2`` for an odd one. The electron count is ``sum(Z) - Q``.

Refused, with a message that names the problem: a non-integer charge; a charge above the
number of protons (no electrons left) or below minus that number (more extra electrons
than the neutral structure has); a multiplicity below 1; one of the wrong parity for the
electron count (an even count has odd multiplicities, an odd count even ones); one above
``electrons + 1`` (more unpaired electrons than electrons).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

#: ``atoms.info`` keys of the total charge (e) and the spin multiplicity (2S + 1).
CHARGE_KEY = "charge"
SPIN_KEY = "spin"


def default_multiplicity(electrons: int) -> int:
    """The lowest spin multiplicity for ``electrons`` electrons: 1 if even, 2 if odd."""
    return 1 if electrons % 2 == 0 else 2


def _as_integer(value: Any, what: str, where: str) -> int:
    """``value`` as an int; ``ValueError`` for non-numbers and non-integer values."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}{what} must be an integer, got {value!r}")
    if not np.isfinite(float(value)) or float(value) != round(float(value)):
        raise ValueError(f"{where}{what} must be an integer, got {value!r}")
    return round(float(value))


def check_charge_state(charge: int, spin: int, atomic_numbers: np.ndarray, where: str = "") -> None:
    """``ValueError`` unless ``charge`` (e) and multiplicity ``spin`` fit the structure whose
    atoms have ``atomic_numbers``; ``where`` prefixes the message (e.g. ``"structure 3: "``)."""
    protons = int(np.sum(atomic_numbers))
    electrons = protons - charge
    if electrons < 0:
        raise ValueError(
            f"{where}total charge {charge:+d} e is larger than the number of protons "
            f"({protons}): the structure would have {electrons} electrons"
        )
    if charge < -protons:
        raise ValueError(
            f"{where}total charge {charge:+d} e adds more electrons than the neutral "
            f"structure has ({protons}); this is almost certainly not a charge in e"
        )
    if spin < 1:
        raise ValueError(f"{where}spin multiplicity must be >= 1 (2S + 1), got {spin}")
    if (spin - 1) % 2 != electrons % 2:
        parity = "even" if electrons % 2 == 0 else "odd"
        allowed = "odd (1, 3, ...)" if electrons % 2 == 0 else "even (2, 4, ...)"
        raise ValueError(
            f"{where}spin multiplicity {spin} is impossible for {electrons} electrons "
            f"(charge {charge:+d} e): an {parity} electron count needs an {allowed} "
            "multiplicity 2S + 1"
        )
    if spin > electrons + 1:
        raise ValueError(
            f"{where}spin multiplicity {spin} needs {spin - 1} unpaired electrons, but the "
            f"structure has only {electrons} (charge {charge:+d} e)"
        )


def read_charge_state(
    info: Mapping[str, Any], atomic_numbers: np.ndarray, where: str = ""
) -> tuple[int, int]:
    """``(charge, multiplicity)`` of a structure from its ``info`` dict (``atoms.info``), with
    the defaults and checks of the module docstring."""
    charge = info.get(CHARGE_KEY)
    if charge is None:
        charge = 0
    else:
        charge = _as_integer(charge, "total charge (atoms.info['charge'])", where)
    protons = int(np.sum(atomic_numbers))
    spin = info.get(SPIN_KEY)
    if spin is None:
        spin = default_multiplicity(protons - charge) if protons - charge >= 0 else 1
    else:
        spin = _as_integer(spin, "spin multiplicity (atoms.info['spin'])", where)
    check_charge_state(charge, spin, atomic_numbers, where)
    return charge, spin
