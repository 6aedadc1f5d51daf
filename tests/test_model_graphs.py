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
