"""Physics tests of the NEMP model core (float64): symmetry, locality, smoothness, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from e3nn import o3
from helpers import crystal, ethanol, evaluate, random_orthogonal

from mlcalc.graph import build_graph
from mlcalc.models import NEMP, NEMPConfig
from mlcalc.models.blocks import EdgeChunks
from mlcalc.models.nemp_tensor_product import NodeTensorProduct

CUTOFF = 4.0


def make_model(seed: int = 0, **overrides) -> NEMP:
    torch.manual_seed(seed)
    config = NEMPConfig.preset("small", elements=["H", "C", "O"], cutoff=CUTOFF, **overrides)
    model = NEMP(config).double()
    model.set_energy_reference({"H": -13.6, "C": -1030.0, "O": -2040.0}, energy_scale=0.7)
    return model


# T0: basis conventions the models rely on
def test_spherical_harmonics_conventions() -> None:
    v = torch.randn(20, 3, dtype=torch.float64)
    u = v / v.norm(dim=1, keepdim=True)
    y1 = o3.spherical_harmonics(1, v, normalize=True, normalization="component")
    torch.testing.assert_close(y1, math.sqrt(3.0) * u)  # Cartesian (x, y, z) order
    rotation = o3.rand_matrix(dtype=torch.float64)
    for l in range(4):
        y = o3.spherical_harmonics(l, v, normalize=True, normalization="component")
        torch.testing.assert_close(y.square().sum(1), torch.full((20,), 2.0 * l + 1, dtype=y.dtype))
        d = o3.Irrep(l, (-1) ** l).D_from_matrix(rotation)
        y_rot = o3.spherical_harmonics(l, v @ rotation.T, normalize=True, normalization="component")
        # e3nn builds D_l from float32 constants: agreement is ~1e-7, not machine precision
        torch.testing.assert_close(y_rot, y @ d.T, rtol=1e-5, atol=1e-5)
        w = o3.wigner_3j(l, l, 0, dtype=torch.float64)[:, :, 0]
        torch.testing.assert_close(w, torch.eye(2 * l + 1, dtype=w.dtype) / math.sqrt(2 * l + 1))


def _to_e3nn(x: torch.Tensor, l_max: int) -> torch.Tensor:
    """[N, K, C] (lm-major) → e3nn mul_ir layout [N, sum_l C (2l+1)]."""
    blocks = [
        x[:, l * l : (l + 1) ** 2].transpose(1, 2).reshape(len(x), -1) for l in range(l_max + 1)
    ]
    return torch.cat(blocks, dim=1)


@pytest.mark.parametrize(("l1", "l2"), [(1, 1), (2, 1), (2, 2), (3, 2)])
def test_node_tensor_product_matches_e3nn(l1: int, l2: int) -> None:
    """T1: the sparse channel-wise CG product equals e3nn's TensorProduct and is equivariant."""
    channels, n = 3, 5
    tp = NodeTensorProduct(l1, l2, l2).double()
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(n, (l1 + 1) ** 2, channels, generator=generator, dtype=torch.float64)
    v = torch.randn(n, (l2 + 1) ** 2, channels, generator=generator, dtype=torch.float64)
    w = torch.randn(n, tp.num_paths, channels, generator=generator, dtype=torch.float64)

    def irreps(l_max: int) -> o3.Irreps:
        return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(l_max + 1)])

    reference = o3.TensorProduct(
        irreps(l1),
        irreps(l2),
        irreps(l2),
        [(p1, p2, pf, "uuu", True) for p1, p2, pf in tp.paths],
        irrep_normalization="none",
        path_normalization="none",
        shared_weights=False,
        internal_weights=False,
    ).double()
    paths_into = torch.tensor([sum(p[2] == lf for p in tp.paths) for lf in range(l2 + 1)])
    expected = reference(_to_e3nn(a, l1), _to_e3nn(v, l2), w.reshape(n, -1))
    ours = tp(a, v, w)
    scale = torch.repeat_interleave(paths_into.double().sqrt(), torch.arange(l2 + 1) * 2 + 1)
    # e3nn's TensorProduct builds its coefficients in float32: ~1e-7 agreement
    torch.testing.assert_close(
        _to_e3nn(ours * scale[None, :, None], l2), expected, rtol=1e-6, atol=1e-6
    )

    rotation = -o3.rand_matrix(dtype=torch.float64)  # improper: checks parities too

    def rotate(x: torch.Tensor, l_max: int) -> torch.Tensor:
        d = o3.Irreps([(1, (l, (-1) ** l)) for l in range(l_max + 1)]).D_from_matrix(rotation)
        return torch.einsum("kq,nqc->nkc", d, x)

    torch.testing.assert_close(  # e3nn's D_l is accurate to ~1e-7 only
        tp(rotate(a, l1), rotate(v, l2), w), rotate(ours, l2), rtol=1e-5, atol=1e-5
    )


