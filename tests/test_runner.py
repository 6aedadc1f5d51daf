"""Lost runs: a Firework left RUNNING (and its workflow left locked) by a killed runner."""

from __future__ import annotations

import socket

from fireworks import FWorker

from screener.campaign import launch_campaign
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
    assert recover_lost_runs(store, "c") == [fw.fw_id]
    assert lp.get_fw_dict_by_id(fw.fw_id)["state"] == "READY"
    assert lp.workflows.find_one({"nodes": fw.fw_id, "locked": {"$exists": True}}) is None


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
