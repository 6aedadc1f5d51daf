"""DFT-NEB inputs (MVLCINEBEndPointSet / IDPP / MVLCINEBSet), the NEB parser and the VASP tasks."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar

from screener.bands import band_endpoints
from screener.followups.dft_neb import (
    DftNebError,
    idpp_images,
    parse_neb,
    relaxed_structure,
    write_endpoint_inputs,
    write_neb_inputs,
)
from screener.followups.tasks import (
    FollowupTaskError,
    RunVasp,
    WriteEndpointInputs,
    WriteNebInputs,
    env_chk,
)
from tests._dataset import dataset_band

DATA = Path(__file__).parent / "data" / "neb"
FAKE_VASP = f"{sys.executable} {DATA / 'fake_vasp.py'}"
#: a 33-site band (29-atom end points): Li in epsilon-VOPO4
SYS = "e-VOPO4_Li_1"


@pytest.fixture(scope="module")
def ends() -> tuple[Structure, Structure]:
    return band_endpoints(dataset_band(SYS))


@pytest.fixture(scope="module")
def images(ends) -> list[Structure]:
    return idpp_images(*ends)


def _dist(s: Structure, i: int, frac) -> float:
    return s.lattice.get_distance_and_image(s[i].frac_coords, frac)[0]


def test_endpoint_inputs_are_mvl_relaxations_with_the_ion_first(tmp_path, ends):
    initial, _ = ends
    out = write_endpoint_inputs(initial, tmp_path / "ep", potcar_spec=True)
    incar = Incar.from_file(out / "INCAR")
    assert incar["ISIF"] == 2 and incar["IBRION"] == 2 and incar["ISYM"] == 0
    assert incar["EDIFFG"] == -0.02 and incar["EDIFF"] == 5e-5 and incar["NELMIN"] == 4
    assert "IMAGES" not in incar and "LCLIMB" not in incar
    assert (out / "KPOINTS").is_file() and not (out / "POTCAR").exists()
    poscar = Structure.from_file(out / "POSCAR")
    assert poscar[0].specie.symbol == "Li" and _dist(poscar, 0, initial[0].frac_coords) < 1e-6
    assert [s.species_string for s in poscar] == [s.species_string for s in initial]  # not sorted
    # POTCAR.spec: one symbol per POSCAR species block, in order
    symbols = (out / "POTCAR.spec").read_text().split()
    assert [s.split("_")[0] for s in symbols] == ["Li", "V", "P", "O"]
    # user settings override the set's defaults
    out2 = write_endpoint_inputs(initial, tmp_path / "ep2", user_incar_settings={"EDIFFG": -0.05}, potcar_spec=True)
    assert Incar.from_file(out2 / "INCAR")["EDIFFG"] == -0.05


def test_idpp_images_keep_the_moving_ion_first_and_move_it_along_the_hop(ends, images):
    initial, final = ends
    assert len(images) == 5
    hop = _dist(initial, 0, final[0].frac_coords)
    along = [_dist(initial, 0, im[0].frac_coords) for im in images]
    assert along[0] < 1e-6 and abs(along[-1] - hop) < 1e-6
    assert all(b > a + 0.2 for a, b in itertools.pairwise(along))  # it advances image by image
    for im in images:
        assert [s.species_string for s in im] == [s.species_string for s in initial]
    # the framework moves little, the ion a lot (IDPP relaxes the images, it does not scramble them)
    host_moves = [max(_dist(images[0], k, im[k].frac_coords) for k in range(1, len(im))) for im in images]
    assert max(host_moves) < 0.5 < hop / 4


def test_idpp_refuses_end_points_of_different_sites(ends):
    initial, final = ends
    other = final.copy()
    other.remove_sites([len(other) - 1])
    with pytest.raises(DftNebError) as exc:
        idpp_images(initial, other)
    assert "\n" not in str(exc.value) and "differ" in str(exc.value)


def test_neb_inputs_are_mvl_ci_neb_with_image_folders(tmp_path, ends, images):
    out = write_neb_inputs(images, tmp_path / "neb", potcar_spec=True)
    incar = Incar.from_file(out / "INCAR")
    assert incar["IMAGES"] == 3 and incar["SPRING"] == -5 and incar["LCLIMB"] is True
    assert incar["IBRION"] == 3 and incar["ICHAIN"] == 0 and incar["IOPT"] == 1 and incar["POTIM"] == 0
    assert incar["ISYM"] == 0 and incar["NSW"] == 200
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00", "01", "02", "03", "04"]
    assert (out / "POTCAR.spec").read_text().split()[0] == "Li" and not (out / "POTCAR").exists()
    for k, im in enumerate(images):
        s = Structure.from_file(out / f"{k:02d}" / "POSCAR")
        assert s[0].specie.symbol == "Li" and len(s) == len(im)
        assert _dist(s, 0, im[0].frac_coords) < 1e-5  # moving ion first in every POSCAR
    with pytest.raises(DftNebError, match="3 structures"):
        write_neb_inputs(images[:2], tmp_path / "bad", potcar_spec=True)


def test_parser_reads_the_barrier_of_a_finished_neb():
    out = parse_neb(DATA / "run", (DATA / "relax_initial", DATA / "relax_final"))
    # energies: relaxations -190.4321 / -190.4150, images -190.2012, -189.9876, -190.1903
    assert out.energies_ev == pytest.approx([-190.4321, -190.2012, -189.9876, -190.1903, -190.4150])
    assert out.barrier_ev == pytest.approx(0.4445, abs=1e-6)
    assert out.profile_ev[0] == 0 and out.profile_ev[-1] == pytest.approx(0.0171, abs=1e-6)
    assert np.all(np.diff(out.coordinate) > 0)
    assert out.as_doc()["relaxation_dirs"] == [str(DATA / "relax_initial"), str(DATA / "relax_final")]


def test_parser_errors_name_the_folder(tmp_path):
    with pytest.raises(DftNebError) as exc:  # end points without energies: 00/04 have no OUTCAR
        parse_neb(DATA / "run")
    assert str(DATA / "run") in str(exc.value) and "\n" not in str(exc.value)
    broken = tmp_path / "run"
    shutil.copytree(DATA / "run", broken)
    (broken / "02" / "OUTCAR").unlink()
    with pytest.raises(DftNebError) as exc:
        parse_neb(broken, (DATA / "relax_initial", DATA / "relax_final"))
    assert str(broken / "02") in str(exc.value) and "OUTCAR" in str(exc.value)
    with pytest.raises(DftNebError, match="not found"):
        parse_neb(tmp_path / "nowhere")
    with pytest.raises(DftNebError, match="no CONTCAR or POSCAR"):
        relaxed_structure(tmp_path)


def test_tasks_write_run_and_chain_through_the_fworker_env(tmp_path, ends, monkeypatch):
    initial, final = ends
    spec = {"_fw_env": {"vasp_cmd": FAKE_VASP}}
    dirs = {}
    for label, s in (("initial", initial), ("final", final)):
        d = tmp_path / label
        d.mkdir()
        monkeypatch.chdir(d)
        WriteEndpointInputs(structure=s.as_dict(), label=label, potcar_spec=True).run_task(spec)
        action = RunVasp(vasp_cmd=">>vasp_cmd<<", pass_dir_as=f"endpoint_dirs->{label}").run_task(spec)
        assert action.mod_spec == [{"_set": {f"endpoint_dirs->{label}": str(d)}}]
        assert (d / "CONTCAR").is_file() and (d / "OUTCAR").is_file()
        dirs[label] = str(d)
    neb = tmp_path / "neb"
    neb.mkdir()
    monkeypatch.chdir(neb)
    WriteNebInputs(potcar_spec=True).run_task({**spec, "endpoint_dirs": dirs})
    RunVasp(vasp_cmd=">>vasp_cmd<<").run_task(spec)
    out = parse_neb(neb, (dirs["initial"], dirs["final"]))
    assert out.barrier_ev == pytest.approx(0.4, abs=1e-6)  # fake VASP: 0.4 sin(pi k / 4)


def test_run_vasp_failures_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FollowupTaskError) as exc:
        RunVasp(vasp_cmd=">>vasp_cmd<<").run_task({"_fw_env": {}})
    assert "vasp_cmd" in str(exc.value) and "fworker" in str(exc.value).lower()
    with pytest.raises(FollowupTaskError) as exc:
        RunVasp(vasp_cmd=f"{sys.executable} -c 'raise SystemExit(3)'").run_task({})
    assert "exited with code 3" in str(exc.value) and str(tmp_path) in str(exc.value)
    assert "\n" not in str(exc.value)
    with pytest.raises(FollowupTaskError, match="end-point folders unknown"):
        WriteNebInputs().run_task({})
    assert env_chk("vasp_std", {}) == "vasp_std"
    assert env_chk(">>x<<", {"_fw_env": {"x": ["mpirun", "vasp"]}}) == ["mpirun", "vasp"]
    assert os.getcwd() == str(tmp_path)