def test_path_counts_match_spec() -> None:
    counts = {(2, 2): 11, (3, 2): 13, (1, 1): 4, (2, 1): 5, (3, 3): 23}
    for (l, lp), expected in counts.items():
        assert NodeTensorProduct(l, lp, lp).num_paths == expected


def test_parameter_counts_are_in_the_papers_range() -> None:
    """The spec's own counts: ≈0.55 M (default preset, 2 elements), ≈1.1 M (3BPA, 4 elements)."""
    default = NEMP(NEMPConfig(elements=["H", "O"])).num_parameters()
    reference = NEMP(NEMPConfig.preset("3bpa", elements=["H", "C", "N", "O"])).num_parameters()
    small = NEMP(NEMPConfig.preset("small", elements=["H", "O"])).num_parameters()
    assert 0.5e6 < default < 0.6e6
    assert 1.0e6 < reference < 1.2e6
    assert small < 50_000


@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("system", ["molecule", "crystal"])
def test_invariance_and_equivariance(system: str, improper: bool) -> None:
    """T2/T3: E invariant; F and stress equivariant under O(3), translation and permutation."""
    model = make_model()
    atoms = ethanol() if system == "molecule" else crystal()
    periodic = system == "crystal"
    reference = evaluate(model, atoms, stress=periodic)

    rotation = random_orthogonal(7, improper)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([1.3, -2.1, 0.7])
    if periodic:
        moved.set_cell(atoms.cell[:] @ rotation.T)
    permutation = np.random.default_rng(5).permutation(len(atoms))
    moved = moved[permutation]
    out = evaluate(model, moved, stress=periodic)

    np.testing.assert_allclose(out["energy"], reference["energy"], rtol=1e-10)
    np.testing.assert_allclose(
        out["node_energy"], reference["node_energy"][permutation], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        out["forces"], reference["forces"][permutation] @ rotation.T, rtol=1e-8, atol=1e-10
    )
    if periodic:
        np.testing.assert_allclose(
            out["stress"][0], rotation @ reference["stress"][0] @ rotation.T, rtol=1e-8, atol=1e-12
        )


def test_supercell_is_extensive() -> None:
    """T6: supercells of a triclinic cell (smaller than the cutoff) scale E; F tile; σ equal."""
    model = make_model()
    atoms = crystal()
    assert min(atoms.cell.lengths()) < CUTOFF
    single = evaluate(model, atoms, stress=True)
    for repeat in [(2, 2, 2), (1, 2, 3)]:
        n = int(np.prod(repeat))
        supercell = evaluate(model, atoms * repeat, stress=True)
        np.testing.assert_allclose(supercell["energy"], n * single["energy"], rtol=1e-10)
        np.testing.assert_allclose(
            supercell["forces"], np.tile(single["forces"], (n, 1)), atol=1e-9
        )
        np.testing.assert_allclose(supercell["stress"], single["stress"], atol=1e-10)


def test_wrapping_and_lattice_shifts_change_nothing() -> None:
    model = make_model()
    atoms = crystal()
    reference = evaluate(model, atoms, stress=True)
    shifted = atoms.copy()
    shifted.positions += np.array([2, -1, 3]) @ atoms.cell[:]
    shifted.positions[0] += atoms.cell[1] * -4
    wrapped = atoms.copy()
    wrapped.wrap()
    for other in (shifted, wrapped):
        out = evaluate(model, other, stress=True)
        np.testing.assert_allclose(out["energy"], reference["energy"], rtol=1e-11)
        np.testing.assert_allclose(out["forces"], reference["forces"], atol=1e-10)
        np.testing.assert_allclose(out["stress"], reference["stress"], atol=1e-12)


def test_molecule_in_large_box_equals_non_periodic() -> None:
    model = make_model()
    free = ethanol()
    boxed = free.copy()
    boxed.set_cell([30.0, 31.0, 32.0])
    boxed.pbc = True
    a, b = evaluate(model, free), evaluate(model, boxed, stress=True)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-12)
    np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-12)


def test_distant_fragments_are_additive_and_local() -> None:
    """T7: two molecules beyond the cutoff add up; a distant change leaves atomic energies."""
    model = make_model()
    one = ethanol()
    far = one.copy()
    far.positions += [0.0, 0.0, 4 * CUTOFF]
    pair = one + far
    single, both = evaluate(model, one), evaluate(model, pair)
    np.testing.assert_allclose(both["energy"], 2 * single["energy"], rtol=1e-12)


