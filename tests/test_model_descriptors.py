"""Descriptors of real dataset bands: shape, finiteness, order and direction independence, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymatgen.core import Structure

from screener.model.descriptor_model import load_split
from screener.model.descriptors import DESCRIPTOR_NAMES, band_descriptors, descriptor_matrix


@pytest.fixture(scope="module")
def bands() -> list[Structure]:
    return load_split("test")[0]


def _shuffled_host(band: Structure, seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    host = list(band.sites[5:])
    return Structure.from_sites(list(band.sites[:5]) + [host[i] for i in rng.permutation(len(host))])


def test_shape_and_finite(bands):
    X = descriptor_matrix(bands[:10])
    assert X.shape == (10, len(DESCRIPTOR_NAMES))
    assert np.isfinite(X).all()
    assert len(set(DESCRIPTOR_NAMES)) == len(DESCRIPTOR_NAMES)
    hop = X[:, DESCRIPTOR_NAMES.index("hop_length")]
    assert ((hop > 1.0) & (hop < 10.0)).all()
    # the bottleneck is never wider than the space around the end points
    assert (X[:, DESCRIPTOR_NAMES.index("bottleneck_anion")]
            <= X[:, DESCRIPTOR_NAMES.index("d_anion_end_max")] + 1e-9).all()


def test_host_order_does_not_matter(bands):
    for band in bands[:5]:
        np.testing.assert_allclose(band_descriptors(_shuffled_host(band, 1)), band_descriptors(band),
                                   rtol=1e-10, atol=1e-10)


def test_hop_direction_does_not_matter(bands):
    band = bands[0]
    reversed_band = Structure.from_sites(list(band.sites[:5])[::-1] + list(band.sites[5:]))
    np.testing.assert_allclose(band_descriptors(reversed_band), band_descriptors(band),
                               rtol=1e-9, atol=1e-9)


def test_supercell_does_not_matter(bands):
    """The same hop built in a doubled cell (one ion removed in all) gives the same descriptors."""
    for band in bands[:3]:
        full = Structure.from_sites(band.sites[:1] + band.sites[5:])
        full.make_supercell([2, 1, 1])
        hop = np.array([s.frac_coords * [0.5, 1, 1] for s in band.sites[:5]])
        d = full.lattice.get_all_distances(hop[:1], full.frac_coords)[0]
        keep = np.flatnonzero(d > 1e-6)
        assert len(keep) == len(full) - 1
        big = Structure(full.lattice, [band[0].specie] * 5 + [full[i].specie for i in keep],
                        np.vstack([hop, full.frac_coords[keep]]))
        np.testing.assert_allclose(band_descriptors(big), band_descriptors(band), rtol=1e-9,
                                   atol=1e-9)


def test_rotation_does_not_matter(bands):
    """The same crystal in a rotated frame (the widest-path tube is laid out from the lattice, not
    from the Cartesian axes) gives the same descriptors."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("zyx", [37.0, -21.0, 64.0], degrees=True).as_matrix()
    for band in bands[:3]:
        turned = Structure(band.lattice.matrix @ rot.T, band.species, band.frac_coords)
        np.testing.assert_allclose(band_descriptors(turned), band_descriptors(band), rtol=1e-8, atol=1e-8)


def test_large_band_is_fast():
    train = load_split("train")[0]
    band = max(train, key=len)
    assert len(band) > 1000
    best = min(_timed(band) for _ in range(3))
    assert best < 0.1, f"{len(band)} sites took {best * 1e3:.0f} ms"


def _timed(band: Structure) -> float:
    t0 = time.perf_counter()
    band_descriptors(band)
    return time.perf_counter() - t0


def test_bad_bands_raise_one_line(bands):
    with pytest.raises(ValueError, match="need >= 6") as err:
        band_descriptors(Structure.from_sites(bands[0].sites[:5]))
    assert "\n" not in str(err.value)
    mixed = bands[0].copy()
    mixed.replace(2, "Zr")
    with pytest.raises(ValueError, match="first five sites are not one ion"):
        band_descriptors(mixed)
    collapsed = bands[0].copy()  # all five hop sites on the initial one: no hop at all
    for i in range(1, 5):
        collapsed.replace(i, collapsed[0].specie, collapsed[0].frac_coords)
    with pytest.raises(ValueError, match="end points 0.00 A apart, not a hop") as err:
        band_descriptors(collapsed)
    assert "\n" not in str(err.value)
    disordered = bands[0].copy()
    disordered.replace(7, {"O": 0.5, "F": 0.5})
    with pytest.raises(ValueError, match="disordered"):
        band_descriptors(disordered)


def _detour_band(offset: float) -> Structure:
    """A 4 A Li hop along x in a 12 A cubic cell, one Mg `offset` A off its midpoint (along y) and
    O far away: the straight line passes the Mg at `offset`, a bent path can keep farther."""
    a = 12.0
    hop = [[4.0 + t, 6.0, 6.0] for t in np.linspace(0.0, 4.0, 5)]
    host = [("Mg", [6.0, 6.0 + offset, 6.0]), ("O", [6.0, 6.0, 0.5]), ("O", [1.0, 1.0, 1.0])]
    return Structure(np.eye(3) * a, ["Li"] * 5 + [s for s, _ in host], hop + [c for _, c in host],
                     coords_are_cartesian=True)


def test_widest_path_goes_around_an_atom_on_the_line():
    names = DESCRIPTOR_NAMES
    near = band_descriptors(_detour_band(0.3))
    # the straight line passes 0.3 A from the Mg; inside the 1.2 A tube a path keeps ~1.5 A from it
    assert abs(near[names.index("bottleneck_cation")] - 0.3) < 1e-6
    assert 1.4 < near[names.index("widest_path_cation")] <= 1.5 + 1e-6
    # a Mg 3 A off the line: the best path is never narrower than the straight line
    far = band_descriptors(_detour_band(3.0))
    assert far[names.index("widest_path_cation")] >= far[names.index("bottleneck_cation")] - 1e-9
    # nor for the anions (the nearest O 5.5 A below the line)
    assert near[names.index("widest_path_anion")] >= near[names.index("bottleneck_anion")] - 1e-9
