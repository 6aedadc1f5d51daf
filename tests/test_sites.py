"""Insertion sites in empty hosts, on real dataset frameworks."""

from __future__ import annotations

import numpy as np
import pytest
from _dataset import dataset_band, dataset_host
from pymatgen.core import Lattice, Structure

from screener.hops import enumerate_hops
from screener.sites import (
    SITE_SYMPREC,
    SiteEnergy,
    SiteError,
    _fill,
    _nearest,
    candidate_sites,
    default_min_distance,
    insertion_hops,
    insertion_sites,
    site_hops,
)


def _empty_olivine() -> Structure:
    host, ion = dataset_host("O-FePO4_Li")  # charged olivine FePO4 with the band's one Li
    assert ion == "Li"
    host.remove_species(["Li"])
    return host


def _periodic_distance(structure: Structure, points: np.ndarray, p: np.ndarray) -> float:
    d = points - p
    d -= np.rint(d)
    return float(np.min(np.linalg.norm(d @ structure.lattice.matrix, axis=1)))


def test_olivine_fepo4_li_site_is_the_inversion_centre():
    fw = _empty_olivine()
    sites = candidate_sites(fw, "Li")
    assert [s.energy for s in sites] == sorted(s.energy for s in sites)
    # the olivine Li site (4a, Li-O ~2.2 A in six-fold coordination) is among the best three
    octa = []
    for _, orbit in sites[:3]:
        x = orbit[0]
        nbrs = fw.get_sites_in_sphere(fw.lattice.get_cartesian_coords(x), 2.5)
        room = min(n.nn_distance for n in nbrs)
        if len(nbrs) == 6 and all(n.specie.symbol == "O" for n in nbrs) and abs(room - 2.2) < 0.1:
            octa.append(orbit)
    assert len(octa) == 1
    # 16 positions = 4 per Pnma cell x 4 cells (the framework is a 1x2x2 supercell)
    assert len(octa[0]) == 16


def test_olivine_fepo4_b_axis_hop_found():
    fw = _empty_olivine()
    filled, hops = insertion_hops(fw, "O-FePO4", "Li", max_length=3.2, max_sites=3)
    assert filled.composition["Li"] > 0 and filled.composition["Fe"] == fw.composition["Fe"]
    b = fw.lattice.matrix[1] / np.linalg.norm(fw.lattice.matrix[1])
    along_b = []
    for h in hops:
        v = fw.lattice.get_cartesian_coords(np.subtract(h.esite, h.isite))
        if abs(abs(v @ b) - h.length) < 0.05:
            along_b.append(h)
    # the literature's olivine path: Li-Li along b, 3.0 A (dataset O-FePO4_Li: 2.998 A)
    assert any(abs(h.length - 3.0) < 0.05 for h in along_b)


@pytest.mark.parametrize(
    "sys_name",
    ["Mn2O4_Zn", "d-V2O5_Mg", "TiS2_Ca", "NiF3_Ca"],  # spinel oxide, layered V2O5, layered sulfide, perovskite fluoride
)
def test_charged_dataset_end_points_are_sites(sys_name):
    band = dataset_band(sys_name)
    ion = band[0].specie.symbol
    host = Structure.from_sites(list(band)[5:])
    assert ion not in {el.symbol for el in host.composition.elements}
    sites = candidate_sites(host, ion)
    points = np.vstack([s.orbit for s in sites])
    for end in (0, 4):  # both DFT-NEB end points are within 0.3 A of an insertion site
        assert _periodic_distance(host, points, band[end].frac_coords) < 0.3


def test_site_hops_are_the_hops_enumerate_hops_finds():
    # same hops, same keys as DistinctPathFinder's route on the filled host (the store dedupes by key)
    fw = _empty_olivine()
    filled, reps = _fill(fw, "Li", candidate_sites(fw, "Li")[:2])
    mine = site_hops(filled, "O-FePO4", "Li", reps, max_length=4.5)
    ref = enumerate_hops(filled, "O-FePO4", "Li", max_length=4.5)
    assert mine and {h.hop_key for h in mine} == {h.hop_key for h in ref}
    assert sorted(round(h.length, 3) for h in mine) == sorted(round(h.length, 3) for h in ref)


def test_sites_of_a_distorted_framework_are_one_orbit_and_keep_every_hop():
    # charged Mo6S8 (Ca): the band's framework was relaxed around the ion on one site, so at 0.1 A
    # its equivalent cavities are 26 distinct sites; at SITE_SYMPREC (0.2 A) they are a few orbits.
    # The hops must still be every hop of the filled host, as DistinctPathFinder finds them: an
    # orbit's sites are no longer images of its first one at the hops' tolerance (0.1 A), so
    # expanding hops only from that one (the shortcut taken when both tolerances agree) loses
    # three quarters of them (91 of 372)
    host, ion = dataset_host("Mo6S8_Ca")
    host.remove_species([ion])
    assert SITE_SYMPREC == 0.2
    loose, tight = candidate_sites(host, ion), candidate_sites(host, ion, symprec=0.1)
    assert len(loose) < len(tight) // 2
    filled, hops = insertion_hops(host, "Mo6S8_Ca", ion, max_length=4.5)
    ref = enumerate_hops(filled, "Mo6S8_Ca", ion, max_length=4.5)
    assert len(hops) == len(ref) and {h.hop_key for h in hops} == {h.hop_key for h in ref}