def test_receptive_field_is_bounded() -> None:
    """T7: moving one atom of a chain changes atomic energies only within (T + 1) cutoffs."""
    model = make_model()
    n_layers = model.config.num_interactions
    chain = Atoms("C40", positions=[[1.5 * k, 0.1 * (k % 2), 0.0] for k in range(40)])
    moved = chain.copy()
    moved.positions[0] += [0.1, 0.2, -0.1]
    before, after = evaluate(model, chain), evaluate(model, moved)
    reach = np.linalg.norm(chain.positions - chain.positions[0], axis=1)
    outside = reach > (n_layers + 1) * CUTOFF
    assert outside.sum() > 10
    np.testing.assert_array_equal(after["node_energy"][outside], before["node_energy"][outside])
    changed = np.abs(after["node_energy"] - before["node_energy"]) > 1e-12
    assert changed[reach < CUTOFF].all()
    assert changed[reach < n_layers * CUTOFF].sum() > changed[reach < CUTOFF].sum()


@pytest.mark.parametrize("neighbor_norm", ["smooth_count", "constant"])
def test_smooth_when_a_neighbour_crosses_the_cutoff(neighbor_norm: str) -> None:
    """T8: an H atom leaves the cutoff of a water molecule whose atoms keep other neighbours."""
    model = make_model(neighbor_norm=neighbor_norm, avg_num_neighbors=2.0)
    water = molecule("H2O")
    oxygen = water.positions[0]
    direction = np.array([0.3, 0.4, 0.866])
    direction /= np.linalg.norm(direction)

    def place(r: float) -> Atoms:
        atoms = water + Atoms("H", positions=[oxygen + r * direction])
        return atoms

    # the H must be beyond the cutoff of the two water H atoms before it crosses O's
    distances = [np.linalg.norm(place(CUTOFF).positions[3] - p) for p in water.positions[1:]]
    assert min(distances) > CUTOFF

    inside = evaluate(model, place(CUTOFF - 1e-4))
    outside = evaluate(model, place(CUTOFF + 1e-4))
    assert abs(inside["energy"][0] - outside["energy"][0]) < 1e-8
    np.testing.assert_allclose(inside["forces"][:3], outside["forces"][:3], atol=1e-8)
    assert np.abs(inside["forces"][3]).max() < 1e-8
    # the energy curve is bounded in slope across the crossing
    radii = np.linspace(CUTOFF - 0.05, CUTOFF + 0.05, 21)
    energies = [evaluate(model, place(r))["energy"][0] for r in radii]
    slopes = np.diff(energies) / np.diff(radii)
    assert np.all(np.isfinite(slopes)) and np.abs(slopes).max() < 1.0


def test_batch_equals_one_at_a_time_in_any_order() -> None:
    """T9: no cross-talk between graphs of a batch."""
    model = make_model()
    structures = [ethanol(), crystal(1), crystal(2) * (1, 2, 1), molecule("CO2")]
    singles = [evaluate(model, s, stress=True) for s in structures]
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        batch = evaluate(model, [structures[k] for k in order], stress=True)
        offsets = np.cumsum([0] + [len(structures[k]) for k in order])
        for slot, k in enumerate(order):
            np.testing.assert_allclose(batch["energy"][slot], singles[k]["energy"][0], rtol=1e-12)
            forces = batch["forces"][offsets[slot] : offsets[slot + 1]]
            np.testing.assert_allclose(forces, singles[k]["forces"], atol=1e-11)
            np.testing.assert_allclose(batch["stress"][slot], singles[k]["stress"][0], atol=1e-12)


def test_isolated_atom_energy_is_its_reference() -> None:
    """T10: no neighbours → finite E = E0 + scale · (a · F_out(0) + b), zero force."""
    model = make_model()
    atom = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    out = evaluate(model, atom)
    width = (model.config.num_interactions + 2) * model.config.channels
    raw = model.atomic_mlp(torch.zeros(1, width, dtype=torch.float64))
    expected = -2040.0 + 0.7 * raw.item()
    np.testing.assert_allclose(out["energy"][0], expected, rtol=1e-12)
    assert np.all(out["forces"] == 0.0)
    dimer = evaluate(model, Atoms("OO", positions=[[0, 0, 0], [0, 0, 0.5]]))
    assert np.all(np.isfinite(dimer["energy"])) and np.all(np.isfinite(dimer["forces"]))


