"""Bands built from real dataset hosts have the dataset's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from screener.bands import BandError, band_endpoints, band_from_doc, band_to_doc, build_band
from screener.hops import Hop, enumerate_hops, hop_key

from _dataset import dataset_band, dataset_host


def dataset_hop_length(sys_name: str) -> float:
    f = dataset_band(sys_name).frac_coords
    return float(np.linalg.norm(dataset_band(sys_name).lattice.get_cartesian_coords(f[4] - f[0])))


def _ion_count(s, ion):
    return sum(site.specie.symbol == ion for site in s)


@pytest.fixture(scope="module")
def olivine():
    host, ion = dataset_host("O-LiFePO4")
    return host, ion, enumerate_hops(host, "O-LiFePO4", ion)


def _check_layout(band, host, hop, min_length):
    ion = hop.working_ion
    f = band.frac_coords[:5]
    steps = np.diff(f, axis=0)
    assert np.abs(steps - steps[0]).max() < 1e-12  # equal steps in fractional coordinates
    assert [s.specie.symbol for s in band[:5]] == [ion] * 5
    # straight minimum-image hop of the right length
    assert abs(np.linalg.norm(band.lattice.get_cartesian_coords(f[4] - f[0])) - hop.length) < 1e-9
    assert abs(band.lattice.get_distance_and_image(f[0], f[4])[0] - hop.length) < 1e-9
    assert min(band.lattice.abc) >= min_length - 1e-9
    ncell = round(band.lattice.volume / host.lattice.volume)
    assert _ion_count(band, ion) == ncell * _ion_count(host, ion) - 2 + 5  # vacancy hop
    other = [s.specie.symbol for s in band if s.specie.symbol != ion]
    assert len(other) == ncell * (len(host) - _ion_count(host, ion))
    # nothing sits on top of the migrating ion's end points
    rest = band.frac_coords[5:]
    for p in (f[0], f[4]):
        assert band.lattice.get_all_distances(p[None, :], rest).min() > 1.0


def test_olivine_band_layout(olivine):
    host, ion, hops = olivine
    band = build_band(host, hops[0])
    _check_layout(band, host, hops[0], 8.0)
    assert len(band) == len(host) + 3  # the 9.3 x 11.9 x 10.2 A host cell is already large enough
    assert abs(hops[0].length - dataset_hop_length("O-LiFePO4")) < 1e-6


@pytest.mark.parametrize("sys_name", ["LiCo2O4", "Ca2.5V2P3O12", "O3-NaCoO2"])
def test_band_of_dataset_hop(sys_name):
    host, ion = dataset_host(sys_name)
    hops = enumerate_hops(host, sys_name, ion)
    ref = dataset_band(sys_name)
    key = hop_key(host, sys_name, ion, ref.frac_coords[0], ref.frac_coords[4], 0.1)
    hop = next(h for h in hops if h.hop_key == key)
    band = build_band(host, hop)
    _check_layout(band, host, hop, 8.0)
    # the representative may be another copy of the dataset hop, equal within symprec
    assert abs(hop.length - dataset_hop_length(sys_name)) < 0.05


def test_larger_min_length(olivine):
    host, _, hops = olivine
    band = build_band(host, hops[1], min_length=12.0)
    _check_layout(band, host, hops[1], 12.0)


def test_max_sites(olivine):
    host, _, hops = olivine
    with pytest.raises(BandError, match=r"^O-LiFePO4:Li:[0-9a-f]{12}: band would have 115 sites .* > max_sites 100$"):
        build_band(host, hops[0], max_sites=100)


def test_hop_not_in_host(olivine):
    host, _, hops = olivine
    other = host.copy()
    other.remove_species(["Li"])
    other.append("Li", [0.0, 0.0, 0.0])
    with pytest.raises(BandError, match="host has no Li site at the initial site"):
        build_band(other, hops[0])


def test_doc_round_trip(olivine):
    host, _, hops = olivine
    band = build_band(host, hops[1])
    doc = json.loads(json.dumps(band_to_doc(band)))
    assert set(doc) == {"lattice", "species", "frac_coords"}
    back = band_from_doc(doc)
    assert [s.specie.symbol for s in back] == [s.specie.symbol for s in band]
    assert np.array_equal(back.frac_coords, band.frac_coords)  # unwrapped end point kept exactly
    assert np.allclose(back.lattice.matrix, band.lattice.matrix, atol=0, rtol=0)
    with pytest.raises(BandError, match="bad band document"):
        band_from_doc({"lattice": [[1, 0, 0]], "species": ["Li"], "frac_coords": [[0, 0, 0]]})


@pytest.mark.parametrize("sys_name", ["O-LiFePO4", "O3-NaCoO2"])
def test_rebuilds_the_dataset_band(sys_name):
    # the dataset's own hop, in its own (already large) cell, gives back the dataset band
    ref = dataset_band(sys_name)
    host, ion = dataset_host(sys_name)
    f = ref.frac_coords
    shift = np.floor(f[0])
    key = hop_key(host, sys_name, ion, f[0], f[4], 0.1)
    hop = Hop(key, sys_name, ion, list(f[0] - shift), list(f[4] - shift), dataset_hop_length(sys_name), 0.1)
    band = build_band(host, hop, min_length=1.0)
    assert len(band) == len(ref) and band.lattice == ref.lattice
    assert np.allclose(band.frac_coords[:5] - band.frac_coords[0], f[:5] - f[0], atol=1e-12)
    d = band.lattice.get_all_distances(band.frac_coords[5:], f[5:])
    assert np.all(d.min(axis=1) < 1e-6) and np.all(d.min(axis=0) < 1e-6)
    assert [s.specie.symbol for s in band[5:]] == [ref[5 + int(k)].specie.symbol for k in d.argmin(axis=1)]


def test_band_endpoints(olivine):
    """End points keep the moving ion first and the host unchanged; the ion sits on band sites 0 / 4."""
    structure, _, hops = olivine
    band = build_band(structure, hops[0])
    initial, final = band_endpoints(band)
    assert len(initial) == len(final) == len(band) - 4
    assert initial[0].specie.symbol == final[0].specie.symbol == hops[0].working_ion
    assert np.allclose(initial.frac_coords[0], band.frac_coords[0])
    assert np.allclose(final.frac_coords[0], band.frac_coords[4])
    assert np.allclose(initial.frac_coords[1:], band.frac_coords[5:])
    assert initial.composition == final.composition
    broken = band.copy()
    broken.replace(2, "Fe")
    with pytest.raises(BandError, match="first five sites"):
        band_endpoints(broken)
