"""The shipped 619-barrier DFT-NEB dataset: bands for training/evaluation and their host crystals.

Entries are JARVIS-style: the first five sites are the migrating ion at the initial site, three
interpolated images and the final site; the rest is the host (see data/em-dataset/README.md).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from screener.hosts import Host, HostInputError, host_from_structure

#: Folder of the shipped dataset (inside the installed package).
DATASET_DIR: Path = Path(str(resources.files("screener").joinpath("data", "em-dataset")))

SPLITS: tuple[str, ...] = ("train", "test")
#: Number of leading sites that make up the band (initial, 3 images, final).
N_BAND_SITES = 5
_SUFFIX = re.compile(r"_\d+$")


def host_name_of(sys_name: str) -> str:
    """Host of a path: ``sys_name`` without a trailing ``_N`` (``CaMnP2O7_2`` -> ``CaMnP2O7``)."""
    return _SUFFIX.sub("", sys_name)


def jarvis_to_structure(atoms: dict) -> Structure:
    """Structure from a JARVIS Atoms dict (``lattice_mat`` rows are lattice vectors)."""
    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in atoms]
    if missing:
        raise ValueError(f"JARVIS atoms dict lacks {', '.join(missing)}")
    elements = list(atoms["elements"])
    coords = np.asarray(atoms["coords"], dtype=float)
    if coords.shape != (len(elements), 3):
        raise ValueError(
            f"{len(elements)} elements but coords of shape {tuple(coords.shape)}"
        )
    lattice = Lattice(np.asarray(atoms["lattice_mat"], dtype=float))
    return Structure(
        lattice, elements, coords, coords_are_cartesian=bool(atoms.get("cartesian", False))
    )


@dataclass
class DatasetBand:
    """One DFT-NEB path of the dataset with its barrier and where it sits in the splits."""

    sys_name: str
    host_name: str
    target: float
    """E_m in eV."""
    cls: str
    formula: str
    working_ion: str
    band: Structure
    """As stored: first five sites are the band, then the host."""
    fold: int | None = None
    """Host-grouped CV fold (train split only)."""
    xc: str | None = None
    """Exchange-correlation functional of the reference DFT (from anchors.csv)."""


def _read_json(name: str) -> Any:
    with open(DATASET_DIR / name, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=None)
def _raw_entries(split: str) -> tuple[dict, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return tuple(_read_json(f"bands-{split}.json"))


@lru_cache(maxsize=1)
def _xc_by_sys_name() -> dict[str, str]:
    with open(DATASET_DIR / "anchors.csv", newline="", encoding="utf-8") as fh:
        return {row["sys_name"]: row["xc"] for row in csv.DictReader(fh)}


@lru_cache(maxsize=None)
def _load_bands(split: str) -> tuple[DatasetBand, ...]:
    entries = _raw_entries(split)
    folds: list[int | None] = [None] * len(entries)
    if split == "train":
        folds_doc = _read_json("folds-train.json")
        folds = [int(f) for f in folds_doc["fold"]]
        hosts = folds_doc.get("host")
        if len(folds) != len(entries) or (
            hosts is not None and hosts != [host_name_of(e["sys_name"]) for e in entries]
        ):
            raise ValueError("folds-train.json: does not match bands-train.json entry by entry")
    xc = _xc_by_sys_name()
    out = []
    for entry, fold in zip(entries, folds):
        band = jarvis_to_structure(entry["atoms"])
        out.append(
            DatasetBand(
                sys_name=entry["sys_name"],
                host_name=host_name_of(entry["sys_name"]),
                target=float(entry["target"]),
                cls=entry["class"],
                formula=entry["formula"],
                working_ion=band[0].specie.symbol,
                band=band,
                fold=fold,
                xc=xc.get(entry["sys_name"]),
            )
        )
    return tuple(out)


def load_bands(split: str) -> list[DatasetBand]:
    """Bands of one split (``"train"``: 559, ``"test"``: 60), parsed once per process.

    The DatasetBand objects are shared between calls: copy ``band`` before changing it.
    """
    return list(_load_bands(split))


def host_structure_from_entry(atoms: dict, name: str = "entry") -> Structure:
    """The full host of one band: drop the five band sites, put the ion back on site 0, and on
    site 4 too when the host still holds ions of that kind (a vacancy hop in a discharged host).
    """
    band = jarvis_to_structure(atoms)
    if len(band) <= N_BAND_SITES:
        raise HostInputError(name, f"only {len(band)} sites: no host after the {N_BAND_SITES} band sites")
    ion = band[0].specie.symbol
    if band[N_BAND_SITES - 1].specie.symbol != ion:
        raise HostInputError(name, "sites 0 and 4 differ in element: not a band entry")
    rest = list(range(N_BAND_SITES, len(band)))
    keep = [0]
    if any(band[i].specie.symbol == ion for i in rest):
        end = N_BAND_SITES - 1
        # A hop to a periodic image of its own start leaves nothing to put back.
        if band.get_distance(0, end) > 0.5:
            keep.append(end)
    return Structure.from_sites([band[i] for i in keep + rest])


#: Same-element sites closer than this (Angstrom) in a dataset entry are one site listed twice.
DUPLICATE_TOL = 0.1


def merge_duplicate_sites(structure: Structure) -> int:
    """Merge same-element sites listed twice (< 0.1 A apart), in place; return how many went.

    The shipped Na4MnAlP3O12 entries list 6 of their Na and P sites twice, 0.014 A apart (stated
    formula Na14Mn2Al2P9O24 for Na8Mn2Al2P6O24), which no DFT cell can hold; merging restores the
    real crystal. Pairs of different elements are left alone for check_structure to refuse.
    """
    centers, points, _, _ = structure.get_neighbor_list(DUPLICATE_TOL)
    drop = sorted(
        {int(max(c, p)) for c, p in zip(centers, points)
         if c != p and structure[int(c)].species == structure[int(p)].species}
    )
    if drop:
        structure.remove_sites(drop)
    return len(drop)


def host_from_entry(entry: dict, *, name: str | None = None, max_sites: int = 2000) -> Host:
    """Host of one dataset-style entry ({"sys_name", "atoms", ...}), named by its host name."""
    sys_name = str(entry.get("sys_name", name or "entry"))
    label = name or sys_name
    if "atoms" not in entry or not isinstance(entry["atoms"], dict):
        raise HostInputError(label, "entry has no 'atoms' dict")
    try:
        structure = host_structure_from_entry(entry["atoms"], label)
    except HostInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed entries are one bad input each
        raise HostInputError(label, f"bad JARVIS atoms: {exc}") from None
    source: dict = {"kind": "dataset", "sys_name": sys_name, "host_name": host_name_of(sys_name)}
    merged = merge_duplicate_sites(structure)
    if merged:
        source["merged_duplicate_sites"] = merged
    return host_from_structure(structure, label, source, max_sites=max_sites)


@lru_cache(maxsize=1)
def _dataset_hosts() -> tuple[Host, ...]:
    seen: set[str] = set()
    hosts = []
    for split in SPLITS:
        for entry in _raw_entries(split):
            host_name = host_name_of(entry["sys_name"])
            if host_name in seen:
                continue
            seen.add(host_name)
            host = host_from_entry(entry, name=host_name)
            hosts.append(host)
    return tuple(hosts)


def dataset_hosts() -> list[Host]:
    """The 440 distinct hosts of all 619 entries (train then test; first entry of a host wins).

    Hosts are shared between calls (cached): copy ``structure`` before changing it.
    """
    return list(_dataset_hosts())
