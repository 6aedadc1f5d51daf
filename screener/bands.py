"""Bands: one structure per hop, in the layout the model was trained on.

Layout of the shipped dataset: site 0 the migrating ion at the initial site, sites 1-3 three
linearly interpolated images (equal steps in fractional coordinates, minimum image), site 4 the
final site, then the host without the ion on the two end sites (vacancy hop). Built by hand rather
than with MigrationHop.get_structures, which returns nimages+2 separate structures and finds the
end sites with its own 0.001 symprec default (so they can be left in the host twice).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from screener.hops import Hop

#: Tolerance (Angstrom) for finding the hop's end sites among the host's ion sites.
SITE_TOL = 0.05


class BandError(ValueError):
    """A band that can't be built; str() is one line "<hop_key>: <reason>"."""


def _widths(lattice: Lattice) -> np.ndarray:
    """Distances between opposite faces of the cell (the perpendicular heights)."""
    m = lattice.matrix
    v = abs(np.linalg.det(m))
    return np.array([v / np.linalg.norm(np.cross(m[(k + 1) % 3], m[(k + 2) % 3])) for k in range(3)])


def _shortest_image(lattice: Lattice) -> float:
    """Shortest nonzero lattice vector: the distance at which an atom meets its own image."""
    return float(min(lattice.get_niggli_reduced_lattice().abc))


def supercell_scaling(structure: Structure, hop: Hop, min_length: float) -> list[int]:
    """Smallest diagonal scaling (grown greedily along the thinnest direction) such that the
    lattice lengths and the shortest periodic-image distance are >= min_length and the hop is
    the minimum-image vector between its end sites in the supercell."""
    lat = structure.lattice
    n = np.array([max(1, math.ceil(min_length / a - 1e-9)) for a in lat.abc])
    dfrac = np.asarray(hop.esite, float) - np.asarray(hop.isite, float)
    for _ in range(60):
        sc = Lattice(lat.matrix * n[:, None])
        d, _img = sc.get_distance_and_image(np.zeros(3), dfrac / n)
        ok_len = min(sc.abc) >= min_length - 1e-9 and _shortest_image(sc) >= min_length - 1e-9
        ok_hop = abs(d - hop.length) < 1e-6 and np.all(np.abs(dfrac / n) <= 0.5 + 1e-9)
        if ok_len and ok_hop:
            return [int(x) for x in n]
        n[int(np.argmin(_widths(sc)))] += 1
    raise BandError(f"{hop.hop_key}: no supercell up to {n.tolist()} makes the hop a minimum-image hop")


def _find_site(structure: Structure, ion: str, frac: np.ndarray) -> int | None:
    idx = [k for k, s in enumerate(structure) if s.specie.symbol == ion]
    if not idx:
        return None
    d = structure.lattice.get_all_distances(frac[None, :], structure.frac_coords[idx])[0]
    k = int(np.argmin(d))
    return idx[k] if d[k] < SITE_TOL else None


def build_band(structure: Structure, hop: Hop, *, min_length: float = 8.0, max_sites: int = 1200) -> Structure:
    """The band of a hop: 5 band sites of the ion, then the host, in a diagonal supercell whose
    lattice lengths and periodic-image distance are >= min_length (so the ion doesn't see its own
    image). In a host with the ion (a vacancy hop) the host loses the ion on the two end sites; in a
    host without it (an interstitial hop in a charged, empty framework, the layout of the dataset's
    charged entries) the host is the empty framework. BandError past max_sites."""
    ion = hop.working_ion
    isite = np.asarray(hop.isite, float)
    esite = np.asarray(hop.esite, float)
    vacancy = any(s.specie.symbol == ion for s in structure)
    if vacancy and _find_site(structure, ion, isite) is None:
        raise BandError(f"{hop.hop_key}: host has no {ion} site at the initial site {np.round(isite, 4).tolist()}")
    if vacancy and _find_site(structure, ion, esite) is None:
        raise BandError(f"{hop.hop_key}: host has no {ion} site at the final site {np.round(esite, 4).tolist()}")
    n = supercell_scaling(structure, hop, min_length)
    nsites = int(np.prod(n)) * len(structure) + (3 if vacancy else 5)
    if nsites > max_sites:
        raise BandError(f"{hop.hop_key}: band would have {nsites} sites (supercell {n}) > max_sites {max_sites}")
    sc = structure.copy()
    sc.make_supercell(n)
    p0, p4 = isite / n, esite / n
    if vacancy:
        k0, k4 = _find_site(sc, ion, p0), _find_site(sc, ion, p4)
        if k0 is None or k4 is None or k0 == k4:
            raise BandError(f"{hop.hop_key}: end sites not distinct in supercell {n}")
        sc.remove_sites([k0, k4])
    steps = [p0 + (p4 - p0) * t / 4 for t in range(5)]
    steps[4] = p4  # exact end point, not p0 + (p4 - p0)
    species = [ion] * 5 + [s.species for s in sc]
    coords = np.vstack([np.array(steps), sc.frac_coords])
    return Structure(sc.lattice, species, coords)


def band_endpoints(band: Structure) -> tuple[Structure, Structure]:
    """The two end points of a band as relaxation/NEB inputs: the migrating ion (first site) at the
    initial, resp. final site, then the host sites (band sites 5 onward) in the band's order.
    Follow-up calculations (DFT-NEB, MLIP-NEB) start from these; the moving ion stays site 0."""
    if len(band) < 6 or len({band[i].specie.symbol for i in range(5)}) != 1:
        raise BandError(f"band of {band.composition.reduced_formula}: first five sites are not one ion's hop")
    ion = band[0].specie.symbol
    host = [(s.species, s.frac_coords) for s in band.sites[5:]]
    ends = []
    for k in (0, 4):
        species = [ion] + [sp for sp, _ in host]
        coords = np.vstack([band.frac_coords[k][None, :], np.array([fc for _, fc in host])])
        ends.append(Structure(band.lattice, species, coords))
    return ends[0], ends[1]


def band_to_doc(band: Structure) -> dict[str, Any]:
    """Compact, exact store document of a band (fractional coordinates are not wrapped)."""
    return {
        "lattice": band.lattice.matrix.tolist(),
        "species": [s.specie.symbol for s in band],
        "frac_coords": band.frac_coords.tolist(),
    }


def band_from_doc(doc: dict[str, Any]) -> Structure:
    try:
        lattice = np.asarray(doc["lattice"], dtype=float)
        species = list(doc["species"])
        coords = np.asarray(doc["frac_coords"], dtype=float)
        if lattice.shape != (3, 3) or coords.shape != (len(species), 3) or len(species) < 5:
            raise ValueError(f"shapes lattice {lattice.shape}, {len(species)} species, coords {coords.shape}")
        return Structure(Lattice(lattice), species, coords)
    except (KeyError, TypeError, ValueError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise BandError(f"{doc.get('_id', 'band document')}: bad band document ({type(exc).__name__}: {first})") from None
