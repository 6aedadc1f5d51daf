"""CHGNet-NEB on real test hops of the shipped dataset (end points as in the benchmark)."""

from __future__ import annotations

import json
from functools import cache
from typing import ClassVar

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from pymatgen.core import Structure

from screener.bands import band_endpoints
from screener.followups.mlip_neb import (
    MlipNebError,
    MlipNebResult,
    MlipNebSettings,
    cell_strain,
    run_mlip_neb,
)
from screener.sources.dataset import DATASET_DIR, jarvis_to_structure
from tests._dataset import dataset_band


@cache
def _endpoints(sys_name: str) -> tuple[Structure, Structure, float]:
    with open(DATASET_DIR / "endpoints-test.json", encoding="utf-8") as fh:
        e = next(x for x in json.load(fh) if x["sys_name"] == sys_name)
    return jarvis_to_structure(e["atoms_ini"]), jarvis_to_structure(e["atoms_fin"]), float(e["target"])


class _Well(Calculator):
    """Harmonic well pulling every atom to ``centre`` (the moving ion) or to where it started."""

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(self, centre: np.ndarray, value: float | None = None) -> None:
        super().__init__()
        self.centre, self.value, self.ref = centre, value, None

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.ref is None:
            self.ref = atoms.positions.copy()
        target = self.ref.copy()
        target[0] = self.centre
        d = atoms.positions - target
        e = float((d**2).sum()) if self.value is None else self.value
        self.results = {"energy": e, "free_energy": e, "forces": -2 * d}


@pytest.fixture(scope="module")
def na3ocl() -> tuple[Structure, Structure, MlipNebResult, MlipNebSettings]:
    """A 39-atom Na vacancy hop (Na3OCl), CHGNet, step-limited so the whole NEB takes seconds."""
    import torch

    torch.set_num_threads(1)
    ini, fin = band_endpoints(dataset_band("Na3OCl"))
    settings = MlipNebSettings(fmax=0.1, relax_fmax=0.1, steps=20, n_images=3, freeze_radius=3.0)
    return ini, fin, run_mlip_neb(ini, fin, settings, label="Na3OCl"), settings


def test_profile_barrier_and_ends(na3ocl) -> None:
    _, _, r, s = na3ocl
    assert len(r.energies_ev) == len(r.images) == s.n_images + 2
    assert r.energies_ev[0] == 0.0
    assert r.barrier_ev == pytest.approx(max(r.energies_ev))
    assert np.isfinite(r.barrier_ev) and 0.05 < r.barrier_ev < 3.0
    assert max(r.energies_ev[1:-1]) > max(r.energies_ev[0], r.energies_ev[-1])  # a saddle, not a slope
    assert r.n_force_calls >= s.n_images * r.steps["neb"] and r.steps["neb"] <= s.steps
    assert r.converged == (r.final_fmax <= s.fmax)
    assert np.all(np.diff(r.path_ang) > 0)


