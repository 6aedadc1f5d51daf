"""Hops on real hosts of the shipped dataset: keys (stable over order, cell and symprec),
de-duplication, time box, hop network, percolating max_length."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from _dataset import dataset_band, dataset_host
from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from test_hop_keys_slow import key_mismatches, key_variants

from screener.hops import (
    AUTO_CAP,
    AUTO_MARGIN,
    Hop,
    HopError,
    distinct_hops,
    enumerate_hops,
    equivalent_hop_edges,
    hop_key,
    percolation_length,
)
from screener.ranking import network_dimensionality

#: spinel, olivine, layered (Na), NASICON
FAMILIES = ["LiCo2O4", "O-LiFePO4", "O3-NaCoO2", "Ca2.5V2P3O12"]


def dataset_hop_length(sys_name: str) -> float:
    band = dataset_band(sys_name)
    return float(np.linalg.norm(band.lattice.get_cartesian_coords(band.frac_coords[4] - band.frac_coords[0])))


@pytest.fixture(scope="module")
def olivine() -> tuple[Structure, str, list[Hop]]:
    host, ion = dataset_host("O-LiFePO4")
    return host, ion, enumerate_hops(host, "O-LiFePO4", ion)


def test_olivine_hops_match_dataset(olivine):
    host, _, hops = olivine
    assert [round(h.length, 2) for h in hops] == sorted(round(h.length, 2) for h in hops)
    assert abs(hops[0].length - dataset_hop_length("O-LiFePO4")) < 0.01  # the b-channel hop
    # 16 Li in the cell, each with two b-channel neighbours -> 16 equivalent shortest hops
    assert hops[0].multiplicity == 16
    assert len({h.hop_key for h in hops}) == len(hops)
    for h in hops:
        assert all(0 <= x < 1 for x in h.isite)
        vec = host.lattice.get_cartesian_coords(np.subtract(h.esite, h.isite))
        assert abs(np.linalg.norm(vec) - h.length) < 1e-9
        assert h.hop_key.startswith("O-LiFePO4:Li:") and len(h.hop_key.split(":")[-1]) == 12


@pytest.mark.parametrize(
    "sys_name", ["LiCo2O4", "LiCoO2_1", "Ca2.5V2P3O12", "O3-NaCoO2"]
)  # spinel, layered Li, NASICON, layered Na
def test_dataset_hop_is_found(sys_name):
    host, ion = dataset_host(sys_name)
    hops = enumerate_hops(host, sys_name, ion)
    band = dataset_band(sys_name)
    key = hop_key(host, sys_name, ion, band.frac_coords[0], band.frac_coords[4], 0.1)
    assert key in {h.hop_key for h in hops}
    assert any(abs(h.length - dataset_hop_length(sys_name)) < 0.1 for h in hops)


def test_key_invariant_under_site_permutation(olivine):
    host, ion, hops = olivine
    rng = np.random.default_rng(0)
    shuffled = Structure.from_sites([host[int(k)] for k in rng.permutation(len(host))])
    assert {h.hop_key for h in enumerate_hops(shuffled, "O-LiFePO4", ion)} == {h.hop_key for h in hops}
    for h in hops:
        assert hop_key(shuffled, "O-LiFePO4", ion, h.isite, h.esite, 0.1) == h.hop_key


def test_key_invariant_under_reversal_translation_and_symmetry(olivine):
    host, ion, hops = olivine
    ops = SpacegroupAnalyzer(host, symprec=0.1).get_symmetry_operations(cartesian=False)
    for h in hops:
        i, e = np.array(h.isite), np.array(h.esite)
        assert hop_key(host, "O-LiFePO4", ion, e, i, 0.1) == h.hop_key
        assert hop_key(host, "O-LiFePO4", ion, i + [1, -2, 0], e + [1, -2, 0], 0.1) == h.hop_key
        for op in ops[:: max(1, len(ops) // 8)]:
            assert hop_key(host, "O-LiFePO4", ion, op.operate(i), op.operate(e), 0.1) == h.hop_key


def test_distinct_hops_of_equal_length_get_different_keys():
    host, ion = dataset_host("Li3OCl_1")  # antiperovskite with a vacancy: two 3.908 A hops
    hops = enumerate_hops(host, "Li3OCl_1", ion)
    assert len({h.hop_key for h in hops}) == len(hops)
    equal = [h for h in hops if abs(h.length - 3.908) < 0.001]
    assert len(equal) == 2 and equal[0].hop_key != equal[1].hop_key
    # and they are different paths: their sets of equivalent edges in the cell don't overlap
    e0, e1 = ({e[:3] for e in equivalent_hop_edges(host, ion, [h])} for h in equal)
    assert e0 and e1 and not e0 & e1


def test_symprec_merges_copies_that_differ_by_relaxation():
    # relaxed spinel: DistinctPathFinder's MigrationHop compares at its 0.001 default and returns
    # four 3.42-3.43 A paths; at symprec 0.1 (Fd-3m) they are one hop, 16 Li x 4 / 2 = 32 copies
    host, ion = dataset_host("LiCo2O4")
    raw = DistinctPathFinder(host, ion, max_path_length=5.0, symprec=0.1).get_paths()
    hops = enumerate_hops(host, "LiCo2O4", ion)
    assert len(raw) > len(hops) == 1
    assert hops[0].multiplicity == 32


def test_reversed_duplicates_are_merged():
    # a layered host with Li on two orbits: DistinctPathFinder returns A->B and B->A separately
    host, ion = dataset_host("LiCoO2_1")
    hops = enumerate_hops(host, "LiCoO2_1", ion)
    keys = [h.hop_key for h in hops]
    assert len(keys) == len(set(keys))
    raw = DistinctPathFinder(host, ion, max_path_length=5.0, symprec=0.1).get_paths()
    assert len(hops) < len(raw)  # 148 raw paths -> 88 distinct hops
    for h in hops:
        assert hop_key(host, "LiCoO2_1", ion, h.esite, h.isite, h.symprec) == h.hop_key



def test_distinct_hops_merges_reversed_and_translated_copies(olivine):
    # each enumerated hop fed back three times (as is, reversed, translated by a lattice vector,
    # one hop's orbit at a time): one Hop per orbit, exactly enumerate_hops' answer
    host, ion, hops = olivine
    assert len(hops) == 2  # the b-channel hop and a 4.65 A one
    shift = np.array([1.0, -1.0, 2.0])
    cands = [
        c for h in hops
        for c in ((h.length, h.esite, h.isite), (h.length, h.isite, h.esite), (h.length, np.add(h.isite, shift), np.add(h.esite, shift)))
    ]
    assert distinct_hops(host, "O-LiFePO4", ion, cands) == hops
    assert distinct_hops(host, "O-LiFePO4", ion, cands, skip_seen=True) == hops
    # representative="candidate": each hop as its first candidate (here: reversed)
    as_given = distinct_hops(host, "O-LiFePO4", ion, cands, representative="candidate")
    assert [(h.hop_key, h.multiplicity) for h in as_given] == [(h.hop_key, h.multiplicity) for h in hops]
    assert [(h.isite, h.esite) for h in as_given] == [(h.esite, h.isite) for h in hops]
    # a site to itself is no hop; to its own lattice image it is one
    p = hops[0].isite
    assert distinct_hops(host, "O-LiFePO4", ion, [(0.0, p, p)]) == []
    (image_hop,) = distinct_hops(host, "O-LiFePO4", ion, [(0.0, p, p), (host.lattice.a, p, np.add(p, [1, 0, 0]))])
    assert abs(image_hop.length - host.lattice.a) < 1e-9 and image_hop.hop_key not in {h.hop_key for h in hops}
    with pytest.raises(ValueError, match=r"^O-LiFePO4: unknown hop representative 'first'"):
        distinct_hops(host, "O-LiFePO4", ion, cands, representative="first")

def test_no_ion_raises_one_line():
    host, _ = dataset_host("O-LiFePO4")
    with pytest.raises(HopError) as err:
        enumerate_hops(host, "O-FePO4-x", "Na")
    msg = str(err.value)
    assert msg.startswith("O-FePO4-x: no Na sites") and "\n" not in msg


def test_no_hop_within_max_length():
    host, ion = dataset_host("O-LiFePO4")
    with pytest.raises(HopError, match=r"^O-LiFePO4: no Li-Li hop within 1 A \(16 Li site\(s\) in the cell"):
        enumerate_hops(host, "O-LiFePO4", ion, max_length=1.0)


def test_timeout_really_interrupts():
    host, ion = dataset_host("LiCoO2_1")  # ~1 s of work
    t0 = time.perf_counter()
    with pytest.raises(HopError, match=r"^LiCoO2_1: hop enumeration timed out after 0.01 s$"):
        enumerate_hops(host, "LiCoO2_1", ion, timeout_s=0.01)
    assert time.perf_counter() - t0 < 0.5


def test_hop_doc_round_trip(olivine):
    _, _, hops = olivine
    doc = hops[0].to_doc()
    assert doc["_id"] == hops[0].hop_key
    assert set(doc) == {"_id", "hop_key", "host_id", "working_ion", "isite", "esite", "length", "symprec", "multiplicity"}
    assert Hop.from_doc(json.loads(json.dumps(doc))) == hops[0]
    with pytest.raises(HopError, match="bad hop document"):
        Hop.from_doc({"_id": "x"})


def test_equivalent_hop_edges_form_the_b_channels(olivine):
    host, ion, hops = olivine
    edges = equivalent_hop_edges(host, ion, hops[:1])
    assert len(edges) == hops[0].multiplicity == 16
    degree = {}
    for i, j, image, key in edges:
        assert key == hops[0].hop_key
        assert host[i].specie.symbol == host[j].specie.symbol == ion
        d = np.linalg.norm(host.lattice.get_cartesian_coords(host.frac_coords[j] + image - host.frac_coords[i]))
        assert abs(d - hops[0].length) < 0.02
        degree[i] = degree.get(i, 0) + 1
        degree[j] = degree.get(j, 0) + 1
    assert set(degree.values()) == {2}  # every Li sits in a 1D chain
    all_edges = equivalent_hop_edges(host, ion, hops)
    assert len(all_edges) == sum(h.multiplicity for h in hops)


def test_timeout_fallback_without_child_process(monkeypatch):
    # inside a daemonic process (e.g. a Dask nanny worker) no child may be forked: SIGALRM instead
    import screener.hops as hops_mod

    monkeypatch.setattr(hops_mod, "_fork_ok", lambda: False)
    host, ion = dataset_host("LiCoO2_1")
    t0 = time.perf_counter()
    with pytest.raises(HopError, match="timed out after 0.05 s"):
        enumerate_hops(host, "LiCoO2_1", ion, timeout_s=0.05)
    assert time.perf_counter() - t0 < 0.5
    olivine_host, _ = dataset_host("O-LiFePO4")
    assert enumerate_hops(olivine_host, "O-LiFePO4", "Li")[0].multiplicity == 16  # unboxed result


# ----------------------------------------------------------------------------- stable identity


@pytest.mark.parametrize("sys_name", FAMILIES)
def test_keys_invariant_over_order_cell_and_symprec(sys_name):
    host, ion = dataset_host(sys_name)
    variants = key_variants(host, sys_name, ion)
    assert not isinstance(variants["symprec 0.1"], str) and variants["symprec 0.1"]
    assert {"permuted sites", "2x1x1 primitive", "symprec 0.01", "symprec 0.2"} <= set(variants)
    assert key_mismatches(host, sys_name, ion) == []


def test_relaxed_spinel_gives_one_hop_at_every_symprec():
    # DistinctPathFinder at 0.01 tells the four relaxed copies of the 8a-16c-8a hop apart; the
    # identity is decided at HOP_SYMPREC, so every symprec gives the one Fd-3m hop and its key
    host, ion = dataset_host("LiCo2O4")
    ref = enumerate_hops(host, "LiCo2O4", ion)
    assert len(DistinctPathFinder(host, ion, max_path_length=5.0, symprec=0.01).get_paths()) > 1
    for sp in (0.01, 0.05, 0.2):
        hops = enumerate_hops(host, "LiCo2O4", ion, symprec=sp)
        assert [(h.hop_key, h.multiplicity, h.symprec) for h in hops] == [(ref[0].hop_key, 32, 0.1)]


def test_keys_ignore_noise_that_averages_out():
    # a 2x1x1 olivine whose two halves are displaced by +d and -d (random, 1e-3 A per site): the
    # host averaged over its symmetry operations is the exact one, so every key is unchanged,
    # although hashing the raw distances (0.02 A bins) would flip many of them
    host, ion = dataset_host("O-LiFePO4")
    ref = {h.hop_key for h in enumerate_hops(host, "O-LiFePO4", ion)}
    sc = host * (2, 1, 1)  # lists the two copies of each site one after the other
    d = np.random.default_rng(1).normal(scale=1e-3, size=(len(host), 3))
    noisy = Structure.from_sites(sc)
    for k, site in enumerate(sc):
        shift = d[k // 2] if k % 2 == 0 else -d[k // 2]
        noisy.replace(k, site.species, site.coords + shift, coords_are_cartesian=True)
    assert np.allclose(sc.frac_coords[0] + [0.5, 0, 0], sc.frac_coords[1])
    assert {h.hop_key for h in enumerate_hops(noisy, "O-LiFePO4", ion)} == ref


# ----------------------------------------------------------------------------- percolating max_length


def _ion_network_dimensionality(host: Structure, ion: str, radius: float) -> int:
    """pymatgen's Larsen dimensionality of the graph of all ion-ion pairs within radius."""
    ions = Structure.from_sites([s for s in host if s.specie.symbol == ion])
    c, p, images, _ = ions.get_neighbor_list(radius)
    edges = [(int(i), int(j), tuple(int(x) for x in im), "") for i, j, im in zip(c, p, images)]
    return network_dimensionality(ions, edges)


