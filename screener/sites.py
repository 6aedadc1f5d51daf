"""Insertion sites of a working ion in a host that holds none of it (a charged, empty framework).

No DFT and no charge density: the candidates are the vertices of the Voronoi decomposition of the
framework (the points locally farthest from every framework atom), kept when the ion fits there
(distance to the nearest framework atom >= a window from ionic radii), merged by the host's
symmetry (spglib operations; a candidate is first moved to the centre of its cavity and, near a
special position, projected onto it), ranked by room plus distance to the framework cations, and
put back as the ion on every equivalent position so enumerate_hops can find the hops.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Element, Species, Structure
from scipy.spatial import Voronoi, cKDTree

from screener.hops import Hop, symmetry_ops, enumerate_hops

#: Shannon radii (Angstrom, 6-fold) of the working ions at their usual charge; O2- is 1.40.
ION_RADIUS = {"Li": 0.76, "Na": 1.02, "K": 1.38, "Rb": 1.52, "Mg": 0.72, "Ca": 1.00, "Sr": 1.18, "Zn": 0.74, "Al": 0.535}
#: Fraction of the ideal ion-oxide bond length kept as the minimum distance to any framework atom
#: (relaxed frameworks shrink around an empty site; 0.8 lets Li in at 1.73 A, Na at 1.94 A).
ROOM_FRACTION = 0.8
#: Candidates closer than this (Angstrom) are one site (Voronoi vertices come in tight clusters).
MERGE_TOL = 0.6
#: Distinct sites closer than this (Angstrom) exclude each other (the roomier one is kept).
MIN_SEPARATION = 1.2
#: Images of a candidate closer than this (Angstrom) are averaged onto its special position.
PROJECT_TOL = 1.2
#: Whether candidates are first moved to the centre of their cavity (see _relax).
RELAX = True
#: Weight of the distance to the nearest cation in a site's score (room + weight * cation distance).
CATION_WEIGHT = 1.0
#: Decay length (Angstrom) of the Born-Mayer-like repulsion that centres a candidate in its cavity.
SOFTNESS = 0.35


class SiteError(ValueError):
    """A host where insertion sites can't be found; str() is one line "<host_id>: <reason>"."""


def default_min_distance(working_ion: str) -> float:
    """Minimum ion-framework distance (Angstrom): ROOM_FRACTION of the ion-O2- bond length."""
    r = ION_RADIUS.get(working_ion)
    if r is None:
        try:
            r = float(Species(working_ion, Element(working_ion).common_oxidation_states[0]).ionic_radius)
        except Exception:  # noqa: BLE001 - any missing radius falls back to the element's atomic radius
            r = float(Element(working_ion).atomic_radius or 1.0)
    return ROOM_FRACTION * (r + 1.40)


def _padded_cart(structure: Structure, pad: float) -> np.ndarray:
    """Cartesian positions of the framework atoms in the cell and its periodic images within pad
    Angstrom of the cell, so the Voronoi cells of atoms in the cell are complete."""
    frac = structure.frac_coords % 1.0
    lat = structure.lattice
    widths = lat.volume / np.linalg.norm(np.cross(lat.matrix[[1, 2, 0]], lat.matrix[[2, 0, 1]]), axis=1)
    margin = np.minimum(pad / widths, 1.0)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    pts = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    keep = np.all((pts >= -margin) & (pts < 1 + margin), axis=1)
    return lat.get_cartesian_coords(pts[keep])


#: Elements counted as framework anions; every other framework atom is a cation that repels the ion.
ANIONS = frozenset({"O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N", "C", "H"})


def _cation_distance(structure: Structure, frac_points: np.ndarray) -> np.ndarray:
    """Distance (Angstrom, periodic) from each point to the nearest framework cation."""
    cations = [i for i, sp in enumerate(structure.species) if getattr(sp, "symbol", str(sp)) not in ANIONS]
    if not cations:
        return np.full(len(frac_points), 10.0)
    return _nearest(Structure.from_sites([structure[i] for i in cations]), frac_points)


def _nearest(structure: Structure, frac_points: np.ndarray) -> np.ndarray:
    """Distance (Angstrom, periodic) from each point to the nearest framework atom."""
    tree = cKDTree(_padded_cart(structure, 6.0))
    d, _ = tree.query(structure.lattice.get_cartesian_coords(frac_points % 1.0))
    return np.asarray(d, dtype=float)


def _relax(structure: Structure, frac: np.ndarray, steps: int = 60, cutoff: float = 5.0) -> np.ndarray:
    """Move each candidate downhill in sum_j exp(-d_j / SOFTNESS) over framework atoms: the centre
    of its cavity, which is symmetric (a special position lands exactly on it, unlike the pair of
    Voronoi vertices that often straddle it)."""
    lat = structure.lattice
    pts = _padded_cart(structure, cutoff + 1.0)
    tree = cKDTree(pts)
    x = lat.get_cartesian_coords(frac % 1.0)
    for _ in range(steps):
        grad = np.zeros_like(x)
        for k, nb in enumerate(tree.query_ball_point(x, cutoff)):
            v = x[k] - pts[nb]
            d = np.linalg.norm(v, axis=1)[:, None]
            grad[k] = -(np.exp(-d / SOFTNESS) / SOFTNESS * v / np.maximum(d, 1e-6)).sum(axis=0)
        g = np.linalg.norm(grad, axis=1)[:, None]
        step = np.minimum(0.05, 0.02 * g) * (-grad) / np.maximum(g, 1e-12)
        x = x + step
        if np.max(np.abs(step)) < 1e-4:
            break
    return lat.get_fractional_coords(x) % 1.0


