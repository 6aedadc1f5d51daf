"""Insertion sites in empty hosts, on real dataset frameworks."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from _dataset import dataset_host
from screener.sites import SiteError, candidate_sites, default_min_distance, insertion_hops, insertion_sites


def _empty_olivine() -> Structure:
    host, ion = dataset_host("O-FePO4_Li")  # charged olivine FePO4 with the band's one Li
    assert ion == "Li"
    host.remove_species(["Li"])
    return host


def test_olivine_fepo4_li_site_is_the_inversion_centre():
    fw = _empty_olivine()
    sites = candidate_sites(fw, "Li")
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
    # every inserted ion keeps its distance to the framework
    li = [s for s in one if s.specie.symbol == "Li"]
    for s in li:
        nearest = min(n.nn_distance for n in one.get_neighbors(s, 3.0) if n.specie.symbol != "Li")
        assert nearest >= default_min_distance("Li") - 1e-6
    with pytest.raises(SiteError):
        insertion_sites(fw, "Li", min_distance=3.5)
