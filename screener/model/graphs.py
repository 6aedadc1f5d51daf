"""Crystal graphs (atoms + bonds) and their line graphs (bond pairs = angles) for the ALIGNN model.

Why our own builder: pymatgen's Cython neighbour list is fast, and we keep *every* neighbour tied
with the k-th nearest one, so the graph of a structure does not depend on the order its sites are
listed in (a plain top-k breaks ties by index). The line graph is alignn's vectorised
``_line_graph_edges``. Graphs are plain numpy arrays (node features are looked up from the atomic
numbers at batch time), cached on disk as ``.npz`` keyed by a hash of the structure and settings, so
epochs after the first cost only the network.

A band (first five sites: migrating ion at initial site, three images, final site) is graphed as
is; ``n_band_sites`` marks those five nodes for pooling that looks at the hop. With
``GraphSettings.crop_radius`` > 0 only the atoms within that radius of the five hop sites are kept
(a finite cluster, periodic images included; cf. the 3 A sub-graph of the paper's MODEL-4): the
barrier is decided near the hop, and the network's cost falls with the atom count.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

#: Bump when the builder changes in a way that changes graphs (invalidates caches).
GRAPH_VERSION = 1
N_ATOM_FEATURES = 92  # alignn's "cgcnn" atom features
#: Node data batch_graphs sets for the band readout: (N,) bool "node is one of a band's five hop
#: sites", and (N, d) the hop descriptors of each node's band (every node carries its band's row).
BAND_KEY = "band_site"
HOP_DESCRIPTORS_KEY = "hop_descriptors"


@dataclass(frozen=True)
class GraphSettings:
    """What decides a graph; part of the cache key."""

    cutoff: float = 8.0
    """Largest bond length considered (Angstrom)."""
    max_neighbors: int = 8
    """k: bonds per atom (plus ties with the k-th). 8 instead of alignn's 12 halves the triplets."""
    tie_tol: float = 1e-3
    """Neighbours within this of the k-th distance are kept too (Angstrom)."""
    crop_radius: float = 0.0
    """Bands only: keep the atoms within this of any of the five hop sites (Angstrom; 0 = all)."""

    def key(self) -> str:
        crop = f"-r{self.crop_radius:g}" if self.crop_radius > 0 else ""
        return f"v{GRAPH_VERSION}-c{self.cutoff:g}-k{self.max_neighbors}-t{self.tie_tol:g}{crop}"


@dataclass
class CrystalGraph:
    """One structure's graph: nodes = sites, directed edges src->dst with vector r, line graph."""

    z: np.ndarray
    """(N,) atomic numbers."""
    src: np.ndarray
    """(E,) int32."""
    dst: np.ndarray
    """(E,) int32."""
    r: np.ndarray
    """(E, 3) float32 bond vectors dst - src (Angstrom, periodic image included)."""
    lg_src: np.ndarray
    """(T,) int32 edge index of bond (u,v)."""
    lg_dst: np.ndarray
    """(T,) int32 edge index of bond (v,w)."""
    n_band_sites: int = 0
    """Leading nodes that are the hop (5 for a band, 0 for a bulk structure)."""
    hop_descriptors: np.ndarray | None = None
    """(d,) standardised descriptors of the hop, for a readout that reads them (not cached)."""

    @property
    def num_nodes(self) -> int:
        return int(self.z.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    @property
    def num_triplets(self) -> int:
        return int(self.lg_src.shape[0])

    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self)
                   if isinstance(getattr(self, f.name), np.ndarray))


def structure_key(structure: Structure, settings: GraphSettings, n_band_sites: int = 0) -> str:
    """sha256 of lattice, species, fractional coords (rounded to 1e-6) and the graph settings."""
    h = hashlib.sha256()
    h.update(settings.key().encode())
    h.update(f"|b{n_band_sites}|".encode())
    h.update(np.round(structure.lattice.matrix, 6).astype(np.float64).tobytes())
    h.update(np.asarray(structure.atomic_numbers, dtype=np.int16).tobytes())
    h.update(np.round(structure.frac_coords % 1.0, 6).astype(np.float64).tobytes())
    return h.hexdigest()[:32]


