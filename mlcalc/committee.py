"""Committee (ensemble) uncertainty: K models of one architecture as one ASE calculator.

>>> from mlcalc import CommitteeCalculator
>>> atoms.calc = CommitteeCalculator.from_checkpoints(["m0.safetensors", "m1.safetensors"])
>>> atoms.get_forces(), atoms.calc.results["forces_std"]

``energy``, ``free_energy``, ``forces``, ``stress`` and ``energies`` are the means over the
members; ``energy_std`` (eV), ``forces_std [N]`` (eV/Å: per atom, the root mean square over
x, y, z of the members' standard deviation) and ``stress_std [6]`` (eV/Å³, Voigt; fully
periodic structures only) are the population standard deviations (``ddof=0``) over the
members; ``member_energies [K]`` (eV) and ``member_forces [K, N, 3]`` (eV/Å) are the members'
own results. Charge and spin (``atoms.info``) are read as by
:class:`~mlcalc.calculators.MLCalculator`.

Cost: the neighbour list and graph are built once and shared; each member then runs its own
forward and backward pass over that graph (the path of one model, so a committee of identical
members gives exactly that model's results). That is K times one model's cost: on 1,536 atoms
of liquid water (float32, 2 threads) K = 4 took 4.0 times one ``water`` model, the graph being
under 2 % of a step (``bench/committee.py``). Batching the members did not pay on CPU:
``torch.func.vmap`` over stacked weights is refused by the models' custom autograd functions
(no vmap rule), and with a generated rule it ran about 2.3 times slower than the loop; one
backward pass over all members was 5-10 % slower than K of them and keeps all K members'
activations in memory at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from os import PathLike
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mlcalc.calculators import (
    electron_state_changes,
    group_structures,
    model_outputs,
    require_full_periodicity,
    resolve_device,
    resolve_dtype,
    split_results,
)
from mlcalc.graph import AtomicGraph, NeighborBackend, NeighborCache, build_graph
from mlcalc.models import AtomisticModel, load_checkpoint
from mlcalc.pretrained import load_model

#: A committee member: a model, a registry name, an ``hf://`` reference or a checkpoint path.
ModelSource = AtomisticModel | str | PathLike


def _shared_fields(model: AtomisticModel) -> dict[str, Any]:
    """What every member of a committee must have in common."""
    return {
        "architecture": model.architecture,
        "elements": model.elements,
        "cutoff": model.cutoff,
        "force mode": "conservative" if model.has_atomic_energies else "direct",
    }


def _load(source: ModelSource, k: int, dtype: str | torch.dtype | None) -> AtomisticModel:
    """Member ``k`` as a model (registry names and paths loaded in ``dtype``)."""
    if isinstance(source, AtomisticModel):
        return source
    if isinstance(source, (str, PathLike)):
        return load_model(source, dtype=dtype)
    raise TypeError(
        f"committee member {k} is a {type(source).__name__}, not an mlcalc model, a registry "
        "name or a checkpoint path"
    )


def check_members(models: Sequence[AtomisticModel]) -> None:
    """``ValueError`` naming the first difference in architecture, elements, cutoff or force
    mode between member 0 and another member; ``TypeError`` for a non-model."""
    if len(models) == 0:
        raise ValueError("a committee needs at least one model")
    for k, model in enumerate(models):
        if not isinstance(model, AtomisticModel):
            raise TypeError(
                f"committee member {k} is a {type(model).__name__}, not an mlcalc model"
            )
    first = _shared_fields(models[0])
    for k, model in enumerate(models[1:], start=1):
        for name, value in _shared_fields(model).items():
            if value != first[name]:
                raise ValueError(
                    f"committee members must share their {name}: member 0 has "
                    f"{first[name]!r}, member {k} has {value!r}"
                )


def _mean_and_variance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over axis 0 of ``values [K, ...]``, computed from the
    deviations from member 0: equal members give exactly their value and a zero variance."""
    deviations = values - values[0]
    shift = deviations.mean(axis=0)
    return values[0] + shift, np.square(deviations - shift).mean(axis=0)


