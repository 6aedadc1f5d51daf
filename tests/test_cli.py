"""The command line: bad input gets one line per file, --json prints only JSON, re-runs are no-ops."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from screener.cli import app
from screener.sources.dataset import dataset_hosts

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture()
def structures(tmp_path):
    """A folder with two good hosts and one file of every kind of bad input."""
    by_name = {h.name: h for h in dataset_hosts()}
    d = tmp_path / "in"
    d.mkdir()
    by_name["O-NaMnPO4"].structure.to(filename=str(d / "olivine.cif"))
    by_name["LiMn2O4"].structure.to(filename=str(d / "POSCAR_spinel"), fmt="poscar")
    (d / "empty.cif").write_text("")
    (d / "binary.cif").write_bytes(bytes(range(256)) * 4)
    (d / "text.json").write_text("this is not a structure\n")
    good = (d / "olivine.cif").read_text()
    (d / "truncated.cif").write_text(good[: len(good) // 2])
    flat = Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 0]]), ["Li"], [[0, 0, 0]], validate_proximity=False)
    (d / "zero_volume.json").write_text(json.dumps(flat.as_dict()))
    nan = Structure(Lattice.cubic(4), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    nan["sites"][1]["abc"] = [float("nan"), 0.5, 0.5]
    (d / "nan.json").write_text(json.dumps(nan).replace("NaN", "NaN"))
    (d / "overlap.json").write_text(json.dumps(
        Structure(Lattice.cubic(4), ["Li", "O"], [[0, 0, 0], [0.01, 0, 0]]).as_dict()))
    unknown = Structure(Lattice.cubic(4), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    unknown["sites"][1]["species"][0]["element"] = "Xx"
    (d / "unknown_element.json").write_text(json.dumps(unknown))
    disordered = Structure(Lattice.cubic(4), [{"Li": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (d / "disordered.json").write_text(json.dumps(disordered.as_dict()))
    return d


BAD = ("empty.cif", "binary.cif", "text.json", "truncated.cif", "zero_volume.json", "nan.json",
       "overlap.json", "unknown_element.json", "disordered.json")


def test_hosts_add_reports_each_bad_file_and_stores_the_rest(structures):
    first = _run("hosts", "add", str(structures))
    assert first.exit_code == 1
    lines = [ln for ln in first.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in first.stderr
    for name in BAD:
        hits = [ln for ln in lines if name in ln]
        assert len(hits) == 1, (name, lines)
    assert "2 new hosts stored" in first.stdout
    listed = json.loads(_run("hosts", "list", "--json").stdout)
    assert sorted(h["formula"] for h in listed) == ["LiMn2O4", "NaMnPO4"]
    again = _run("hosts", "add", str(structures))
    assert "0 new hosts stored, 2 already stored" in again.stdout
    assert len(json.loads(_run("hosts", "list", "--json").stdout)) == 2


def test_host_without_the_working_ion_is_refused_with_a_reason(structures):
    result = _run("hosts", "add", str(structures / "olivine.cif"), "--working-ion", "Li")
    assert result.exit_code == 1
    assert "olivine" in result.stderr and "no Li" in result.stderr
    assert json.loads(_run("hosts", "list", "--json").stdout) == []


def test_wrong_options_get_one_line_errors(structures):
    bad_ion = _run("hosts", "add", str(structures), "--working-ion", "Xy")
    assert bad_ion.exit_code == 2 and "unknown ion" in bad_ion.stderr
    bad_launch = _run("campaign", "launch", "c", "--working-ion", "Li", "--threshold", "-1")
    assert bad_launch.exit_code == 2 and "threshold_ev must be positive" in bad_launch.stderr
    missing = _run("campaign", "status", "nope", "--json")
    assert missing.exit_code == 1 and "campaign 'nope': not found" in missing.stderr
    assert missing.stdout == ""
    bad_model = _run("campaign", "launch", "c", "--working-ion", "Li", "--model", "no-such-model")
    assert bad_model.exit_code == 2 and "no-such-model" in bad_model.stderr
    bad_db = _run("hosts", "list", "--db", "mongodb://")
    assert bad_db.exit_code == 1 and "bad MongoDB URI" in bad_db.stderr
    assert "Traceback" not in bad_db.stderr


def test_launch_status_and_candidates_json(structures):
    _run("hosts", "add", str(structures / "olivine.cif"), str(structures / "POSCAR_spinel"))
    launched = _run("campaign", "launch", "c", "--working-ion", "auto", "--chunk", "1")
    assert launched.exit_code == 0, launched.stderr
    assert "2 new host/ion pairs in 2 new workflows" in launched.stdout
    relaunched = _run("campaign", "launch", "c", "--working-ion", "auto", "--chunk", "1")
    assert "0 new host/ion pairs in 0 new workflows" in relaunched.stdout
    status = json.loads(_run("campaign", "status", "c", "--json").stdout)
    assert status["hosts"]["pending"] == 2 and status["fireworks"] == {"READY": 2, "WAITING": 6}
    listed = json.loads(_run("campaign", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["c"] and listed[0]["hosts"] == 2
    assert json.loads(_run("candidates", "c", "--json").stdout) == []


def test_launch_max_hop_length_auto_or_a_length(structures):
    _run("hosts", "add", str(structures / "olivine.cif"))
    res = _run("campaign", "launch", "a", "--working-ion", "Na", "--max-hop-length", "auto")
    assert res.exit_code == 0, res.stderr
    from screener.store import Store

    store = Store.connect()
    assert store.campaigns.find_one({"_id": "a"})["config"]["max_hop_length"] == "auto"
    store.close()
    bad = _run("campaign", "launch", "b", "--working-ion", "Na", "--max-hop-length", "far")
    assert bad.exit_code == 2 and "--max-hop-length" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    neg = _run("campaign", "launch", "b", "--working-ion", "Na", "--max-hop-length", "-1")
    assert neg.exit_code == 2 and "max_hop_length" in neg.stderr
