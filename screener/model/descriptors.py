"""Physical descriptors of a migration band, for models that cannot read structures directly.

A band is a pymatgen Structure whose first five sites are the migrating ion at the initial site,
three interpolated images and the final site; the rest is the host without that ion. Every
descriptor is an aggregate (min / count / sum) over host sites, so the order of the host sites does
not matter, nothing counts sites (a band built in a larger supercell gives the same vector up
exactly: sums are normalised to the compound with the ion put back), and the two directions of a hop give the same vector (end points and images enter as
min/max pairs), since a barrier does not depend on which end is called "initial". The widest-path
descriptors look off the straight line: the best path inside a tube around it, on a grid that
depends only on the hop and the lattice's directions, so the same invariances hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres
from scipy import ndimage
from scipy.spatial import cKDTree

#: Anions and the charge assumed for them (charge-balance proxy of the framework cations).
ANION_CHARGE: dict[str, int] = {
    "O": -2, "S": -2, "Se": -2, "Te": -2, "N": -3, "F": -1, "Cl": -1, "Br": -1, "I": -1,
}
_ANION_GROUPS = ("O", "S", "Se", "F")  # one-hot; everything else counts as "other"
_TRANSITION_METALS = frozenset(e.symbol for e in Element if e.is_transition_metal)

#: Points sampled per segment between consecutive band positions (4 segments -> 41 points).
_STEPS_PER_SEGMENT = 10
#: Search radius for neighbours (Angstrom); nearest distances are capped at it.
_R_SEARCH = 8.0
#: Radius of the 1/r sums (Angstrom).
_R_COULOMB = 6.0
#: The tube around the straight hop in which the widest path is sought: radius, grid spacing and
#: how far it reaches past each end point (Angstrom). An ion does not take the straight line: it
#: goes around a bottleneck when the cage lets it, so the narrowest point of the straight line
#: overstates how tight the hop is.
_TUBE_RADIUS, _TUBE_SPACING, _TUBE_MARGIN = 1.2, 0.2, 0.2
#: Shortest hop (Angstrom) a band may describe: end points closer than this are one site.
_MIN_HOP = 0.5
#: Distances on the tube grid are capped as on the path, so the widest path is never reported
#: narrower than the straight line.
_R_TUBE = _R_SEARCH

_SLOTS = ("end_min", "end_max", "img_min", "img_max", "mid")

DESCRIPTOR_NAMES: list[str] = [
    "hop_length",
    "ion_charge", "ion_radius", "ion_mass", "ion_X", "ion_row", "ion_charge_over_radius",
    *[f"d_anion_{s}" for s in _SLOTS],
    *[f"d_cation_{s}" for s in _SLOTS],
    *[f"d_wi_{s}" for s in _SLOTS],
    "cn_anion_end_min", "cn_anion_end_max", "cn_anion_mid",
    "cn_all_end_min", "cn_all_end_max", "cn_all_mid",
    "bottleneck_any", "bottleneck_anion", "bottleneck_cation",
    "bottleneck_free_radius", "constriction_anion", "bottleneck_t",
    "widest_path_anion", "widest_path_cation",
    "coul_cation_mid_minus_end", "coul_anion_mid_minus_end",
    "coul_cation_bottleneck", "coul_anion_bottleneck",
    "volume_per_atom", "volume_per_anion", "density", "frac_wi_host",
    *[f"anion_is_{a}" for a in _ANION_GROUPS], "anion_is_other",
    "anion_mean_X", "anion_mean_radius",
    "cation_mean_ox", "cation_max_ox", "cation_mean_X", "cation_frac_tm", "cation_mean_Z",
]


@lru_cache(maxsize=None)
def _anion_set(framework: frozenset[str]) -> frozenset[str]:
    """Anions of a framework: the usual ones, else (intermetallic-like hosts, e.g. phosphides of
    Ru) the most electronegative element, so every band has an anion sublattice."""
    usual = framework & ANION_CHARGE.keys()
    if usual or not framework:
        return frozenset(usual)
    return frozenset([max(framework, key=lambda s: _element_props(s)[3])])


def _anion_charge(symbol: str) -> int:
    """Assumed anion charge: table value, else from the group (15 -> -3, 14 -> -4), else -1."""
    if symbol in ANION_CHARGE:
        return ANION_CHARGE[symbol]
    group = Element(symbol).group
    return -(18 - group) if 13 <= group <= 17 else -1


@lru_cache(maxsize=None)
def _element_props(symbol: str) -> tuple[float, float, float, float, float, float]:
    """(charge, radius, mass, electronegativity, row, Z) of an element as an ion; cached lookups."""
    el = Element(symbol)
    if symbol in ANION_CHARGE:
        charge = float(ANION_CHARGE[symbol])
    else:
        positive = [s for s in el.common_oxidation_states if s > 0]
        charge = float(max(positive)) if positive else 1.0
    radii = el.ionic_radii
    radius = radii.get(int(charge)) or el.average_ionic_radius or el.atomic_radius or 1.0
    x = el.X if np.isfinite(el.X) else 1.5
    return charge, float(radius), float(el.atomic_mass), float(x), float(el.row), float(el.Z)


def _path_points(band: Structure) -> np.ndarray:
    """Cartesian points along the hop: 41 points through the five band positions (minimum image)."""
    f = band.frac_coords[:5]
    steps = np.diff(f, axis=0)
    steps -= np.round(steps)
    anchors = f[0] + np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])
    t = np.linspace(0.0, 1.0, _STEPS_PER_SEGMENT, endpoint=False)
    pts = [anchors[i] + t[:, None] * (anchors[i + 1] - anchors[i]) for i in range(4)]
    pts.append(anchors[4:5])
    return band.lattice.get_cartesian_coords(np.vstack(pts))


def _tube_grid(band: Structure, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Cartesian grid points (nu, nv, nv, 3) of a cylinder around the straight hop a -> b, the mask
    of the points inside it, and the grid indices of the points at a and at b.

    The grid is symmetric about the midpoint and its cross-section axes come from the lattice (the
    lattice vector least parallel to the hop), so it is the same set of points for either direction,
    any site order and any supercell of the same lattice."""
    length = float(np.linalg.norm(b - a))
    u = (b - a) / length
    lat = band.lattice.matrix / np.linalg.norm(band.lattice.matrix, axis=1)[:, None]
    ref = lat[int(np.argmin(np.round(np.abs(lat @ u), 9)))]
    v = ref - (ref @ u) * u
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    k = int(np.ceil((length / 2 + _TUBE_MARGIN) / _TUBE_SPACING))
    us = _TUBE_SPACING * np.arange(-k, k + 1)
    vs = _TUBE_SPACING * np.arange(-int(_TUBE_RADIUS / _TUBE_SPACING), int(_TUBE_RADIUS / _TUBE_SPACING) + 1)
    U, V, W = np.meshgrid(us, vs, vs, indexing="ij")
    inside = V**2 + W**2 <= _TUBE_RADIUS**2 + 1e-9
    x = (a + b) / 2 + U[..., None] * u + V[..., None] * v + W[..., None] * w
    c = len(vs) // 2
    end = int(np.argmin(np.abs(us - length / 2)))
    return x, inside, (len(us) - 1 - end, c, c), (end, c, c)


