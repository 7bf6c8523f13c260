"""The base class of every workflow result: numbers, JSON, CSV and a matplotlib figure."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mlcalc.atomic import atomic_path, write_text_atomic


def to_jsonable(value: Any) -> Any:
    """Numpy arrays and scalars, dataclasses, tuples → plain JSON types (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def not_in_json(default: Any = None) -> Any:
    """A dataclass field left out of ``to_json`` (e.g. a live ``Phonopy`` object)."""
    return dataclasses.field(default=default, metadata={"json": False}, repr=False)


@dataclasses.dataclass
class WorkflowResult:
    """Base of workflow results. Subclasses are dataclasses that implement :meth:`table`
    (rows for CSV) and :meth:`draw` (a matplotlib figure); fields made with
    :func:`not_in_json` are kept in memory only."""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, path: str | PathLike) -> None:
        """Write all numbers as one JSON object, atomically."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """``(header, rows)`` of the main data, for :meth:`to_csv`."""
        raise NotImplementedError

    def to_csv(self, path: str | PathLike) -> None:
        """Write :meth:`table` as CSV, atomically."""
        header, rows = self.table()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(to_jsonable(list(rows)))
        write_text_atomic(path, buffer.getvalue())

    def draw(self, figure: Figure) -> None:
        """Draw the result on an empty ``figure``."""
        raise NotImplementedError

    def plot(self, path: str | PathLike, dpi: int = 150) -> Figure:
        """Draw the result and save it to ``path`` (format from the suffix, e.g. ``.png``)."""
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        self.draw(figure)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=str(path).rsplit(".", 1)[-1], dpi=dpi)
        return figure
