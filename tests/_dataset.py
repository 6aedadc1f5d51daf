"""Dataset bands and their hosts for tests (a host = the band's host sites plus the ion put back)."""

from __future__ import annotations

from functools import lru_cache

from pymatgen.core import Structure

from screener.sources.dataset import load_bands


@lru_cache(maxsize=None)
def _bands() -> dict[str, Structure]:
    return {b.sys_name: b.band for split in ("train", "test") for b in load_bands(split)}


def dataset_band(sys_name: str) -> Structure:
    """A copy of the band stored for ``sys_name`` (first five sites = the hop)."""
    return _bands()[sys_name].copy()


def dataset_host(sys_name: str) -> tuple[Structure, str]:
    """Host of a dataset band: sites 5.. plus the ion at site 0, and at site 4 too if the host has
    other ions of that kind (a vacancy hop). Returns (host, working ion)."""
    band = dataset_band(sys_name)
    ion = band[0].specie.symbol
    rest = list(band)[5:]
    ends = [band[0], band[4]] if any(s.specie.symbol == ion for s in rest) else [band[0]]
    return Structure.from_sites(ends + rest, to_unit_cell=True), ion
