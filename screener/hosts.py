"""Host crystals: validated, ordered structures with a stable id and their provenance.

Every source (files, the shipped dataset, Materials Project, MongoDB) turns its input into ``Host``
objects through ``host_from_structure`` so the same checks and the same id apply everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.core.periodic_table import DummySpecies

#: Sites closer than this (Angstrom) are "on top of each other".
MIN_SITE_DISTANCE = 0.5
#: Below this volume per site (Angstrom^3) a cell is not a real solid (diamond has 5.7).
MIN_VOLUME_PER_SITE = 1.5
#: Radius (Angstrom) of the smooth neighbour shell used by ``make_host_id``.
ID_CUTOFF = 4.0


class HostInputError(ValueError):
    """Bad input for one host; ``str()`` is one line: ``"<input name>: <reason>"``."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = str(name)
        self.reason = one_line(reason)
        super().__init__(f"{self.name}: {self.reason}")


def one_line(text: Any, limit: int = 300) -> str:
    """Collapse a (library) message to one short line so each bad input costs the user one line."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _symbol(sp: Any) -> str:
    """Element symbol of an Element or Species (oxidation state dropped)."""
    return sp.symbol


def check_structure(structure: Structure, name: str, *, max_sites: int = 2000) -> Structure:
    """Refuse what would give nonsense hops or bands later; return the structure unchanged.

    Raises HostInputError for: no sites, more than ``max_sites`` sites, NaN/inf lattice or
    coordinates, zero or tiny volume, partially occupied / disordered sites, unknown or dummy
    elements, and sites closer than 0.5 A (periodic images included). Cheap checks run first so a
    huge or broken cell is refused before any neighbour search.
    """
    if not isinstance(structure, Structure):
        raise HostInputError(name, f"not a pymatgen Structure ({type(structure).__name__})")
    n = len(structure)
    if n == 0:
        raise HostInputError(name, "structure has no sites")
    if n > max_sites:
        raise HostInputError(name, f"{n} sites is more than the limit of {max_sites}")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise HostInputError(name, "lattice contains NaN or infinite values")
    frac = np.asarray(structure.frac_coords, dtype=float)
    if not np.all(np.isfinite(frac)):
        bad = int(np.argwhere(~np.isfinite(frac))[0][0])
        raise HostInputError(name, f"site {bad} has NaN or infinite coordinates")
    volume = abs(float(np.linalg.det(matrix)))
    if not volume > 1e-6:
        raise HostInputError(name, f"zero cell volume ({volume:.3g} A^3)")
    if volume / n < MIN_VOLUME_PER_SITE:
        raise HostInputError(
            name, f"tiny cell volume: {volume / n:.3g} A^3 per site (< {MIN_VOLUME_PER_SITE})"
        )
    if not structure.is_ordered:
        idx = next(i for i, s in enumerate(structure) if not s.is_ordered)
        raise HostInputError(
            name, f"disordered or partially occupied site {idx} ({structure[idx].species})"
        )
    for i, site in enumerate(structure):
        sp = site.specie
        if isinstance(sp, DummySpecies) or not Element.is_valid_symbol(_symbol(sp)):
            raise HostInputError(name, f"site {i} has an unknown or dummy element {_symbol(sp)!r}")
    centers, points, _, dists = structure.get_neighbor_list(MIN_SITE_DISTANCE)
    if len(centers):
        k = int(np.argmin(dists))
        raise HostInputError(
            name,
            f"sites {int(centers[k])} and {int(points[k])} are {dists[k]:.3f} A apart "
            f"(< {MIN_SITE_DISTANCE} A): overlapping atoms",
        )
    return structure


def _smooth_cut(d: np.ndarray, rc: float) -> np.ndarray:
    """Cosine cutoff: goes to zero smoothly at rc, so no neighbour count jumps at the cutoff."""
    return 0.5 * (np.cos(np.pi * d / rc) + 1.0)


def host_fingerprint(structure: Structure) -> list:
    """Site-order, translation, rotation and supercell invariant description of a crystal.

    Only intensive averages over all sites, so the order of sites, the origin, the orientation and
    the choice of (super)cell do not matter: volume per atom; per element the mean nearest-neighbour
    distance; per element pair the smooth coordination number within 4 A and its weighted mean
    distance. Every quantity is continuous in the coordinates (smooth cutoff), so file round-trip
    noise only matters when a value lies within ~1e-7 of a rounding edge.
    """
    z = np.array([_symbol(sp) for sp in structure.species])
    elements = sorted(set(z.tolist()))
    n = len(structure)
    centers, points, _, dists = structure.get_neighbor_list(ID_CUTOFF)
    w = _smooth_cut(dists, ID_CUTOFF)
    zc, zp = z[centers], z[points]
    nn = np.full(n, np.inf)
    np.minimum.at(nn, centers, dists)
    feats: list = [round(structure.volume / n, 1)]
    for a in elements:
        in_a = z == a
        na = int(in_a.sum())
        nn_a = nn[in_a]
        mean_nn = float(nn_a.mean()) if np.all(np.isfinite(nn_a)) else None
        feats.append([a, round(na / n, 4), None if mean_nn is None else round(mean_nn, 2)])
        for b in elements:
            m = (zc == a) & (zp == b)
            wsum = float(w[m].sum())
            cn = wsum / na
            dmean = float((w[m] * dists[m]).sum() / wsum) if wsum > 0 else 0.0
            feats.append([a, b, round(cn, 1), round(dmean, 2)])
    return feats


def id_formula(structure: Structure) -> str:
    """Reduced formula without pymatgen's polyanion brackets ("Li17Co18O36", not
    "Li17(CoO2)18") so ids stay safe in file names, shells and URLs."""
    comp = structure.composition.element_composition.reduced_composition
    return re.sub(r"(?<=[A-Za-z])1(?![0-9.])", "", comp.formula.replace(" ", ""))


def make_host_id(structure: Structure) -> str:
    """Stable id ``"<reduced formula, no brackets>-<10 hex>"`` for deduplicating hosts across sources.

    The hash is of ``host_fingerprint``, so the same crystal gets the same id whatever the site
    order, origin, orientation, lattice setting or supercell (a 2x2x1 supercell is the same host).
    Limits: features are rounded coarsely (volume/atom 0.1 A^3, distances 0.01 A, coordination
    0.1), so (a) a relaxed and an unrelaxed copy of one crystal usually get different ids while
    tiny numerical differences do not, (b) two different crystals collide only if all averages
    agree to that precision (possible for polytypes that differ only beyond 4 A), and (c) a value
    lying within ~1e-7 of a rounding edge flips after a lossy round trip (CIF keeps 8 digits):
    measured 0 flips in 880 CIF/POSCAR round trips of the 440 dataset hosts (2 flips with 10x
    finer rounding). Cost: one neighbour search, ~15 ms for 1000 sites.
    """
    formula = id_formula(structure)
    payload = json.dumps(host_fingerprint(structure), separators=(",", ":"))
    return f"{formula}-{hashlib.sha1(payload.encode()).hexdigest()[:10]}"


@dataclass
class Host:
    """One host crystal, as stored in the ``hosts`` collection (``_id`` = ``host_id``)."""

    host_id: str
    name: str
    formula: str
    structure: Structure
    source: dict = field(default_factory=dict)

    @property
    def elements(self) -> list[str]:
        return sorted(str(e) for e in self.structure.composition.element_composition.elements)

    def has_ion(self, ion: str) -> bool:
        """Whether the working ion is in the host (needed for hops of that ion)."""
        return ion in self.elements

    def to_doc(self) -> dict:
        """MongoDB document; the id is the ``_id`` so re-inserting a host is a no-op upsert."""
        return {
            "_id": self.host_id,
            "name": self.name,
            "formula": self.formula,
            "elements": self.elements,
            "nsites": len(self.structure),
            "structure": self.structure.as_dict(),
            "source": dict(self.source),
            "created_at": datetime.now(timezone.utc),
        }

    @classmethod
    def from_doc(cls, doc: dict) -> "Host":
        """Inverse of ``to_doc`` (extra keys such as ``created_at`` are ignored)."""
        if not isinstance(doc, dict):
            raise HostInputError("host document", f"expected a dict, got {type(doc).__name__}")
        try:
            return cls(
                host_id=doc["_id"],
                name=doc["name"],
                formula=doc["formula"],
                structure=Structure.from_dict(doc["structure"]),
                source=dict(doc.get("source") or {}),
            )
        except Exception as exc:  # noqa: BLE001 - any malformed document is one bad input
            raise HostInputError(str(doc.get("_id", "host document")), f"bad host document: {exc!r}")

    def as_dict(self) -> dict:
        """JSON-serialisable dict (MSON style)."""
        return {
            "@module": type(self).__module__,
            "@class": type(self).__name__,
            "host_id": self.host_id,
            "name": self.name,
            "formula": self.formula,
            "structure": self.structure.as_dict(),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Host":
        return cls(
            host_id=d["host_id"],
            name=d["name"],
            formula=d["formula"],
            structure=Structure.from_dict(d["structure"]),
            source=dict(d.get("source") or {}),
        )

    def __repr__(self) -> str:
        return f"Host({self.host_id!r}, name={self.name!r}, nsites={len(self.structure)})"


def host_from_structure(
    structure: Structure, name: str, source: dict, *, max_sites: int = 2000
) -> Host:
    """Check a structure and wrap it as a Host with its id and reduced formula."""
    check_structure(structure, name, max_sites=max_sites)
    return Host(
        host_id=make_host_id(structure),
        name=str(name),
        formula=structure.composition.element_composition.reduced_formula,
        structure=structure,
        source=dict(source),
    )