def _knn_with_ties(center: np.ndarray, dist: np.ndarray, n: int, k: int, tol: float) -> np.ndarray:
    """Indices of pairs to keep: per center the k nearest plus all tied with the k-th."""
    order = np.lexsort((dist, center))  # by center, then distance
    c_sorted = center[order]
    d_sorted = dist[order]
    starts = np.searchsorted(c_sorted, np.arange(n))
    rank = np.arange(len(order)) - starts[c_sorted]
    counts = np.bincount(c_sorted, minlength=n)
    kth_pos = starts + np.minimum(counts, k) - 1  # position of k-th (or last) neighbour per center
    kth = np.full(n, -np.inf)
    has = counts > 0
    kth[has] = d_sorted[kth_pos[has]]
    keep = (rank < k) | (d_sorted <= kth[c_sorted] + tol)
    return order[keep]


def line_graph_edges(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of bonds (u->v, v->w), backtracking included as in alignn; numpy port of alignn's
    vectorised ``_line_graph_edges`` (its torch.repeat_interleave was most of the build time)."""
    order = np.argsort(src, kind="stable")
    sorted_src = src[order]
    start = np.searchsorted(sorted_src, np.arange(num_nodes), side="left")
    end = np.searchsorted(sorted_src, np.arange(num_nodes), side="right")
    starts, counts = start[dst], end[dst] - start[dst]
    total = int(counts.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty
    lg_src = np.repeat(np.arange(len(src), dtype=np.int64), counts)
    row_start = np.cumsum(counts) - counts
    pos = np.repeat(starts - row_start, counts) + np.arange(total)
    return lg_src.astype(np.int32), order[pos].astype(np.int32)


def crop_cluster(structure: Structure, n_band_sites: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers, Cartesian coordinates) of every atom image within ``radius`` of one of the
    first ``n_band_sites`` sites; those sites come first, the rest sorted by (site, image) so the
    cluster does not depend on how the host's sites are ordered beyond a relabelling."""
    lat = structure.lattice
    frac = structure.frac_coords
    found: dict[tuple[int, int, int, int], np.ndarray] = {}
    for c in structure.cart_coords[:n_band_sites]:
        fc, _, idx, img = lat.get_points_in_sphere(frac, c, radius, zip_results=False)
        for f, i, im in zip(np.atleast_2d(fc), np.asarray(idx, dtype=int), np.atleast_2d(img)):
            found.setdefault((int(i), *np.rint(im).astype(int).tolist()), f)
    band = [(i, 0, 0, 0) for i in range(n_band_sites)]
    rest = sorted(set(found) - set(band))
    keys = band + rest
    fcoords = np.array([found[k] if k in found else frac[k[0]] for k in keys])
    z = np.asarray(structure.atomic_numbers, dtype=np.int16)[[k[0] for k in keys]]
    return z, lat.get_cartesian_coords(fcoords)


def _cluster_graph(z: np.ndarray, cart: np.ndarray, settings: GraphSettings, n_band_sites: int,
                   name: str) -> CrystalGraph:
    """k-nearest-neighbour graph of a finite cluster (no periodicity)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(cart)  # pairs within the cutoff only: memory grows with the bonds, not n^2
    pairs = tree.sparse_distance_matrix(tree, settings.cutoff, output_type="ndarray")
    pairs = pairs[pairs["i"] != pairs["j"]]
    if len(pairs) == 0:
        raise ValueError(f"{name}: no neighbour within {settings.cutoff:g} A in the cropped band")
    order = np.lexsort((pairs["j"], pairs["i"]))
    return _knn_graph(z, cart, pairs["i"][order], pairs["j"][order], pairs["v"][order], settings, n_band_sites)


def _knn_graph(z: np.ndarray, cart: np.ndarray, center: np.ndarray, neigh: np.ndarray, dist: np.ndarray,
               settings: GraphSettings, n_band_sites: int, images: np.ndarray | None = None,
               lattice: np.ndarray | None = None) -> CrystalGraph:
    """The graph from candidate pairs (center -> neigh at dist, sorted by center): the k nearest
    per atom plus ties, their bond vectors (periodic image offsets when images are given) and the
    bond-angle line graph. Shared by periodic structures and cropped clusters."""
    center, neigh = center.astype(np.int64), neigh.astype(np.int64)
    keep = _knn_with_ties(center, dist, len(z), settings.max_neighbors, settings.tie_tol)
    keep.sort()
    src, dst = center[keep], neigh[keep]
    r = cart[dst] - cart[src]
    if images is not None:
        r = r + images[keep] @ lattice
    src32, dst32 = src.astype(np.int32), dst.astype(np.int32)
    lg_src, lg_dst = line_graph_edges(src32, dst32, len(z))
    return CrystalGraph(z=z, src=src32, dst=dst32, r=r.astype(np.float32), lg_src=lg_src, lg_dst=lg_dst,
                        n_band_sites=n_band_sites)


def build_graph(structure: Structure, settings: GraphSettings = GraphSettings(),
                n_band_sites: int = 0, name: str = "structure") -> CrystalGraph:
    """Graph of one structure (no cache). ValueError naming ``name`` if it cannot be graphed."""
    n = len(structure)
    if n == 0:
        raise ValueError(f"{name}: empty structure, nothing to graph")
    if not structure.is_ordered:
        raise ValueError(f"{name}: disordered structure (partial occupancies) cannot be graphed")
    if settings.crop_radius > 0 and n_band_sites > 0:
        z, cart = crop_cluster(structure, n_band_sites, settings.crop_radius)
        return _cluster_graph(z, cart, settings, n_band_sites, name)
    center, neigh, images, dist = structure.get_neighbor_list(settings.cutoff, exclude_self=True)
    if len(center) == 0:
        raise ValueError(f"{name}: no neighbour within {settings.cutoff:g} A of any site")
    return _knn_graph(np.asarray(structure.atomic_numbers, dtype=np.int16), structure.cart_coords, center,
                      neigh, dist, settings, n_band_sites, images=images, lattice=structure.lattice.matrix)


class GraphCache:
    """On-disk graph cache: ``<dir>/<key[:2]>/<key>.npz`` (a hit returns the same arrays)."""

    def __init__(self, directory: Path | str, settings: GraphSettings = GraphSettings()):
        self.directory = Path(directory)
        self.settings = settings
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, structure: Structure, n_band_sites: int = 0, name: str = "structure") -> CrystalGraph:
        """Cached graph of ``structure``; built and written on a miss."""
        key = structure_key(structure, self.settings, n_band_sites)
        path = self.path(key)
        if path.is_file():
            try:
                graph = load_graph(path)
                self.hits += 1
                return graph
            except Exception:  # a torn file from a killed run: rebuild it
                pass
        graph = build_graph(structure, self.settings, n_band_sites, name=name)
        save_graph(path, graph)
        self.misses += 1
        return graph


def save_graph(path: Path, graph: CrystalGraph) -> None:
    """Write atomically (temp file + rename) so concurrent or killed writers never leave half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, z=graph.z, src=graph.src, dst=graph.dst, r=graph.r, lg_src=graph.lg_src,
                 lg_dst=graph.lg_dst, n_band_sites=np.int32(graph.n_band_sites))
    os.replace(tmp, path)


