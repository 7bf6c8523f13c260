"""The Python half of ``pair_style mlcalc``: one rank's owned + ghost atoms → energy, forces.

The C++ pair style (``src/pair_mlcalc.cpp``) creates one :class:`PairEvaluator` per rank at
``pair_coeff`` and calls :meth:`PairEvaluator.compute` at every force evaluation. The model
maths is the model's own (:meth:`~mlcalc.models.AtomisticModel.atomic_energy_function`, as in
the ASE calculator); the graph comes from :class:`~mlcalc.graph.NeighborCache` over the rank's
atoms. Along directions where the rank holds the whole periodic extent of the box (the
processor grid does not split them) the graph is periodic, as in the ASE calculator, and the
ghost atoms that are images along those directions are dropped (:func:`one_per_image`); along
the others, ghost atoms are explicit images, with no shifts.

Decomposition: the energy of a rank is the sum of the atomic energies of its *owned* atoms.

* ``scheme layers``: the ghost shell is one cutoff. The graph holds the owned atoms' edges
  only; between layers the ghost atoms' node features are their owners' (exchanged by LAMMPS,
  :mod:`mlcalc.lammps.exchange`), and in the backward pass the gradients on them go back to
  the owners, so each rank's derivatives are those of the total energy.
* ``scheme receptive``: the ghost shell is the model's :func:`receptive_field`, enough for
  every owned atom's energy without any exchange; ghost atoms near the outer edge of the
  shell have truncated neighbourhoods, but their energies are left out and what they send
  inwards cannot reach an owned atom.

Either way forces are derivatives with respect to the edge vectors of the rank's graph, so
ghost atoms get forces too, which LAMMPS sums back onto their owners; with periodic
directions the force on a kept atom is that on all its images along them. The virial is
``-sum r_ij ⊗ dE/dr_ij`` over the edges and the per-atom virials split each edge's term
equally between its atoms (:func:`~mlcalc.models.physics.atomic_virials`).
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers

from mlcalc.dispersion import COORDINATION_CUTOFF, DAMPINGS, DEFAULT_CUTOFF
from mlcalc.graph import NeighborCache
from mlcalc.lammps.exchange import RankExchange, exchange_widths, lammps_communicator
from mlcalc.models import NEMP, AtomisticModel, MLANet, torch_dtype
from mlcalc.models.exchange import FeatureExchange
from mlcalc.models.physics import atomic_virials, edge_forces, edge_vectors
from mlcalc.pretrained import load_model

#: Verlet skin of the rank's own neighbour list, Å (as the ASE calculator's MD advice).
NEIGHBOR_SKIN = 1.0

#: Flat ``[3, 3]`` indices of LAMMPS's virial components: xx, yy, zz, xy, xz, yz (``virial``,
#: ``vatom``) and, for ``cvatom``, then yx, zx, zy.
VOIGT = [0, 4, 8, 1, 2, 5]
CENTROID = [0, 4, 8, 1, 2, 5, 3, 6, 7]


def receptive_field(model: AtomisticModel) -> float:
    """Distance (Å) beyond which atoms cannot change an atom's energy.

    NEMP: ``(num_interactions + 1) × cutoff`` (the initial expansion, normalised by the
    smooth coordination number, is one neighbourhood before the first interaction); MLANet:
    ``num_interactions × cutoff``. ``tests/test_lammps.py`` checks both by truncating a cluster.
    """
    hops = model.config.num_interactions
    if isinstance(model, NEMP):
        hops += 1
    elif not isinstance(model, MLANet):
        raise TypeError(f"no receptive field known for {type(model).__name__}")
    return hops * model.cutoff


def non_local_options(model: AtomisticModel) -> list[str]:
    """The options of ``model`` that a rank's cluster cannot evaluate: long-range Coulomb (it
    would sum over the cluster as if it were a molecule), MLANet's context pooling (not
    local) and charge/spin inputs (a rank's cluster has no total charge of its own)."""
    config = model.config
    options = {
        "long_range='coulomb' (its latent charges depend on the positions, so LAMMPS's "
        "k-space, which holds charges fixed within a step, cannot give its forces)": (
            config.long_range is not None
        ),
        "context_pooling": getattr(config, "context_pooling", False),
        "charge_embedding (total charge and spin)": config.charge_embedding,
    }
    return [name for name, used in options.items() if used]


def select_device(device: str, local_rank: int) -> torch.device:
    """``"cpu"``, ``"cuda"`` (GPU ``local_rank mod count``, so each rank on a node takes its
    own) or ``"cuda:N"``."""
    if device == "cpu":
        return torch.device("cpu")
    if not device.startswith("cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available in this torch")
    if device == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def _view(address: int, ctype: type, shape: tuple[int, ...]) -> np.ndarray:
    """A numpy view (no copy) of ``prod(shape)`` C values of type ``ctype`` at ``address``."""
    count = int(np.prod(shape))
    if count == 0:
        return np.zeros(shape, dtype=np.ctypeslib.as_ctypes_type(ctype))
    return np.ctypeslib.as_array((ctype * count).from_address(address)).reshape(shape)


def one_per_image(
    tags: np.ndarray, positions: np.ndarray, cell: np.ndarray, open_axes: np.ndarray
) -> np.ndarray:
    """Sorted indices of one atom of each set of atoms that are periodic images of each other
    along the periodic directions of the graph only: the first of each set (so every owned
    atom, which LAMMPS puts first). Atoms with the same tag differ by a lattice vector; the
    images along the open axes are told apart by their integer offset in fractional
    coordinates there (exact integers up to rounding).

    Args:
        tags: ``[n]`` LAMMPS atom IDs.
        positions: ``[n, 3]`` Å.
        cell: ``[3, 3]`` box vectors as rows, Å.
        open_axes: ``[3]`` bool, the directions along which the graph is not periodic.
    """
    _, first, inverse = np.unique(tags, return_index=True, return_inverse=True)
    fractional = np.linalg.solve(cell.T, positions.T).T[:, open_axes]
    offsets = np.rint(fractional - fractional[first][inverse]).astype(np.int64)
    keys = np.column_stack([tags.astype(np.int64), offsets])
    _, kept = np.unique(keys, axis=0, return_index=True)
    return np.sort(kept)


class PairEvaluator:
    """One rank's model, called by the C++ pair style.

    Args:
        model: registry name (``mlcalc models list``), ``hf://`` reference or checkpoint path.
        elements: the element of each LAMMPS atom type (``pair_coeff * * H O``), ``None`` for a
            type mapped to ``NULL``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"float32"``, ``"float64"`` or ``""`` (the model's default).
        local_rank: index of this rank among the ranks of its node.

    Attributes:
        receptive_field: ghost shell of ``scheme receptive``, Å.
        cutoff: ghost shell of ``scheme layers`` (the model's cutoff), Å.
        exchange_width: values per atom of the widest exchange between layers.
    """

    def __init__(
        self,
        model: str,
        elements: Sequence[str | None],
        device: str = "cpu",
        dtype: str = "",
        local_rank: int = 0,
    ) -> None:
        self.device = select_device(device, local_rank)
        loaded = load_model(model, dtype=torch_dtype(dtype) if dtype else None)
        if loaded.atomic_energy_function() is None:
            raise ValueError(
                f"{model} is a direct-force {type(loaded).__name__}: its pooled energy is not a "
                "sum of atomic terms, so it cannot be split across MPI ranks; use a "
                "conservative model (force_mode='conservative')"
            )
        refused = non_local_options(loaded)
        if refused:
            raise ValueError(
                f"{model} uses {' and '.join(refused)}, which a rank's cluster of owned and "
                "ghost atoms cannot evaluate: pair_style mlcalc runs local models only"
            )
        self.model = loaded.to(device=self.device).eval().requires_grad_(False)
        self.dtype = next(self.model.parameters()).dtype
        unknown = sorted({e for e in elements if e is not None} - set(self.model.elements))
        if unknown:
            raise ValueError(
                f"pair_coeff names element(s) {', '.join(unknown)} that model {model} does not "
                f"know; it was trained on: {', '.join(self.model.elements)}"
            )
        # atomic number of each type (index 0 unused, 0 for types mapped to NULL)
        self.type_numbers = np.array(
            [0, *[atomic_numbers[e] if e is not None else 0 for e in elements]], dtype=np.int64
        )
        self.receptive_field = receptive_field(self.model)
        self.cutoff = self.model.cutoff
        self.widths = exchange_widths(self.model)
        self.exchange_width = max(self.widths, default=0)
        self.neighbors = NeighborCache(self.model.cutoff, skin=NEIGHBOR_SKIN)

    def evaluate(
        self,
        atoms: Atoms,
        nlocal: int,
        exchange: FeatureExchange | None = None,
        atomic_virial: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Owned-atom energy (eV), forces on all atoms ``[n, 3]`` (eV/Å), owned atoms'
        energies ``[nlocal]`` (eV), the virial ``[3, 3]`` (eV) and, with ``atomic_virial``,
        per-atom virials ``[n, 3, 3]`` (eV) of ``atoms``, whose first ``nlocal`` atoms are
        owned. With an ``exchange`` (``scheme layers``) only the owned atoms' edges enter the
        graph and the ghost atoms' features come from the exchange."""
        graph = self.neighbors.graph(atoms, self.model.atomic_numbers, dtype=self.dtype)
        if exchange is not None:
            keep = graph.edge_index[0] < nlocal
            graph = dataclasses.replace(
                graph, edge_index=graph.edge_index[:, keep], shifts=graph.shifts[keep]
            )
        graph = graph.to(self.device)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
        ).requires_grad_()
        energies = self.model.atomic_energy_function(recompute=True, exchange=exchange)
        assert energies is not None  # direct-force models are refused in __init__
        owned_energies = energies(graph, vectors)[:nlocal]
        energy = owned_energies.sum()
        # the exchanges' backward passes call MPI: keep them on this thread (on CUDA, autograd
        # would run them on a device thread of its own)
        with torch.autograd.set_multithreading_enabled(False):
            (gradient,) = torch.autograd.grad(energy, [vectors], allow_unused=True)
        if gradient is None:
            gradient = torch.zeros_like(vectors)
        vectors = vectors.detach()
        result = {
            "energy": energy.detach(),
            "forces": edge_forces(gradient, graph.edge_index, graph.num_atoms),
            "energies": owned_energies.detach(),
            "virial": -vectors.T @ gradient,  # -sum_ij r_ij ⊗ dE/dr_ij
        }
        if atomic_virial:
            result["atomic_virials"] = atomic_virials(
                vectors, gradient, graph.edge_index, graph.num_atoms
            )
        return result

    def compute(
        self,
        nlocal: int,
        nall: int,
        x: int,
        types: int,
        tags: int,
        tag_bytes: int,
        forces: int,
        eatom: int,
        virial: int,
        vatom: int,
        cvatom: int,
        periodic: int,
        cell: int,
        communicate: int,
        pair: int,
    ) -> tuple[float, int, float]:
        """Called by the pair style: add forces (eV/Å) to LAMMPS's ``f``, owned atoms' energies
        (eV) to ``eatom``, the virial (eV) to ``virial`` and per-atom virials (eV) to ``vatom``
        and ``cvatom``; return the rank's energy (eV), the number of ghost atoms in its graph
        and the seconds spent in LAMMPS's communication between layers.

        Args are the atom counts and addresses of LAMMPS's arrays ``x [nall, 3]`` (double),
        ``type [nall]`` (int), ``tag [nall]`` (integers of ``tag_bytes`` bytes), ``f [nall, 3]``
        (double), ``eatom [nall]``, ``virial [6]`` (xx, yy, zz, xy, xz, yz), ``vatom [nall,
        6]`` (same order), ``cvatom [nall, 9]`` (then yx, zx, zy) — 0 for those not wanted —,
        ``cell [3, 3]`` (box vectors as rows, Å), and ``periodic``, a bit mask (x: 1, y: 2,
        z: 4) of the periodic directions along which this rank holds the whole box: along
        those the graph is periodic and the ghost atoms that are images along them are left
        out. ``communicate`` (0 for ``scheme receptive``) is the pair style's exchange
        callback for the instance at ``pair`` (:mod:`mlcalc.lammps.exchange`).
        """
        pbc = np.array([bool(periodic >> axis & 1) for axis in range(3)])
        count = nlocal if pbc.all() else nall
        positions = _view(x, ctypes.c_double, (count, 3))
        numbers = self.type_numbers[_view(types, ctypes.c_int, (count,))]
        # atoms of types mapped to NULL belong to other pair styles (pair_style hybrid)
        mine = np.flatnonzero(numbers > 0)
        box = _view(cell, ctypes.c_double, (3, 3)).copy() if pbc.any() else None
        if pbc.any() and not pbc.all():
            ctype = ctypes.c_int32 if tag_bytes == 4 else ctypes.c_int64
            ids = _view(tags, ctype, (count,))[mine]
            mine = mine[one_per_image(ids, positions[mine], box, ~pbc)]
        owned = int(np.searchsorted(mine, nlocal))
        exchange = None
        if communicate and self.widths:
            exchange = RankExchange(lammps_communicator(communicate, pair), mine, owned, nall)
        if owned == 0:  # nothing of this rank's energy; still pass on the others' features
            if exchange is None:
                return 0.0, 0, 0.0
            exchange.relay(self.widths)
            return 0.0, 0, exchange.seconds
        atoms = Atoms(numbers=numbers[mine], positions=positions[mine], cell=box, pbc=pbc)
        out = self.evaluate(atoms, owned, exchange, atomic_virial=bool(vatom or cvatom))
        made = exchange is None or (
            exchange.widths == self.widths and exchange.reversed == len(self.widths)
        )
        if not made:
            raise RuntimeError(
                f"the model made exchanges of widths {exchange.widths} ({exchange.reversed} in "
                f"reverse), not the {self.widths} every rank expects"
            )
        force = out["forces"].cpu().double().numpy()
        if not (np.all(np.isfinite(force)) and torch.isfinite(out["energy"])):
            raise FloatingPointError("the model returned non-finite energy or forces")
        _view(forces, ctypes.c_double, (count, 3))[mine] += force
        if eatom:
            _view(eatom, ctypes.c_double, (count,))[mine[:owned]] += out["energies"].cpu().numpy()
        if virial:
            w = out["virial"].cpu().double().numpy()
            _view(virial, ctypes.c_double, (6,))[:] += w.reshape(9)[VOIGT]
        if vatom or cvatom:
            per_atom = out["atomic_virials"].cpu().double().numpy().reshape(-1, 9)
            if vatom:
                _view(vatom, ctypes.c_double, (count, 6))[mine] += per_atom[:, VOIGT]
            if cvatom:
                _view(cvatom, ctypes.c_double, (count, 9))[mine] += per_atom[:, CENTROID]
        seconds = 0.0 if exchange is None else exchange.seconds
        return float(out["energy"]), len(mine) - owned, seconds


def d3_pair_style(damping: str = "d3-bj", xc: str = "pbe", cutoff: float = DEFAULT_CUTOFF) -> str:
    """The arguments of LAMMPS's ``pair_style dispersion/d3`` for the D3 correction of
    :class:`~mlcalc.dispersion.D3Dispersion` (``damping``, ``xc``, pair ``cutoff`` in Å, and
    its coordination-number cutoff), to put beside ``mlcalc`` under ``pair_style
    hybrid/overlay``; e.g. ``"dispersion/d3 bj pbe 31.7506326338 21.1670884226"``."""
    if damping not in DAMPINGS:
        raise ValueError(f"dispersion must be one of {sorted(DAMPINGS)}, got {damping!r}")
    if not cutoff > 0:
        raise ValueError(f"dispersion_cutoff must be positive (Å), got {cutoff}")
    coordination = min(cutoff, COORDINATION_CUTOFF)
    return f"dispersion/d3 {DAMPINGS[damping][1]} {xc} {cutoff:.12g} {coordination:.12g}"
