"""Neighbour lists and batching in :mod:`mlcalc.graph`.

The neighbour list is checked against ASE's reference implementation on random triclinic cells
(including cells smaller than the cutoff), all periodicity combinations and atoms outside the
cell; the batching and the input validation of :func:`mlcalc.graph.build_graph` are checked on
explicit structures.
"""

from __future__ import annotations

import itertools
from typing import get_args

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlcalc.graph import AtomicGraph, NeighborCache, build_graph
from mlcalc.neighbors import NeighborBackend, neighbor_list

ALL_PBC = list(itertools.product([False, True], repeat=3))
BACKENDS = get_args(NeighborBackend)
ELEMENTS = [1, 6, 8, 13, 28, 29]


# ---------------------------------------------------------------------------------------------
# helpers


def edge_vectors(positions, cell, i, j, shifts):
    """``r_ij = x_j - x_i + S @ cell`` for every edge."""
    positions, cell, shifts = (np.asarray(a, dtype=np.float64) for a in (positions, cell, shifts))
    return positions[j] - positions[i] + shifts @ cell


def keyed(i, j, shifts, distances):
    """``{(i, j, S): distance}``; asserts that no key repeats."""
    keys = [
        (int(a), int(b), tuple(int(s) for s in shift))
        for a, b, shift in zip(i, j, np.asarray(shifts), strict=True)
    ]
    assert len(set(keys)) == len(keys), "neighbour list has duplicate (i, j, S) entries"
    return dict(zip(keys, np.asarray(distances, dtype=np.float64), strict=True))


def assert_matches_ase(atoms: Atoms, cutoff: float, backend: str = "vesin"):
    """Our neighbour list equals ASE's as a set of ``(i, j, S)``, with the same distances."""
    i, j, shifts, distances = neighbor_list(
        atoms.get_positions(), atoms.get_cell()[:], np.asarray(atoms.pbc), cutoff, backend
    )
    ours = keyed(i, j, shifts, distances)
    ref_i, ref_j, ref_shifts, ref_distances = ase_neighbor_list("ijSd", atoms, cutoff)
    ref = keyed(ref_i, ref_j, ref_shifts, ref_distances)

    missing = sorted(set(ref) - set(ours))
    extra = sorted(set(ours) - set(ref))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    keys = list(ref)
    np.testing.assert_allclose([ours[k] for k in keys], [ref[k] for k in keys], atol=1e-9)
    # distances are the norms of the edge vectors in the documented convention
    vectors = edge_vectors(atoms.get_positions(), atoms.get_cell()[:], i, j, shifts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), distances, atol=1e-9)
    assert np.all(distances > 0) and np.all(distances <= cutoff)
    return i, j, shifts, distances


def edge_vector_groups(graph: AtomicGraph) -> dict[tuple[int, int], np.ndarray]:
    """Edge vectors of a one-structure graph, grouped by ``(i, j)``."""
    i, j = graph.edge_index.numpy()
    vectors = edge_vectors(graph.positions, graph.cell[0], i, j, graph.shifts)
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for a, b, v in zip(i, j, vectors, strict=True):
        groups.setdefault((int(a), int(b)), []).append(v)
    return {k: np.array(v) for k, v in groups.items()}


def assert_same_edge_vectors(first: AtomicGraph, second: AtomicGraph, atol=1e-8):
    """Both graphs have the same multiset of ``(i, j, r_ij)``."""
    a, b = edge_vector_groups(first), edge_vector_groups(second)
    assert a.keys() == b.keys()
    for key, va in a.items():
        vb = b[key]
        assert va.shape == vb.shape, key
        close = np.linalg.norm(va[:, None, :] - vb[None, :, :], axis=-1) < atol
        # a perfect one-to-one matching: every vector has exactly one partner
        assert np.all(close.sum(axis=0) == 1) and np.all(close.sum(axis=1) == 1), key


# ---------------------------------------------------------------------------------------------
# 1. property test against ASE