def test_float32_agrees_with_float64() -> None:
    """T13: float32 within 1e-4 eV/atom and 1e-3 eV/Å of float64."""
    model = make_model()
    atoms = crystal() * (2, 2, 1)
    graph64 = build_graph(atoms, CUTOFF, model.atomic_numbers)
    out64 = {k: v.detach() for k, v in model(graph64).items()}
    model32 = make_model().float()
    out32 = {k: v.detach() for k, v in model32(graph64.to(dtype=torch.float32)).items()}
    assert abs(float(out32["energy"][0] - out64["energy"][0])) / len(atoms) < 1e-4
    assert float((out32["forces"].double() - out64["forces"]).abs().max()) < 1e-3
    assert out32["energy"].dtype == torch.float64  # energies accumulate in float64


def test_graph_in_float32_keeps_reference_energies_exact() -> None:
    """E0s stay float64 after ``model.float()``: no 1e-5 eV/atom rounding of large offsets."""
    model = make_model().float()
    assert model.atomic_energies == {"H": -13.6, "C": -1030.0, "O": -2040.0}


@pytest.mark.parametrize("recompute_above_edges", [0, None])
@pytest.mark.parametrize("max_edges", [1, 37, 400])
def test_edge_chunks_equal_one_pass(max_edges: int, recompute_above_edges: int | None) -> None:
    """Chunked per-edge work, recomputed in the backward pass (``0``) or kept, changes no result.

    ``max_edges=1`` gives every atom a chunk of its own (each has more edges than that); the
    batch mixes a molecule and a crystal, so chunks cross graph boundaries.
    """
    model = make_model()
    structures = [ethanol(), crystal(1) * (2, 1, 1)]
    model.max_edges_per_chunk = None
    whole = evaluate(model, structures, stress=True)
    model.max_edges_per_chunk = model.max_edges_per_recomputed_chunk = max_edges
    model.recompute_above_edges = recompute_above_edges
    chunked = evaluate(model, structures, stress=True)
    np.testing.assert_allclose(chunked["energy"], whole["energy"], rtol=1e-13)
    np.testing.assert_allclose(chunked["forces"], whole["forces"], atol=1e-12)
    np.testing.assert_allclose(chunked["stress"], whole["stress"], atol=1e-13)


def test_edge_chunks_keep_training_gradients() -> None:
    """In training (forces in the loss, no recomputation) chunks give the same gradients."""
    graph = build_graph([ethanol(), crystal(2)], CUTOFF, make_model().atomic_numbers)
    gradients = []
    for max_edges in (None, 50):
        model = make_model()
        model.max_edges_per_chunk = max_edges
        out = model(graph, compute_forces=True, compute_stress=True, training=True)
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        loss = loss + out["stress"].square().sum()
        loss.backward()
        gradients.append([p.grad for p in model.parameters()])
    for whole, chunked in zip(*gradients, strict=True):
        if whole is None:
            assert chunked is None
        else:
            torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-12)


def test_recomputation_only_above_the_threshold_and_outside_training() -> None:
    """Large graphs recompute (in bigger chunks), small ones and training never do."""
    model = make_model()
    graph = build_graph([ethanol(), crystal(2)], CUTOFF, model.atomic_numbers)
    # one atom per chunk when keeping intermediates, one chunk for all when recomputing
    model.max_edges_per_chunk, model.max_edges_per_recomputed_chunk = 1, graph.num_edges
    for threshold, recompute, expected in [
        (graph.num_edges - 1, True, True),
        (graph.num_edges, True, False),
        (None, True, False),
        (0, False, False),  # training
    ]:
        model.recompute_above_edges = threshold
        chunks = model.edge_chunks(graph, recompute)
        assert chunks.recompute is expected
        assert len(chunks) == (1 if expected else graph.num_atoms)
    model.recompute_above_edges = None
    assert len(model.edge_chunks(graph, False, chunked=False)) == 1


def test_edge_chunks_split_at_atom_boundaries() -> None:
    centre = torch.tensor([2, 0, 1, 2, 0, 2, 4, 4])
    edge_index = torch.stack([centre, torch.zeros_like(centre)])
    chunks = EdgeChunks(edge_index, num_atoms=6, max_edges=3)
    assert chunks.centre.tolist() == [0, 0, 1, 2, 2, 2, 4, 4]
    assert chunks.order.tolist() == [1, 4, 2, 0, 3, 5, 6, 7]
    # atoms 0-1 (3 edges), atoms 2-3 (3 edges; atom 3 has none), atoms 4-5 (2 edges)
    assert chunks.bounds == [(0, 3, 0, 2), (3, 6, 2, 4), (6, 8, 4, 6)]
    assert len(EdgeChunks(edge_index, num_atoms=6, max_edges=None)) == 1
    with pytest.raises(ValueError, match="max_edges"):
        EdgeChunks(edge_index, num_atoms=6, max_edges=0)
