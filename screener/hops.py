"""Sites and hops: the symmetry-distinct migration hops of a working ion in a host.

DistinctPathFinder (pymatgen-analysis-diffusion) finds the hops; this module adds what a
high-throughput store needs on top of it: a time box that really interrupts a slow host, a
stable hop key (same physical hop -> same key, whatever the site order, cell choice, hop
direction, symmetric copy returned or symprec asked for), de-duplication (DistinctPathFinder can
keep A->B and B->A as two paths, and its MigrationHop compares at a 0.001 default symprec, so
relaxed cells give several copies of one hop), a per-host max_length at which the ion's network
percolates, and the periodic network of equivalent hops. All rest on one idea: a hop is its orbit
of (site i, site j, image) edges under the host's symmetry operations, decided at one fixed
tolerance (HOP_SYMPREC) and fingerprinted in the host averaged over those operations, so neither
the caller's symprec, the cell nor noise below the tolerance in the coordinates moves a key.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder
from pymatgen.core import Element, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError

from screener.ranking import PeriodicUnionFind

#: Radius of the environments fingerprinted in a hop key (Angstrom).
KEY_RADIUS = 4.0
#: Bin width for distances and the hop length in a hop key (Angstrom).
KEY_BIN = 0.02
#: Tolerance (Angstrom) at which hops are told apart and keyed, whatever symprec the caller asks
#: for: pymatgen's and DistinctPathFinder's default. Tightened (0.01, 0.001) only where spglib
#: gives up at it, which depends on the crystal alone.
HOP_SYMPREC = 0.1
#: max_length="auto": longest hop (Angstrom) considered when looking for the percolation length.
AUTO_CAP = 6.5
#: max_length="auto": kept beyond the percolation length (Angstrom), so hops of nearly the same
#: length as the one that closes the network (the same hop in a relaxed cell, or a rival) stay.
AUTO_MARGIN = 0.25


class HopError(ValueError):
    """A host whose hops can't be enumerated; str() is one line "<host_id>: <reason>"."""


