"""Follow-up workflows of a real campaign: choosing hops, the graphs, never twice, running them
(a stand-in VASP and a stand-in MLIP), and candidates' ``followups`` field."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from distributed import LocalCluster
from fireworks import FWorker
from fireworks.core.rocket_launcher import rapidfire
from typer.testing import CliRunner

from screener.campaign import candidates, launch_campaign
from screener.config import ScreenerConfig
from screener.followups.queue import (
    FollowupError,
    followup_id,
    followups_by_hop,
    queue_followups,
    run_followups,
)
from screener.followups.tasks import MlipNebTask, ParseNeb, RunVasp, WriteEndpointInputs, WriteNebInputs
from screener.runner import run_campaign
from screener.sources.dataset import dataset_hosts
from screener.store import Store

FAKE_VASP = f"{sys.executable} {Path(__file__).parent / 'data' / 'neb' / 'fake_vasp.py'}"
#: olivine NaMnPO4 and spinel LiMn2O4: at least 4 candidate hops
HOSTS = ("O-NaMnPO4", "LiMn2O4")


@pytest.fixture(scope="module")
def campaign(store_location, tmp_path_factory):
    """Campaign "c" run to the end (in-process Dask: no worker start-up), on its own store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCREENER_HOME", str(tmp_path_factory.mktemp("home")))
        location = store_location()
        store = Store.connect(db=location)
        store.ensure_indexes()
        by_name = {h.name: h for h in dataset_hosts()}
        store.insert_new("hosts", [by_name[n].to_doc() for n in HOSTS])
        launch_campaign(store, "c", ScreenerConfig(working_ion="auto"))
        with LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as cl:
            run_campaign(store, "c", dask_scheduler=cl.scheduler_address)
        rows = candidates(store, "c")
        assert len(rows) >= 4 and all(r["followups"] == [] for r in rows)
        yield store, location, rows
        store.close()


def _followup_wfs(store: Store, tier: str) -> list[int]:
    return store.launchpad().get_wf_ids({"metadata.followup_campaign": "c", "metadata.tier": tier})


def test_top_n_queues_one_dft_workflow_per_hop_and_never_twice(campaign):
    store, _, rows = campaign
    lp = store.launchpad()
    report = queue_followups(store, "c", top=2, tier="dft-neb")
    assert [q["hop_key"] for q in report.queued] == [r["hop_key"] for r in rows[:2]] and report.skipped == []
    assert len(_followup_wfs(store, "dft-neb")) == 2
    for q in report.queued:
        wf = lp.get_wf_by_fw_id(q["fw_ids"][0])
        assert wf.name == f"dft-neb {q['hop_key']}" and len(wf.fws) == 3
        assert all(fw.spec["_category"] == "dft" for fw in wf.fws)
        by_id = {fw.fw_id: fw for fw in wf.fws}
        (neb_id,) = [i for i, children in wf.links.items() if not children]
        ends = sorted(wf.links.parent_links[neb_id])
        assert sorted(wf.root_fw_ids) == ends and len(ends) == 2  # two relaxations -> the CI-NEB
        assert [type(t) for t in by_id[neb_id].tasks] == [WriteNebInputs, RunVasp, ParseNeb]
        for i in ends:
            write, run = by_id[i].tasks
            assert isinstance(write, WriteEndpointInputs) and run["vasp_cmd"] == ">>vasp_cmd<<"
            assert run["pass_dir_as"] == f"endpoint_dirs->{write['label']}"
        assert sorted(by_id[i].tasks[0]["label"] for i in ends) == ["final", "initial"]
        doc = store.collection("followups").find_one({"_id": followup_id("dft-neb", q["hop_key"])})
        assert doc["fw_ids"] == sorted(by_id) and doc["fw_id"] == neb_id and doc["state"] == "queued"
        row = next(r for r in rows if r["hop_key"] == q["hop_key"])
        assert doc["prediction"]["barrier_ev"] == row["barrier_ev"]  # next to the prediction
    again = queue_followups(store, "c", top=2, tier="dft-neb")
    assert again.queued == [] and sorted(again.skipped) == sorted(q["hop_key"] for q in report.queued)
    more = queue_followups(store, "c", top=3, hop_keys=[rows[0]["hop_key"]], tier="dft-neb")
    assert [q["hop_key"] for q in more.queued] == [rows[2]["hop_key"]] and len(more.skipped) == 2
    assert len(_followup_wfs(store, "dft-neb")) == 3
    assert store.collection("followups").count_documents({"tier": "dft-neb"}) == 3


