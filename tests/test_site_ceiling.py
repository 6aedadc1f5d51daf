"""scripts/site_ceiling.py: which charged-host end points a CHGNet site finder could land on."""

from __future__ import annotations

import json

import pytest

from _scripts import load_script

site_ceiling = load_script("site_ceiling")


def test_out_file_of_other_records_is_refused(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a1-VOPO4_Ca\n")
    out = tmp_path / "c.jsonl"
    out.write_text(json.dumps({"sys_name": "a1-VOPO4_Ca", "recovered": False, "starts": 3}) + "\n")
    with pytest.raises(SystemExit, match="not this script's end-point records \\(a1-VOPO4_Ca has no fixed0"):
        site_ceiling.main(["--names", str(names), "--out", str(out)])
    assert len(out.read_text().splitlines()) == 1


def test_unknown_name_is_one_line(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("NoSuchHost_1\n")
    with pytest.raises(SystemExit, match="not dataset entries: NoSuchHost_1"):
        site_ceiling.main(["--names", str(names), "--out", str(tmp_path / "c.jsonl")])


@pytest.mark.slow
def test_small_host_end_points_and_resume(tmp_path, capsys):
    # e-VOPO4 / Na (29 atoms, ~1 min): the initial end point is a CHGNet minimum, the final one is
    # not (the ion slides ~1.8 A away even with the framework relaxed), so the hop is out of reach
    names = tmp_path / "names.txt"
    names.write_text("e-VOPO4_Na_1\n")
    out = tmp_path / "c.jsonl"
    args = ["--names", str(names), "--out", str(out)]
    assert site_ceiling.main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["fixed0"] < 0.3 < rec["fixed1"] and rec["full1"] > 0.3
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n"] == 1 and summary["reachable_framework_relaxed"] == 0
    assert site_ceiling.main(args) == 0  # resumes: nothing re-run, nothing appended
    assert len(out.read_text().splitlines()) == 1