def committee_results(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Committee results of one structure from its members' result dicts (those of
    :func:`~mlcalc.calculators.split_results`): means, standard deviations and the members'
    ``member_energies [K]`` (eV) and ``member_forces [K, N, 3]`` (eV/Å)."""
    member_energies = np.array([r["energy"] for r in members])
    member_forces = np.stack([r["forces"] for r in members])
    energy, energy_variance = _mean_and_variance(member_energies)
    forces, forces_variance = _mean_and_variance(member_forces)
    results: dict[str, Any] = {
        "energy": float(energy),
        "free_energy": float(energy),
        "forces": forces,
        "energy_std": float(np.sqrt(energy_variance)),
        "forces_std": np.sqrt(forces_variance.mean(axis=1)),
        "member_energies": member_energies,
        "member_forces": member_forces,
    }
    if "energies" in members[0]:
        results["energies"] = _mean_and_variance(np.stack([r["energies"] for r in members]))[0]
    if "stress" in members[0]:
        stress, stress_variance = _mean_and_variance(np.stack([r["stress"] for r in members]))
        results["stress"], results["stress_std"] = stress, np.sqrt(stress_variance)
    return results


class CommitteeCalculator(Calculator):
    """ASE calculator of a committee of K mlcalc models (see the module docstring).

    Args:
        models: the members: models (the calculator works on its own copies), registry names,
            ``hf://`` references or checkpoint paths. They must share architecture, elements,
            cutoff and force mode; other hyper-parameters may differ.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        dtype: ``"float32"`` or ``"float64"``; default the first member's dtype.
        skin: Verlet skin of the shared neighbour list, Å (as for
            :class:`~mlcalc.calculators.MLCalculator`; about ``1.0`` in MD).
        backend: neighbour-list implementation, ``"vesin"`` or ``"matscipy"``.
    """

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "energy_std",
        "forces_std",
        "stress_std",
        "member_energies",
        "member_forces",
    ]

    def __init__(
        self,
        models: Sequence[ModelSource],
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        skin: float = 0.0,
        backend: NeighborBackend = "vesin",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(models, (AtomisticModel, str, PathLike)):
            raise TypeError("models must be a sequence of models, names or paths")
        loaded = [_load(source, k, dtype) for k, source in enumerate(models)]
        check_members(loaded)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, loaded[0])
        self.models: list[AtomisticModel] = []
        for model in loaded:
            member = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
            self.models.append(member.requires_grad_(False))
        self.neighbors = NeighborCache(self.models[0].cutoff, skin=skin, backend=backend)

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | PathLike],
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> CommitteeCalculator:
        """Committee of the ``.safetensors`` checkpoints at ``paths`` (digests verified);
        ``kwargs`` (``skin``, ``backend``) go to the constructor."""
        if isinstance(paths, (str, PathLike)):
            raise TypeError("paths must be a sequence of checkpoint paths")
        return cls([load_checkpoint(path) for path in paths], device, dtype, **kwargs)

    @property
    def num_members(self) -> int:
        """K, the number of models in the committee."""
        return len(self.models)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes plus ``"charge"`` and ``"spin"`` (``atoms.info``), as for one model."""
        return super().check_state(atoms, tol) + electron_state_changes(self.atoms, atoms)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """All committee results of ``atoms`` (stress and ``stress_std`` if fully periodic)."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        for name in ("stress", "stress_std"):
            if name in properties:
                require_full_periodicity(self.atoms, name)
        graph = self.neighbors.graph(self.atoms, self.models[0].atomic_numbers, dtype=self.dtype)
        (self.results,) = self._evaluate(graph)

    def calculate_batch(
        self, structures: Sequence[Atoms], max_atoms_per_batch: int = 4096
    ) -> list[dict[str, Any]]:
        """Committee results of many structures, several per graph; the ASE cache is not
        touched. Batches as :meth:`mlcalc.calculators.MLCalculator.calculate_batch`; results
        equal one-at-a-time :meth:`calculate` to rounding.

        Returns:
            One dict per structure, in order, with every result of :meth:`calculate`
            (``stress`` and ``stress_std [6]`` for fully periodic structures only).
        """
        results: list[dict[str, Any]] = []
        for batch in group_structures(structures, max_atoms_per_batch):
            model = self.models[0]
            graph = build_graph(
                batch, model.cutoff, model.atomic_numbers, self.dtype, self.neighbors.backend
            )
            results.extend(self._evaluate(graph, first_index=len(results)))
        return results

    def _evaluate(self, graph: AtomicGraph, first_index: int = 0) -> list[dict[str, Any]]:
        """Committee results of each structure of ``graph`` (numbered from ``first_index``)."""
        device_graph = graph.to(self.device)
        per_member = []
        for model in self.models:
            out = model_outputs(model, device_graph)
            out = {name: value.cpu() for name, value in out.items()}
            per_member.append(split_results(out, graph, first_index))
        return [committee_results(members) for members in zip(*per_member, strict=True)]