@st.composite
def periodic_structures(draw, pbc):
    """A well-conditioned triclinic cell (rows 2-7 Å, possibly shorter than the cutoff), 1-12
    atoms at fractional coordinates in [-1.5, 2.5] (so also outside the cell), and a cutoff."""
    pbc = np.array(pbc, dtype=bool)
    lengths = np.array([draw(st.floats(2.0, 7.0)) for _ in range(3)])
    skew = np.array([[draw(st.floats(-0.4, 0.4)) for _ in range(3)] for _ in range(3)])
    directions = np.eye(3) + skew
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    # well conditioned: the unit-row matrix is far from singular
    assume(abs(np.linalg.det(directions)) > 0.5)
    full_cell = directions * lengths[:, None]

    # non-periodic rows are all zeroed (all-False: a zero cell), all kept, or a mix
    cell = full_cell.copy()
    zero_rows = draw(st.sampled_from(["all", "none", "some"]))
    for axis in np.flatnonzero(~pbc):
        if zero_rows == "all" or (zero_rows == "some" and draw(st.booleans())):
            cell[axis] = 0.0

    n_atoms = draw(st.integers(1, 12))
    fractional = np.array([[draw(st.floats(-1.5, 2.5)) for _ in range(3)] for _ in range(n_atoms)])
    positions = fractional @ full_cell
    cutoff = draw(st.floats(1.0, 5.0))
    return Atoms(numbers=[1] * n_atoms, positions=positions, cell=cell, pbc=pbc), cutoff


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pbc", ALL_PBC, ids=lambda p: "pbc" + "".join("TF"[not x] for x in p))
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_neighbor_list_matches_ase(backend, pbc, data):
    atoms, cutoff = data.draw(periodic_structures(pbc))
    # reject structures that build_graph refuses (atoms, or an atom and its image, < 0.1 Å)
    # and those with a pair within 1e-6 Å of the cutoff, where `<` and `<=` may disagree
    wide = ase_neighbor_list("d", atoms, cutoff + 1e-6)
    assume(len(wide) == 0 or wide.min() >= 0.1)
    assume(not np.any(np.abs(wide - cutoff) < 1e-6))

    i, j, shifts, _ = assert_matches_ase(atoms, cutoff, backend)
    # shifts only along periodic directions
    assert np.all(shifts[:, ~np.asarray(pbc)] == 0)
    # the full list is symmetric: (i, j, S) <-> (j, i, -S)
    forward = {(a, b, tuple(s)) for a, b, s in zip(i, j, shifts.tolist(), strict=True)}
    backward = {(b, a, tuple(-x for x in s)) for a, b, s in zip(i, j, shifts.tolist(), strict=True)}
    assert forward == backward


# ---------------------------------------------------------------------------------------------
# 2. explicit edge cases


def test_molecule_without_cell():
    atoms = molecule("CH3CH2OH")
    assert not atoms.pbc.any() and np.all(atoms.cell[:] == 0)
    atoms.positions += [100.0, -50.0, 7.0]  # far from the (absent) cell
    i, j, shifts, _ = assert_matches_ase(atoms, 3.0)
    assert np.all(shifts == 0)
    assert not np.any(i == j)
    assert len(i) > 0 and len(i) % 2 == 0  # full list: (i, j) and (j, i)

    graph = build_graph(atoms, 3.0)
    assert graph.cell.shape == (1, 3, 3) and torch.all(graph.cell == 0)
    assert graph.pbc.tolist() == [[False, False, False]]


def test_slab_with_atom_far_outside_in_z():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.pbc = (True, True, False)
    atoms.cell[2] = 0.0
    atoms += Atoms("H", positions=[[1.0, 1.0, 40.0]])  # adsorbate far above the slab
    atoms += Atoms("H", positions=[[1.0, 1.5, 40.8]])
    i, j, shifts, _ = assert_matches_ase(atoms, 3.0)
    assert np.all(shifts[:, 2] == 0)
    h = [len(atoms) - 2, len(atoms) - 1]
    # the far atoms only see each other (and their in-plane images are 7.2 Å away)
    for centre in h:
        assert set(j[i == centre].tolist()) == set(h) - {centre}
    # the slab's in-plane images are used
    assert np.any(shifts[:, :2] != 0)


