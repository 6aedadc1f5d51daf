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


def test_the_cage_relaxing_with_the_ion_lowers_its_energy():
    # empty Fe2(SO4)3 (34 atoms), Ca near the final DFT end point, where the framework (relaxed
    # around the initial one) pushes it with 1.9 eV/A: with the atoms within 4.5 A relaxing too it
    # converges within 0.3 A of the end point, about 1 eV lower than the ion alone gets (~7 s)
    host, ion, ends = _host_and_ends("Fe2S3O12_Ca")
    start = host.lattice.get_fractional_coords(host.lattice.get_cartesian_coords(ends[1]) + [0.05, -0.05, 0.05])
    fixed = relax_ion(host, ion, start)
    moving = relax_ion(host, ion, start, settings=RelaxSettings(framework_radius=4.5))
    assert moving.converged.all() and _dist(host, moving.frac, ends[1])[0] < 0.3
    assert moving.energy[0] < fixed.energy[0] - 0.5


@pytest.mark.slow  # ~50 s
def test_framework_relaxing_with_the_ion_reaches_an_end_point_the_fixed_framework_cannot():
    # empty NASICON V2(PO4)3, Ca at the final DFT end point (1.5 eV/A on it): with the framework
    # fixed the ion slides 0.7 A away, with the atoms within 4.5 A relaxing it stays within 0.3 A
    host, ion, ends = _host_and_ends("Ca0.5V2P3O12")
    start = host.lattice.get_fractional_coords(host.lattice.get_cartesian_coords(ends[1]) + [0.05, -0.05, 0.05])
    fixed = relax_ion(host, ion, start)
    moving = relax_ion(host, ion, start, settings=RelaxSettings(framework_radius=4.5))
    assert _dist(host, fixed.frac, ends[1])[0] > 0.5
    assert moving.converged.all() and _dist(host, moving.frac, ends[1])[0] < 0.3


def test_only_the_cage_around_the_start_moves():
    from screener.site_relax import _systems

    host, ion, ends = _host_and_ends("Fe2S3O12_Ca")
    x = host.lattice.get_cartesian_coords(ends[:1])
    (atoms,) = _systems(host, ion, x, 4.5)
    assert atoms.get_chemical_symbols()[-1] == ion and len(atoms) == len(host) + 1
    fixed = set(atoms.constraints[0].get_indices())
    d = host.lattice.get_all_distances(ends[:1], host.frac_coords)[0]
    assert fixed == set(np.flatnonzero(d > 4.5)) and 0 < len(fixed) < len(host)
    (alone,) = _systems(host, ion, x, 0.0)
    assert len(alone) == 1 and not alone.constraints