def _widest_path(clearance: np.ndarray, inside: np.ndarray, start: tuple, end: tuple) -> float:
    """Largest c such that start and end connect through grid points (26-neighbour steps, inside
    the tube) whose clearance is at least c: the narrowest point of the best path, not of the line."""
    f = np.where(inside, clearance, -np.inf)
    levels = np.unique(f[inside & (f <= min(f[start], f[end]))])[::-1]
    lo, hi = 0, len(levels) - 1
    connectivity = np.ones((3, 3, 3), dtype=bool)
    while lo < hi:  # levels descend: find the first at which the two ends are joined
        mid = (lo + hi) // 2
        labels, _ = ndimage.label(f >= levels[mid], structure=connectivity)
        if labels[start] == labels[end]:
            hi = mid
        else:
            lo = mid + 1
    return float(levels[lo])


def _widest_paths(band: Structure, host_cart: np.ndarray, a: np.ndarray, b: np.ndarray,
                  masks: Sequence[np.ndarray]) -> list[float]:
    """The widest path from a to b inside the tube, one per mask of host atoms: its narrowest
    distance to those atoms (capped at _R_TUBE)."""
    grid, inside, start, end = _tube_grid(band, a, b)
    inner = grid[inside]
    # every host atom (periodic images included) that can be the nearest to a tube point
    reach = float(np.linalg.norm(b - a)) / 2 + _TUBE_MARGIN + _TUBE_RADIUS + _R_TUBE
    _, near, images, _ = find_points_in_spheres(
        host_cart, np.ascontiguousarray((a + b)[None] / 2), reach, np.array([1, 1, 1], dtype=np.int64),
        np.ascontiguousarray(band.lattice.matrix, dtype=float))
    near_cart = host_cart[near] + images @ band.lattice.matrix
    out = []
    for mask in masks:
        clearance = np.full(inside.shape, _R_TUBE)
        atoms = near_cart[mask[near]]
        if len(atoms):
            clearance[inside] = np.minimum(cKDTree(atoms).query(inner, distance_upper_bound=_R_TUBE)[0], _R_TUBE)
        out.append(_widest_path(clearance, inside, start, end))
    return out


