"""ASE calculators for mlcalc models.

>>> from mlcalc import NEMPCalculator
>>> atoms.calc = NEMPCalculator.from_checkpoint("model.safetensors", device="cpu")
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Units: energy eV, forces eV/Å, stress eV/Å³ in ASE's sign convention and Voigt order
``[xx, yy, zz, yz, xz, xy]``. Stress exists only for structures periodic in all directions.
"""

from __future__ import annotations

import copy
from os import PathLike
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlcalc.graph import build_graph
from mlcalc.models import NEMP, AtomisticModel, MLANet, load_checkpoint

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available in this torch")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, model: AtomisticModel) -> torch.dtype:
    """``"float32"``/``"float64"`` or a torch dtype; ``None`` keeps the model's own dtype."""
    if dtype is None:
        return next(model.parameters()).dtype
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


class MLCalculator(Calculator):
    """ASE calculator around an mlcalc model; subclasses fix the architecture.

    Args:
        model: the model; the calculator works on its own copy (moved to ``device``,
            cast to ``dtype``, in eval mode), so the caller's module is left as it was.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        dtype: ``"float32"`` or ``"float64"``; default the model's dtype.
    """

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
    ]
    model_class: ClassVar[type[AtomisticModel]]

    def __init__(
        self,
        model: AtomisticModel,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._check_architecture(model, "model")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, model)
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        self.model.requires_grad_(False)

    @classmethod
    def _check_architecture(cls, model: AtomisticModel, what: str) -> None:
        if not isinstance(model, cls.model_class):
            right = CALCULATOR_FOR.get(getattr(model, "architecture", ""))
            hint = f"; use {right.__name__}" if right is not None else ""
            raise TypeError(
                f"{cls.__name__} needs a {cls.model_class.__name__} model, but {what} holds "
                f"{type(model).__name__}{hint}"
            )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> MLCalculator:
        """Calculator for the ``.safetensors`` checkpoint at ``path`` (digest verified)."""
        model = load_checkpoint(path)
        cls._check_architecture(model, str(path))
        return cls(model, device=device, dtype=dtype, **kwargs)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Energy, free energy, per-atom energies, forces and (if fully periodic) stress."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                f"stress needs a structure periodic in all three directions "
                f"(pbc={self.atoms.pbc.tolist()})"
            )
        graph = build_graph(
            self.atoms, self.model.cutoff, self.model.atomic_numbers, dtype=self.dtype
        ).to(self.device)
        out = self.model(graph, compute_forces=True, compute_stress=periodic)
        out = {name: value.detach() for name, value in out.items()}
        energy = float(out["energy"][0])
        results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].cpu().double().numpy(),
        }
        if "node_energy" in out:  # models without atomic energies leave "energies" out
            results["energies"] = out["node_energy"].cpu().numpy()
        if periodic:
            stress = out["stress"][0].cpu().double().numpy()
            results["stress"] = full_3x3_to_voigt_6_stress(stress)
        if not all(np.all(np.isfinite(v)) for v in results.values()):
            raise FloatingPointError(
                "the model returned non-finite energy, forces or stress for this structure"
            )
        self.results = results


class NEMPCalculator(MLCalculator):
    """ASE calculator for :class:`~mlcalc.models.NEMP` models (conservative forces, stress)."""

    model_class = NEMP


class MLANetCalculator(MLCalculator):
    """ASE calculator for :class:`~mlcalc.models.MLANet` models, in either force mode.

    With a ``force_mode="direct"`` model, forces and stress come from the model's heads: they
    are not derivatives of the energy (not energy-conserving), the energy is not size-extensive,
    and per-atom ``energies`` are not available (asking for them raises
    ``PropertyNotImplementedError``). With ``force_mode="conservative"`` it behaves like
    :class:`NEMPCalculator`.
    """

    model_class = MLANet


#: Architecture name → calculator class, for error messages and loaders.
CALCULATOR_FOR: dict[str, type[MLCalculator]] = {
    NEMP.architecture: NEMPCalculator,
    MLANet.architecture: MLANetCalculator,
}