def load_graph(path: Path) -> CrystalGraph:
    with np.load(path) as d:
        return CrystalGraph(z=d["z"], src=d["src"], dst=d["dst"], r=d["r"], lg_src=d["lg_src"],
                            lg_dst=d["lg_dst"], n_band_sites=int(d["n_band_sites"]))


def band_graph(band: Structure, settings: GraphSettings = GraphSettings(),
               cache: GraphCache | None = None, name: str = "band") -> CrystalGraph:
    """Graph of a band as the engine builds it (first five sites = the hop)."""
    if len(band) < 6:
        raise ValueError(f"{name}: a band needs 5 hop sites plus the host, got {len(band)} sites")
    if cache is not None:
        return cache.get(band, n_band_sites=5, name=name)
    return build_graph(band, settings, n_band_sites=5, name=name)


@lru_cache(maxsize=1)
def atom_feature_table() -> torch.Tensor:
    """(119, 92) cgcnn features indexed by atomic number (alignn's atom featurisation)."""
    from jarvis.core.specie import get_node_attributes
    from pymatgen.core.periodic_table import Element

    table = np.zeros((119, N_ATOM_FEATURES), dtype=np.float32)
    for zz in range(1, 101):  # jarvis has cgcnn features up to Fm; heavier elements stay zero
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                feat = np.asarray(get_node_attributes(Element.from_Z(zz).symbol, atom_features="cgcnn"),
                                  dtype=np.float32)
        except Exception:
            continue
        if feat.shape == (N_ATOM_FEATURES,):
            table[zz] = feat
    return torch.from_numpy(table)