def test_workflow_added_before_a_crash_is_recorded_not_added_again(campaign):
    store, _, rows = campaign
    key = rows[3]["hop_key"]
    fid = followup_id("dft-neb", key)
    first = queue_followups(store, "c", hop_keys=[key], tier="dft-neb")
    # as if the process died after add_wf and before recording the Firework ids
    store.collection("followups").update_one({"_id": fid}, {"$unset": {"fw_ids": 1}})
    n = len(_followup_wfs(store, "dft-neb"))
    again = queue_followups(store, "c", hop_keys=[key], tier="dft-neb")
    assert [q["fw_ids"] for q in again.queued] == [first.queued[0]["fw_ids"]]
    assert len(_followup_wfs(store, "dft-neb")) == n
    assert store.collection("followups").find_one({"_id": fid})["fw_ids"] == first.queued[0]["fw_ids"]


def test_bad_requests_are_one_line_errors(campaign):
    store, _, _ = campaign
    with pytest.raises(FollowupError, match=r"hop nope:.*campaign 'c'"):
        queue_followups(store, "c", hop_keys=["nope"])
    with pytest.raises(FollowupError, match="tier 'vasp'"):
        queue_followups(store, "c", top=1, tier="vasp")
    with pytest.raises(FollowupError, match="--top"):
        queue_followups(store, "c")
    from screener.campaign import CampaignError

    with pytest.raises(CampaignError, match="not found"):
        queue_followups(store, "missing", top=1)


def test_dft_workflow_runs_on_a_vasp_worker_and_its_barrier_reaches_candidates(campaign, tmp_path):
    store, _, rows = campaign
    lp = store.launchpad()
    key = rows[0]["hop_key"]
    queue_followups(store, "c", hop_keys=[key], tier="dft-neb")  # queued by the first test, or now
    # a VASP worker whose VASP is the stand-in; only this hop's Fireworks
    worker = FWorker(name="vasp-node", category="dft", query={"spec.followup.hop_key": key},
                     env={"vasp_cmd": FAKE_VASP, "screener_store": store.spec()})
    assert not lp.run_exists(FWorker(name="cpu", category="cpu", query={"spec.followup.hop_key": key}))
    rapidfire(lp, worker, m_dir=str(tmp_path), strm_lvl="ERROR")
    doc = store.collection("followups").find_one({"_id": followup_id("dft-neb", key)})
    assert doc["state"] == "done" and doc["barrier_ev"] == pytest.approx(0.4, abs=1e-6)
    assert len(doc["energies_ev"]) == 5 and doc["profile_ev"][0] == 0
    (row,) = [r for r in candidates(store, "c") if r["hop_key"] == key]
    (f,) = row["followups"]
    assert f["tier"] == "dft-neb" and f["state"] == "done" and f["barrier_ev"] == pytest.approx(0.4, abs=1e-6)
    assert f["fw_id"] == doc["fw_id"] and f["workflow"] == f"dft-neb {key}"
    # a broken VASP: the follow-up shows as failed
    bad_key = rows[1]["hop_key"]
    queue_followups(store, "c", hop_keys=[bad_key], tier="dft-neb")
    broken = FWorker(name="broken", category="dft", query={"spec.followup.hop_key": bad_key},
                     env={"vasp_cmd": f"{sys.executable} -c 'raise SystemExit(1)'",
                          "screener_store": store.spec()})
    rapidfire(lp, broken, m_dir=str(tmp_path), strm_lvl="CRITICAL")
    assert followups_by_hop(store, [bad_key])[bad_key][0]["state"] == "failed"


@pytest.fixture
def fake_mlip(monkeypatch):
    """A stand-in for screener.followups.mlip_neb: records the end points it got, no CHGNet."""
    calls = []
    mod = types.ModuleType("screener.followups.mlip_neb")

    class MlipNebSettings:
        def __init__(self, **kw):
            self.kw = kw

    class Result:
        def __init__(self, barrier):
            self.barrier_ev, self.converged, self.seconds = barrier, True, 0.1
            self.energies_ev = [-10.0, -10.0 + barrier / 2, -10.0 + barrier, -10.0 + barrier / 2, -10.01]

        def plot(self, path):
            Path(path).write_bytes(b"\x89PNG fake")
            return Path(path)

    def run_mlip_neb(initial, final, settings=None, calculator=None):
        calls.append((initial, final, settings.kw))
        hop = initial.lattice.get_distance_and_image(initial[0].frac_coords, final[0].frac_coords)[0]
        return Result(round(hop / 10, 6))

    mod.MlipNebSettings, mod.run_mlip_neb = MlipNebSettings, run_mlip_neb
    monkeypatch.setitem(sys.modules, "screener.followups.mlip_neb", mod)
    return calls


