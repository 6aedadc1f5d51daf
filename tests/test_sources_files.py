"""Reading hosts from files: round trips keep the id, every bad input is one line and the rest loads."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import pytest
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from screener.hosts import Host
from screener.sources.dataset import DATASET_DIR, dataset_hosts
from screener.sources.files import read_hosts


@pytest.fixture(scope="module")
def hosts() -> dict[str, Host]:
    return {h.name: h for h in dataset_hosts()}


@pytest.fixture()
def lfp(hosts) -> Host:
    return hosts["O-LiFePO4"]


POSCAR_TMPL = "{name}\n1.0\n{lat}\nLi O\n1 1\nDirect\n0 0 0\n{second}\n"
CUBE = "4 0 0\n0 4 0\n0 0 4"


def _write_bad_files(d: Path, lfp: Host) -> dict[str, str]:
    """Every bad-input case of the brief, mapped to a word its error must contain."""
    cif = str(CifWriter(lfp.structure))
    o50 = next(line for line in cif.splitlines() if " O  O50 " in line)
    disordered = lfp.structure.copy()
    disordered.replace_species({"Fe": {"Fe": 0.5, "Mn": 0.5}})
    cases = {
        "empty.cif": ("", "empty file"),
        "garbage.vasp": (os.urandom(400) + b"\x00", "binary"),
        "random.cif": ("hello world\nno crystal here\n", "no CIF data block"),
        "random.poscar": ("hello world\nthis is not a poscar\n", "unreadable POSCAR"),
        "truncated.cif": (cif[: cif.index(" O  O50 ")], "truncated"),
        "truncated_midrow.cif": (cif[: cif.index(" O  O50 ") + 12], "truncated"),
        "POSCAR_zero": (POSCAR_TMPL.format(name="z", lat="0 0 0\n0 0 0\n0 0 5", second="0.5 0.5 0.5"), "zero cell volume"),
        "POSCAR_nan": (POSCAR_TMPL.format(name="n", lat=CUBE, second="nan 0.5 0.5"), "NaN"),
        "POSCAR_overlap": (POSCAR_TMPL.format(name="o", lat=CUBE, second="0.02 0 0"), "overlapping"),
        "unknown.vasp": (POSCAR_TMPL.format(name="u", lat=CUBE, second="0.5 0.5 0.5").replace("Li O", "Li Qq"), "unknown"),
        "disordered.cif": (str(CifWriter(disordered)), "disordered"),
        "disordered.json": (disordered.to_json(), "disordered"),
        "bad.json": ('{"lattice": ', "invalid JSON"),
        "POSCAR_vasp4": (
            POSCAR_TMPL.format(name="v", lat=CUBE, second="0.5 0.5 0.5").replace("Li O\n", ""),
            "no element symbols",
        ),
        "coincident.cif": (cif.replace(o50, o50 + "\n  F  F99 " + o50.split("O50", 1)[1], 1), "occupancy"),
    }
    for name, (content, _) in cases.items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return {str(d / k): v[1] for k, v in cases.items()}


def test_every_bad_input_is_one_line_and_good_ones_still_load(tmp_path, lfp):
    expected = _write_bad_files(tmp_path, lfp)
    (tmp_path / "good.cif").write_text(str(CifWriter(lfp.structure)))
    (tmp_path / "nothing_here").mkdir()
    (tmp_path / "nothing_here" / "notes.txt").write_text("no structures")
    expected[str(tmp_path / "nothing_here")] = "no structure files"
    expected[str(tmp_path / "missing.cif")] = "no such file"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pymatgen's warnings must not reach the user
        hosts, errors = read_hosts(
            [tmp_path, tmp_path / "nothing_here", tmp_path / "missing.cif"]
        )
    assert [h.host_id for h in hosts] == [lfp.host_id]
    by_name = {e.name: str(e) for e in errors}
    assert len(errors) == len(by_name) == len(expected), sorted(by_name)
    for name, word in expected.items():
        msg = by_name[name]
        assert "\n" not in msg and msg.startswith(f"{name}: ")
        assert word.lower() in msg.lower(), msg


def test_round_trips_keep_the_host_id(tmp_path, hosts):
    for name in ("O-LiFePO4", "LiMn2O4", "LiCoO2"):
        h = hosts[name]
        CifWriter(h.structure).write_file(tmp_path / f"{name}.cif")
        Poscar(h.structure).write_file(tmp_path / f"POSCAR_{name}")
        h.structure.to(filename=str(tmp_path / f"{name}.json"))
        with gzip.open(tmp_path / f"{name}.json.gz", "wt") as fh:
            fh.write(h.structure.to_json())
        (tmp_path / f"{name}.vasp").write_text(Poscar(h.structure).get_str())
        loaded, errors = read_hosts(sorted(tmp_path.glob(f"*{name}*")))
        assert errors == []
        assert len(loaded) == 5
        assert {x.host_id for x in loaded} == {h.host_id}
        assert {x.formula for x in loaded} == {h.formula}
        assert all(x.source["kind"] == "file" for x in loaded)


def test_multi_block_cif_gives_one_host_per_block_and_one_error_per_bad_block(tmp_path, hosts):
    a = str(CifWriter(hosts["O-LiFePO4"].structure))
    b = str(CifWriter(hosts["LiMn2O4"].structure))
    broken = "data_broken\n_cell_length_a 3.0\n"
    path = tmp_path / "several.cif"
    path.write_text(a + "\n" + b + "\n" + broken)
    loaded, errors = read_hosts([path])
    assert [x.formula for x in loaded] == ["LiFePO4", "LiMn2O4"]
    assert len(errors) == 1 and str(errors[0]).startswith(f"{path} [broken]: ")


def test_dataset_style_json_and_host_documents(tmp_path, hosts):
    entries = json.loads((DATASET_DIR / "bands-test.json").read_text())[:3]
    (tmp_path / "entries.json").write_text(json.dumps(entries))
    bad = dict(entries[0], sys_name="broken_1", atoms={"elements": ["Li"]})
    (tmp_path / "one.json").write_text(json.dumps([entries[1], bad]))
    h = hosts["LiCoO2"]
    doc = h.to_doc()
    doc.pop("created_at")
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    loaded, errors = read_hosts([tmp_path / "entries.json", tmp_path / "one.json", tmp_path / "doc.json"])
    assert [x.name for x in loaded[:4]] == [e["sys_name"] for e in entries] + [entries[1]["sys_name"]]
    by_name = {x.name: x for x in dataset_hosts()}
    for x in loaded[:3]:
        assert x.host_id == by_name[x.source["host_name"]].host_id
        assert x.structure.is_ordered
    assert loaded[4].host_id == h.host_id and loaded[4].name == "LiCoO2"
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{tmp_path / 'one.json'} [broken_1]: ")


def test_directories_are_walked_recursively(tmp_path, hosts):
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    Poscar(hosts["LiMn2O4"].structure).write_file(sub / "CONTCAR")
    CifWriter(hosts["O-LiFePO4"].structure).write_file(tmp_path / "a" / "lfp.CIF")
    (tmp_path / "a" / "readme.md").write_text("not a structure")
    loaded, errors = read_hosts([tmp_path])
    assert errors == []
    assert sorted(x.formula for x in loaded) == ["LiFePO4", "LiMn2O4"]
