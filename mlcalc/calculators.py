"""ASE calculators for mlcalc models.

>>> from mlcalc import NEMPCalculator
>>> atoms.calc = NEMPCalculator.from_checkpoint("model.safetensors", device="cpu")
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Units: energy eV, forces eV/Å, stress eV/Å³ in ASE's sign convention and Voigt order
``[xx, yy, zz, yz, xz, xy]``. Stress exists only for structures periodic in all directions.

Total charge (e) and spin multiplicity are read from ``atoms.info["charge"]`` and
``atoms.info["spin"]`` (defaults and checks: :mod:`mlcalc.electrons`); changing either
invalidates the cached results. A model without ``charge_embedding`` warns once when it meets
a charged structure. Models with ``long_range="coulomb"`` also give their latent atomic
charges (e): ``atoms.get_charges()``.

For molecular dynamics, ``skin=1.0`` (Å) reuses the neighbour list between steps; for
screening, ``calc.calculate_batch(structures)`` evaluates many structures per forward pass.
``dispersion="d3-bj"`` adds a DFT-D3 correction (:mod:`mlcalc.dispersion`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from os import PathLike
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlcalc.dispersion import DEFAULT_CUTOFF, D3Dispersion
from mlcalc.electrons import CHARGE_KEY, SPIN_KEY
from mlcalc.graph import AtomicGraph, NeighborBackend, NeighborCache, build_graph
from mlcalc.models import (
    ARCHITECTURES,
    NEMP,
    AtomisticModel,
    MLANet,
    load_checkpoint,
    torch_dtype,
)
from mlcalc.models.charge import warn_if_charge_ignored
from mlcalc.models.traced import TracedEnergies, untraceable_reason
from mlcalc.pretrained import get_pretrained, list_pretrained, load_model


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
    return torch_dtype(dtype)


def electron_state_changes(previous: Atoms | None, atoms: Atoms) -> list[str]:
    """``"charge"`` and ``"spin"`` when ``atoms.info["charge"]`` or ``["spin"]`` differ from
    ``previous``'s (the structure of the last calculation; ``None``: no changes)."""
    changes = []
    if previous is not None:
        for key in (CHARGE_KEY, SPIN_KEY):
            before, now = previous.info.get(key), atoms.info.get(key)
            if (before is None) != (now is None) or not np.array_equal(before, now):
                changes.append(key)
    return changes


def require_full_periodicity(atoms: Atoms, what: str = "stress") -> None:
    """``PropertyNotImplementedError`` unless ``atoms`` is periodic in all three directions."""
    if not atoms.pbc.all():
        raise PropertyNotImplementedError(
            f"{what} needs a structure periodic in all three directions (pbc={atoms.pbc.tolist()})"
        )


def group_structures(structures: Sequence[Atoms], max_atoms_per_batch: int) -> list[list[Atoms]]:
    """Consecutive structures in groups of at most ``max_atoms_per_batch`` atoms (a larger
    structure forms a group alone)."""
    if max_atoms_per_batch < 1:
        raise ValueError(f"max_atoms_per_batch must be positive, got {max_atoms_per_batch}")
    batches: list[list[Atoms]] = []
    atoms_in_last = 0
    for atoms in structures:
        if not batches or atoms_in_last + len(atoms) > max_atoms_per_batch:
            batches.append([])
            atoms_in_last = 0
        batches[-1].append(atoms)
        atoms_in_last += len(atoms)
    return batches


def split_results(
    out: dict[str, torch.Tensor], graph: AtomicGraph, first_index: int = 0
) -> list[dict[str, Any]]:
    """One ASE results dict per structure of ``graph`` from a model's batched, detached CPU
    outputs (``energy [B]``, ``forces [N, 3]``, optional ``node_energy [N]``, ``charges [N]``,
    ``stress [B, 3, 3]``); stress (Voigt) only for fully periodic structures.
    ``FloatingPointError`` names a structure (numbered from ``first_index``) with non-finite
    results."""
    periodic = graph.pbc.all(dim=1).tolist()
    bounds = np.cumsum([0, *graph.atoms_per_graph().tolist()])
    results = []
    for b, fully_periodic in enumerate(periodic):
        atoms = slice(bounds[b], bounds[b + 1])
        energy = float(out["energy"][b])
        result: dict[str, Any] = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"][atoms].double().numpy(),
        }
        if "node_energy" in out:  # models without atomic energies leave "energies" out
            result["energies"] = out["node_energy"][atoms].numpy()
        if "charges" in out:  # long-range models: their latent charges, e
            result["charges"] = out["charges"][atoms].double().numpy()
        if fully_periodic:
            stress = out["stress"][b].double().numpy()
            result["stress"] = full_3x3_to_voigt_6_stress(stress)
        if not all(np.all(np.isfinite(v)) for v in result.values()):
            raise FloatingPointError(
                f"the model returned non-finite energy, forces or stress for structure "
                f"{first_index + b}"
            )
        results.append(result)
    return results