@dataclass
class GraphBatch:
    """Several graphs concatenated, in the (g, lg, lattice) form alignn's pure model takes."""

    g: object
    lg: object
    band_mask: torch.Tensor
    """(N,) bool: node is one of a band's five hop sites."""

    def model_input(self, device: "torch.device | None" = None) -> tuple:
        """(g, lg, None) as alignn's model takes it, moved to ``device`` when given (not the CPU)."""
        if device is None or device.type == "cpu":
            return (self.g, self.lg, None)
        return (self.g.to(device), self.lg.to(device), None)


def batch_graphs(graphs: Sequence[CrystalGraph]) -> GraphBatch:
    """Concatenate graphs (numpy, one pass) into alignn TorchGraphs with batch bookkeeping."""
    from alignn.torch_graph_builder import TorchGraph

    if not graphs:
        raise ValueError("batch_graphs: no graphs given")
    n_nodes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    n_edges = np.array([g.num_edges for g in graphs], dtype=np.int64)
    node_off = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])
    edge_off = np.concatenate([[0], np.cumsum(n_edges)[:-1]])
    z = np.concatenate([g.z for g in graphs]).astype(np.int64)
    src = np.concatenate([g.src.astype(np.int64) + o for g, o in zip(graphs, node_off)])
    dst = np.concatenate([g.dst.astype(np.int64) + o for g, o in zip(graphs, node_off)])
    r = np.concatenate([g.r for g in graphs])
    lg_src = np.concatenate([g.lg_src.astype(np.int64) + o for g, o in zip(graphs, edge_off)])
    lg_dst = np.concatenate([g.lg_dst.astype(np.int64) + o for g, o in zip(graphs, edge_off)])
    band = np.zeros(int(n_nodes.sum()), dtype=bool)
    for g, o in zip(graphs, node_off):
        band[o:o + g.n_band_sites] = True
    feats = atom_feature_table()[torch.from_numpy(z)]
    ndata = {"atom_features": feats, BAND_KEY: torch.from_numpy(band)}
    if any(g.hop_descriptors is not None for g in graphs):
        if any(g.hop_descriptors is None for g in graphs):
            raise ValueError("batch_graphs: some graphs carry hop descriptors and some do not")
        per_graph = np.stack([g.hop_descriptors for g in graphs]).astype(np.float32)
        ndata[HOP_DESCRIPTORS_KEY] = torch.from_numpy(np.repeat(per_graph, n_nodes, axis=0))
    g = TorchGraph(num_nodes=int(n_nodes.sum()), src=torch.from_numpy(src), dst=torch.from_numpy(dst),
                   ndata=ndata,
                   edata={"r": torch.from_numpy(r)},
                   batch_num_nodes=torch.from_numpy(n_nodes), batch_num_edges=torch.from_numpy(n_edges))
    lg = TorchGraph(num_nodes=int(n_edges.sum()), src=torch.from_numpy(lg_src),
                    dst=torch.from_numpy(lg_dst))
    return GraphBatch(g=g, lg=lg, band_mask=torch.from_numpy(band))