@dataclass
class Hop:
    """One symmetry-distinct hop of the working ion between two of its sites in a host."""

    hop_key: str
    host_id: str
    working_ion: str
    isite: list[float]
    """Fractional coordinates (host cell) of the initial site, in [0, 1)."""
    esite: list[float]
    """Fractional coordinates of the final site as the actual periodic image (esite - isite is the hop)."""
    length: float
    symprec: float
    multiplicity: int = 1
    """Number of symmetry-equivalent hops in the host cell."""

    def to_doc(self) -> dict[str, Any]:
        """Store document; ``_id`` is the hop key so the same hop is stored once."""
        return {"_id": self.hop_key, **asdict(self)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Hop:
        try:
            return cls(
                hop_key=str(doc["hop_key"]),
                host_id=str(doc["host_id"]),
                working_ion=str(doc["working_ion"]),
                isite=[float(x) for x in doc["isite"]],
                esite=[float(x) for x in doc["esite"]],
                length=float(doc["length"]),
                symprec=float(doc["symprec"]),
                multiplicity=int(doc.get("multiplicity", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HopError(f"{doc.get('_id', '?')}: bad hop document ({type(exc).__name__}: {exc})") from None

    # MSONable-like aliases
    as_dict = to_doc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hop:
        return cls.from_doc(d)


# ----------------------------------------------------------------------------- hop keys


def _env_fingerprints(
    structure: Structure, working_ion: str, ends_a: np.ndarray, ends_b: np.ndarray, excl_tol: float
) -> list[tuple]:
    """Symmetry-invariant fingerprint of each hop (cartesian end points ends_a[k] -> ends_b[k]).

    Length bin, environment of the midpoint, and the sorted pair of end-point environments; an
    environment is the sorted (element, distance bin) of atoms within KEY_RADIUS, leaving out the
    migrating ion on its own two end sites. Batched through pymatgen's cython neighbour search.
    """
    n = len(ends_a)
    if n == 0:
        return []
    mids = (ends_a + ends_b) / 2
    centers = np.ascontiguousarray(np.vstack([ends_a, mids, ends_b]), dtype=float)
    lat = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    all_coords = np.ascontiguousarray(structure.cart_coords, dtype=float)
    ci, ni, images, dists = find_points_in_spheres(
        all_coords, centers, KEY_RADIUS, np.array([1, 1, 1], dtype=np.int64), lat, tol=1e-8
    )
    symbols = np.array([sp.symbol if isinstance(sp, Element) else str(sp) for sp in structure.species])
    is_ion = symbols[ni] == working_ion
    hop_of = ci % n
    pos = all_coords[ni] + images @ lat
    near_a = np.linalg.norm(pos - ends_a[hop_of], axis=1) < excl_tol
    near_b = np.linalg.norm(pos - ends_b[hop_of], axis=1) < excl_tol
    keep = ~(is_ion & (near_a | near_b))
    bins = np.rint(dists / KEY_BIN).astype(int)
    envs: list[list[tuple[str, int]]] = [[] for _ in range(3 * n)]
    for c, s, b in zip(ci[keep], symbols[ni[keep]], bins[keep]):
        envs[c].append((str(s), int(b)))
    lengths = np.rint(np.linalg.norm(ends_b - ends_a, axis=1) / KEY_BIN).astype(int)
    out = []
    for k in range(n):
        ea, em, eb = (tuple(sorted(envs[k + j * n])) for j in range(3))
        out.append((int(lengths[k]), em, tuple(sorted([ea, eb]))))
    return out


def _digest(working_ion: str, fingerprint: tuple) -> str:
    text = json.dumps([working_ion, fingerprint], separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _snap_tol(symprec: float) -> float:
    """How far (Angstrom) a symmetry-mapped end point may lie from the host site it stands for."""
    return max(0.3, 2 * symprec)


def symmetry_ops(structure: Structure, symprec: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Fractional rotations and translations of the host (spglib at symprec, tightened down to
    0.001 when spglib gives up on a relaxed cell; identity only if it never succeeds)."""
    while True:
        try:
            ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(cartesian=False)
            return (np.array([op.rotation_matrix for op in ops]), np.array([op.translation_vector for op in ops]), symprec)
        except SymmetryUndeterminedError:
            if symprec <= 1e-3:
                return np.eye(3)[None], np.zeros((1, 3)), symprec
            symprec = max(symprec / 10, 1e-3)


def ion_sites(structure: Structure, working_ion: str) -> tuple[np.ndarray, np.ndarray]:
    """(structure indices, fractional coordinates) of the working ion's sites: hops are edges
    between them, numbered by position in this list or by structure index."""
    idx = np.array([k for k, sp in enumerate(structure.species) if getattr(sp, "symbol", str(sp)) == working_ion], dtype=int)
    return idx, structure.frac_coords[idx]


def _snap(points: np.ndarray, ion_frac: np.ndarray, lat: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each fractional point: index into ion_frac of the site it sits on, the lattice image
    (point ~ ion_frac[k] + image) and whether it is within tol Angstrom of it."""
    diff = points[:, None, :] - ion_frac[None, :, :]
    img = np.rint(diff)
    dist = np.linalg.norm((diff - img) @ lat, axis=2)
    k = np.argmin(dist, axis=1)
    rows = np.arange(len(points))
    return k, img[rows, k].astype(int), dist[rows, k] < tol


def _canonical_edge(i: int, j: int, image: Sequence[int]) -> tuple[int, int, tuple[int, int, int]] | None:
    """Undirected edge i -> j+image written once: i <= j, and for i == j the image points 'up'."""
    image = tuple(int(x) for x in image)
    first = next((x for x in image if x != 0), 0)
    if i == j and first == 0:
        return None
    if i > j or (i == j and first < 0):
        return (j, i, tuple(-x for x in image))
    return (i, j, image)


def _orbit(
    isite: np.ndarray, esite: np.ndarray, ion_idx: np.ndarray, ion_frac: np.ndarray, lat: np.ndarray,
    rots: np.ndarray, trans: np.ndarray, tol: float,
) -> frozenset[tuple[int, int, tuple[int, int, int]]]:
    """All edges (structure indices) the symmetry operations map the hop isite -> esite onto."""
    ma = np.einsum("kij,j->ki", rots, isite) + trans
    mb = np.einsum("kij,j->ki", rots, esite) + trans
    ka, ia, oka = _snap(ma, ion_frac, lat, tol)
    kb, ib, okb = _snap(mb, ion_frac, lat, tol)
    edges = set()
    for m in np.nonzero(oka & okb)[0]:
        e = _canonical_edge(int(ion_idx[ka[m]]), int(ion_idx[kb[m]]), ib[m] - ia[m])
        if e is not None:
            edges.add(e)
    return frozenset(edges)


@dataclass
class _Identity:
    """What decides a hop's identity in one host, whatever its cell: the full space group at
    HOP_SYMPREC (or the tolerance spglib managed) and the primitive cell averaged over it.

    spglib gives only the operations that map the input lattice onto itself, so a supercell whose
    lattice lacks some of the crystal's rotations (a sqrt2 x sqrt2 x 1 spinel) would split hops;
    the primitive cell carries every rotation. The average (positions over each site's images,
    the metric over the rotations) is a projection: the same for any site order, any supercell
    and a cell whose translation-equivalent sites differ by noise, so keys don't see noise below
    the tolerance that would flip a 0.02 A distance bin.
    """

    rots: np.ndarray
    """Rotations of the full space group in the input cell's fractional basis (column vectors;
    not integer when the input lattice lacks the rotation)."""
    trans: np.ndarray
    symprec: float
    to_prim: np.ndarray
    """Input fractional coordinates (rows) -> primitive ones: f @ to_prim."""
    prim_of: np.ndarray
    """Primitive site of each input site."""
    prim_frac: np.ndarray
    """Primitive sites before averaging (to find the image an input site is in)."""
    ideal: Structure
    """The primitive cell averaged over the space group."""
    canonical: Structure
    """The input with its sites in a canonical order (what spglib and DistinctPathFinder see)."""


def _idealised(structure: Structure, rots: np.ndarray, trans: np.ndarray, tol: float) -> Structure:
    """structure averaged over the operations (x_j = mean of R x_i + t over the images landing
    on site j; metric = mean of R^T G R), same site order; a site no image lands on keeps its place."""
    frac = structure.frac_coords
    lat = structure.lattice.matrix
    symbols = np.array([getattr(sp, "symbol", str(sp)) for sp in structure.species])
    acc = np.zeros_like(frac)
    count = np.zeros(len(frac))
    for el in np.unique(symbols):
        idx = np.nonzero(symbols == el)[0]
        x = frac[idx]
        for r, t in zip(rots, trans):
            y = x @ r.T + t
            k, img, ok = _snap(y, x, lat, tol)
            np.add.at(acc, idx[k[ok]], y[ok] - img[ok])
            np.add.at(count, idx[k[ok]], 1)
    hit = count > 0
    ideal = frac.copy()
    ideal[hit] = acc[hit] / count[hit, None]
    metric = lat @ lat.T
    metric = np.mean([r.T @ metric @ r for r in rots], axis=0)
    return Structure(np.linalg.cholesky(metric), structure.species, ideal)


def _lattice_cosets(vectors: np.ndarray, n: int) -> np.ndarray:
    """The n translations (fractional, in [0, 1)) generated by vectors modulo the unit lattice."""
    found = {(0.0, 0.0, 0.0)}
    frontier = [np.zeros(3)]
    while frontier and len(found) < n:
        new = []
        for t in frontier:
            for v in vectors:
                u = (t + v) % 1.0
                u[np.isclose(u, 1.0, atol=1e-8)] = 0.0
                key = tuple(np.round(u, 8))
                if key not in found:
                    found.add(key)
                    new.append(u)
        frontier = new
    return np.array(sorted(found))


def _canonical(structure: Structure) -> tuple[Structure, np.ndarray]:
    """The structure with its sites sorted by element and fractional coordinates, and the order
    (canonical[k] is structure[order[k]]). spglib's answer for a structure whose distortion is
    close to symprec can depend on the site order (one dataset spinel is R-3m or R3m at 0.1 by
    order); sorted, every permutation of a host is the same input."""
    z = np.array([getattr(sp, "Z", 0) for sp in structure.species])
    frac = structure.frac_coords
    order = np.lexsort((frac[:, 2], frac[:, 1], frac[:, 0], z))
    return Structure(structure.lattice, [structure.species[k] for k in order], frac[order]), order


def _identity(structure: Structure) -> _Identity:
    """Full space group and averaged primitive cell at HOP_SYMPREC (tightened where spglib gives up)."""
    canon, order = _canonical(structure)
    symprec = HOP_SYMPREC
    ds = None
    while ds is None:
        try:
            ds = SpacegroupAnalyzer(canon, symprec=symprec).get_symmetry_dataset()
        except SymmetryUndeterminedError:
            if symprec <= 1e-3:
                break
            symprec = max(symprec / 10, 1e-3)
    frac = canon.frac_coords
    if ds is None:  # no symmetry found at all: the cell is its own primitive, identity only
        return _Identity(
            np.eye(3)[None], np.zeros((1, 3)), symprec, np.eye(3), np.arange(len(frac)), structure.frac_coords,
            structure, canon,
        )
    prim_of = np.unique(np.asarray(ds.mapping_to_primitive), return_inverse=True)[1]
    n_prim = int(prim_of.max()) + 1
    n = len(frac) // n_prim
    # primitive lattice = T @ input lattice, T rational with denominator n: rounding makes the
    # primitive cell of an exact supercell exactly the primitive cell
    t_mat = np.rint(np.asarray(ds.primitive_lattice) @ np.linalg.inv(structure.lattice.matrix) * n) / n
    to_prim = np.linalg.inv(t_mat)
    fp = frac @ to_prim
    first = np.unique(prim_of, return_index=True)[1]
    delta = fp - fp[first[prim_of]]
    delta -= np.rint(delta)
    mean = np.zeros((n_prim, 3))
    np.add.at(mean, prim_of, delta)
    prim_frac = fp[first] + mean / np.bincount(prim_of, minlength=n_prim)[:, None]
    prim = Structure(t_mat @ structure.lattice.matrix, [canon.species[k] for k in first], prim_frac)
    rots_p, trans_p, _ = symmetry_ops(prim, symprec)
    ideal = _idealised(prim, rots_p, trans_p, _snap_tol(symprec))
    # the same operations in the input basis (f_in -> f_in @ to_prim -> op -> @ t_mat), times
    # the primitive translations that aren't input lattice vectors
    rots = np.array([(to_prim @ r.T @ t_mat).T for r in rots_p])
    cosets = _lattice_cosets(t_mat, n)
    trans = (trans_p @ t_mat)[:, None, :] + cosets[None, :, :]
    rots = np.repeat(rots, len(cosets), axis=0)
    prim_of_input = np.empty_like(prim_of)
    prim_of_input[order] = prim_of
    return _Identity(rots, trans.reshape(-1, 3), symprec, to_prim, prim_of_input, prim_frac, ideal, canon)


def _orbit_keys(
    structure: Structure, host_id: str, working_ion: str, orbits: list[frozenset], ident: _Identity
) -> list[str]:
    """Key of each orbit: the smallest digest over its edges, each fingerprinted between the sites
    of the averaged primitive cell its end points are (so copies and directions give one key)."""
    edges = sorted({e for orb in orbits for e in orb})
    if not edges:
        return []
    frac = structure.frac_coords
    sites = np.array([(i, j) for i, j, _ in edges])
    images = np.array([im for _, _, im in edges], dtype=float)
    ends = []
    for k, shift in ((sites[:, 0], 0.0), (sites[:, 1], images)):
        fp = (frac[k] + shift) @ ident.to_prim  # the end point in the primitive basis
        m = ident.prim_of[k]
        ideal = ident.ideal.frac_coords[m] + np.rint(fp - ident.prim_frac[m])
        ends.append(ident.ideal.lattice.get_cartesian_coords(ideal))
    fps = _env_fingerprints(ident.ideal, working_ion, ends[0], ends[1], excl_tol=1e-3)
    digest = {e: _digest(working_ion, fp) for e, fp in zip(edges, fps)}
    return [f"{host_id}:{working_ion}:{min(digest[e] for e in orb)}" for orb in orbits]


def hop_key(
    structure: Structure,
    host_id: str,
    working_ion: str,
    isite: Sequence[float],
    esite: Sequence[float],
    symprec: float = HOP_SYMPREC,
) -> str:
    """Stable key of a hop between two sites of the working ion: f"{host_id}:{ion}:{digest12}".

    The digest is the smallest over the hop's orbit under the full space group (spglib at
    HOP_SYMPREC) of a hash of distances only (length, midpoint and end-point environments, see
    _env_fingerprints) in the primitive cell averaged over that group, so the key is the same
    whatever the site order, the cell, the direction and the symmetric copy given. symprec only
    sets how far (max(0.3, 2 symprec) A) the given end points may lie from the ion's sites.
    """
    ion_idx, ion_frac = ion_sites(structure, working_ion)
    if len(ion_idx) == 0:
        raise HopError(f"{host_id}: no {working_ion} sites")
    lat = structure.lattice.matrix
    ends = np.array([isite, esite], dtype=float)
    _, _, ok = _snap(ends, ion_frac, lat, _snap_tol(symprec))
    if not ok.all():
        raise HopError(f"{host_id}: hop end point {np.round(ends[int(np.argmin(ok))], 4).tolist()} is not a {working_ion} site")
    ident = _identity(structure)
    orbit = _orbit(ends[0], ends[1], ion_idx, ion_frac, lat, ident.rots, ident.trans, _snap_tol(symprec))
    if not orbit:
        raise HopError(f"{host_id}: hop {np.round(ends, 4).tolist()} joins a site to itself")
    return _orbit_keys(structure, host_id, working_ion, [orbit], ident)[0]


# ----------------------------------------------------------------------------- time box


def _fork_ok() -> bool:
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # daemonic processes (e.g. Dask nanny workers) may not have children
    return not multiprocessing.current_process().daemon


def _child(conn, fn: Callable, args: tuple) -> None:  # pragma: no cover - runs in the child
    try:
        conn.send(("ok", fn(*args)))
    except HopError as exc:
        conn.send(("hop", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - everything becomes one line for the parent
        first = (str(exc).splitlines() or [""])[0]
        conn.send(("err", f"{type(exc).__name__}: {first}"))
    finally:
        conn.close()


class _Alarm(Exception):
    pass


def run_boxed(fn: Callable, args: tuple, timeout_s: float, host_id: str):
    """Run fn(*args) so that it is really stopped after timeout_s (HopError "<host_id>: ..."
    on timeout or on any error of fn, so one slow or broken host fails alone).

    Preferred: a forked child process (interrupts C code too, e.g. spglib). Fallback where a
    child is not allowed: SIGALRM in the main thread; else run unboxed.
    """
    timeout_msg = f"{host_id}: hop enumeration timed out after {timeout_s:g} s"
    if _fork_ok():
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
        proc.start()
        send.close()
        try:
            if not recv.poll(timeout_s):
                proc.terminate()
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                raise HopError(timeout_msg)
            try:
                status, payload = recv.recv()
            except EOFError:
                raise HopError(f"{host_id}: hop enumeration died (exit code {proc.exitcode})") from None
        finally:
            recv.close()
            proc.join(5)
        if status == "ok":
            return payload
        if status == "hop":
            raise HopError(payload)
        raise HopError(f"{host_id}: hop enumeration failed ({payload})")

    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def _raise(signum, frame):
            raise _Alarm()

        old = signal.signal(signal.SIGALRM, _raise)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return _wrap_errors(fn, args, host_id)
        except _Alarm:
            raise HopError(timeout_msg) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return _wrap_errors(fn, args, host_id)


def _wrap_errors(fn: Callable, args: tuple, host_id: str):
    try:
        return fn(*args)
    except (HopError, _Alarm):
        raise
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).splitlines() or [""])[0]
        raise HopError(f"{host_id}: hop enumeration failed ({type(exc).__name__}: {first})") from None



# ----------------------------------------------------------------------------- enumeration


def _check_host(structure: Structure, host_id: str, working_ion: str) -> None:
    if not structure.is_ordered:
        raise HopError(f"{host_id}: disordered structure (partial occupancies are not supported)")
    if Element(working_ion) not in structure.composition.elements:
        raise HopError(
            f"{host_id}: no {working_ion} sites (insertion sites in empty hosts are not supported yet)"
        )


def percolation_length(structure: Structure, working_ion: str, cap: float = AUTO_CAP) -> tuple[float | None, int]:
    """(length, dimensionality): the shortest hop length L such that the network of all
    working-ion hops no longer than L reaches the highest periodic dimensionality (3 if possible)
    that hops up to cap Angstrom reach; (None, 0) when no two ion sites (or images) are within cap.

    Hops are added shortest first to screener.ranking's periodic union-find (the same test the
    percolation barriers use), so the answer does not depend on the cell or the site order.
    """
    ion_idx, ion_frac = ion_sites(structure, working_ion)
    if len(ion_idx) == 0:
        return None, 0
    ions = Structure(structure.lattice, [working_ion] * len(ion_idx), ion_frac)
    centers, points, images, dists = ions.get_neighbor_list(cap)
    uf = PeriodicUnionFind(len(ion_idx))
    best: tuple[float | None, int] = (None, 0)
    for k in np.argsort(dists, kind="stable"):
        dim = uf.add_edge(int(centers[k]), int(points[k]), tuple(int(x) for x in images[k]))
        if dim > best[1]:
            best = (float(dists[k]), dim)
            if dim == 3:
                break
    return best


#: distinct_hops' choices of the cell copy a Hop records (see there).
REPRESENTATIVES = ("lowest_site", "candidate")


def distinct_hops(
    structure: Structure,
    host_id: str,
    working_ion: str,
    candidates: Iterable[tuple[float, Sequence[float], Sequence[float]]],
    ident: _Identity | None = None,
    *,
    representative: str = "lowest_site",
    skip_seen: bool = False,
) -> list[Hop]:
    """The symmetry-distinct hops among candidate (length, isite, esite) hops between the working
    ion's sites of structure (fractional, esite the actual image), shortest first.

    Every way of finding hops (DistinctPathFinder, a neighbour search from insertion sites)
    returns copies: A->B and B->A, symmetric images, near copies in a relaxed cell. Here each
    candidate becomes its orbit of (site, site, image) edges under the host's full space group
    (ident: _identity(structure), computed if not given), one orbit is one Hop with that
    orbit's key (hop_key) and multiplicity, and orbits that a loose snap leaves overlapping
    (same key) count once. Candidates are taken in the given order (the caller sorts, shortest
    first): the first of an orbit, and the first orbit of a key, win. representative:
    "lowest_site" records the orbit's copy from its lowest-numbered site, length recomputed;
    "candidate" the first candidate as given. skip_seen: skip a candidate whose edge is already
    in an orbit (faster when most candidates are copies; can drop an orbit a loose snap would
    have split off). Empty when no candidate joins two distinct sites.
    """
    if representative not in REPRESENTATIVES:
        raise ValueError(f"{host_id}: unknown hop representative {representative!r}; known: {', '.join(REPRESENTATIVES)}")
    if ident is None:
        ident = _identity(structure)
    ion_idx, ion_frac = ion_sites(structure, working_ion)
    lat = structure.lattice
    tol = _snap_tol(ident.symprec)
    orbits: dict[frozenset, tuple[float, np.ndarray, np.ndarray]] = {}
    seen: set = set()
    for length, isite, esite in candidates:
        i_f, e_f = np.asarray(isite, dtype=float), np.asarray(esite, dtype=float)
        if skip_seen:
            k, img, _ = _snap(np.array([i_f, e_f]), ion_frac, lat.matrix, tol)
            if _canonical_edge(int(ion_idx[k[0]]), int(ion_idx[k[1]]), img[1] - img[0]) in seen:
                continue
        orb = _orbit(i_f, e_f, ion_idx, ion_frac, lat.matrix, ident.rots, ident.trans, tol)
        if skip_seen:
            seen |= orb
        if orb and orb not in orbits:
            orbits[orb] = (float(length), i_f, e_f)
    keys = _orbit_keys(structure, host_id, working_ion, list(orbits), ident)
    hops: dict[str, Hop] = {}
    frac = structure.frac_coords
    for key, (orb, (length, i_f, e_f)) in zip(keys, orbits.items()):
        if key in hops:  # orbits that overlap under a loose snap; keep the first (shortest)
            continue
        if representative == "lowest_site":
            # the hop as it sits in this cell: the copy from the lowest-numbered site (not the
            # candidate that happened to come first), starting in the unit cell
            i, j, image = min(orb)
            shift = np.floor(frac[i])
            i_f, e_f = frac[i] - shift, frac[j] + np.array(image) - shift
            wrap = i_f >= 1.0  # floor(-1e-17) is -1
            i_f[wrap] -= 1.0
            e_f[wrap] -= 1.0
            length = float(np.linalg.norm(lat.get_cartesian_coords(e_f - i_f)))
        hops[key] = Hop(
            hop_key=key,
            host_id=host_id,
            working_ion=working_ion,
            isite=[float(x) for x in i_f],
            esite=[float(x) for x in e_f],
            length=length,
            symprec=float(ident.symprec),
            multiplicity=len(orb),
        )
    return sorted(hops.values(), key=lambda h: (round(h.length, 4), h.hop_key))


def _enumerate(
    structure: Structure, host_id: str, working_ion: str, max_length: float | str, symprec: float
) -> list[Hop]:
    if max_length == "auto":
        length, _ = percolation_length(structure, working_ion)
        max_length = AUTO_CAP if length is None else length + AUTO_MARGIN
    ident = _identity(structure)
    # DistinctPathFinder searches from one site of each orbit at its symprec: a looser one than
    # ours would skip sites we tell apart. It sees the canonical site order too (same lattice,
    # so its fractional coordinates are ours). Imported at module level so forked children don't pay.
    dpf_symprec = min(symprec, ident.symprec)
    dpf = None
    while dpf is None:
        try:
            dpf = DistinctPathFinder(ident.canonical, working_ion, max_path_length=max_length, symprec=dpf_symprec)
        except SymmetryUndeterminedError:
            # spglib gives up on some relaxed cells at a loose tolerance; a tighter one succeeds
            if dpf_symprec <= 1e-3:
                raise HopError(f"{host_id}: spglib could not determine the symmetry (symprec down to 0.001)") from None
            dpf_symprec = max(dpf_symprec / 10, 1e-3)
    lat = structure.lattice
    cands = []
    for p in dpf.get_paths():
        i_f = np.asarray(p.isite.frac_coords, dtype=float)
        e_f = np.asarray(p.esite.frac_coords, dtype=float)
        shift = np.floor(i_f)
        i_f, e_f = i_f - shift, e_f - shift
        wrap = i_f >= 1.0  # floor(-1e-17) is -1
        i_f[wrap] -= 1.0
        e_f[wrap] -= 1.0
        length = float(np.linalg.norm(lat.get_cartesian_coords(e_f - i_f)))
        if length < 0.5:
            raise HopError(f"{host_id}: two {working_ion} sites {length:.2f} A apart (duplicate sites?)")
        if length <= max_length + 1e-6:
            cands.append((length, i_f, e_f))
    if not cands:
        n = int(structure.composition[working_ion])
        raise HopError(
            f"{host_id}: no {working_ion}-{working_ion} hop within {max_length:g} A ({n} {working_ion} site(s) "
            "in the cell; hops into empty sites are not supported yet)"
        )
    # DistinctPathFinder keeps A->B and B->A (and copies its 0.001 default symprec fails to
    # merge) as separate paths: one orbit of edges is one hop
    cands.sort(key=lambda c: (round(c[0], 6), tuple(c[1]), tuple(c[2])))
    return distinct_hops(structure, host_id, working_ion, cands, ident)


def enumerate_hops(
    structure: Structure,
    host_id: str,
    working_ion: str,
    *,
    max_length: float | str = 5.0,
    symprec: float = HOP_SYMPREC,
    timeout_s: float = 60.0,
) -> list[Hop]:
    """Symmetry-distinct hops of working_ion up to max_length (Angstrom), shortest first.

    max_length="auto": per host, the percolation length (see percolation_length, capped at
    AUTO_CAP) plus AUTO_MARGIN. Hops are told apart and keyed at HOP_SYMPREC whatever symprec is
    (so keys don't change with it); symprec below that only makes DistinctPathFinder search at
    it too. Hop.symprec records the tolerance of the hop's identity (HOP_SYMPREC, or tighter where
    spglib fails at it). Runs in a forked child so a host past timeout_s is really stopped and
    raises HopError (the caller records the host as failed).
    """
    _check_host(structure, host_id, working_ion)
    if not (max_length == "auto" or (isinstance(max_length, (int, float)) and max_length > 0)):
        raise HopError(f"{host_id}: max_length must be a positive number of Angstrom or 'auto', not {max_length!r}")
    return run_boxed(_enumerate, (structure, host_id, working_ion, max_length, symprec), timeout_s, host_id)


# ----------------------------------------------------------------------------- hop network


def equivalent_hop_edges(
    structure: Structure, working_ion: str, hops: list[Hop], *, tol: float = 0.3
) -> list[tuple[int, int, tuple[int, int, int], str]]:
    """Every ion-ion hop of the host cell equivalent to one of the distinct hops, as
    (i, j, image of j, hop_key) with structure site indices: the periodic hop network, for the
    caller's percolation analysis. The edges are the images of each hop under the host's full
    space group (as enumerate_hops decides hops, even in a supercell lacking some rotations);
    tol (Angstrom) is how far a mapped end point may be from its site.
    """
    ion_idx, ion_frac = ion_sites(structure, working_ion)
    if not hops or len(ion_idx) == 0:
        return []
    lat = structure.lattice.matrix
    ident = _identity(structure)
    out: dict[tuple[int, int, tuple[int, int, int]], str] = {}
    for h in hops:
        orb = _orbit(np.asarray(h.isite, float), np.asarray(h.esite, float), ion_idx, ion_frac, lat, ident.rots, ident.trans, tol)
        for e in sorted(orb):
            out.setdefault(e, h.hop_key)
    return [(i, j, im, key) for (i, j, im), key in out.items()]


# ----------------------------------------------------------------------------- hop matching


def matching_hop(
    structure: Structure,
    hops: Sequence[Hop],
    isite: Sequence[float],
    esite: Sequence[float],
    *,
    tol: float = 0.3,
) -> Hop | None:
    """The first of hops that a symmetry operation of the host maps onto the hop isite -> esite
    (either direction; both end points within tol Angstrom, one lattice translation for the pair),
    or None. Fractional coordinates of structure, esite the actual periodic image. Checks an
    enumerated hop against a reference one (e.g. a DFT-NEB study's) without ion sites at its ends;
    the operations are spglib's at each hop's recorded symprec, on the primitive cell: a supercell
    whose lattice lacks the crystal's rotations (e.g. a 4x3 in-plane cell of a hexagonal layer)
    would otherwise hide equivalent hops.
    """
    prim = structure.get_primitive_structure()  # same cartesian frame and origin
    to_prim = lambda x: prim.lattice.get_fractional_coords(structure.lattice.get_cartesian_coords(np.asarray(x, float)))
    ti, te = to_prim(isite), to_prim(esite)
    lat = prim.lattice.matrix
    ops: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}
    for h in hops:
        if h.symprec not in ops:
            ops[h.symprec] = symmetry_ops(prim, h.symprec)
        rots, trans, _ = ops[h.symprec]
        a = np.einsum("kij,j->ki", rots, to_prim(h.isite)) + trans
        b = np.einsum("kij,j->ki", rots, to_prim(h.esite)) + trans
        for start, end in ((ti, te), (te, ti)):
            shift = np.rint(start - a)
            da = np.linalg.norm((a + shift - start) @ lat, axis=1)
            db = np.linalg.norm((b + shift - end) @ lat, axis=1)
            if np.any((da < tol) & (db < tol)):
                return h
    return None
