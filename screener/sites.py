"""Insertion sites of a working ion in a host that holds none of it (a charged, empty framework).

No DFT and no charge density. The candidates are the cavities of the framework: vertices of its
Voronoi decomposition (the points locally farthest from every atom) where the ion fits (distance
to the nearest framework atom >= a window from ionic radii), merged, moved to the centre of their
cavity and, near a special position, projected onto it, then deduped by the host's symmetry
(spglib operations). Sites are ranked (for max_sites; optionally filtered by max_energy) by a
bond-valence site energy (BVSE, after Adams' softBV: a Morse attraction to each framework anion
with its well at the bond length the ion's bond valence asks for, plus a screened Coulomb
repulsion from each framework cation charged with its own bond-valence sum; bond-valence
parameters from pymatgen's O'Keeffe-Brese table, so any ion/anion pair works). insertion_sites
puts the ion on every equivalent position; insertion_hops finds the hops between them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import numpy as np
from pymatgen.analysis.bond_valence import BV_PARAMS
from pymatgen.core import Element, Species, Structure
from scipy.spatial import Voronoi, cKDTree
from scipy.special import erfc

from screener.config import SITE_MODELS
from screener.hops import (
    HOP_SYMPREC,
    Hop,
    HopError,
    distinct_hops,
    ion_sites,
    run_boxed,
    symmetry_ops,
)

#: Shannon radii (Angstrom, 6-fold) of the working ions at their usual charge; O2- is 1.40.
ION_RADIUS = {"Li": 0.76, "Na": 1.02, "K": 1.38, "Rb": 1.52, "Mg": 0.72, "Ca": 1.00, "Sr": 1.18, "Zn": 0.74, "Al": 0.535}
#: Fraction of the ideal ion-oxide bond length kept as the minimum distance to any framework atom.
#: DFT-NEB end points sit in a framework relaxed around the other end point, so a site can be
#: squeezed well below the ideal bond length (0.75 lets Li in at 1.62 A, Ca at 1.80 A).
ROOM_FRACTION = 0.75
#: Elements counted as framework anions; every other framework atom is a cation that repels the ion.
ANIONS = frozenset({"O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N", "C", "H"})
#: Formal charges of the anions (bond valence of their bonds to the ion and to the cations).
ANION_CHARGE = {"O": 2, "S": 2, "Se": 2, "Te": 2, "F": 1, "Cl": 1, "Br": 1, "I": 1, "N": 3, "C": 4, "H": 1}
#: Bond-valence softness (Angstrom), the universal b of Brown and of O'Keeffe-Brese.
BV_B = 0.37
#: Coordination the ion's bonds are sized for (Rmin = R0 - b ln(V / N)): 6, the common one.
ION_COORDINATION = 6
#: Morse well depth per bond (eV) per unit of the ion's valence (softBV D0 run 0.5-2 eV).
MORSE_D0 = 1.0
#: Coulomb constant (eV Angstrom) and the screening length factor of softBV: rho = f (r_ion + r_cation).
COULOMB_K = 14.4
SCREENING = 0.74
#: Interaction cutoff (Angstrom).
CUTOFF = 5.0
#: Voronoi vertices closer than this (Angstrom) are one cavity (they come in tight clusters).
MERGE_TOL = 0.6
#: Images of a site closer than this (Angstrom) are averaged onto its special position.
PROJECT_TOL = 1.2
#: Distinct sites closer than this (Angstrom) can't both hold the ion (the roomier one is kept).
MIN_SEPARATION = 1.2
#: Tolerance (Angstrom) of the symmetry that makes cavity centres one site, whatever symprec the
#: hops are searched at. Looser than HOP_SYMPREC: an empty framework relaxed around an ion it no
#: longer holds (every charged DFT-NEB band) has its equivalent cavities a few tenths of an
#: Angstrom apart in shape, and a site is then placed at the symmetric image of the roomiest one,
#: where the study relaxed its other end point (charged hops recovered: 90/152 at 0.2 against
#: 85 at 0.1; at 0.3 pseudo-symmetry starts to move real sites, e.g. Na3PS4 read as cubic).
SITE_SYMPREC = 0.2
#: Site models: "none" (cavity centres ranked by BVSE), "chgnet" (where the ion relaxes from them,
#: framework fixed) or "chgnet-framework" (where it relaxes with the framework around it).
RELAX_MODES = SITE_MODELS
#: Framework atoms within this distance (Angstrom) of a start relax with the ion in "chgnet-framework":
#: its cage of anions and the cations around it (2-3.5 A), where an end point's relaxation happens.
FRAMEWORK_RADIUS = 4.5
#: Cells narrower than this (Angstrom) are repeated for a "chgnet-framework" relaxation: the
#: narrowest cells the dataset's DFT-NEB studies relaxed their end points in are 6.1 A wide, and
#: every repetition multiplies the cost of each optimiser step.
FRAMEWORK_MIN_WIDTH = 6.0
#: Images of a relaxed site closer than this (Angstrom) are averaged onto its special position.
RELAXED_PROJECT_TOL = 0.5
#: Decay length (Angstrom) of the Born-Mayer-like repulsion that centres a point in its cavity.
SOFTNESS = 0.35


class SiteError(ValueError):
    """A host where insertion sites can't be found; str() is one line "<host_id>: <reason>"."""


