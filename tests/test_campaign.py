"""A campaign end to end on real dataset hosts: launch, run, status, candidates, re-runs, SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from screener.campaign import (
    CampaignError,
    campaign_status,
    candidates,
    launch_campaign,
)
from screener.config import ScreenerConfig
from screener.runner import run_campaign
from screener.sources.dataset import dataset_hosts
from screener.store import Store

#: olivine, spinel, perovskite-like fluoride, NASICON (all discharged), and a charged spinel
#: whose only Mg is the migrating one (no Mg-Mg hop: fails with its reason).
HOST_NAMES = ("O-NaMnPO4", "LiMn2O4", "KNiF3", "CaCo2S3O12", "Co2O4_Mg")


@pytest.fixture(scope="module")
def hosts():
    by_name = {h.name: h for h in dataset_hosts()}
    return [by_name[n] for n in HOST_NAMES]


def _launch(store: Store, hosts, name="t") -> None:
    store.insert_new("hosts", [h.to_doc() for h in hosts])
    launch_campaign(store, name, ScreenerConfig(working_ion="auto", chunk_size=2))


def _snapshot(store: Store, name: str) -> dict:
    """What a campaign produced: hop keys, band sizes and predictions (rounded)."""
    status = campaign_status(store, name, with_fireworks=False)
    chs = list(store.campaign_hosts.find({"campaign": name}))
    keys = sorted({k for ch in chs for k in ch.get("hop_keys", [])})
    bands = {d["_id"]: d.get("band_nsites") for d in store.hops.find({"_id": {"$in": keys}}, {"band_nsites": 1})}
    preds = {
        d["hop_key"]: round(d["barrier_ev"], 6)
        for d in store.predictions.find({"hop_key": {"$in": keys}})
    }
    return {"hosts": status["hosts"], "keys": keys, "bands": bands, "preds": preds}


@pytest.fixture(scope="module")
def reference(store_location, hosts):
    """An uninterrupted run on a store of its own (embedded, or --mongodb-uri)."""
    store = Store.connect(db=store_location())
    store.ensure_indexes()
    _launch(store, hosts)
    result = run_campaign(store, "t", workers=1)
    snap = _snapshot(store, "t")
    yield store, result, snap
    store.close()


def test_campaign_runs_every_stage(reference, hosts):
    store, result, snap = reference
    assert result["fireworks"] == {"COMPLETED": 3 * 4 + 1}  # 3 chunks of 4 steps + the summary
    status = campaign_status(store, "t")
    assert status["hosts"]["total"] == len(hosts)
    assert status["hosts"]["done"] == 4 and status["hosts"]["failed"] == 1
    (failure,) = status["failures"]
    assert failure["name"] == "Co2O4_Mg" and "Mg" in failure["error"]
    # counts match the store itself
    keys = snap["keys"]
    assert status["hops"] == len(keys) == store.hops.count_documents({"_id": {"$in": keys}}) > 4
    assert status["bands"] == store.hops.count_documents({"_id": {"$in": keys}, "band": {"$ne": None}})
    assert status["predictions"] == store.predictions.count_documents({"hop_key": {"$in": keys}})
    assert status["predictions"] == status["bands"] - 0 and status["complete"]
    # each band starts with the migrating ion five times
    band = store.hops.find_one({"_id": keys[0]})["band"]
    assert len(set(band["species"][:5])) == 1
    summary = store.campaigns.find_one({"_id": "t"})["summary"]
    assert summary["predictions"] == status["predictions"] and os.path.exists(summary["histogram_png"])


def test_candidates_are_ranked_with_required_fields(reference):
    store, _, _ = reference
    rows = candidates(store, "t")
    assert rows, "no candidates"
    needed = {"host_id", "formula", "working_ion", "hop_key", "hop_length", "barrier_ev",
              "barrier_std_ev", "flagged"}
    assert all(needed <= set(r) for r in rows)
    barriers = [r["barrier_ev"] for r in rows]
    assert barriers == sorted(barriers)
    assert all(r["flagged"] == (r["barrier_ev"] <= 0.65) for r in rows)
    assert all(r["barrier_std_ev"] > 0 for r in rows)
    assert {r["working_ion"] for r in rows} == {"Na", "Li", "K", "Ca"}
    assert candidates(store, "t", limit=3) == rows[:3]
    assert all(r["barrier_ev"] <= 0.5 for r in candidates(store, "t", max_barrier=0.5))
    assert {r["working_ion"] for r in candidates(store, "t", ion="Li")} == {"Li"}
    # every done host got percolation barriers computed from its own hop network
    for ch in store.campaign_hosts.find({"campaign": "t", "state": "done"}):
        assert set(ch["percolation_ev"]) == {"1d", "2d", "3d"}


def test_relaunch_and_rerun_add_nothing(reference, hosts):
    store, _, snap = reference
    report = launch_campaign(store, "t", ScreenerConfig(working_ion="auto", chunk_size=2))
    assert report.new_hosts == 0 and report.new_workflows == 0
    again = run_campaign(store, "t", workers=1)
    assert again["ran"] == 0
    assert _snapshot(store, "t") == snap
    with pytest.raises(CampaignError, match="other settings"):
        launch_campaign(store, "t", ScreenerConfig(working_ion="auto", threshold_ev=0.5))


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Run the CLI; output goes through files, so the call returns when the CLI itself exits
    (a pipe would also wait for any grandchild that inherited it, e.g. a slow Dask worker)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "screener.cli", *args],
            stdout=out, stderr=err, text=True, env=env, timeout=300,
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def _new_campaign(store_location, hosts) -> tuple[Store, str]:
    """A store of its own with campaign "t" launched; returns it and its `--db` argument."""
    db = store_location()
    store = Store.connect(db=db)
    store.ensure_indexes()
    _launch(store, hosts)
    return store, db


def _start_run(db: str, env: dict) -> subprocess.Popen:
    """`screener campaign run t` in the background, in a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "screener.cli", "campaign", "run", "t", "--db", db, "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, hosts, reference, store_location):
    """Kill `campaign run` with SIGKILL mid-way; a status query from a second process works while
    it runs; a second `campaign run` finishes with the same hops, bands and predictions."""
    _, _, ref = reference
    store, db = _new_campaign(store_location, hosts)
    env = {**os.environ, "SCREENER_HOME": str(tmp_path / "home")}
    proc = _start_run(db, env)
    try:
        # a second process reads the store while the run writes to it
        st = _cli("campaign", "status", "t", "--db", db, "--json", env=env)
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)  # stdout is exactly one JSON document
        assert status["hosts"]["total"] == len(hosts)
        assert proc.poll() is None, "run finished before the status query returned"
        # kill it as soon as a first Firework has finished (polling this process's own connection)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if campaign_status(store, "t")["fireworks"].get("COMPLETED", 0) >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        try:  # the run's Dask workers are its children: don't leave them behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    partial = campaign_status(store, "t")
    assert not partial["complete"]
    resumed = _cli("campaign", "run", "t", "--db", db, "--workers", "1", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "lost runs rerun" in resumed.stdout
    assert _snapshot(store, "t") == ref
    final = campaign_status(store, "t")
    assert final["complete"] and set(final["fireworks"]) == {"COMPLETED"}
    store.close()


@pytest.mark.slow
def test_killed_again_and_again_still_converges(tmp_path, hosts, reference, store_location):
    """SIGKILL `campaign run` at random moments, eight times over; the last run still finishes
    with the same hops, bands and predictions as the uninterrupted run."""
    import random

    _, _, ref = reference
    store, db = _new_campaign(store_location, hosts)
    env = {**os.environ, "SCREENER_HOME": str(tmp_path / "home")}
    rng = random.Random(1)
    for _ in range(8):
        proc = _start_run(db, env)
        time.sleep(rng.uniform(3.0, 9.0))
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    resumed = _cli("campaign", "run", "t", "--db", db, "--workers", "1", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert _snapshot(store, "t") == ref
    assert set(campaign_status(store, "t")["fireworks"]) == {"COMPLETED"}
    store.close()


def test_insertion_campaign_screens_an_empty_framework(store_location):
    """--insertion: a host without the ion (charged olivine FePO4) gets hops between Li insertion
    sites, interstitial bands (one Li, the empty host) and predictions; the b-axis hop is there."""
    from screener.bands import band_from_doc
    from screener.hosts import host_from_structure

    from _dataset import dataset_host

    fw, ion = dataset_host("O-FePO4_Li")
    fw.remove_species([ion])
    host = host_from_structure(fw, "FePO4-empty", {"kind": "test"})
    store = Store.connect(db=store_location())
    store.ensure_indexes()
    store.insert_new("hosts", [host.to_doc()])
    report = launch_campaign(store, "ins", ScreenerConfig(working_ion="Li", insertion=True, max_hop_length=3.2))
    assert report.new_hosts == 1 and report.skipped_hosts == 0
    run_campaign(store, "ins", workers=1)
    ch = store.campaign_hosts.find_one({"campaign": "ins"})
    assert ch["state"] == "done", ch.get("error")
    hops = list(store.hops.find({"_id": {"$in": ch["hop_keys"]}}))
    assert any(abs(h["length"] - 3.0) < 0.05 for h in hops)
    band = band_from_doc(hops[0]["band"])
    assert band.composition["Li"] == 5 and all(s.specie.symbol != "Li" for s in band.sites[5:])
    assert store.predictions.count_documents({"hop_key": {"$in": ch["hop_keys"]}}) == len(hops)
    # without --insertion the same host is not part of a Li campaign
    plain = launch_campaign(store, "plain", ScreenerConfig(working_ion="Li"))
    assert plain.new_hosts == 0 and plain.skipped_hosts == 1
    with pytest.raises(ValueError, match="explicit working ion"):
        ScreenerConfig(working_ion="auto", insertion=True)
    store.close()


def test_site_model_reaches_the_insertion_sites_and_is_checked(store_location, monkeypatch, tmp_path):
    """site_model is passed to the insertion-site finder, with a relaxation cache under
    $SCREENER_HOME (a re-run step doesn't relax again); an unknown one is refused in one line."""
    import screener.sites as sites
    from screener.hosts import host_from_structure

    from _dataset import dataset_host

    with pytest.raises(ValueError, match="unknown site_model 'dft'"):
        ScreenerConfig(working_ion="Li", insertion=True, site_model="dft")
    monkeypatch.setenv("SCREENER_HOME", str(tmp_path / "home"))
    seen = []
    real = sites.insertion_hops

    def recording(structure, host_id, ion, **kw):
        seen.append((kw["relax"], kw["relax_settings"]))
        return real(structure, host_id, ion, **{**kw, "relax": "none", "relax_settings": None})

    monkeypatch.setattr(sites, "insertion_hops", recording)
    fw, ion = dataset_host("O-FePO4_Li")
    fw.remove_species([ion])
    store = Store.connect(db=store_location())
    store.ensure_indexes()
    store.insert_new("hosts", [host_from_structure(fw, "FePO4-empty", {"kind": "test"}).to_doc()])
    cfg = ScreenerConfig(working_ion="Li", insertion=True, max_hop_length=3.2, site_model="chgnet-framework")
    launch_campaign(store, "ins-fw", cfg)
    run_campaign(store, "ins-fw", workers=1)
    assert store.campaign_hosts.find_one({"campaign": "ins-fw"})["state"] == "done"
    assert [r for r, _ in seen] == ["chgnet-framework"]
    assert seen[0][1].cache_dir == str(tmp_path / "home" / "site-relax")
    store.close()
