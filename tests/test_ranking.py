"""Percolation barriers and candidate ordering."""

import math

from pymatgen.core import Lattice, Structure

from screener.ranking import network_dimensionality, percolation_barriers, rank_key


def _li_cubic() -> Structure:
    """One Li per 3 A cubic cell plus a framework O: hops along x, y, z to the next cell."""
    return Structure(Lattice.cubic(3.0), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_dimensionality_counts_periodic_directions():
    s = Structure.from_sites([_li_cubic()[0]])
    assert network_dimensionality(s, []) == 0
    assert network_dimensionality(s, [(0, 0, (1, 0, 0), "x")]) == 1
    assert network_dimensionality(s, [(0, 0, (1, 0, 0), "x"), (0, 0, (0, 1, 0), "y")]) == 2
    edges = [(0, 0, (1, 0, 0), "x"), (0, 0, (0, 1, 0), "y"), (0, 0, (0, 0, 1), "z")]
    assert network_dimensionality(s, edges) == 3


def test_percolation_sweeps_barriers_in_order():
    s = _li_cubic()
    edges = [(0, 0, (1, 0, 0), "x"), (0, 0, (0, 1, 0), "y"), (0, 0, (0, 0, 1), "z")]
    result = percolation_barriers(s, "Li", edges, {"x": 0.9, "y": 0.3, "z": 0.5})
    assert result == {"1d": 0.3, "2d": 0.5, "3d": 0.9}


def test_percolation_ignores_hops_without_barrier_and_closed_loops():
    # Two Li in one cell joined only to each other (no net translation): never percolates.
    s = Structure(Lattice.cubic(6.0), ["Li", "Li", "O"], [[0, 0, 0], [0.3, 0, 0], [0.5, 0.5, 0.5]])
    local = [(0, 1, (0, 0, 0), "a")]
    assert percolation_barriers(s, "Li", local, {"a": 0.2}) == {"1d": None, "2d": None, "3d": None}
    # a -> b -> next cell percolates in 1D at the larger of the two barriers
    chain = local + [(1, 0, (1, 0, 0), "b")]
    assert percolation_barriers(s, "Li", chain, {"a": 0.2, "b": 0.7})["1d"] == 0.7
    assert percolation_barriers(s, "Li", chain, {"a": 0.2})["1d"] is None


def test_rank_key_puts_missing_values_last():
    rows = [
        {"barrier_ev": 0.8, "host_id": "a", "hop_key": "1"},
        {"barrier_ev": None, "host_id": "b", "hop_key": "2"},
        {"barrier_ev": 0.2, "host_id": "c", "hop_key": "3"},
        {"barrier_ev": math.nan, "host_id": "d", "hop_key": "4"},
    ]
    assert [r["host_id"] for r in sorted(rows, key=rank_key)] == ["c", "a", "b", "d"]
    perc = [{"percolation_ev": {"1d": 0.9}}, {"percolation_ev": {"1d": 0.1}}, {"percolation_ev": None}]
    ordered = sorted(perc, key=lambda r: rank_key(r, "percolation"))
    assert ordered[0]["percolation_ev"]["1d"] == 0.1 and ordered[-1]["percolation_ev"] is None


def test_union_find_agrees_with_pymatgen_larsen():
    """The incremental sweep gives pymatgen's dimensionality on random periodic graphs."""
    import random

    from screener.ranking import PeriodicUnionFind

    rng = random.Random(0)
    s = Structure(Lattice.cubic(5.0), ["Li"] * 4, [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    for _ in range(60):
        edges = []
        uf = PeriodicUnionFind(len(s))
        for _ in range(rng.randint(1, 7)):
            i, j = rng.randrange(4), rng.randrange(4)
            image = tuple(rng.choice([-1, 0, 0, 1]) for _ in range(3))
            if i == j and image == (0, 0, 0):
                continue
            edges.append((i, j, image, "k"))
            assert uf.add_edge(i, j, image) == network_dimensionality(s, edges)
