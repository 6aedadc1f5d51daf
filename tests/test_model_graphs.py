"""Band/structure graphs: cache hits, tie-safe neighbours, site-order independence, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from screener.model.graphs import (
    GraphCache, GraphSettings, band_graph, batch_graphs, build_graph, line_graph_edges, structure_key)
from screener.sources.dataset import load_bands


@pytest.fixture(scope="module")
def band() -> Structure:
    return load_bands("train")[0].band


def _edge_multiset(g, perm_inv=None) -> list[tuple]:
    """Edges as (z_src, z_dst, rounded vector), independent of node numbering."""
    return sorted(zip(g.z[g.src].tolist(), g.z[g.dst].tolist(),
                      map(tuple, np.round(g.r, 3).tolist())))


def test_cache_second_get_is_a_hit_with_same_arrays(band, tmp_path):
    cache = GraphCache(tmp_path / "graphs")
    g1 = band_graph(band, cache=cache)
    g2 = band_graph(band, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    for name in ("z", "src", "dst", "r", "lg_src", "lg_dst"):
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name))
    assert g2.n_band_sites == 5
    assert len(list((tmp_path / "graphs").rglob("*.npz"))) == 1
    # other settings are another key: no false hit
    other = GraphCache(tmp_path / "graphs", GraphSettings(max_neighbors=12))
    assert band_graph(band, cache=other).num_edges > g1.num_edges
    assert other.hits == 0


def test_band_graph_counts(band):
    g = band_graph(band)
    assert g.num_nodes == len(band)
    # every atom has at least k bonds when the cell is dense enough, and triplets ~ k^2 per atom
    assert np.bincount(g.src, minlength=g.num_nodes).min() >= 8
    assert 50 < g.num_triplets / g.num_nodes < 150
    lengths = np.linalg.norm(g.r, axis=1)
    assert lengths.min() > 0 and lengths.max() <= 8.0


def test_ties_with_kth_neighbour_are_kept():
    # simple cubic: the 6 nearest neighbours are tied; k=4 must keep all 6 (order-independent)
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    g = build_graph(s, GraphSettings(max_neighbors=4))
    assert g.num_edges == 6
    np.testing.assert_allclose(np.linalg.norm(g.r, axis=1), 3.0, atol=1e-5)


def test_host_site_order_does_not_change_graph(band):
    rng = np.random.default_rng(0)
    host = list(range(5, len(band)))
    order = list(range(5)) + list(rng.permutation(host))
    shuffled = Structure.from_sites([band[i] for i in order])
    g1, g2 = band_graph(band), band_graph(shuffled)
    assert structure_key(band, GraphSettings()) != structure_key(shuffled, GraphSettings())
    assert g1.num_edges == g2.num_edges and g1.num_triplets == g2.num_triplets
    assert _edge_multiset(g1) == _edge_multiset(g2)


def test_line_graph_matches_alignn(band):
    from alignn.torch_graph_builder import _line_graph_edges

    g = band_graph(band)
    ours = set(zip(*line_graph_edges(g.src, g.dst, g.num_nodes)))
    theirs = _line_graph_edges(torch.from_numpy(g.src.astype(np.int64)),
                               torch.from_numpy(g.dst.astype(np.int64)), g.num_nodes)
    assert ours == set(zip(theirs[0].tolist(), theirs[1].tolist()))


def test_batch_offsets_and_band_mask(band):
    bands = [b.band for b in load_bands("train")[:3]]
    graphs = [band_graph(b) for b in bands]
    batch = batch_graphs(graphs)
    n = [g.num_nodes for g in graphs]
    assert batch.g.num_nodes == sum(n)
    assert batch.g.ndata["atom_features"].shape == (sum(n), 92)
    assert int(batch.band_mask.sum()) == 15
    assert bool(batch.band_mask[n[0]]) and not bool(batch.band_mask[n[0] + 5])
    assert int(batch.lg.src.max()) < batch.g.num_edges
    # edges of graph 2 point into graph 2's nodes
    e0 = graphs[0].num_edges
    assert int(batch.g.src[e0:e0 + graphs[1].num_edges].min()) >= n[0]


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="^band x: a band needs 5 hop sites"):
        band_graph(Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]]), name="band x")
    lonely = Structure(Lattice.cubic(30.0), ["Li"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="^lonely: no neighbour within 8 A") as exc:
        build_graph(lonely, name="lonely")
    assert "\n" not in str(exc.value)


def test_cropped_band_keeps_every_atom_near_the_hop_and_only_those(band):
    radius = 5.0
    g = build_graph(band, GraphSettings(crop_radius=radius), n_band_sites=5)
    assert g.n_band_sites == 5 and g.num_nodes < len(band)
    np.testing.assert_array_equal(g.z[:5], band.atomic_numbers[:5])
    # brute force: every (site, periodic image) within the radius of one of the five hop sites
    expected = set()
    for c in band.cart_coords[:5]:
        for nb in band.get_sites_in_sphere(c, radius):
            expected.add((nb.index, tuple(np.rint(nb.image).astype(int))))
    assert g.num_nodes == len(expected)
    assert sorted(g.z.tolist()) == sorted(band.atomic_numbers[i] for i, _ in expected)
    # a finite cluster: bonds stay inside it, and each band site's nearest neighbours are unchanged
    full = build_graph(band, GraphSettings(), n_band_sites=5)
    for site in range(5):
        near = lambda gr: sorted(np.round(np.linalg.norm(gr.r[gr.src == site], axis=1), 3).tolist())
        assert near(g)[:4] == near(full)[:4]


def test_cropped_graph_ignores_host_site_order_and_has_its_own_cache_key(band, tmp_path):
    settings = GraphSettings(crop_radius=4.0)
    rng = np.random.default_rng(1)
    order = list(range(5)) + list(rng.permutation(range(5, len(band))))
    shuffled = Structure.from_sites([band[i] for i in order])
    g1, g2 = build_graph(band, settings, 5), build_graph(shuffled, settings, 5)
    assert g1.num_triplets == g2.num_triplets
    assert _edge_multiset(g1) == _edge_multiset(g2)
    assert structure_key(band, settings, 5) != structure_key(band, GraphSettings(), 5)
    assert GraphSettings().key() == "v1-c8-k8-t0.001"  # uncropped keys unchanged: old caches stay valid
    cache = GraphCache(tmp_path, settings)
    assert band_graph(band, cache=cache).num_nodes == g1.num_nodes
    # a bulk structure (no hop sites) is never cropped
    assert build_graph(band, settings, n_band_sites=0).num_nodes == len(band)
    # hop sites given outside the unit cell (unwrapped fractional coordinates, as 103 dataset bands
    # have) give the same cluster: no hop site is doubled by its own periodic image
    moved = Structure(band.lattice, band.species, band.frac_coords + np.array([1.0, -1.0, 2.0]))
    g3 = build_graph(moved, settings, 5)
    assert g3.num_nodes == g1.num_nodes and _edge_multiset(g3) == _edge_multiset(g1)