def _cluster(frac: np.ndarray, room: np.ndarray, lat: np.ndarray, tol: float) -> np.ndarray:
    """Greedy periodic clustering: keep the roomiest point of every group closer than tol."""
    order = np.argsort(-room)
    kept: list[int] = []
    for i in order:
        if kept:
            diff = frac[kept] - frac[i]
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=1)) < tol:
                continue
        kept.append(int(i))
    return np.array(kept, dtype=int)


def _orbit_points(x: np.ndarray, rots: np.ndarray, trans: np.ndarray, lat: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(x projected onto its special position, its distinct images in [0, 1)): images of x that
    fall within tol of x are averaged in (the site-symmetry projection), then the orbit is deduped."""
    imgs = np.einsum("kij,j->ki", rots, x) + trans
    d = imgs - x
    d -= np.rint(d)
    near = np.linalg.norm(d @ lat, axis=1) < tol
    x = (x + d[near].mean(axis=0)) % 1.0
    imgs = (np.einsum("kij,j->ki", rots, x) + trans) % 1.0
    out: list[np.ndarray] = []
    for p in imgs:
        if out:
            diff = np.array(out) - p
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=1)) < 0.05:
                continue
        out.append(p)
    return x, np.array(out)


def candidate_sites(
    structure: Structure, working_ion: str, *, min_distance: float | None = None, symprec: float = 0.1,
    relax: bool = RELAX, merge_tol: float | None = None, project_tol: float | None = None,
    separation: float | None = None,
) -> list[tuple[float, np.ndarray]]:
    """Symmetry-distinct insertion sites, best first: (score, orbit as fractional coordinates in
    [0, 1)). Score = distance to the nearest framework atom + CATION_WEIGHT * distance to the
    nearest framework cation (room, and away from the cations' repulsion: on the dataset's charged
    hosts this ranks the DFT sites higher than room alone). Empty when the ion fits nowhere."""
    dmin = default_min_distance(working_ion) if min_distance is None else float(min_distance)
    lat = structure.lattice.matrix
    pts = _padded_cart(structure, 6.0)
    vert = Voronoi(pts).vertices
    frac = structure.lattice.get_fractional_coords(vert)
    inside = np.all((frac >= -1e-9) & (frac < 1 - 1e-9), axis=1)
    frac = frac[inside] % 1.0
    room = _nearest(structure, frac)
    ok = room >= dmin
    frac, room = frac[ok], room[ok]
    if len(frac) == 0:
        return []
    merge_tol = MERGE_TOL if merge_tol is None else merge_tol
    project_tol = PROJECT_TOL if project_tol is None else project_tol
    separation = MIN_SEPARATION if separation is None else separation
    keep = _cluster(frac, room, lat, merge_tol)
    if relax:
        frac = _relax(structure, frac[keep])
        room = _nearest(structure, frac)
        keep = _cluster(frac, room, lat, 0.2)
    rots, trans, _ = symmetry_ops(structure, symprec)
    sites: list[tuple[float, np.ndarray]] = []
    covered = np.zeros((0, 3))
    for i in keep:
        x = frac[i]
        if len(covered):
            diff = covered - x
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=1)) < separation:
                continue
        x, orbit = _orbit_points(x, rots, trans, lat, project_tol)
        r = float(_nearest(structure, x[None])[0])
        if r < dmin:  # the projection onto the special position left no room
            continue
        if len(covered):
            diff = covered[:, None, :] - orbit[None, :, :]
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=2)) < separation:
                continue
        sites.append((r + CATION_WEIGHT * float(_cation_distance(structure, x[None])[0]) if CATION_WEIGHT else r, orbit))
        covered = np.vstack([covered, orbit])
    sites.sort(key=lambda s: -s[0])
    return sites


def insertion_sites(
    structure: Structure,
    working_ion: str,
    *,
    min_distance: float | None = None,
    max_sites: int = 6,
    symprec: float = 0.1,
    host_id: str | None = None,
) -> Structure:
    """The host with working_ion on every position of its max_sites roomiest symmetry-distinct
    insertion sites (min_distance: Angstrom to the nearest framework atom, default from ionic
    radii). Raises SiteError if the host already holds the ion or has no room for it."""
    name = host_id or structure.composition.reduced_formula
    if working_ion in {el.symbol for el in structure.composition.element_composition.elements}:
        raise SiteError(f"{name}: host already holds {working_ion} (use enumerate_hops on its own sites)")
    if not structure.is_ordered:
        raise SiteError(f"{name}: disordered structure (partial occupancies are not supported)")
    sites = candidate_sites(structure, working_ion, min_distance=min_distance, symprec=symprec)
    if not sites:
        dmin = default_min_distance(working_ion) if min_distance is None else min_distance
        raise SiteError(f"{name}: no room for {working_ion} (no point {dmin:.2f} A from every framework atom)")
    out = structure.copy()
    for _, orbit in sites[:max_sites]:
        for p in orbit:
            out.append(working_ion, p, coords_are_cartesian=False)
    return out


def insertion_hops(
    structure: Structure,
    host_id: str,
    working_ion: str,
    *,
    max_length: float = 6.5,
    max_sites: int = 6,
    min_distance: float | None = None,
    symprec: float = 0.1,
    timeout_s: float = 60.0,
) -> tuple[Structure, list[Hop]]:
    """Hops of working_ion between the insertion sites of an empty host: (host with the ion on its
    sites, enumerate_hops on it). Raises SiteError (no room) or HopError (no hop / timeout)."""
    filled = insertion_sites(
        structure, working_ion, min_distance=min_distance, max_sites=max_sites, symprec=symprec, host_id=host_id
    )
    return filled, enumerate_hops(filled, host_id, working_ion, max_length=max_length, symprec=symprec, timeout_s=timeout_s)