class Site(NamedTuple):
    """One symmetry-distinct insertion site: its BVSE energy (eV) and orbit (fractional, [0, 1))."""

    energy: float
    orbit: np.ndarray


def _symbol(sp) -> str:
    return getattr(sp, "symbol", str(sp))


def ion_radius(working_ion: str) -> float:
    """Shannon radius (Angstrom) of the working ion at its usual charge."""
    r = ION_RADIUS.get(working_ion)
    if r is None:
        try:
            r = float(Species(working_ion, Element(working_ion).common_oxidation_states[0]).ionic_radius)
        except Exception:  # noqa: BLE001 - any missing radius falls back to the element's atomic radius
            r = float(Element(working_ion).atomic_radius or 1.0)
    return r


def default_min_distance(working_ion: str) -> float:
    """Minimum ion-framework distance (Angstrom): ROOM_FRACTION of the ion-O2- bond length."""
    return ROOM_FRACTION * (ion_radius(working_ion) + 1.40)


def _padded_cart(structure: Structure, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian positions of the atoms in the cell and their periodic images within pad Angstrom
    of the cell, and the site index of each (so Voronoi cells and neighbour sums are complete)."""
    frac = structure.frac_coords % 1.0
    lat = structure.lattice
    widths = lat.volume / np.linalg.norm(np.cross(lat.matrix[[1, 2, 0]], lat.matrix[[2, 0, 1]]), axis=1)
    reps = np.ceil(pad / widths).astype(int)
    margin = pad / widths
    shifts = np.array(
        [(i, j, k) for i in range(-reps[0], reps[0] + 1) for j in range(-reps[1], reps[1] + 1) for k in range(-reps[2], reps[2] + 1)],
        dtype=float,
    )
    pts = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    idx = np.tile(np.arange(len(frac)), len(shifts))
    keep = np.all((pts >= -margin) & (pts < 1 + margin), axis=1)
    return lat.get_cartesian_coords(pts[keep]), idx[keep]


def _nearest(structure: Structure, frac_points: np.ndarray) -> np.ndarray:
    """Distance (Angstrom, periodic) from each point to the nearest framework atom."""
    pts, _ = _padded_cart(structure, 6.0)
    d, _ = cKDTree(pts).query(structure.lattice.get_cartesian_coords(np.atleast_2d(frac_points) % 1.0))
    return np.asarray(d, dtype=float)


def _r0(a: str, b: str) -> float:
    """O'Keeffe-Brese bond-valence R0 (Angstrom) of the pair a-b (pymatgen's parameters)."""
    pa, pb = BV_PARAMS[Element(a)], BV_PARAMS[Element(b)]
    ra, rb, ca, cb = pa["r"], pb["r"], pa["c"], pb["c"]
    return ra + rb - ra * rb * (math.sqrt(ca) - math.sqrt(cb)) ** 2 / (ca * ra + cb * rb)


def _formal_valence(el: str) -> float:
    """Charge of a framework cation whose bond valence can't be summed: the median of its common
    positive oxidation states (Tc 5.5, Pt 3, Pm 3), else 2."""
    states = [o for o in Element(el).common_oxidation_states if o > 0]
    return float(np.median(states)) if states else 2.0


def _cation_radius(el: str, valence: float) -> float:
    """Ionic radius (Angstrom) of a framework cation at its bond-valence charge."""
    e = Element(el)
    for ox in sorted({max(1, int(np.rint(valence)))} | set(e.common_oxidation_states), key=lambda o: abs(o - valence)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns when it falls back to low-spin data
                r = Species(el, ox).ionic_radius
            if r:
                return float(r)
        except Exception:  # noqa: BLE001, S112 - not every (element, charge) has a Shannon radius
            continue
    return float(e.average_cationic_radius or e.atomic_radius or 0.7)


class SiteEnergy:
    """Bond-valence site energy (eV) of one working ion in a framework: ranks insertion sites.

    E(x) = sum over anions X of D0 [(exp((Rmin - R) / b) - 1)^2 - 1]
         + sum over cations M of K q_ion q_M erfc(R / rho) / R,
    Rmin = R0 - b ln(V_ion / N) (the bond length of a bond of valence V_ion / N), q = V / sqrt(N)
    (softBV's effective charges), the cations' V their bond-valence sums in the framework.
    """

    def __init__(self, structure: Structure, working_ion: str, valence: int | None = None):
        self.structure = structure
        self.lattice = structure.lattice
        ion = Element(working_ion)
        v_ion = float(valence or max(1, ion.common_oxidation_states[0] if ion.common_oxidation_states else 1))
        symbols = [_symbol(sp) for sp in structure.species]
        is_anion = np.array([s in ANIONS for s in symbols])
        pts, idx = _padded_cart(structure, CUTOFF + 2.0)
        self.points, self.index = pts, idx
        self.tree = cKDTree(pts)
        n = len(structure)
        rmin = np.zeros(n)
        d0 = np.zeros(n)
        qq = np.zeros(n)
        rho = np.ones(n)
        r_ion = ion_radius(working_ion)
        cart = structure.cart_coords
        anion_cart = pts[is_anion[idx]]
        anion_sym = [symbols[i] for i in idx[is_anion[idx]]]
        atree = cKDTree(anion_cart) if len(anion_cart) else None
        for i, s in enumerate(symbols):
            if is_anion[i]:
                rmin[i] = _r0(working_ion, s) - BV_B * math.log(v_ion / ION_COORDINATION)
                d0[i] = MORSE_D0 * v_ion * ANION_CHARGE.get(s, 2) / 2
                continue
            valence, n_bonds = 1.0, ION_COORDINATION
            if atree is not None:
                nb = atree.query_ball_point(cart[i], 3.5)
                if nb:
                    d = np.linalg.norm(anion_cart[nb] - cart[i], axis=1)
                    if Element(s) in BV_PARAMS:
                        sv = np.exp((np.array([_r0(s, anion_sym[k]) for k in nb]) - d) / BV_B)
                        valence = max(float(sv.sum()), 0.5)
                        n_bonds = max(int((sv > 0.1 * sv.max()).sum()), 1)
                    else:  # no O'Keeffe-Brese parameters (Tc, Pt, Os, Au, Pm...): formal charge, first shell
                        valence = _formal_valence(s)
                        n_bonds = max(int((d < 1.2 * d.min()).sum()), 1)
            qq[i] = COULOMB_K * (v_ion / math.sqrt(ION_COORDINATION)) * (valence / math.sqrt(n_bonds))
            rho[i] = SCREENING * (r_ion + _cation_radius(s, valence))
        self.is_anion = is_anion[idx]
        self.rmin, self.d0, self.qq, self.rho = rmin[idx], d0[idx], qq[idx], rho[idx]

    def _pairs(self, x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Padded neighbour lists (n, m) of the cartesian points x and their mask."""
        lists = self.tree.query_ball_point(x, radius)
        m = max((len(l) for l in lists), default=0) or 1
        nb = np.zeros((len(x), m), dtype=int)
        mask = np.zeros((len(x), m), dtype=bool)
        for k, l in enumerate(lists):
            nb[k, : len(l)] = l
            mask[k, : len(l)] = True
        return nb, mask

    def energy(self, frac: np.ndarray) -> np.ndarray:
        """Site energy (eV) of the ion at each fractional point."""
        x = self.lattice.get_cartesian_coords(np.atleast_2d(frac) % 1.0)
        nb, mask = self._pairs(x, CUTOFF)
        r = np.maximum(np.linalg.norm(x[:, None, :] - self.points[nb], axis=2), 0.3)
        morse = self.d0[nb] * ((np.exp((self.rmin[nb] - r) / BV_B) - 1) ** 2 - 1)
        coul = self.qq[nb] * erfc(r / self.rho[nb]) / r
        return np.where(mask & (r < CUTOFF), np.where(self.is_anion[nb], morse, coul), 0.0).sum(axis=1)


def _cluster(frac: np.ndarray, score: np.ndarray, lat: np.ndarray, tol: float) -> np.ndarray:
    """Greedy periodic clustering: indices of the best-scored (lowest) point of every group closer than tol."""
    order = np.argsort(score, kind="stable")
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
    fall within tol of x are averaged in (the site-symmetry projection, repeated until it holds:
    one pass can leave images a fraction of an Angstrom apart in a cell that is symmetric only
    within symprec), then images closer than 0.5 A (one site, never two ions) are deduped."""
    for _ in range(5):
        imgs = np.einsum("kij,j->ki", rots, x) + trans
        d = imgs - x
        d -= np.rint(d)
        near = np.linalg.norm(d @ lat, axis=1) < tol
        shift = d[near].mean(axis=0)
        x = (x + shift) % 1.0
        if np.linalg.norm(shift @ lat) < 1e-3:
            break
    imgs = (np.einsum("kij,j->ki", rots, x) + trans) % 1.0
    out: list[np.ndarray] = []
    for p in imgs:
        if out:
            diff = np.array(out) - p
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=1)) < 0.5:
                continue
        out.append(p)
    return x, np.array(out)


def _relax(structure: Structure, frac: np.ndarray, steps: int = 60, cutoff: float = 5.0) -> np.ndarray:
    """Move each point downhill in sum_j exp(-d_j / SOFTNESS) over framework atoms: the centre of
    its cavity, which is symmetric (a special position lands exactly on it, unlike the pair of
    Voronoi vertices that often straddle it)."""
    lat = structure.lattice
    pts, _ = _padded_cart(structure, cutoff + 1.0)
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


def cavity_centres(structure: Structure, min_distance: float, merge_tol: float = MERGE_TOL) -> np.ndarray:
    """Fractional centres of the framework's cavities with room for the ion: Voronoi vertices at
    least min_distance Angstrom from every atom, one per merge_tol Angstrom, moved to the centre
    of their cavity (see _relax) and merged again."""
    pts, _ = _padded_cart(structure, 6.0)
    frac = structure.lattice.get_fractional_coords(Voronoi(pts).vertices)
    frac = frac[np.all((frac >= -1e-9) & (frac < 1 - 1e-9), axis=1)] % 1.0
    room = _nearest(structure, frac)
    frac, room = frac[room >= min_distance], room[room >= min_distance]
    if len(frac) == 0:
        return frac
    lat = structure.lattice.matrix
    frac = _relax(structure, frac[_cluster(frac, -room, lat, merge_tol)])
    return frac[_cluster(frac, -_nearest(structure, frac), lat, 0.2)]


def site_relax_settings(relax: str, cache_dir: str | None = None):
    """The RelaxSettings of a site model (None for "none"): site_relax's defaults for "chgnet";
    for "chgnet-framework" the cage within FRAMEWORK_RADIUS relaxes, in cells at least
    FRAMEWORK_MIN_WIDTH wide. cache_dir: where relaxations are kept between runs."""
    if relax not in RELAX_MODES:
        raise ValueError(f"unknown site model {relax!r}; known: {', '.join(RELAX_MODES)}")
    if relax == "none":
        return None
    from screener.site_relax import RelaxSettings

    if relax == "chgnet-framework":
        return RelaxSettings(framework_radius=FRAMEWORK_RADIUS, min_width=FRAMEWORK_MIN_WIDTH, cache_dir=cache_dir)
    return RelaxSettings(cache_dir=cache_dir)


def candidate_sites(
    structure: Structure, working_ion: str, *, min_distance: float | None = None, symprec: float = SITE_SYMPREC,
    max_energy: float | None = None, merge_tol: float | None = None, project_tol: float | None = None,
    separation: float | None = None, trace: dict | None = None, relax: str = "none", relax_settings=None,
) -> list[Site]:
    """Symmetry-distinct insertion sites, lowest bond-valence site energy first (see SiteEnergy):
    cavity centres at least min_distance Angstrom from every framework atom, projected onto their
    special positions, one site per orbit of the host's symmetry at symprec (default SITE_SYMPREC,
    looser than the hops': see there). If max_energy is given, only sites with energy <= max_energy eV are kept;
    by default none is dropped, since DFT-NEB studies also compute hops through sites this simple
    energy puts high (e.g. Ca in spinel's tetrahedral 8a, +12 eV above the octahedral 16c). Empty
    when the ion fits nowhere. trace, if given, receives the fractional points after each stage
    ("centres", "distinct", "kept"; with relax also "relaxed") and the number of symmetry-distinct
    centres ("n_distinct": what a per-site relaxation would have to start from), for diagnosis.

    relax="chgnet": the ion is relaxed with CHGNet from each distinct cavity centre (framework
    fixed, see site_relax.relax_ion; relax_settings a RelaxSettings), the relaxed positions merged
    by symmetry, and Site.energy is then the CHGNet energy relative to the lowest site (eV; so is
    max_energy). Not the default: on the first 23 charged dataset hops it recovered 12 against 14
    (no miss fixed) at ~40 s per host instead of ~1 s (see site_relax for why).
    relax="chgnet-framework": the same, with the framework atoms within FRAMEWORK_RADIUS of each
    start relaxing too (site_relax_settings; a relax_settings without a framework_radius gets
    that one), as a DFT study relaxes an end point; the sites are the ion's relaxed positions in
    the unrelaxed host."""
    if relax not in RELAX_MODES:
        raise ValueError(f"candidate_sites: unknown relax {relax!r}; known: {', '.join(RELAX_MODES)}")
    dmin = default_min_distance(working_ion) if min_distance is None else float(min_distance)
    emax = np.inf if max_energy is None else float(max_energy)
    merge_tol = MERGE_TOL if merge_tol is None else merge_tol
    project_tol = PROJECT_TOL if project_tol is None else project_tol
    separation = MIN_SEPARATION if separation is None else separation
    tr = trace if trace is not None else {}
    frac = cavity_centres(structure, dmin, merge_tol)
    tr["centres"] = frac
    if len(frac) == 0:
        return []
    rots, trans, _ = symmetry_ops(structure, symprec)
    centres, orbits = _distinct(structure, frac, np.argsort(-_nearest(structure, frac), kind="stable"), rots, trans,
                                project_tol, separation, dmin)  # roomiest first
    tr["distinct"] = np.vstack(orbits) if orbits else np.zeros((0, 3))
    tr["n_distinct"] = len(orbits)
    if not orbits:
        return []
    if relax != "none":
        relax_settings = relax_settings or site_relax_settings(relax)
        if relax == "chgnet-framework" and relax_settings.framework_radius <= 0:
            relax_settings = replace(relax_settings, framework_radius=FRAMEWORK_RADIUS)
        return _relaxed_sites(structure, working_ion, np.array(centres), rots, trans, separation, max_energy, tr, relax_settings)
    energy = SiteEnergy(structure, working_ion).energy(np.array(centres))
    sites = sorted((Site(float(e), o) for e, o in zip(energy, orbits) if e <= emax), key=lambda s: s.energy)
    tr["kept"] = np.vstack([s.orbit for s in sites]) if sites else np.zeros((0, 3))
    return sites


def _distinct(
    structure: Structure, frac: np.ndarray, order: np.ndarray, rots: np.ndarray, trans: np.ndarray,
    project_tol: float, separation: float, dmin: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(centres, orbits) of the symmetry-distinct sites among frac, taken in order: each point is
    projected onto its special position (see _orbit_points) and kept unless that left it closer than
    dmin to the framework or its orbit comes closer than separation to an orbit already kept."""
    lat = structure.lattice.matrix
    orbits: list[np.ndarray] = []
    centres: list[np.ndarray] = []
    covered = np.zeros((0, 3))
    for i in order:
        x = frac[i]
        if len(covered):
            diff = covered - x
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=1)) < separation:
                continue
        x, orbit = _orbit_points(x, rots, trans, lat, project_tol)
        if dmin > 0 and _nearest(structure, x)[0] < dmin:  # the projection onto the special position left no room
            continue
        if len(covered):
            diff = covered[:, None, :] - orbit[None, :, :]
            diff -= np.rint(diff)
            if np.min(np.linalg.norm(diff @ lat, axis=2)) < separation:
                continue
        orbits.append(orbit)
        centres.append(x)
        covered = np.vstack([covered, orbit])
    return centres, orbits