def test_site_energy_is_a_well_at_a_dft_site():
    # Mg at the relaxed end point of the d-V2O5 band: bound (negative energy), and pushing it
    # 0.4 A towards its nearest O costs energy (the Morse wall), as does pulling it 0.4 A away
    band = dataset_band("d-V2O5_Mg")
    host = Structure.from_sites(list(band)[5:])
    bvse = SiteEnergy(host, "Mg")
    x = band[0].frac_coords
    e0 = float(bvse.energy(x)[0])
    assert e0 < 0
    o = min((n for n in host.get_neighbors(band[0], 3.0) if n.specie.symbol == "O"), key=lambda n: n.nn_distance)
    u = (o.coords - band[0].coords) / o.nn_distance
    for sign in (1, -1):
        moved = host.lattice.get_fractional_coords(band[0].coords + sign * 0.4 * u)
        assert float(bvse.energy(moved)[0]) > e0


def test_host_that_already_holds_the_ion_is_refused():
    host, ion = dataset_host("O-LiFePO4")
    with pytest.raises(SiteError) as err:
        insertion_sites(host, ion, host_id="O-LiFePO4")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("O-LiFePO4:") and "already holds Li" in msg


def test_host_with_no_room_is_refused():
    dense = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    with pytest.raises(SiteError) as err:
        insertion_sites(dense, "K")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Cu:") and "no room for K" in msg


def test_max_sites_and_min_distance():
    fw = _empty_olivine()
    one = insertion_sites(fw, "Li", max_sites=1)
    assert 0 < one.composition["Li"] <= 32
    every = insertion_sites(fw, "Li")
    assert every.composition["Li"] > one.composition["Li"]
    # every inserted ion keeps its distance to the framework
    li = [s for s in every if s.specie.symbol == "Li"]
    room = _nearest(fw, np.array([s.frac_coords for s in li]))
    assert np.all(room >= default_min_distance("Li") - 1e-6)
    with pytest.raises(SiteError):
        insertion_sites(fw, "Li", min_distance=3.5)


def test_unknown_relax_mode_is_refused():
    with pytest.raises(ValueError, match="unknown relax 'dft'"):
        candidate_sites(_empty_olivine(), "Li", relax="dft")


@pytest.mark.slow  # ~150 s: CHGNet relaxes 9 candidate sites of a 34-atom cell, twice
def test_chgnet_relaxed_sites_ranked_by_energy_and_repeatable(tmp_path):
    # empty NASICON-like Fe2(SO4)3 (34 atoms), Ca: relaxed sites come lowest CHGNet energy first,
    # relative to the lowest (0 eV), every relaxed representative is in some kept orbit or merged
    # within the separation, and a re-run gives the same sites
    from screener.site_relax import RelaxSettings

    band = dataset_band("Fe2S3O12_Ca")
    host = Structure.from_sites(list(band)[5:])
    trace: dict = {}
    sites = candidate_sites(host, "Ca", relax="chgnet", trace=trace)
    energies = [s.energy for s in sites]
    assert sites and energies[0] == 0.0 and energies == sorted(energies)
    points = np.vstack([s.orbit for s in sites])
    for p in trace["relaxed"]:
        assert _periodic_distance(host, points, p) < 1.2  # MIN_SEPARATION
    # the DFT initial end point (the framework was relaxed around it) is a relaxed site
    assert _periodic_distance(host, points, band[0].frac_coords) < 0.3
    again = candidate_sites(host, "Ca", relax="chgnet", relax_settings=RelaxSettings(cache_dir=str(tmp_path)))
    assert len(again) == len(sites)
    for a, b in zip(sites, again):
        assert abs(a.energy - b.energy) < 1e-4 and np.allclose(a.orbit, b.orbit, atol=1e-5)


def test_site_models_get_their_relaxation_settings(monkeypatch):
    # "chgnet-framework" relaxes the cage within FRAMEWORK_RADIUS in cells >= FRAMEWORK_MIN_WIDTH;
    # settings given without a framework radius get that radius; an unknown model is one line
    import screener.sites as sites
    from screener.site_relax import RelaxSettings

    assert sites.site_relax_settings("none") is None
    assert sites.site_relax_settings("chgnet", cache_dir="c") == RelaxSettings(cache_dir="c")
    fw = sites.site_relax_settings("chgnet-framework")
    assert (fw.framework_radius, fw.min_width) == (sites.FRAMEWORK_RADIUS, sites.FRAMEWORK_MIN_WIDTH) and fw.framework_radius > 0
    with pytest.raises(ValueError, match="unknown site model 'dft'"):
        sites.site_relax_settings("dft")
    seen = []
    monkeypatch.setattr(sites, "_relaxed_sites", lambda *a: seen.append(a[-1]) or [])
    host = _empty_olivine()
    candidate_sites(host, "Li", relax="chgnet-framework")
    candidate_sites(host, "Li", relax="chgnet-framework", relax_settings=RelaxSettings(fmax=0.2))
    candidate_sites(host, "Li", relax="chgnet")
    assert seen[0] == fw
    assert (seen[1].fmax, seen[1].framework_radius) == (0.2, sites.FRAMEWORK_RADIUS)
    assert seen[2].framework_radius == 0


@pytest.mark.parametrize("sys_name", ["Na2TcO3_1", "Na2PtO3_1"])
def test_framework_cations_without_bond_valence_parameters(sys_name):
    # Tc and Pt have no O'Keeffe-Brese parameters: their charge falls back to a formal one instead
    # of a KeyError, and the emptied host's Na sites are still found and ranked
    host, ion = dataset_host(sys_name)
    na_sites = np.array([s.frac_coords for s in host if s.specie.symbol == ion])
    host.remove_species([ion])
    sites = candidate_sites(host, ion)
    assert sites and all(np.isfinite(s.energy) for s in sites)
    points = np.vstack([s.orbit for s in sites])
    assert min(_periodic_distance(host, points, p) for p in na_sites) < 0.3
