"""`screener model ...`: evaluate --json keys, predict on dataset band files, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from screener.cli_model import SCORE_KEYS, model_app
from screener.model.base import DEFAULT_MODEL, MODELS_DIR
from screener.sources.dataset import DATASET_DIR

runner = CliRunner()


def test_evaluate_test_json_is_exactly_the_seven_scores(tmp_path):
    res = runner.invoke(model_app, ["evaluate", "--split", "test", "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout holds the JSON document and nothing else
    assert list(doc) == list(SCORE_KEYS) and doc["n"] == 60
    shipped = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.metrics.json").read_text())["test"]
    assert doc["mae"] == pytest.approx(shipped["mae"], abs=1e-6) and doc["accuracy"] == shipped["accuracy"]
    assert (tmp_path / "parity-test.png").stat().st_size > 1000
    assert (tmp_path / "confusion-test.png").is_file()


def test_evaluate_unknown_split_or_model_is_one_line():
    res = runner.invoke(model_app, ["evaluate", "--split", "train"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(model_app, ["evaluate", "--model", "nope"])
    assert res.exit_code == 2 and "nope" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_predict_dataset_band_files(tmp_path):
    entries = json.loads((DATASET_DIR / "bands-test.json").read_text())
    one, many = tmp_path / "band.json", tmp_path / "bands.json"
    one.write_text(json.dumps(entries[0]))
    many.write_text(json.dumps(entries[:3]))
    res = runner.invoke(model_app, ["predict", str(one), str(many), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = doc["predictions"]
    assert len(rows) == 4 and doc["errors"] == []
    assert rows[1]["band"] == f"{many} [{entries[0]['sys_name']}]"
    assert rows[0]["em_ev"] == pytest.approx(rows[1]["em_ev"], abs=1e-6)  # same band, same prediction (batching: float noise)
    assert all(np.isfinite(r["em_ev"]) and r["std_ev"] > 0 for r in rows)
    assert rows[0]["ion"] == entries[0]["atoms"]["elements"][0]


def test_predict_bad_files_cost_one_line_each(tmp_path):
    entry = json.loads((DATASET_DIR / "bands-test.json").read_text())[0]
    good = tmp_path / "band.json"
    good.write_text(json.dumps(entry))
    bad_cif = tmp_path / "bad.cif"
    bad_cif.write_text("garbage\n")
    # a host atom swapped into the hop's five sites: not a band
    atoms = json.loads(json.dumps(entry["atoms"]))
    j = next(i for i, e in enumerate(atoms["elements"]) if e != atoms["elements"][0])
    for key in ("elements", "coords"):
        atoms[key][2], atoms[key][j] = atoms[key][j], atoms[key][2]
    not_band = tmp_path / "host_first.json"
    not_band.write_text(json.dumps(atoms))
    res = runner.invoke(model_app, ["predict", str(good), str(bad_cif), str(not_band),
                                    str(tmp_path / "missing.vasp")])
    assert res.exit_code == 1
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 3
    assert any(str(bad_cif) in e for e in errors) and any("missing.vasp" in e for e in errors)
    assert any(str(not_band) in e and "first five sites" in e for e in errors)
    assert "E_m =" in res.stdout


def test_pretrain_finetune_then_evaluate_cv_and_predict_with_the_ensemble(tmp_path):
    mpt, ft = tmp_path / "mpt", tmp_path / "ft"
    res = runner.invoke(model_app, ["pretrain", "--limit", "17", "--epochs", "1", "--batch-size", "8",
                                    "--alignn-layers", "1", "--hidden", "16", "--out", str(mpt),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["epoch"] == 1 and (mpt / "last.pt").is_file()
    res = runner.invoke(model_app, ["finetune", "--pretrained", str(mpt / "last.pt"), "--limit", "20",
                                    "--members", "2", "--epochs", "1", "--batch-size", "8",
                                    "--out", str(ft), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["stopped"] == "done" and summary["members_done"] == 2
    # cv for an ensemble = its stored out-of-fold predictions (no refit)
    res = runner.invoke(model_app, ["evaluate", "--model", summary["model"], "--split", "cv", "--json",
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert list(doc) == list(SCORE_KEYS) and doc["n"] == summary["grouped_cv"]["n"]
    assert doc["mae"] == summary["grouped_cv"]["mae"]
    entry = json.loads((DATASET_DIR / "bands-train.json").read_text())[0]
    band = tmp_path / "band.json"
    band.write_text(json.dumps(entry))
    res = runner.invoke(model_app, ["predict", str(band), "--model", summary["model"], "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["predictions"][0]
    assert np.isfinite(row["em_ev"]) and row["std_ev"] > 0


def test_merge_refuses_a_model_that_is_not_an_alignn_ensemble(tmp_path):
    res = runner.invoke(model_app, ["merge", "--model", "alignn", "--model", "descriptor-et",
                                    "--out", str(tmp_path / "m.joblib")])
    assert res.exit_code == 2 and "descriptor-et: not an ALIGNN ensemble" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.joblib").exists()


def test_predict_broken_cif_is_one_line_without_parser_chatter(tmp_path, recwarn):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nbad\n")  # pymatgen warns 3 times on this
    res = runner.invoke(model_app, ["predict", str(bad)])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [f"error: {bad}: unreadable structure (Invalid CIF file with no structures!)"]
    assert not [w for w in recwarn if "cif" in str(w.filename)]