def _relaxed_sites(
    structure: Structure, working_ion: str, starts: np.ndarray, rots: np.ndarray, trans: np.ndarray, separation: float,
    max_energy: float | None, tr: dict, settings=None,
) -> list[Site]:
    """Sites where the ion relaxes to from each start (CHGNet, framework fixed; see site_relax),
    lowest energy first: relaxed positions merged by symmetry (an ion that relaxed onto another's
    site, or into another cavity, joins that site), energies relative to the lowest (eV)."""
    from screener.site_relax import RelaxSettings, relax_ion

    settings = settings or RelaxSettings()
    if settings.max_starts is not None and len(starts) > settings.max_starts:
        starts = starts[np.argsort(SiteEnergy(structure, working_ion).energy(starts), kind="stable")[: settings.max_starts]]
    r = relax_ion(structure, working_ion, starts, settings=settings, ops=(rots, trans))
    tr["relaxed"] = r.frac
    order = np.argsort(r.energy, kind="stable")
    centres, orbits = _distinct(structure, r.frac, order, rots, trans, RELAXED_PROJECT_TOL, separation, 0.0)
    # _distinct keeps points in order, so the i-th kept orbit comes from the i-th lowest start it accepted
    energies = []
    lat = structure.lattice.matrix
    for c in centres:
        d = r.frac - c
        d -= np.rint(d)
        energies.append(float(r.energy[np.argmin(np.linalg.norm(d @ lat, axis=1))]))
    e0 = min(energies)
    emax = np.inf if max_energy is None else float(max_energy)
    sites = sorted((Site(e - e0, o) for e, o in zip(energies, orbits) if e - e0 <= emax), key=lambda s: s.energy)
    tr["kept"] = np.vstack([s.orbit for s in sites]) if sites else np.zeros((0, 3))
    return sites


