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


def percolation_barriers(
    structure: Structure,
    working_ion: str,
    edges: Sequence[Edge],
    barrier_by_key: Mapping[str, float],
) -> dict[str, float | None]:
    """Lowest E_m at which the hop network percolates in 1D, 2D and 3D (None: never).

    ``edges`` are (i, j, image of j, hop_key) over the host's sites (indices into ``structure``);
    ``barrier_by_key`` gives each distinct hop's predicted barrier. Edges whose hop has no barrier
    are left out. The sweep adds hops in order of barrier and records the barrier of the hop that
    first raises the dimensionality.
    """
    ion_idx = [k for k, site in enumerate(structure) if site.specie.symbol == working_ion]
    remap = {k: n for n, k in enumerate(ion_idx)}
    ion_structure = Structure.from_sites([structure[k] for k in ion_idx])
    usable = [
        (remap[i], remap[j], image, key)
        for i, j, image, key in edges
        if key in barrier_by_key and i in remap and j in remap
    ]
    result: dict[str, float | None] = {"1d": None, "2d": None, "3d": None}
    for barrier in sorted({barrier_by_key[e[3]] for e in usable}):
        active = [e for e in usable if barrier_by_key[e[3]] <= barrier]
        dim = network_dimensionality(ion_structure, active)
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
