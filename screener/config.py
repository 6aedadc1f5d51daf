"""One typed configuration object for a screening campaign.

Everything a user can tune lives here, so a campaign document records exactly what it ran with.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs

#: Working ions the shipped dataset (and so the shipped model) covers.
KNOWN_IONS: tuple[str, ...] = ("Li", "Na", "K", "Rb", "Mg", "Ca", "Sr", "Zn", "Al")

#: Insertion-site models of empty hosts (screener.sites.RELAX_MODES, kept here so the config stays light).
SITE_MODELS: tuple[str, ...] = ("none", "chgnet", "chgnet-framework")

#: Threshold of Devi et al.: E_m <= 0.65 eV gives usable rates for nano-particles at C/2, 300 K.
DEFAULT_THRESHOLD_EV = 0.65


def screener_home() -> Path:
    """Folder for the embedded store, logs and launch dirs (``$SCREENER_HOME`` overrides it)."""
    env = os.environ.get("SCREENER_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("screener"))


@dataclass
class ScreenerConfig:
    """Settings of one campaign; stored with the campaign document."""

    working_ion: str = "Li"
    """The migrating ion, or "auto": every known ion each host contains."""
    threshold_ev: float = DEFAULT_THRESHOLD_EV
    """Hops with a predicted E_m at or below this are flagged (eV)."""
    chunk_size: int = 50
    """Hosts per workflow; FireWorks slows down past a few thousand Fireworks per workflow."""
    max_hop_length: float | str = 5.0
    """Longest hop enumerated (Angstrom), or "auto": per host, the shortest length at which the ion's
    hop network percolates (3D if it can within 6.5 A) plus 0.25 A (screener.hops.percolation_length)."""
    insertion: bool = False
    """Also screen hosts without the working ion (charged, empty frameworks): hops between its
    insertion sites (screener.sites). Needs an explicit working ion (not "auto")."""
    site_model: str = "none"
    """Insertion sites of empty hosts (with insertion): "none" (cavity centres, ~1 s per host),
    "chgnet" (where CHGNet relaxes the ion from each, framework fixed) or "chgnet-framework" (with
    the framework around the ion relaxing too; minutes per host). See screener.sites.candidate_sites."""
    symprec: float = 0.1
    """Symmetry tolerance DistinctPathFinder searches hosts that hold the ion at (hops are told apart
    and keyed at screener.hops.HOP_SYMPREC, and empty hosts' insertion sites made at
    screener.sites.SITE_SYMPREC, whatever it is, so keys don't move with it)."""
    hop_timeout_s: float = 60.0
    """A host whose hop enumeration runs longer is recorded as failed."""
    band_min_length: float = 8.0
    """Bands are built in a supercell whose lattice lengths are at least this (Angstrom)."""
    max_band_sites: int = 1200
    """Bands larger than this are refused (the model was trained on 33-1027 sites)."""
    batch_size: int = 64
    """Bands per Dask task."""
    model: str = "default"
    """Name of a shipped model or a path to a checkpoint."""
    gpu: bool = False
    """Route inference to GPU workers (`_category: gpu`, Dask resource GPU=1)."""

    def __post_init__(self) -> None:
        if self.working_ion != "auto" and self.working_ion not in KNOWN_IONS:
            raise ValueError(
                f"unknown working ion {self.working_ion!r}; known: {', '.join(KNOWN_IONS)} or auto"
            )
        if self.insertion and self.working_ion == "auto":
            raise ValueError("insertion needs an explicit working ion, not auto")
        if self.site_model not in SITE_MODELS:
            raise ValueError(f"unknown site_model {self.site_model!r}; known: {', '.join(SITE_MODELS)}")
        if isinstance(self.max_hop_length, str):
            if self.max_hop_length.strip().lower() != "auto":
                raise ValueError(f"max_hop_length must be a length in Angstrom or auto, got {self.max_hop_length!r}")
            self.max_hop_length = "auto"
        for name in ("threshold_ev", "hop_timeout_s") + (() if self.max_hop_length == "auto" else ("max_hop_length",)):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("chunk_size", "batch_size", "max_band_sites"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not 0 < self.symprec <= 1:
            raise ValueError(f"symprec must be in (0, 1], got {self.symprec!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScreenerConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