def _fill(structure: Structure, working_ion: str, sites: list[Site]) -> tuple[Structure, list[int]]:
    """(the host with working_ion on every position of sites, the site index of each orbit's first)."""
    out = structure.copy()
    reps = []
    for _, orbit in sites:
        reps.append(len(out))
        for p in orbit:
            out.append(working_ion, p, coords_are_cartesian=False)
    return out, reps


def _sites_or_raise(
    structure: Structure, working_ion: str, name: str, min_distance: float | None, max_sites: int | None,
    max_energy: float | None, symprec: float, relax: str = "none", trace: dict | None = None, relax_settings=None,
) -> list[Site]:
    if working_ion in {el.symbol for el in structure.composition.element_composition.elements}:
        raise SiteError(f"{name}: host already holds {working_ion} (use enumerate_hops on its own sites)")
    if not structure.is_ordered:
        raise SiteError(f"{name}: disordered structure (partial occupancies are not supported)")
    sites = candidate_sites(structure, working_ion, min_distance=min_distance, symprec=symprec, max_energy=max_energy,
                            relax=relax, trace=trace, relax_settings=relax_settings)
    if not sites:
        dmin = default_min_distance(working_ion) if min_distance is None else min_distance
        raise SiteError(f"{name}: no room for {working_ion} (no point {dmin:.2f} A from every framework atom)")
    return sites[:max_sites]


