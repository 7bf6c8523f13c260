"""Progress bars of the long loops (MD, training, phonons, NEB, scans, ``mlcalc eval``).

One library, :mod:`tqdm`, and one place: bars go to stderr, never to stdout, where commands
print results. ``progress=None`` (the default of most loops) shows a bar only when stderr is a
terminal; ``True`` always (also into a log file); ``False`` never.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sized
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: ``md nve:  40%|████      | 8/20 steps [00:01<00:02, 6.10 steps/s]``
BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
    "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
)
#: The same without a bar, for loops of unknown length: ``neb: 8 steps [00:01, 6.10 steps/s]``
COUNT_FORMAT = "{desc}: {n_fmt}{unit} [{elapsed}, {rate_noinv_fmt}{postfix}]"


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    unit: str,
    total: int | None = None,
    enabled: bool | None = None,
    leave: bool = True,
) -> tqdm:
    """A :class:`tqdm.tqdm` bar on stderr, counting ``unit`` (plural, e.g. ``"steps"``).

    Args:
        iterable: what to iterate over (``None``: call ``update`` yourself).
        desc: label in front of the bar.
        unit: what is counted, plural.
        total: number of items (default ``len(iterable)`` when it has one); ``None`` and no
            length shows a count without a bar.
        enabled: ``True`` always, ``False`` never, ``None`` only when stderr is a terminal.
        leave: keep the finished bar on screen (``False``: erase it).
    """
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return tqdm(
        iterable,
        desc=desc,
        unit=f" {unit}",
        total=total,
        file=sys.stderr,
        disable=None if enabled is None else not enabled,
        leave=leave,
        mininterval=0.2,
        dynamic_ncols=True,
        bar_format=COUNT_FORMAT if total is None else BAR_FORMAT,
    )


def follow_steps(bar: tqdm, dynamics: Any) -> None:
    """Keep ``bar`` at the step count of an ASE ``dynamics`` (MD or optimiser) as it runs."""
    if not bar.disable:
        dynamics.attach(lambda: bar.update(dynamics.nsteps - bar.n), interval=1)
