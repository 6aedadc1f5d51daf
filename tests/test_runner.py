"""Lost runs: a Firework left RUNNING (and its workflow left locked) by a killed runner."""

from __future__ import annotations

import socket

from fireworks import FWAction, FWorker

from screener.campaign import campaign_status, launch_campaign
from screener.config import ScreenerConfig
from screener.runner import fireworks_states, recover_lost_runs, runner_lock
from screener.sources.dataset import dataset_hosts


def _one_host_campaign(store) -> None:
    host = next(h for h in dataset_hosts() if h.name == "KNiF3")
    store.insert_new("hosts", [host.to_doc()])
    launch_campaign(store, "c", ScreenerConfig(working_ion="K"))


def test_run_of_a_dead_runner_is_rerun_and_its_workflow_unlocked(store, tmp_path):
    _one_host_campaign(store)
    lp = store.launchpad()
    dead = FWorker(name=f"screener-{socket.gethostname()}-999999", category="cpu")
    fw, launch_id = lp.checkout_fw(dead, str(tmp_path))
    assert fw is not None and fireworks_states(store, "c")["RUNNING"] == 1
    lp.workflows.update_one({"nodes": fw.fw_id}, {"$set": {"locked": True}})  # killed mid-update
    assert campaign_status(store, "c")["lost_runs"] == [fw.fw_id]  # reported, not yet rerun
    assert recover_lost_runs(store, "c") == [fw.fw_id]
    assert campaign_status(store, "c")["lost_runs"] == []
    assert lp.get_fw_dict_by_id(fw.fw_id)["state"] == "READY"
    assert lp.workflows.find_one({"nodes": fw.fw_id, "locked": {"$exists": True}}) is None


def test_leftovers_of_a_runner_killed_mid_checkout_or_mid_completion_are_repaired(store, tmp_path):
    _one_host_campaign(store)
    lp = store.launchpad()
    (first,) = lp.get_fw_ids({"spec.campaign": "c", "state": "READY"})  # the hops step
    (second,) = lp.workflows.find_one({"nodes": first})["links"][str(first)]  # the bands step
    # killed inside checkout_fw: reserved, but no launch was written yet
    lp.fireworks.update_one({"fw_id": first}, {"$set": {"state": "RESERVED"}})
    if store.mode == "embedded":
        assert recover_lost_runs(store, "c") == [first]
        assert lp.get_fw_dict_by_id(first)["state"] == "READY"
    # killed inside complete_launch: the launch and the Firework are COMPLETED, but the workflow
    # was not refreshed, so the next step never became READY
    with runner_lock() as name:
        lp.rerun_fw(first)
        fw, launch_id = lp.checkout_fw(FWorker(name=name, category="cpu"), str(tmp_path))
        lp.complete_launch(launch_id, FWAction())
    assert lp.get_fw_dict_by_id(second)["state"] == "READY"
    lp.fireworks.update_one({"fw_id": second}, {"$set": {"state": "WAITING"}})
    lp.workflows.update_one(
        {"nodes": first},
        {"$set": {f"fw_states.{first}": "RUNNING", f"fw_states.{second}": "WAITING"}},
    )
    from screener.runner import refresh_stalled_workflows

    assert refresh_stalled_workflows(store, "c") == [second]
    assert lp.get_fw_dict_by_id(second)["state"] == "READY"


def test_run_of_a_live_runner_is_left_alone(store, tmp_path):
    _one_host_campaign(store)
    lp = store.launchpad()
    with runner_lock() as name:
        fw, _ = lp.checkout_fw(FWorker(name=name, category="cpu"), str(tmp_path))
        assert recover_lost_runs(store, "c") == []
        assert lp.get_fw_dict_by_id(fw.fw_id)["state"] == "RUNNING"
    # a runner on another machine cannot be judged by its lock file: left to the ping expiry
    other = FWorker(name="screener-elsewhere-1", category="cpu")
    lp.rerun_fw(fw.fw_id)
    fw2, _ = lp.checkout_fw(other, str(tmp_path))
    assert recover_lost_runs(store, "c") == []
    assert lp.get_fw_dict_by_id(fw2.fw_id)["state"] == "RUNNING"


def test_unexpected_error_in_one_host_is_recorded_and_the_chunk_goes_on(store, monkeypatch):
    import screener.hops
    from screener.workflows.tasks import EnumerateHopsTask

    by_name = {h.name: h for h in dataset_hosts()}
    good, bad = by_name["KNiF3"], by_name["O-NaMnPO4"]
    store.insert_new("hosts", [good.to_doc(), bad.to_doc()])
    launch_campaign(store, "c", ScreenerConfig(working_ion="auto"))
    real = screener.hops.enumerate_hops

    def flaky(structure, host_id, *args, **kwargs):
        if host_id == bad.host_id:
            raise RuntimeError("symmetry search exploded")
        return real(structure, host_id, *args, **kwargs)

    monkeypatch.setattr(screener.hops, "enumerate_hops", flaky)
    EnumerateHopsTask(campaign="c", chunk=0, store=store.spec()).run_task({})
    states = {d["host_id"]: d for d in store.campaign_hosts.find({"campaign": "c"})}
    assert states[good.host_id]["state"] == "hops" and states[good.host_id]["n_hops"] > 0
    assert states[bad.host_id]["state"] == "failed"
    assert states[bad.host_id]["error"] == "RuntimeError: symmetry search exploded"