def test_wire():
    atoms = Atoms(
        "C3",
        positions=[[0.0, 0.0, 0.0], [1.3, 0.4, 0.0], [2.6, 0.0, 0.3]],
        cell=[[3.9, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        pbc=(True, False, False),
    )
    i, j, shifts, _ = assert_matches_ase(atoms, 4.5)
    assert np.all(shifts[:, 1:] == 0)
    # 4.5 Å > 3.9 Å: every atom sees its own images along x
    for centre in range(3):
        mine = (i == centre) & (j == centre)
        assert sorted(shifts[mine, 0].tolist()) == [-1, 1]


def test_bulk_primitive_cell_many_self_images():
    atoms = bulk("Cu", "fcc", a=3.6)  # 1-atom primitive cell, nearest neighbour 2.55 Å
    assert len(atoms) == 1
    i, j, shifts, distances = assert_matches_ase(atoms, 6.0)
    assert np.all(i == 0) and np.all(j == 0)
    assert np.all(np.any(shifts != 0, axis=1))
    # fcc shells within 6 Å at a/sqrt(2) * sqrt(1..5): 12 + 6 + 24 + 12 + 24 = 78 neighbours
    assert len(i) == 78
    np.testing.assert_allclose(distances.min(), 3.6 / np.sqrt(2))

    graph = build_graph(atoms, 6.0)
    assert graph.num_edges == 78
    r = edge_vectors(graph.positions, graph.cell[0], *graph.edge_index.numpy(), graph.shifts)
    np.testing.assert_allclose(r.sum(axis=0), 0.0, atol=1e-10)  # centrosymmetric shells


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (True, False, False)])
def test_atoms_outside_cell_same_edge_vectors_as_wrapped(pbc):
    rng = np.random.default_rng(0)
    cell = np.array([[4.0, 0.0, 0.0], [1.2, 3.8, 0.0], [0.7, -0.5, 4.4]])
    fractional = rng.uniform(0.0, 1.0, size=(6, 3))
    inside = Atoms("CuAuCuAuCuAu", scaled_positions=fractional, cell=cell, pbc=pbc)
    outside = inside.copy()
    # move atoms by whole lattice vectors (and far) along periodic directions only
    jumps = rng.integers(-5, 6, size=(6, 3)) * np.asarray(pbc)
    outside.positions += jumps @ cell
    assert not np.allclose(outside.positions, inside.positions)
    wrapped = outside.copy()
    wrapped.wrap()
    np.testing.assert_allclose(wrapped.positions, inside.positions, atol=1e-10)

    g_out = build_graph(outside, 5.0)
    g_wrapped = build_graph(wrapped, 5.0)
    assert g_out.num_edges == g_wrapped.num_edges > 0
    assert_same_edge_vectors(g_out, g_wrapped)
    # positions are not wrapped by build_graph
    np.testing.assert_allclose(g_out.positions.numpy(), outside.positions)


# ---------------------------------------------------------------------------------------------
# 3. batching


def three_structures() -> list[Atoms]:
    water = molecule("H2O")
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = (True, True, False)
    slab.cell[2] = 0.0
    slab += Atoms("O", positions=[[0.9, 0.9, 2.6]])
    crystal = bulk("Cu", "fcc", a=3.6)
    crystal.positions += [10.0, -3.0, 0.0]  # outside its cell
    return [water, slab, crystal]


def test_build_graph_batches_structures():
    structures = three_structures()
    elements = [29, 8, 1]  # Cu -> 0, O -> 1, H -> 2
    cutoff = 4.0
    graph = build_graph(structures, cutoff, elements=elements)
    singles = [build_graph(a, cutoff, elements=elements) for a in structures]
    sizes = [len(a) for a in structures]

    assert graph.num_graphs == 3
    assert graph.num_atoms == sum(sizes)
    assert graph.num_edges == sum(s.num_edges for s in singles)
    assert graph.atoms_per_graph().tolist() == sizes
    assert graph.batch.tolist() == np.repeat(np.arange(3), sizes).tolist()
    assert graph.positions.dtype == torch.float64
    assert graph.edge_index.dtype == torch.int64 and graph.species.dtype == torch.int64
    assert graph.cell.shape == (3, 3, 3) and graph.pbc.shape == (3, 3)
    assert graph.pbc.dtype == torch.bool

    np.testing.assert_allclose(
        graph.positions.numpy(), np.concatenate([a.positions for a in structures])
    )
    np.testing.assert_allclose(graph.cell.numpy(), np.stack([a.cell[:] for a in structures]))
    assert graph.pbc.tolist() == [a.pbc.tolist() for a in structures]
    numbers = np.concatenate([a.numbers for a in structures])
    assert graph.atomic_numbers.tolist() == numbers.tolist()
    assert graph.species.tolist() == [elements.index(z) for z in numbers]

    # edges never connect different graphs
    i, j = graph.edge_index
    assert torch.equal(graph.batch[i], graph.batch[j])

    offsets = np.cumsum([0, *sizes])
    for b, single in enumerate(singles):
        atoms = slice(offsets[b], offsets[b + 1])
        edges = graph.batch[i] == b
        assert torch.equal(graph.positions[atoms], single.positions)
        assert torch.equal(graph.species[atoms], single.species)
        assert torch.equal(graph.atomic_numbers[atoms], single.atomic_numbers)
        assert torch.equal(graph.edge_index[:, edges] - int(offsets[b]), single.edge_index)
        assert torch.equal(graph.shifts[edges], single.shifts)
        assert torch.equal(graph.cell[b], single.cell[0])
        assert torch.equal(graph.pbc[b], single.pbc[0])
        assert torch.all(single.batch == 0)


