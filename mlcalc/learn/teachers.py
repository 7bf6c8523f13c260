"""Teachers: the reference ASE calculators that label structures for ``mlcalc learn``.

A :class:`TeacherSpec` names one (``"emt"``, ``"xtb"``, ``"sevennet"`` or a
``"package.module:factory"`` returning an ASE calculator) with keyword options. It is small
and picklable, so it travels to labelling workers, which build the calculator once each with
:func:`cached_teacher`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, chemical_symbols

NAMED = ("emt", "xtb", "sevennet")
_PACKAGE = {"xtb": "tblite", "sevennet": "sevenn"}  # teacher -> import name (= pip extra's)
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class MissingTeacherError(ImportError, ValueError):
    """The package a named teacher needs is not installed (the message names the extra)."""


@dataclass(frozen=True)
class TeacherSpec:
    """Which reference calculator labels structures: a named one or ``module:factory``."""

    name: str  # "emt", "xtb", "sevennet", or "package.module:factory"
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments

    def __post_init__(self) -> None:
        name = self.name.lower() if isinstance(self.name, str) else self.name
        if name not in NAMED:
            module, _, attr = str(self.name).partition(":")
            if not (_DOTTED.fullmatch(module) and _DOTTED.fullmatch(attr)):
                raise ValueError(
                    f"unknown teacher {self.name!r}: choose emt, xtb, sevennet or module:factory"
                )
            name = self.name
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", dict(self.options))

    def __hash__(self) -> int:  # options may hold unhashable values: equal specs, equal keys
        return hash((self.name, tuple(sorted(self.options))))

    def build(self) -> Calculator:
        """A fresh ASE calculator."""
        if self.name == "emt":
            from ase.calculators.emt import EMT

            return EMT(**self.options)
        if self.name == "xtb":
            self._require()
            from tblite.ase import TBLite

            return TBLite(**{"method": "GFN2-xTB", "verbosity": 0, **self.options})
        if self.name == "sevennet":
            self._require()
            with warnings.catch_warnings():  # CPU labelling: no cuEquivariant/FlashTP wanted
                warnings.filterwarnings("ignore", "No tensor product accelerator", UserWarning)
                calculator, _ = _import_sevenn()
                return calculator(**{"model": "7net-0", "device": "cpu", **self.options})
        calc = self._factory()(**self.options)
        if not callable(getattr(calc, "get_potential_energy", None)):
            raise ValueError(
                f"teacher {self.name!r} returned {type(calc).__name__}, not an ASE calculator"
            )
        return calc

    def supported_elements(self) -> frozenset[str] | None:
        """Chemical symbols the teacher can label; None when unknown (a generic factory).

        Never calls the teacher on a structure; SevenNet's come from its checkpoint.
        """
        if self.name == "emt":
            from ase.calculators.emt import parameters

            return frozenset(parameters)
        if self.name == "xtb":
            return frozenset(chemical_symbols[1:87])  # GFN1/GFN2-xTB: H-Rn
        if self.name == "sevennet":
            self._require()
            model = self.options.get("model", "7net-0")
            if isinstance(model, str | os.PathLike):
                config = _import_sevenn()[1](str(model)).config
                return frozenset(config["chemical_species"])
            return frozenset(chemical_symbols[z] for z in self.build().type_map)
        factory = self._factory()
        found = getattr(factory, "supported_elements", None)
        if found is None:
            found = getattr(self.build(), "supported_elements", None)
        if callable(found):
            found = found()
        return None if found is None else frozenset(found)

    def check(self, elements: Iterable[str]) -> None:
        """Raise ValueError naming the teacher and the elements it lacks (or why it is
        unusable: a missing package, a factory that cannot be imported or called)."""
        if self.name in _PACKAGE:
            self._require()
        supported = self.supported_elements()
        lacked = set() if supported is None else set(elements) - supported
        if lacked:
            order = sorted(lacked, key=lambda s: atomic_numbers.get(s, 1000))
            raise ValueError(f"teacher {self.describe()} has no parameters for {', '.join(order)}")

    def describe(self) -> str:
        """One line for model cards, e.g. ``"GFN2-xTB (tblite 0.8.0)"``."""
        if self.name == "emt":
            return f"EMT (ASE {_version('ase')})"
        if self.name == "xtb":
            return f"{self.options.get('method', 'GFN2-xTB')} (tblite {_version('tblite')})"
        if self.name == "sevennet":
            model = self.options.get("model", "7net-0")
            label = "SevenNet-0" if model in ("7net-0", "sevennet-0") else f"SevenNet {model}"
            if self.options.get("modal"):
                label += f" ({self.options['modal']})"
            return f"{label} (sevenn {_version('sevenn')})"
        package = self.name.partition(".")[0].partition(":")[0]
        found = _version(package)
        return self.name if found == "not installed" else f"{self.name} ({package} {found})"

    def _require(self) -> None:
        package = _PACKAGE[self.name]
        if importlib.util.find_spec(package) is None:
            raise MissingTeacherError(
                f"teacher {self.name!r} needs {package}: pip install 'mlcalc[{self.name}]'"
            )

    def _factory(self) -> Callable[..., Calculator]:
        module_name, _, attr = self.name.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as error:
            raise ValueError(
                f"teacher {self.name!r}: cannot import {module_name!r} "
                f"({type(error).__name__}: {error})"
            ) from error
        for part in attr.split("."):
            if not hasattr(target, part):
                raise ValueError(f"teacher {self.name!r}: {module_name!r} has no {attr!r}")
            target = getattr(target, part)
        if not callable(target):
            raise ValueError(
                f"teacher {self.name!r}: {attr!r} is a {type(target).__name__}, "
                "not a callable returning an ASE calculator"
            )
        return target


_LOCAL = threading.local()


def cached_teacher(spec: TeacherSpec) -> Calculator:
    """The teacher for ``spec``, built once per process and thread (labelling workers).

    Keyed by process id too, so a forked worker builds its own rather than reusing the
    parent's. Keep OpenMP teachers (xtb) to one thread per worker (``OMP_NUM_THREADS=1``):
    libgomp threads spinning on shared cores slow small calls down a hundredfold.
    """
    if getattr(_LOCAL, "pid", None) != os.getpid():
        _LOCAL.pid, _LOCAL.teachers = os.getpid(), {}
    teachers: dict[TeacherSpec, Calculator] = _LOCAL.teachers
    if spec not in teachers:
        teachers[spec] = spec.build()
    return teachers[spec]


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _import_sevenn() -> tuple[Any, Callable[[str], Any]]:
    """sevenn's calculator class and checkpoint loader, imported without the DeprecationWarnings
    its ``torch.jit.script`` decorators raise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        from sevenn.calculator import SevenNetCalculator
        from sevenn.util import load_checkpoint
    return SevenNetCalculator, load_checkpoint
