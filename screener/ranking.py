"""Flags, percolation barriers and ranked candidates.

A host is only as good as the path an ion can take through all of it: its figure of merit is the
lowest barrier at which the network of its hops percolates (connects the crystal to its periodic
images) in one, two or three dimensions. The hop network itself comes from ``screener.hops``;
the dimensionality of each sub-network is pymatgen's Larsen analysis on a ``StructureGraph``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from pymatgen.analysis.dimensionality import get_structure_components
from pymatgen.analysis.graphs import StructureGraph
from pymatgen.core import Structure

Edge = tuple[int, int, tuple[int, int, int], str]


def network_dimensionality(ion_structure: Structure, edges: Iterable[Edge]) -> int:
    """Highest periodic dimensionality (0-3) of the graph of ion sites joined by ``edges``."""
    graph = StructureGraph.from_empty_graph(ion_structure, name="hops")
    seen: set[tuple[int, int, tuple[int, int, int]]] = set()
    for i, j, image, _ in edges:
        image = tuple(int(x) for x in image)
        if i == j and image == (0, 0, 0):
            continue
        key = (i, j, image) if (i, j) <= (j, i) else (j, i, tuple(-x for x in image))
        if key in seen:
            continue
        seen.add(key)
        graph.add_edge(i, j, to_jimage=image, warn_duplicates=False)
    if not seen:
        return 0
    return max(c["dimensionality"] for c in get_structure_components(graph))


class PeriodicUnionFind:
    """Connected components of a periodic graph, with the lattice translations each one spans.

    Each node keeps its cell offset relative to its component's root; an edge that closes a loop
    with a non-zero net offset is a translation the component spans, and the rank of those
    translations is its dimensionality. Edges are added one at a time, so a sweep over barriers
    costs one pass (pymatgen's Larsen analysis gives the same answer but rebuilds a graph per step).
    """

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.offset = np.zeros((n, 3), dtype=int)
        self.translations: dict[int, np.ndarray] = {}
        self.dimensionality = 0

    def find(self, i: int) -> tuple[int, np.ndarray]:
        """Root of ``i`` and the offset of ``i`` from it (with path compression)."""
        path = []
        while self.parent[i] != i:
            path.append(i)
            i = self.parent[i]
        root, acc = i, np.zeros(3, dtype=int)
        for node in reversed(path):
            acc = acc + self.offset[node]
            self.offset[node] = acc
            self.parent[node] = root
        return root, (self.offset[path[0]] if path else np.zeros(3, dtype=int))

    def _rank(self, vectors: np.ndarray) -> np.ndarray:
        """A basis (at most 3 rows) of the span of ``vectors``."""
        basis: list[np.ndarray] = []
        for v in vectors:
            trial = np.array(basis + [v], dtype=float)
            if np.linalg.matrix_rank(trial) > len(basis):
                basis.append(v)
        return np.array(basis, dtype=int).reshape(-1, 3)

    def add_edge(self, i: int, j: int, image: tuple[int, int, int]) -> int:
        """Join node i in cell 0 with node j in cell ``image``; returns the new dimensionality."""
        ri, xi = self.find(i)
        rj, xj = self.find(j)
        d = np.asarray(image, dtype=int) - xj + xi
        if ri == rj:
            if d.any():
                old = self.translations.get(ri, np.zeros((0, 3), dtype=int))
                self.translations[ri] = self._rank(np.vstack([old, d]))
        else:
            self.parent[rj] = ri
            self.offset[rj] = d
            both = [self.translations.pop(r) for r in (ri, rj) if r in self.translations]
            if both:
                self.translations[ri] = self._rank(np.vstack(both))
        if ri in self.translations:
            self.dimensionality = max(self.dimensionality, len(self.translations[ri]))
        return self.dimensionality


def percolation_barriers(
    structure: Structure,
    working_ion: str,
    edges: Sequence[Edge],
    barrier_by_key: Mapping[str, float],
) -> dict[str, float | None]:
    """Lowest E_m at which the hop network percolates in 1D, 2D and 3D (None: never).

    ``edges`` are (i, j, image of j, hop_key) over the host's sites (indices into ``structure``);
    ``barrier_by_key`` gives each distinct hop's predicted barrier. Edges whose hop has no barrier
    are left out. Hops are added in order of barrier; the barrier of the hop that first raises the
    dimensionality of the network to d is its d-dimensional percolation barrier.
    """
    ion_idx = {k for k, site in enumerate(structure) if site.specie.symbol == working_ion}
    usable = sorted(
        (barrier_by_key[key], i, j, tuple(int(x) for x in image))
        for i, j, image, key in edges
        if key in barrier_by_key and i in ion_idx and j in ion_idx
    )
    result: dict[str, float | None] = {"1d": None, "2d": None, "3d": None}
    uf = PeriodicUnionFind(len(structure))
    for barrier, i, j, image in usable:
        dim = uf.add_edge(i, j, image)
        for d in range(1, dim + 1):
            if result[f"{d}d"] is None:
                result[f"{d}d"] = float(barrier)
        if dim == 3:
            break
    return result


def rank_key(row: Mapping, rank_by: str = "barrier") -> tuple:
    """Sort key for candidate rows: lowest barrier first; rows without a value last."""
    if rank_by == "percolation":
        value = (row.get("percolation_ev") or {}).get("1d")
    else:
        value = row.get("barrier_ev")
    missing = value is None or not np.isfinite(value)
    return (missing, value if not missing else 0.0, row.get("host_id", ""), row.get("hop_key", ""))