def test_percolation_length_of_olivine():
    # Li in olivine: 1D channels along b (3.0 A hops); the network first spans 3D at 5.62 A
    host, ion = dataset_host("O-LiFePO4")
    length, dim = percolation_length(host, ion)
    assert dim == 3 and 5.0 < length < AUTO_CAP
    assert _ion_network_dimensionality(host, ion, dataset_hop_length("O-LiFePO4") + 0.05) == 1
    assert _ion_network_dimensionality(host, ion, length - 1e-3) < 3
    assert _ion_network_dimensionality(host, ion, length + 1e-3) == 3
    assert percolation_length(host, ion, cap=4.0) == (pytest.approx(dataset_hop_length("O-LiFePO4"), abs=0.01), 1)
    assert percolation_length(host, ion, cap=2.0) == (None, 0)


@pytest.mark.parametrize("sys_name", FAMILIES)
def test_auto_max_length_keeps_the_fixed_hops_and_percolates(sys_name):
    host, ion = dataset_host(sys_name)
    fixed = enumerate_hops(host, sys_name, ion)
    auto = enumerate_hops(host, sys_name, ion, max_length="auto")
    length, dim = percolation_length(host, ion)
    assert dim == 3 and max(h.length for h in auto) <= length + AUTO_MARGIN + 1e-6
    assert {h.hop_key for h in fixed} <= {h.hop_key for h in auto}  # same hops, same keys
    # the auto hops and their symmetric copies alone connect the host in 3D
    assert network_dimensionality(host, equivalent_hop_edges(host, ion, auto)) == 3


def test_auto_max_length_on_spinel_is_the_one_percolating_hop():
    host, ion = dataset_host("LiCo2O4")
    auto = enumerate_hops(host, "LiCo2O4", ion, max_length="auto")
    assert len(auto) == 1 and abs(auto[0].length - dataset_hop_length("LiCo2O4")) < 0.02


def test_bad_max_length_raises_one_line():
    host, ion = dataset_host("O-LiFePO4")
    with pytest.raises(HopError, match=r"^O-LiFePO4: max_length must be a positive number of Angstrom or 'auto', not 'far'$"):
        enumerate_hops(host, "O-LiFePO4", ion, max_length="far")
