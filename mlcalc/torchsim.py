"""torch-sim model interface for mlcalc models: many systems advanced together, one forward
pass per step.

>>> import torch_sim as ts
>>> from mlcalc.torchsim import MLCalcModel
>>> model = MLCalcModel.from_pretrained("water", device="cpu", dtype="float64")
>>> state = ts.io.atoms_to_state(boxes, model.device, model.dtype)
>>> out = model(state)  # energy [n_systems] eV, forces [n_atoms, 3] eV/Å,
>>>                     # stress [n_systems, 3, 3] eV/Å³

All systems of a ``SimState`` become one batched :class:`~mlcalc.graph.AtomicGraph` and go
through the model in one forward and backward pass. The graph is built as for the ASE
calculators (same neighbour lists on the CPU, same checks: unknown elements, atoms closer than
0.1 Å, cells of zero volume), so the results equal :class:`~mlcalc.NEMPCalculator`'s to
rounding. ``stress`` follows ASE's sign (``1/V dE/dε``, as torch-sim expects) and is returned
for periodic states only.

torch-sim's ``SimState`` has one ``pbc`` for all its systems (0.3: a bool, so a slab is either
fully periodic with vacuum or a molecule); a ``[3]`` tensor is honoured where a later
torch-sim gives one. Total charge and spin multiplicity are read from ``state.charge`` and
``state.spin`` (``[n_systems]``) where the state has them, else every system is neutral in its
lowest spin state (see :mod:`mlcalc.electrons`).

Models with direct forces (MLANet ``force_mode="direct"``) are refused: torch-sim's
integrators and optimisers take forces and stress as derivatives of the energy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from mlcalc.calculators import model_outputs, resolve_device, resolve_dtype
from mlcalc.electrons import CHARGE_KEY, SPIN_KEY
from mlcalc.graph import AtomicGraph, NeighborBackend, NeighborCache, batch_graphs
from mlcalc.models import AtomisticModel, load_checkpoint
from mlcalc.pretrained import load_model


def _system_values(state: ts.SimState, name: str) -> list[int] | None:
    """``state.<name>`` (charge or spin, one per system) as integers, or ``None``."""
    values = getattr(state, name, None)
    if values is None:
        return None
    values = torch.as_tensor(values).reshape(-1)
    if values.numel() != state.n_systems:
        raise ValueError(f"state.{name} has {values.numel()} values for {state.n_systems} systems")
    if values.is_floating_point() and not torch.equal(values, values.round()):
        raise ValueError(f"state.{name} must hold whole numbers, got {values.tolist()}")
    return [int(v) for v in values.tolist()]


def state_to_structures(state: ts.SimState) -> list[Atoms]:
    """The systems of ``state`` as ASE structures (Å; cell rows are lattice vectors), with
    ``info["charge"]`` / ``info["spin"]`` from ``state.charge`` / ``state.spin`` if present."""
    positions = state.positions.detach().cpu().double().numpy()
    cells = state.row_vector_cell.detach().cpu().double().numpy()
    numbers = state.atomic_numbers.detach().cpu().numpy()
    pbc = torch.as_tensor(state.pbc).detach().cpu().numpy().astype(bool)
    pbc = np.broadcast_to(pbc, (3,))
    sizes = torch.bincount(state.system_idx, minlength=state.n_systems).cpu().numpy()
    bounds = np.cumsum([0, *sizes])
    charges, spins = _system_values(state, CHARGE_KEY), _system_values(state, SPIN_KEY)
    structures = []
    for b in range(state.n_systems):
        atoms = slice(bounds[b], bounds[b + 1])
        structure = Atoms(
            numbers=numbers[atoms], positions=positions[atoms], cell=cells[b], pbc=pbc
        )
        if charges is not None:
            structure.info[CHARGE_KEY] = charges[b]
        if spins is not None:
            structure.info[SPIN_KEY] = spins[b]
        structures.append(structure)
    return structures


class MLCalcModel(ModelInterface):
    """torch-sim ``ModelInterface`` over an mlcalc model (NEMP, or MLANet with conservative
    forces).

    Args:
        model: the model; this wrapper works on its own copy (moved to ``device``, cast to
            ``dtype``, in eval mode).
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        dtype: ``"float32"``/``"float64"`` or a torch dtype; default the model's. States must
            use the same dtype (``ts.io.atoms_to_state(..., model.device, model.dtype)``).
        compute_stress: return ``stress`` for periodic states (needed by NPT and cell
            filters).
        skin: Verlet skin of the neighbour lists, Å, one list kept per system index (see
            :class:`~mlcalc.graph.NeighborCache`; results equal ``skin=0`` to rounding).
            About ``1.0`` pays in MD.
        backend: neighbour-list implementation, ``"vesin"`` or ``"matscipy"``.
    """

    def __init__(
        self,
        model: AtomisticModel,
        *,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        compute_stress: bool = True,
        skin: float = 0.0,
        backend: NeighborBackend = "vesin",
    ) -> None:
        super().__init__()
        if not isinstance(model, AtomisticModel):
            raise TypeError(f"MLCalcModel needs an mlcalc model, got {type(model).__name__}")
        if not model.has_atomic_energies:
            raise ValueError(
                f"this {type(model).__name__} computes forces directly (force_mode='direct'); "
                "torch-sim integrates forces and stress as derivatives of the energy: use a "
                "conservative model"
            )
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, model)
        self._compute_stress = bool(compute_stress)
        self._compute_forces = True
        self._memory_scales_with = "n_atoms_x_density"
        self.model = copy.deepcopy(model).to(device=self._device, dtype=self._dtype).eval()
        self.model.requires_grad_(False)
        self.skin = float(skin)
        self.backend: NeighborBackend = backend
        self._neighbors: list[NeighborCache] = []
        NeighborCache(model.cutoff, skin=skin, backend=backend)  # refuse bad arguments now

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> MLCalcModel:
        """Model of the ``.safetensors`` checkpoint at ``path`` (digest verified)."""
        return cls(load_checkpoint(path), device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_ref: str | PathLike,
        device: torch.device | str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> MLCalcModel:
        """Model of a registry name, an ``hf://`` reference or a checkpoint path;
        ``dtype=None`` is the registry entry's default dtype."""
        model = load_model(name_or_ref, dtype=dtype)
        return cls(model, device=device, **kwargs)

    @property
    def compute_stress(self) -> bool:
        return self._compute_stress

    @compute_stress.setter
    def compute_stress(self, compute_stress: bool) -> None:
        self._compute_stress = bool(compute_stress)

    @property
    def compute_forces(self) -> bool:
        return self._compute_forces

    @compute_forces.setter
    def compute_forces(self, compute_forces: bool) -> None:
        if not compute_forces:
            raise ValueError("MLCalcModel always computes forces (they come with the energy)")

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff radius of the model, Å."""
        return self.model.cutoff

    def graph(self, state: ts.SimState) -> AtomicGraph:
        """The batched graph of ``state``'s systems (on the CPU, in the model's dtype)."""
        structures = state_to_structures(state)
        while len(self._neighbors) < len(structures):
            self._neighbors.append(NeighborCache(self.cutoff, self.skin, self.backend))
        graphs = []
        for index, (cache, atoms) in enumerate(zip(self._neighbors, structures, strict=False)):
            try:
                graphs.append(cache.graph(atoms, self.model.atomic_numbers, self._dtype, index))
            except KeyError as error:  # unknown elements: say which system has them
                raise KeyError(f"structure {index}: {error.args[0]}") from None
        return batch_graphs(graphs)

    def forward(
        self, state: ts.SimState | Mapping[str, torch.Tensor], **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """``energy [n_systems]`` (eV), ``forces [n_atoms, 3]`` (eV/Å) and, for periodic
        states with ``compute_stress``, ``stress [n_systems, 3, 3]`` (eV/Å³), in the model's
        dtype on its device, detached."""
        if isinstance(state, Mapping):
            state = ts.SimState(**state, masses=torch.ones_like(state["positions"][:, 0]))
        if state.n_atoms == 0:
            raise ValueError("the torch-sim state has no atoms")
        graph = self.graph(state).to(self._device)
        out = model_outputs(self.model, graph, compute_stress=self._compute_stress)
        results = {
            "energy": out["energy"].to(self._dtype),
            "forces": out["forces"].to(self._dtype),
        }
        if "stress" in out:
            results["stress"] = out["stress"].to(self._dtype)
        if not all(bool(torch.isfinite(value).all()) for value in results.values()):
            raise FloatingPointError("the model returned non-finite energy, forces or stress")
        return results