def test_ion_moves_from_initial_to_final_site(na3ocl) -> None:
    ini, fin, r, _ = na3ocl
    lat = ini.lattice
    assert lat.get_distance_and_image(r.images[0].frac_coords[0], ini.frac_coords[0])[0] < 0.3
    assert lat.get_distance_and_image(r.images[-1].frac_coords[0], fin.frac_coords[0])[0] < 0.3
    hop = lat.get_distance_and_image(ini.frac_coords[0], fin.frac_coords[0])[0]
    # the middle image's ion is between the two sites, off both of them
    mid = r.images[len(r.images) // 2].cart_coords[0]
    a, b = r.images[0].cart_coords[0], r.images[-1].cart_coords[0]
    # the path is unwrapped: the ion's Cartesian displacement is the minimum-image hop
    ends = lat.get_distance_and_image(r.images[0].frac_coords[0], r.images[-1].frac_coords[0])[0]
    assert np.linalg.norm(b - a) == pytest.approx(ends, abs=1e-6) and ends > 0.6 * hop
    assert min(np.linalg.norm(mid - a), np.linalg.norm(mid - b)) > 0.25 * hop


def test_frozen_atoms_did_not_move(na3ocl) -> None:
    ini, _, r, _ = na3ocl
    frozen = r.extra["frozen_indices"]
    assert r.n_frozen == len(frozen) > 0 and 0 not in frozen
    free = [i for i in range(1, len(ini)) if i not in frozen]
    assert free, "some host atoms near the path must relax"
    start = ini.cart_coords
    for im in r.images:
        d = np.linalg.norm(im.cart_coords[frozen] - start[frozen], axis=1)
        assert d.max() < 1e-6
    moved = max(np.linalg.norm(im.cart_coords[free] - start[free], axis=1).max() for im in r.images)
    assert moved > 1e-3


def test_plot_and_doc(na3ocl, tmp_path) -> None:
    _, _, r, _ = na3ocl
    png = r.plot(tmp_path / "sub" / "profile.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    doc = json.loads(json.dumps(r.to_doc()))
    assert doc["barrier_ev"] == r.barrier_ev and doc["tier"] == "mlip-neb" and len(doc["images"]) == 5
    assert Structure.from_dict(doc["images"][2]).composition == r.images[0].composition


def test_same_site_end_points_rejected() -> None:
    ini, _fin, _ = _endpoints("Na3OCl")
    with pytest.raises(MlipNebError) as err:
        run_mlip_neb(ini, ini.copy(), label="test hop Na3OCl", calculator=_Well(np.zeros(3)))
    assert "test hop Na3OCl" in str(err.value) and "\n" not in str(err.value)


def test_mismatched_end_points_rejected() -> None:
    ini, fin, _ = _endpoints("Na3OCl")
    other = fin.copy()
    other.replace(1, "K")
    with pytest.raises(MlipNebError, match="species differ"):
        run_mlip_neb(ini, other, calculator=_Well(np.zeros(3)))
    with pytest.raises(MlipNebError, match="sites"):
        run_mlip_neb(ini, Structure.from_sites(fin.sites[:-1]), calculator=_Well(np.zeros(3)))


def test_end_points_relaxing_into_each_other_rejected() -> None:
    ini, fin, _ = _endpoints("Na3OCl")
    mid = (ini.cart_coords[0] + (fin.lattice.get_cartesian_coords(
        fin.frac_coords[0] - np.round(fin.frac_coords[0] - ini.frac_coords[0])))) / 2
    s = MlipNebSettings(relax_fmax=0.01, steps=300)
    with pytest.raises(MlipNebError, match="relax into each other") as err:
        run_mlip_neb(ini, fin, s, calculator=_Well(mid), label="hop X")
    assert str(err.value).startswith("hop X:") and "\n" not in str(err.value)


def test_nan_energy_rejected() -> None:
    ini, fin, _ = _endpoints("Na3OCl")
    with pytest.raises(MlipNebError, match="not finite"):
        run_mlip_neb(ini, fin, MlipNebSettings(relax_endpoints=False), calculator=_Well(np.zeros(3), float("nan")))


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        MlipNebSettings(model="mace")
    with pytest.raises(ValueError, match="bad limits"):
        MlipNebSettings(n_images=0)


@pytest.mark.slow
def test_benchmark_settings_reproduce_a_spinel_barrier() -> None:
    """Full settings of the benchmark on MgHo2S4 (DFT 0.364 eV): converges, within 0.15 eV."""
    import torch

    torch.set_num_threads(1)
    ini, fin, target = _endpoints("MgHo2S4")
    r = run_mlip_neb(ini, fin, MlipNebSettings(fmax=0.05, relax_fmax=0.05, steps=300), label="MgHo2S4")
    assert r.converged and r.final_fmax <= 0.05
    assert abs(r.barrier_ev - target) < 0.15
    again = run_mlip_neb(ini, fin, MlipNebSettings(fmax=0.05, relax_fmax=0.05, steps=300), label="MgHo2S4")
    assert again.energies_ev == r.energies_ev  # deterministic


def test_final_end_point_in_a_relaxed_cell_is_put_in_the_initial_cell() -> None:
    """CaCr2S3O12's DFT final end point was cell-relaxed (3% strain): the NEB runs in the initial
    cell with the final fractional coordinates (fake potential: only the geometry is checked)."""
    ini, fin, _ = _endpoints("CaCr2S3O12")
    assert not np.allclose(ini.lattice.matrix, fin.lattice.matrix, atol=1e-2)
    s = MlipNebSettings(relax_endpoints=False, steps=2, freeze_radius=4.0)
    r = run_mlip_neb(ini, fin, s, calculator=_Well(ini.cart_coords[0]), label="CaCr2S3O12")
    assert r.extra["cell_strain"] == pytest.approx(cell_strain(ini, fin)) and 0.02 < r.extra["cell_strain"] < 0.05
    last = r.images[-1]
    assert np.allclose(last.lattice.matrix, ini.lattice.matrix)
    d = last.frac_coords - fin.frac_coords
    assert np.abs(d - np.round(d)).max() < 1e-6  # unrelaxed end point: the final fractional coordinates


def test_end_points_of_different_phases_rejected() -> None:
    ini, fin, _ = _endpoints("Na3OCl")
    squashed = Structure(fin.lattice.matrix * np.array([[1.2], [1.0], [1.0]]), fin.species, fin.frac_coords)
    with pytest.raises(MlipNebError, match="strain") as err:
        run_mlip_neb(ini, squashed, calculator=_Well(np.zeros(3)), label="hop Y")
    assert str(err.value).startswith("hop Y:") and "\n" not in str(err.value)