def test_build_graph_without_elements_and_dtype():
    graph = build_graph(three_structures(), 3.0, dtype=torch.float32)
    assert torch.all(graph.species == 0)
    for name in ("positions", "shifts", "cell"):
        assert getattr(graph, name).dtype == torch.float32
    assert torch.all(graph.shifts == graph.shifts.round())


def test_to_casts_only_floating_fields():
    graph = build_graph(three_structures(), 3.0, elements=[1, 8, 29])
    cast = graph.to(dtype=torch.float32)
    for name in ("positions", "shifts", "cell"):
        assert getattr(cast, name).dtype == torch.float32
        torch.testing.assert_close(getattr(cast, name), getattr(graph, name).float())
    for name in ("atomic_numbers", "species", "edge_index", "batch"):
        assert getattr(cast, name).dtype == torch.int64
        assert torch.equal(getattr(cast, name), getattr(graph, name))
    assert cast.pbc.dtype == torch.bool and torch.equal(cast.pbc, graph.pbc)
    # device only: dtypes unchanged
    same = graph.to("cpu")
    assert same.positions.dtype == torch.float64 and same.pbc.dtype == torch.bool


# ---------------------------------------------------------------------------------------------
# 4. bad input


def test_unknown_element_is_named():
    atoms = molecule("CH3CH2OH")
    with pytest.raises(KeyError, match=r"element\(s\) O not supported.*trained on: H, C"):
        build_graph(atoms, 3.0, elements=[1, 6])
    with pytest.raises(KeyError, match=r"C, O not supported.*trained on: H, Cu"):
        build_graph(atoms, 3.0, elements=[1, 29])
    with pytest.raises(KeyError, match=r"C, H, O not supported"):
        build_graph(atoms, 3.0, elements=[])


@pytest.mark.parametrize("separation", [0.05, 0.0])
def test_atoms_too_close(separation):
    atoms = Atoms("H2O", positions=[[0, 0, 0], [separation, 0, 0], [0, 0.96, 0]])
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0\.0\d+ Å apart, closer than 0\.1"):
        build_graph(atoms, 3.0)


def test_atom_too_close_to_its_own_image():
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[0.05, 3.0, 3.0], pbc=True)
    with pytest.raises(ValueError, match=r"periodic image of itself.*closer than"):
        build_graph(atoms, 3.0)


@pytest.mark.parametrize("index", [0, 1])
def test_too_close_in_batch_names_the_structure(index):
    structures = [molecule("H2O"), molecule("H2O")]
    structures[index] = Atoms("H2", positions=[[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(ValueError, match=rf"structure {index}: .*closer than"):
        build_graph(structures, 3.0)


def test_zero_cell_vector_in_periodic_direction():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.8, 0, 0]], cell=[4.0, 4.0, 0.0], pbc=True)
    with pytest.raises(ValueError, match=r"cell vector 2 has zero length.*periodic"):
        build_graph(atoms, 3.0)


def test_zero_volume_periodic_cell():
    atoms = Atoms(
        "H2",
        positions=[[0, 0, 0], [0.8, 0, 0]],
        cell=[[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 3.0]],
        pbc=True,
    )
    with pytest.raises(ValueError, match="zero volume"):
        build_graph(atoms, 3.0)
    atoms.pbc = (True, True, False)
    with pytest.raises(ValueError, match="parallel"):
        build_graph(atoms, 3.0)


def test_nan_position():
    atoms = molecule("H2O")
    atoms.positions[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"positions of atoms \[1\] are not finite"):
        build_graph(atoms, 3.0)


def test_empty_structure_list():
    with pytest.raises(ValueError, match="no structures"):
        build_graph([], 3.0)


# ---------------------------------------------------------------------------------------------
# 5. backends


def edge_set(graph: AtomicGraph) -> set[tuple[int, int, tuple[int, ...]]]:
    """The edges of a graph as a set of ``(i, j, S)``; asserts that none repeats."""
    keys = [
        (int(a), int(b), tuple(int(s) for s in shift))
        for a, b, shift in zip(*graph.edge_index.tolist(), graph.shifts.tolist(), strict=True)
    ]
    assert len(set(keys)) == len(keys), "graph has duplicate (i, j, S) edges"
    return set(keys)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_vesin_and_matscipy_give_the_same_graph(data):
    pbc = data.draw(st.sampled_from(ALL_PBC))
    atoms, cutoff = data.draw(periodic_structures(pbc))
    # as in the ASE comparison: no refused structures, no pair within 1e-6 Å of the cutoff
    wide = ase_neighbor_list("d", atoms, cutoff + 1e-6)
    assume(len(wide) == 0 or wide.min() >= 0.1)
    assume(not np.any(np.abs(wide - cutoff) < 1e-6))

    vesin_graph = build_graph(atoms, cutoff, backend="vesin")
    matscipy_graph = build_graph(atoms, cutoff, backend="matscipy")
    assert edge_set(vesin_graph) == edge_set(matscipy_graph)
    assert torch.equal(vesin_graph.positions, matscipy_graph.positions)
    assert torch.equal(vesin_graph.cell, matscipy_graph.cell)


