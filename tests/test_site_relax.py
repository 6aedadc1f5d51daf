"""CHGNet relaxation of the working ion at candidate sites, on real dataset frameworks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _dataset import dataset_band
from pymatgen.core import Structure

from screener.site_relax import RelaxSettings, relax_ion

torch.set_num_threads(1)


def _host_and_ends(sys_name: str) -> tuple[Structure, str, np.ndarray]:
    band = dataset_band(sys_name)
    return Structure.from_sites(list(band)[5:]), band[0].specie.symbol, band.frac_coords[[0, 4]]


def _dist(structure: Structure, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(a) - np.atleast_2d(b)
    d -= np.rint(d)
    return np.linalg.norm(d @ structure.lattice.matrix, axis=1)


def test_ion_relaxes_back_onto_the_dft_end_point():
    # empty layered delta-V2O5 (56 atoms), one Mg; the framework was relaxed around the DFT-NEB
    # initial end point. Pushed 0.4 A off it along four directions, the ion comes back to within
    # 0.1 A of it, every time to the same energy (merge_tol 0 keeps the five ions apart)
    host, ion, ends = _host_and_ends("d-V2O5_Mg")
    kicks = np.array([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4], [-0.23, -0.23, -0.23]])
    starts = host.lattice.get_fractional_coords(host.lattice.get_cartesian_coords(ends[0]) + kicks)
    assert np.all(_dist(host, starts[1:], ends[0]) > 0.35)
    out = relax_ion(host, ion, starts, settings=RelaxSettings(merge_tol=0.0))
    assert out.converged.all() and 0 < out.steps <= RelaxSettings().steps
    assert np.all(_dist(host, out.frac, ends[0]) < 0.1), _dist(host, out.frac, ends[0])
    assert np.ptp(out.energy) < 0.01


def test_relaxation_is_deterministic_and_cached(tmp_path):
    host, ion, ends = _host_and_ends("d-V2O5_Mg")
    starts = (ends + np.array([0.03, -0.02, 0.01])) % 1.0
    settings = RelaxSettings(cache_dir=str(tmp_path))
    first = relax_ion(host, ion, starts, settings=settings)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = relax_ion(host, ion, starts)  # no cache: a fresh relaxation
    np.testing.assert_allclose(again.frac, first.frac, atol=1e-6)
    np.testing.assert_allclose(again.energy, first.energy, atol=1e-5)

    class NoModel:
        def __getattr__(self, name):
            raise AssertionError("the cached result should have been used")

    cached = relax_ion(host, ion, starts, settings=settings, model=NoModel())
    np.testing.assert_array_equal(cached.frac, first.frac)
    # other starts are another relaxation (the cache is keyed by them)
    with pytest.raises(AssertionError, match="cached result"):
        relax_ion(host, ion, (starts + 0.01) % 1.0, settings=settings, model=NoModel())


def test_ions_heading_for_one_site_are_merged():
    # two starts 0.1 A apart around the same Mg site: the later one stops on joining the first
    host, ion, ends = _host_and_ends("d-V2O5_Mg")
    p = ends[0]
    q = host.lattice.get_fractional_coords(host.lattice.get_cartesian_coords(p) + [0.1, 0.0, 0.0])
    out = relax_ion(host, ion, np.array([p, q]), settings=RelaxSettings(merge_tol=0.25))
    assert out.converged.all()
    assert _dist(host, out.frac[0], out.frac[1])[0] < 0.3


def test_no_points_no_work():
    host, ion, _ = _host_and_ends("d-V2O5_Mg")
    out = relax_ion(host, ion, np.zeros((0, 3)), model=object())
    assert out.frac.shape == (0, 3) and out.steps == 0