def insertion_sites(
    structure: Structure,
    working_ion: str,
    *,
    min_distance: float | None = None,
    max_sites: int | None = None,
    max_energy: float | None = None,
    symprec: float = SITE_SYMPREC,
    host_id: str | None = None,
    relax: str = "none",
) -> Structure:
    """The host with working_ion on every position of its symmetry-distinct insertion sites (at
    most max_sites of them, lowest site energy first; max_energy: eV, see candidate_sites;
    min_distance: Angstrom to the nearest framework atom, default from ionic radii). Raises
    SiteError if the host already holds the ion or has no room for it. relax and symprec (the
    tolerance of the sites' symmetry): see candidate_sites."""
    name = host_id or structure.composition.reduced_formula
    sites = _sites_or_raise(structure, working_ion, name, min_distance, max_sites, max_energy, symprec, relax)
    return _fill(structure, working_ion, sites)[0]


def site_hops(
    filled: Structure, host_id: str, working_ion: str, reps: list[int], *, max_length: float
) -> list[Hop]:
    """Symmetry-distinct hops between the ion's sites of filled up to max_length (Angstrom),
    shortest first, expanded from the sites reps (structure indices): every hop must be an image,
    under filled's symmetry at HOP_SYMPREC, of one that starts on them (an orbit's first site, when
    the orbits were made at that tolerance or a tighter one; every site otherwise); hops are then
    merged and keyed by hops.distinct_hops, as enumerate_hops does (each hop recorded as its first, shortest, candidate). Much faster than
    DistinctPathFinder when an empty host has hundreds of candidate positions."""
    ion_idx, ion_frac = ion_sites(filled, working_ion)
    pos = {int(k): n for n, k in enumerate(ion_idx)}
    lat = filled.lattice
    cands = []
    for r in reps:
        n = pos[r]
        _, dist, idx, img = lat.get_points_in_sphere(ion_frac, lat.get_cartesian_coords(ion_frac[n]), max_length + 1e-6, zip_results=False)
        for d, j, im in zip(dist, idx, img):
            if d < 1e-6:
                continue
            if d < 0.5:
                raise HopError(f"{host_id}: two {working_ion} sites {d:.2f} A apart (duplicate sites?)")
            cands.append((float(d), n, int(j), tuple(int(x) for x in im)))
    cands.sort(key=lambda c: (round(c[0], 6), c[1], c[2], c[3]))
    # most candidates are copies of a few hops: skip those whose edge an orbit already holds
    hops = distinct_hops(
        filled, host_id, working_ion, ((d, ion_frac[n], ion_frac[j] + np.array(im, dtype=float)) for d, n, j, im in cands),
        representative="candidate", skip_seen=True,
    )
    if not hops:
        raise HopError(f"{host_id}: no {working_ion}-{working_ion} hop within {max_length:g} A between its insertion sites")
    return hops