def test_backends_agree_on_a_batch_of_molecule_slab_and_bulk():
    structures = three_structures()
    for backend in BACKENDS:
        graph = build_graph(structures, 4.0, backend=backend)
        assert edge_set(graph) == edge_set(build_graph(structures, 4.0, backend="matscipy"))


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=r"unknown neighbour-list backend 'ase'.*vesin"):
        build_graph(molecule("H2O"), 3.0, backend="ase")
    with pytest.raises(ValueError, match="unknown neighbour-list backend"):
        NeighborCache(3.0, backend="ase")


# ---------------------------------------------------------------------------------------------
# 6. neighbour-list reuse with a Verlet skin


def assert_cache_matches_fresh(cache: NeighborCache, atoms: Atoms) -> None:
    """The cached graph has the edges and arrays of a fresh build."""
    cached = cache.graph(atoms, elements=ELEMENTS)
    fresh = build_graph(atoms, cache.cutoff, elements=ELEMENTS)
    assert edge_set(cached) == edge_set(fresh)
    for name in ("positions", "atomic_numbers", "species", "cell", "pbc", "batch"):
        assert torch.equal(getattr(cached, name), getattr(fresh, name)), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_neighbor_cache_reuses_until_an_atom_moves_half_the_skin(backend):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    cache = NeighborCache(3.0, skin=0.6, backend=backend)
    assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 1

    # random moves of up to skin/2 per atom: the list is reused and still exact
    rng = np.random.default_rng(1)
    start = atoms.positions.copy()
    for _ in range(5):
        step = rng.normal(size=start.shape)
        step *= rng.uniform(0.0, 0.3, size=(len(atoms), 1)) / np.linalg.norm(step, axis=1)[:, None]
        atoms.positions = start + step
        assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 1

    # one atom past skin/2 (measured from the positions at the build) forces a rebuild
    atoms.positions = start
    atoms.positions[3] += [0.31, 0.0, 0.0]
    assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 2


def add_atom(atoms: Atoms) -> None:
    atoms += Atoms("H", positions=[[0.9, 0.9, 0.4]])


def remove_atom(atoms: Atoms) -> None:
    del atoms[-1]


def strain_cell(atoms: Atoms) -> None:
    atoms.set_cell(atoms.cell[:] * 1.001, scale_atoms=False)


def change_pbc(atoms: Atoms) -> None:
    atoms.pbc = (True, True, False)


def change_numbers(atoms: Atoms) -> None:
    atoms.numbers[0] = 13


@pytest.mark.parametrize("change", [add_atom, remove_atom, strain_cell, change_pbc, change_numbers])
def test_neighbor_cache_rebuilds_when_the_structure_changes(change):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.05, seed=2)
    cache = NeighborCache(3.0, skin=1.0)
    assert_cache_matches_fresh(cache, atoms)
    change(atoms)
    assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 2
    assert_cache_matches_fresh(cache, atoms)  # and reuses the new list
    assert cache.builds == 2


def test_neighbor_cache_without_skin_rebuilds_on_any_move():
    atoms = molecule("CH3CH2OH")
    cache = NeighborCache(3.0)
    assert_cache_matches_fresh(cache, atoms)
    assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 1
    atoms.positions[0, 0] += 1e-9
    assert_cache_matches_fresh(cache, atoms)
    assert cache.builds == 2


def test_neighbor_cache_validates_like_build_graph():
    cache = NeighborCache(3.0, skin=1.0)
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.5, 0, 0], [0, 0.96, 0]])
    cache.graph(atoms)
    atoms.positions[1] = [0.05, 0.0, 0.0]  # within skin/2 of the build: still refused
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0\.0500 Å apart"):
        cache.graph(atoms)
    atoms.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        cache.graph(atoms)
    with pytest.raises(KeyError, match="not supported"):
        cache.graph(molecule("H2O"), elements=[1])
    with pytest.raises(ValueError, match="skin must be zero or positive"):
        NeighborCache(3.0, skin=-0.1)
    with pytest.raises(ValueError, match="cutoff must be positive"):
        NeighborCache(0.0)