def _sym_slots(v: np.ndarray) -> list[float]:
    """Five band-position values -> direction-independent (end min/max, image min/max, mid)."""
    return [min(v[0], v[4]), max(v[0], v[4]), min(v[1], v[3]), max(v[1], v[3]), v[2]]


def band_descriptors(band: Structure) -> np.ndarray:
    """Descriptor vector (ordered as DESCRIPTOR_NAMES) of one band; raises ValueError on a bad band."""
    if len(band) < 6:
        raise ValueError(f"band {band.composition.reduced_formula}: {len(band)} sites, need >= 6")
    if not band.is_ordered:
        raise ValueError(f"band {band.composition.reduced_formula}: disordered sites, need an ordered band")
    species = [sp.symbol for sp in band.species]
    ion = species[0]
    if any(s != ion for s in species[1:5]):
        raise ValueError(
            f"band {band.composition.reduced_formula}: first five sites are not one ion ({species[:5]})"
        )
    host = np.array(species[5:])
    is_wi = host == ion
    anions = _anion_set(frozenset(host[~is_wi].tolist()))
    if not anions:
        raise ValueError(f"band {band.composition.reduced_formula}: host has no framework atoms")
    is_anion = np.isin(host, list(anions))
    is_cation = ~is_anion & ~is_wi

    q_ion, r_ion, m_ion, x_ion, row_ion, _ = _element_props(ion)
    pts = _path_points(band)
    n_pts = len(pts)
    pos_idx = np.arange(5) * _STEPS_PER_SEGMENT
    hop_length = float(np.linalg.norm(pts[-1] - pts[0]))
    if hop_length < _MIN_HOP:
        raise ValueError(f"band {band.composition.reduced_formula}: end points {hop_length:.2f} A apart, "
                         f"not a hop (need >= {_MIN_HOP} A)")

    host_cart = np.ascontiguousarray(band.cart_coords[5:], dtype=float)
    ci, pi, _, dist = find_points_in_spheres(
        host_cart, np.ascontiguousarray(pts), _R_SEARCH, np.array([1, 1, 1], dtype=np.int64),
        np.ascontiguousarray(band.lattice.matrix, dtype=float),
    )
    ci = ci.astype(np.int64)
    pi = pi.astype(np.int64)

    def nearest(mask: np.ndarray) -> np.ndarray:
        out = np.full(n_pts, _R_SEARCH)
        sel = mask[pi]
        np.minimum.at(out, ci[sel], dist[sel])
        return out

    def count(mask: np.ndarray, cutoff: float) -> np.ndarray:
        sel = mask[pi] & (dist <= cutoff)
        return np.bincount(ci[sel], minlength=n_pts).astype(float)

    def inv_sum(mask: np.ndarray) -> np.ndarray:
        sel = mask[pi] & (dist <= _R_COULOMB) & (dist > 0.3)
        return np.bincount(ci[sel], weights=1.0 / dist[sel], minlength=n_pts)

    framework = ~is_wi
    d_anion, d_cation, d_wi = nearest(is_anion), nearest(is_cation), nearest(is_wi)
    d_any = nearest(framework)

    anion_syms = host[is_anion]
    anion_props = np.array([_element_props(s) for s in np.unique(anion_syms)])
    _, counts = np.unique(anion_syms, return_counts=True)
    w = counts / counts.sum()
    r_anion = float(w @ anion_props[:, 1])
    cn_cut_anion = 1.25 * (r_ion + r_anion)
    cn_anion = count(is_anion, cn_cut_anion)
    cn_all = count(framework, cn_cut_anion + 0.5)

    b = int(np.argmin(d_any))
    bottleneck_anion = float(d_anion.min())
    t_b = abs(b / (n_pts - 1) - 0.5)  # 0 = bottleneck at the midpoint, 0.5 = at an end point

    coul_cat, coul_an = inv_sum(is_cation), inv_sum(is_anion)

    widest_anion, widest_cation = _widest_paths(band, host_cart, pts[0], pts[-1], (is_anion, is_cation))
    ends = pos_idx[[0, 4]]

    # Composition of the framework: charge-balance proxy of the cation oxidation state.
    anion_charge = -float(sum(_anion_charge(s) * c for s, c in zip(np.unique(anion_syms), counts)))
    n_cat = int(is_cation.sum())
    cation_syms, cat_counts = np.unique(host[is_cation], return_counts=True)
    if n_cat:
        cat_props = np.array([_element_props(s) for s in cation_syms])
        cw = cat_counts / n_cat
        cation_mean_ox = (anion_charge - q_ion * (is_wi.sum() + 1)) / n_cat
        cation_max_ox = float(cat_props[:, 0].max())
        cation_mean_x = float(cw @ cat_props[:, 3])
        cation_frac_tm = float(cw @ np.isin(cation_syms, list(_TRANSITION_METALS)))
        cation_mean_z = float(cw @ cat_props[:, 5])
    else:
        cation_mean_ox = cation_max_ox = cation_mean_x = cation_frac_tm = cation_mean_z = 0.0

    n_host = len(host)
    volume = band.volume
    mass = float(sum(_element_props(s)[2] for s in species[5:])) + m_ion
    anion_onehot = [float(w[np.unique(anion_syms) == a].sum()) for a in _ANION_GROUPS]

    vec = [
        hop_length,
        q_ion, r_ion, m_ion, x_ion, row_ion, q_ion / r_ion,
        *_sym_slots(d_anion[pos_idx]),
        *_sym_slots(d_cation[pos_idx]),
        *_sym_slots(d_wi[pos_idx]),
        cn_anion[ends].min(), cn_anion[ends].max(), cn_anion[pos_idx[2]],
        cn_all[ends].min(), cn_all[ends].max(), cn_all[pos_idx[2]],
        float(d_any[b]), bottleneck_anion, float(d_cation.min()),
        bottleneck_anion - r_anion, float(d_anion[ends].mean()) - bottleneck_anion, t_b,
        widest_anion, widest_cation,
        coul_cat[pos_idx[2]] - coul_cat[ends].mean(), coul_an[pos_idx[2]] - coul_an[ends].mean(),
        coul_cat[b], coul_an[b],
        volume / (n_host + 1), volume / is_anion.sum(), mass / volume * 1.66053906660,
        float(is_wi.sum() + 1) / (n_host + 1),  # of the full compound: supercell-independent
        *anion_onehot, 1.0 - sum(anion_onehot),
        float(w @ anion_props[:, 3]), r_anion,
        cation_mean_ox, cation_max_ox, cation_mean_x, cation_frac_tm, cation_mean_z,
    ]
    return np.asarray(vec, dtype=float)


def descriptor_matrix(bands: Iterable[Structure] | Sequence[Structure], progress: bool = False) -> np.ndarray:
    """Stack band_descriptors over bands -> (n_bands, len(DESCRIPTOR_NAMES))."""
    bands = list(bands)
    it: Iterable[Structure] = bands
    if progress:
        from tqdm import tqdm

        it = tqdm(bands, desc="descriptors", unit="band")
    rows = [band_descriptors(b) for b in it]
    if not rows:
        return np.zeros((0, len(DESCRIPTOR_NAMES)))
    return np.vstack(rows)