def model_outputs(
    model: AtomisticModel,
    graph: AtomicGraph,
    compiled: TracedEnergies | None = None,
    compute_stress: bool = True,
) -> dict[str, torch.Tensor]:
    """A model's detached outputs for ``graph`` (already on the model's device and dtype):
    ``energy [B]`` (eV), ``forces [N, 3]`` (eV/Å), ``stress [B, 3, 3]`` (eV/Å³, ASE sign; only
    when ``compute_stress`` and a structure is periodic), ``node_energy [N]`` where the model
    has atomic energies and, for long-range models, ``charges [N]`` (e); through ``compiled``
    where it takes the graph. Warns once when the graph carries a charge or spin the model
    ignores."""
    warn_if_charge_ignored(model, graph)
    compute_stress = compute_stress and bool(graph.pbc.all(dim=1).any())
    coulomb = getattr(model, "coulomb", None)
    if coulomb is not None:
        coulomb.last_charges = None
    out = None if compiled is None else compiled.outputs(graph, compute_stress)
    if out is None:
        out = model(graph, compute_forces=True, compute_stress=compute_stress)
    if coulomb is not None and coulomb.last_charges is not None:
        out["charges"] = coulomb.last_charges
    return {name: value.detach() for name, value in out.items()}


class MLCalculator(Calculator):
    """ASE calculator around an mlcalc model; subclasses fix the architecture.

    Args:
        model: the model; the calculator works on its own copy (moved to ``device``,
            cast to ``dtype``, in eval mode), so the caller's module is left as it was.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        dtype: ``"float32"`` or ``"float64"``; default the model's dtype.
        skin: Verlet skin of the neighbour list, Å. With ``skin > 0`` the list is built at
            ``cutoff + skin`` and reused until an atom has moved more than ``skin / 2`` or the
            cell, periodicity or atoms change (see :class:`~mlcalc.graph.NeighborCache`); the
            model sees exactly the edges of a fresh build, so results agree with ``skin=0`` to
            rounding (~1e-15 relative: only the order of the edges differs). Default ``0``
            (rebuild whenever anything moved): single points, relaxations and NEB gain
            nothing from a skin and would pay for a larger list; use about ``1.0`` in MD.
        backend: neighbour-list implementation, ``"vesin"`` (default, faster) or
            ``"matscipy"``.
        compile: run the model through one compiled graph of its energies and their
            gradients (``torch.compile``; see :mod:`mlcalc.models.traced`), traced with
            symbolic numbers of atoms and edges: one graph for every system size, compiled on
            the first step (about a minute on a CPU), after which steps are 1.5× faster on
            one CPU thread and 1.4–1.7× on two here (1,536 water atoms; the generated loops
            run on one thread up to two torch threads: see
            :data:`mlcalc.models.traced.SERIAL_LOOPS_UP_TO`). Worth it for MD, not for
            single points. Systems above the model's ``recompute_above_edges`` edges (about
            10,000 water atoms for NEMP) run eagerly, where the eager model recomputes
            intermediates to save memory. Models whose forces are derivatives of atomic
            energies, without charge, spin or long-range terms.
        dispersion: ``None`` (default: the model alone), ``"d3-bj"`` or ``"d3-zero"``: add
            DFT-D3 with that damping to ``energy``, ``free_energy``, ``forces``, ``stress`` and
            per-atom ``energies`` (needs ``pip install "mlcalc[d3]"``; see
            :class:`~mlcalc.dispersion.D3Dispersion`). For models trained on data without
            dispersion, such as layered or molecular crystals labelled with plain PBE.
        dispersion_xc: the functional whose D3 parameters to use (``"pbe"``, ``"pbe0"``,
            ``"r2scan"``, ``"wb97x"``...): that of the training data.
        dispersion_cutoff: D3 pair cutoff, Å (default 31.75 Å).
    """

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "charges",
    ]
    model_class: ClassVar[type[AtomisticModel]]

    def __init__(
        self,
        model: AtomisticModel,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        skin: float = 0.0,
        backend: NeighborBackend = "vesin",
        compile: bool = False,
        dispersion: str | None = None,
        dispersion_xc: str = "pbe",
        dispersion_cutoff: float = DEFAULT_CUTOFF,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dispersion = (
            None
            if dispersion is None
            else D3Dispersion(dispersion, dispersion_xc, dispersion_cutoff)
        )
        architecture = model.architecture if isinstance(model, AtomisticModel) else None
        self._check_architecture(architecture, "model", type(model).__name__)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, model)
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        self.model.requires_grad_(False)
        self.neighbors = NeighborCache(self.model.cutoff, skin=skin, backend=backend)
        self.compiled: TracedEnergies | None = None
        if compile:
            reason = untraceable_reason(self.model)
            if reason is not None:
                raise ValueError(
                    f"compile=True cannot compile this {type(model).__name__}: {reason}; "
                    "use compile=False"
                )
            self.compiled = TracedEnergies(
                self.model,
                differentiable=False,
                fallback="running eagerly",
                memory_bound=True,
            )

    @classmethod
    def _check_architecture(
        cls, architecture: str | None, what: str, holds: str | None = None
    ) -> None:
        """``TypeError`` unless ``architecture`` is this calculator's: ``what`` (a model, a
        path, a registry name) holds ``holds`` (default: the architecture's model class)."""
        if architecture == cls.model_class.architecture:
            return
        if holds is None:
            holds = getattr(ARCHITECTURES.get(architecture or ""), "__name__", str(architecture))
        right = CALCULATOR_FOR.get(architecture or "")
        hint = f"; use {right.__name__}" if right is not None else ""
        raise TypeError(
            f"{cls.__name__} needs a {cls.model_class.__name__} model, but {what} holds "
            f"{holds}{hint}"
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> MLCalculator:
        """Calculator for the ``.safetensors`` checkpoint at ``path`` (digest verified);
        ``kwargs`` (``skin``, ``dispersion``...) go to the constructor."""
        model = load_checkpoint(path)
        cls._check_architecture(model.architecture, str(path))
        return cls(model, device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_ref: str | PathLike,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> MLCalculator:
        """Calculator for a registry name (``mlcalc models list``), an
        ``hf://<org>/<repo>/<filename>@<revision>`` reference or a checkpoint path; see
        :mod:`mlcalc.pretrained`. ``dtype=None`` is the registry entry's default dtype (the
        checkpoint's own for references and paths); ``kwargs`` (``skin``, ``dispersion``...)
        go to the constructor."""
        if isinstance(name_or_ref, str) and name_or_ref in {m.name for m in list_pretrained()}:
            # refuse before any download
            cls._check_architecture(get_pretrained(name_or_ref).architecture, name_or_ref)
        model = load_model(name_or_ref, dtype=dtype)
        cls._check_architecture(model.architecture, str(name_or_ref))
        return cls(model, device=device, **kwargs)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes (positions, numbers, cell, pbc...) plus ``"charge"`` and ``"spin"``
        when ``atoms.info["charge"]`` or ``["spin"]`` differ from the last calculation."""
        return super().check_state(atoms, tol) + electron_state_changes(self.atoms, atoms)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Energy, free energy, per-atom energies, forces and (if fully periodic) stress, plus
        the dispersion correction if there is one."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        if "stress" in properties:
            require_full_periodicity(self.atoms)
        graph = self.neighbors.graph(self.atoms, self.model.atomic_numbers, dtype=self.dtype)
        (self.results,) = self._evaluate(graph)
        if self.dispersion is not None:
            self.dispersion.add_to(self.results, self.atoms, energies="energies" in properties)

    def calculate_batch(
        self, structures: Sequence[Atoms], max_atoms_per_batch: int = 4096
    ) -> list[dict[str, Any]]:
        """Evaluate many structures, several per forward pass; the ASE cache is not touched.

        Consecutive structures are grouped into batches of at most ``max_atoms_per_batch``
        atoms (a larger structure is evaluated alone). Results equal one-at-a-time
        :meth:`calculate` to rounding, dispersion included.

        Returns:
            One dict per structure, in order, with ``energy`` and ``free_energy`` (eV),
            ``forces [N, 3]`` (eV/Å), ``energies [N]`` (eV; models with atomic energies only)
            and, for structures periodic in all directions, ``stress [6]`` (eV/Å³, Voigt).
        """
        results: list[dict[str, Any]] = []
        for batch in group_structures(structures, max_atoms_per_batch):
            graph = build_graph(
                batch,
                self.model.cutoff,
                self.model.atomic_numbers,
                self.dtype,
                self.neighbors.backend,
            )
            evaluated = self._evaluate(graph, first_index=len(results))
            if self.dispersion is not None:
                for atoms, result in zip(batch, evaluated, strict=True):
                    self.dispersion.add_to(result, atoms, energies=True)
            results.extend(evaluated)
        return results

    def _evaluate(self, graph: AtomicGraph, first_index: int = 0) -> list[dict[str, Any]]:
        """Results of each structure of ``graph`` (numbered from ``first_index`` in errors)."""
        out = model_outputs(self.model, graph.to(self.device), self.compiled)
        return split_results({name: value.cpu() for name, value in out.items()}, graph, first_index)


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


def load_calculator(
    name_or_ref: str | PathLike,
    device: torch.device | str | None = None,
    dtype: str | torch.dtype | None = None,
    **kwargs: Any,
) -> MLCalculator:
    """The calculator of the right class (:data:`CALCULATOR_FOR`) for a registry name, an
    ``hf://`` reference or a checkpoint path; ``dtype=None`` as in
    :meth:`MLCalculator.from_pretrained`, ``kwargs`` (``skin``, ``dispersion``...) go to the
    constructor."""
    model = load_model(name_or_ref, dtype=dtype)
    return CALCULATOR_FOR[model.architecture](model, device=device, **kwargs)
