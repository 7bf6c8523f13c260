"""What every mlcalc model shares: its element list, energy reference and checkpoint I/O."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, ClassVar, Literal, Self

import torch
from ase.data import atomic_numbers, chemical_symbols

from mlcalc.graph import AtomicGraph
from mlcalc.models.blocks import AtomicEnergyReadout, EdgeChunks
from mlcalc.models.checkpoint import write_checkpoint
from mlcalc.models.constants import ExactConstants
from mlcalc.models.exchange import FeatureExchange

#: Floating dtypes a model may run in, by name.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or those torch dtypes) → the torch dtype; others refused."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def normalize_elements(elements: Sequence[str | int]) -> list[str]:
    """Element symbols sorted by atomic number; ``ValueError`` for unknown or repeated ones."""
    if len(elements) == 0:
        raise ValueError("a model needs at least one element")
    numbers = []
    for element in elements:
        if isinstance(element, str):
            if element not in atomic_numbers or element == "X":
                raise ValueError(f"unknown element symbol {element!r}")
            numbers.append(atomic_numbers[element])
        else:
            if not 1 <= int(element) < len(chemical_symbols):
                raise ValueError(f"unknown atomic number {element}")
            numbers.append(int(element))
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"repeated element in {list(elements)}")
    return [chemical_symbols[z] for z in sorted(numbers)]


@dataclasses.dataclass
class ModelConfig:
    """Fields every architecture has. Subclasses add their hyper-parameters.

    Attributes:
        elements: chemical symbols (or atomic numbers) the model handles; stored sorted by Z.
        cutoff: neighbour cutoff radius, Å.
        charge_embedding: take each structure's total charge and spin multiplicity
            (``atoms.info["charge"]``, ``["spin"]``) as inputs (:mod:`mlcalc.models.charge`).
        long_range: ``None`` (local model) or ``"coulomb"``: add the Coulomb energy of learned
            latent charges, Ewald-summed in periodic cells (:mod:`mlcalc.models.electrostatics`).
        coulomb_smearing: Gaussian width of the latent charges inside the cutoff, Å.
    """

    elements: list[str]
    cutoff: float = 5.0
    charge_embedding: bool = False
    long_range: Literal["coulomb"] | None = None
    coulomb_smearing: float = 1.0

    #: Named sets of field values (:meth:`preset`); each architecture has its own.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        self.elements = normalize_elements(self.elements)
        self.require_positive("cutoff", "coulomb_smearing")
        self.cutoff = float(self.cutoff)
        self.charge_embedding = bool(self.charge_embedding)
        if self.long_range not in (None, "coulomb"):
            raise ValueError(f"long_range must be None or 'coulomb', got {self.long_range!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """The named preset of :attr:`PRESETS` with ``overrides`` applied."""
        if name not in cls.PRESETS:
            architecture = cls.__name__.removesuffix("Config")
            raise ValueError(
                f"unknown {architecture} preset {name!r}; choose from {sorted(cls.PRESETS)}"
            )
        return cls(**{**cls.PRESETS[name], **overrides})

    def require_at_least_one(self, *names: str) -> None:
        """``ValueError`` unless each named integer field is >= 1."""
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def require_positive(self, *names: str) -> None:
        """``ValueError`` unless each named number field is > 0."""
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def require_choice(self, name: str, choices: tuple[str, ...]) -> None:
        """``ValueError`` unless the named field is one of ``choices``."""
        if getattr(self, name) not in choices:
            options = " or ".join(repr(c) for c in choices)
            raise ValueError(f"{name} must be {options}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values)


class AtomisticModel(ExactConstants):
    """Base class: a pure ``torch.nn.Module`` mapping an :class:`AtomicGraph` to energies.

    Subclasses set ``architecture`` and ``config_class`` and implement :meth:`forward`.
    """

    architecture: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    #: Per-edge work runs in chunks of whole atoms with at most about this many edges
    #: (``None``: one chunk), small enough for the per-edge tensors to stay in cache. Results
    #: do not depend on it. Set it on an instance to tune it (``model.max_edges_per_chunk``).
    max_edges_per_chunk: int | None = 2**14
    #: Outside training, graphs with more edges than this drop each chunk's intermediates
    #: after the forward pass and recompute them in the backward pass: several times less
    #: memory for about half a forward pass more time (``None``: never recompute; ``0``:
    #: always). About 9,700 atoms of liquid water at a 5 Å cutoff.
    recompute_above_edges: int | None = 2**19
    #: Chunk size, in edges, when recomputing. Larger than ``max_edges_per_chunk``: the
    #: backward pass of every chunk builds full-size (``[N, ...]``) gradients of the per-node
    #: inputs it gathers, a cost per chunk that grows with the system, so fewer chunks pay.
    max_edges_per_recomputed_chunk: int | None = 2**15

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.readout = AtomicEnergyReadout(len(config.elements))
        self.register_buffer(
            "element_numbers",
            torch.tensor([atomic_numbers[s] for s in config.elements], dtype=torch.int64),
            persistent=False,
        )

    @property
    def elements(self) -> list[str]:
        """Chemical symbols in species-index order (sorted by atomic number)."""
        return list(self.config.elements)

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff radius, Å."""
        return self.config.cutoff

    @property
    def atomic_numbers(self) -> list[int]:
        return [atomic_numbers[s] for s in self.config.elements]

    @property
    def atomic_energies(self) -> dict[str, float]:
        """Reference energy E0 of each element, eV."""
        return dict(zip(self.elements, self.readout.atomic_energies.tolist(), strict=True))

    @property
    def energy_scale(self) -> float:
        """Data-derived energy scale (force RMS), eV."""
        return float(self.readout.energy_scale)

    def set_energy_reference(
        self, atomic_energies: Mapping[str, float], energy_scale: float = 1.0
    ) -> None:
        """Set E0 per element (eV; every element of the model) and the energy scale (eV)."""
        missing = set(self.elements) - set(atomic_energies)
        extra = set(atomic_energies) - set(self.elements)
        if missing or extra:
            raise ValueError(
                f"atomic energies must name exactly the model's elements {self.elements}; "
                f"missing {sorted(missing)}, not in the model {sorted(extra)}"
            )
        self.readout.set_reference([atomic_energies[s] for s in self.elements], energy_scale)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def edge_chunks(
        self,
        graph: AtomicGraph,
        recompute: bool = False,
        chunked: bool = True,
        num_centres: int | None = None,
    ) -> EdgeChunks:
        """The chunks of ``graph``'s edges that per-edge work runs over.

        ``chunked=False`` gives one chunk (for ``torch.compile``); ``recompute`` (inference
        only) recomputes intermediates in graphs above :attr:`recompute_above_edges` edges.
        ``num_centres``: the edges' centres are among the first ``num_centres`` atoms (default
        all), the atoms whose per-atom outputs the chunks give.
        """
        threshold = self.recompute_above_edges
        recompute = recompute and threshold is not None and graph.num_edges > threshold
        max_edges = self.max_edges_per_recomputed_chunk if recompute else self.max_edges_per_chunk
        return EdgeChunks(
            graph.edge_index,
            graph.num_atoms if num_centres is None else num_centres,
            max_edges if chunked else None,
            recompute,
        )

    @property
    def has_atomic_energies(self) -> bool:
        """Whether the energy is a sum of atomic energies whose derivatives are the forces and
        stress: by default, whether the class implements ``_atomic_energies``."""
        return type(self)._atomic_energies is not AtomisticModel._atomic_energies

    def atomic_energy_function(
        self,
        recompute: bool = False,
        chunked: bool = True,
        exchange: FeatureExchange | None = None,
        static_shapes: bool = False,
    ) -> Callable[[AtomicGraph, torch.Tensor], torch.Tensor] | None:
        """The map ``(graph, edge vectors [E, 3] in Å) → atomic energies [N]`` (eV) whose
        derivatives give the forces and stress, or ``None`` when the model has none (direct
        forces). ``recompute`` and ``chunked``: see :meth:`edge_chunks`. With an
        ``exchange`` (:mod:`mlcalc.models.exchange`), the graph holds the edges of the first
        ``exchange.num_centres`` atoms only, the ghost atoms' features come from the exchange
        between layers, and the map gives the centres' energies ``[num_centres]``. With
        ``static_shapes`` no intermediate's shape depends on the inputs' values, only on their
        shapes (for tracing with symbolic shapes; see :class:`~mlcalc.models.blocks.SpeciesGroups`
        for what it costs)."""
        if not self.has_atomic_energies:
            return None
        return functools.partial(
            self._atomic_energies,
            recompute=recompute,
            chunked=chunked,
            exchange=exchange,
            static_shapes=static_shapes,
        )

    def _atomic_energies(
        self,
        graph: AtomicGraph,
        vectors: torch.Tensor,
        recompute: bool = False,
        chunked: bool = True,
        exchange: FeatureExchange | None = None,
        static_shapes: bool = False,
    ) -> torch.Tensor:
        """``[N]`` atomic energies (float64, eV) from edge vectors ``[E, 3]`` (Å), per-edge work
        over :meth:`edge_chunks` (``[num_centres]`` with an ``exchange``: see
        :meth:`atomic_energy_function`); models with atomic energies implement it."""
        raise NotImplementedError

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies (and forces, stress) of a batch; see :mod:`mlcalc.models.physics`."""
        raise NotImplementedError

    def save(self, path: str | PathLike) -> None:
        """Write a ``.safetensors`` checkpoint atomically (see :mod:`mlcalc.models.checkpoint`)."""
        fields = {
            "architecture": self.architecture,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "elements": json.dumps(self.elements),
            "cutoff": json.dumps(self.cutoff),
            "atomic_energies": json.dumps(self.atomic_energies),
            "energy_scale": json.dumps(self.energy_scale),
        }
        write_checkpoint(path, self.state_dict(), fields)