def test_mlip_followups_run_here_to_stored_barriers_and_pngs(campaign, fake_mlip, screener_home):
    store, _, rows = campaign
    report = queue_followups(store, "c", top=2, tier="mlip-neb", mlip_settings={"fmax": 0.1})
    assert len(report.queued) == 2 and len(_followup_wfs(store, "mlip-neb")) == 2
    fw = store.launchpad().get_fw_by_id(report.queued[0]["fw_ids"][0])
    assert fw.spec["_category"] == "mlip" and isinstance(fw.tasks[0], MlipNebTask)
    done = run_followups(store, "c", tier="mlip-neb")
    assert done["ran"] == 2 and len(fake_mlip) == 2
    for initial, final, settings in fake_mlip:
        # the band's end points: same host, only site 0 (the moving ion) differs
        assert settings == {"fmax": 0.1} and initial[0].specie == final[0].specie
        assert np.allclose(initial.frac_coords[1:], final.frac_coords[1:])
        assert not np.allclose(initial.frac_coords[0], final.frac_coords[0])
    for row in rows[:2]:
        f = done["followups"][row["hop_key"]]
        assert f["state"] == "done" and f["barrier_ev"] == pytest.approx(row["hop_length"] / 10, abs=1e-5)
        doc = store.collection("followups").find_one({"_id": followup_id("mlip-neb", row["hop_key"])})
        assert Path(doc["profile_png"]).is_file() and str(screener_home / "followups") in doc["profile_png"]
        assert doc["converged"] is True and doc["profile_ev"][2] == pytest.approx(doc["barrier_ev"])
        tiers = [x["tier"] for x in next(r for r in candidates(store, "c") if r["hop_key"] == row["hop_key"])["followups"]]
        assert "mlip-neb" in tiers
    assert run_followups(store, "c", tier="mlip-neb")["ran"] == 0  # nothing left


def test_cli_queues_top_n_once_and_prints_json(campaign):
    from screener.cli import app

    _, location, rows = campaign
    runner = CliRunner()
    args = ["followup", "c", "--top", "4", "--tier", "dft-neb", "--db", location, "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert len(out["queued"]) + len(out["skipped"]) == 4
    second = json.loads(runner.invoke(app, args).stdout)
    assert second["queued"] == [] and sorted(second["skipped"]) == sorted(r["hop_key"] for r in rows[:4])
    res = runner.invoke(app, ["followup", "c", "--top", "1", "--tier", "vasp", "--db", location])
    assert res.exit_code == 2 and "--tier vasp" in res.stderr
    res = runner.invoke(app, ["followup", "c", "--top", "1", "--run", "--db", location])
    assert res.exit_code == 2 and "mlip-neb" in res.stderr
    res = runner.invoke(app, ["candidates", "c", "--json", "--db", location])
    shown = {r["hop_key"]: r["followups"] for r in json.loads(res.stdout)}
    assert all(any(f["tier"] == "dft-neb" for f in shown[r["hop_key"]]) for r in rows[:4])
    assert all(f == [] for r in rows[4:] for f in [shown[r["hop_key"]]])


@pytest.mark.slow
def test_real_chgnet_followup_of_one_hop(campaign, screener_home):
    """CHGNet NEB of the campaign's best hop, run here (minutes): a physical barrier and a PNG."""
    store, _, rows = campaign
    key = rows[0]["hop_key"]
    store.collection("followups").delete_one({"_id": followup_id("mlip-neb", key)})  # fake run above
    store.launchpad().fireworks.delete_many({"spec.followup.tier": "mlip-neb"})
    store.launchpad().workflows.delete_many({"metadata.tier": "mlip-neb"})
    queue_followups(store, "c", hop_keys=[key], tier="mlip-neb")
    done = run_followups(store, "c", tier="mlip-neb", torch_threads=1)
    f = done["followups"][key]
    assert f["state"] == "done" and 0.0 < f["barrier_ev"] < 3.0
    doc = store.collection("followups").find_one({"_id": followup_id("mlip-neb", key)})
    assert Path(doc["profile_png"]).stat().st_size > 1000 and doc["energies_ev"][0] == pytest.approx(0, abs=1e-6)