def insertion_hops(
    structure: Structure,
    host_id: str,
    working_ion: str,
    *,
    max_length: float = 6.5,
    max_sites: int | None = None,
    max_energy: float | None = None,
    min_distance: float | None = None,
    symprec: float = SITE_SYMPREC,
    timeout_s: float = 60.0,
    relax: str = "none",
    trace: dict | None = None,
    relax_settings=None,
) -> tuple[Structure, list[Hop]]:
    """Hops of working_ion between the insertion sites of an empty host: (host with the ion on its
    sites, its symmetry-distinct hops, see site_hops). Raises SiteError (no room) or HopError (no
    hop, or past timeout_s: run in the same time box as enumerate_hops; the time box covers the
    hops, not the site relaxation). relax, relax_settings, trace and symprec (the tolerance of the
    sites' symmetry; hops are always told apart at HOP_SYMPREC): see candidate_sites."""
    sites = _sites_or_raise(structure, working_ion, host_id, min_distance, max_sites, max_energy, symprec, relax, trace,
                            relax_settings)
    filled, reps = _fill(structure, working_ion, sites)
    if symprec > HOP_SYMPREC:  # an orbit's sites need not be images of its first one at HOP_SYMPREC
        reps = [int(k) for k in ion_sites(filled, working_ion)[0]]  # the host held none
    task = partial(site_hops, max_length=max_length)
    hops = run_boxed(task, (filled, host_id, working_ion, reps), timeout_s, host_id)
    return filled, hops
