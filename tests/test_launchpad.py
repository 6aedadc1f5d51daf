"""EmbeddedLaunchPad: FireWorks on the embedded store, two worker processes, the Rocket's ping thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fireworks import Firework, FWAction, FWorker, ScriptTask, Workflow
from fireworks.core.firework import FiretaskBase
from fireworks.core.rocket_launcher import launch_rocket, rapidfire
from fireworks.utilities.fw_utilities import explicit_serialize

from screener.launchpad import EmbeddedLaunchPad, init_launchpad
from screener.store import Store

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@explicit_serialize
class RecordRun(FiretaskBase):
    """Writes one document per execution into the store, so double runs are visible."""

    required_params = ["store_path", "label"]
    optional_params = ["sleep"]

    def run_task(self, fw_spec: dict) -> None:
        time.sleep(self.get("sleep", 0.0))
        with Store.embedded(Path(self["store_path"])) as store:
            store.collection("runs").insert_one({"label": self["label"], "pid": os.getpid()})


WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])              # the tests folder: RecordRun lives in test_launchpad
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire
    from screener.store import Store
    store_path, go = Path(sys.argv[1]), Path(sys.argv[2])
    store = Store.embedded(store_path)
    lp = store.launchpad()
    while not go.exists():                       # start both workers together
        time.sleep(0.01)
    rapidfire(lp, FWorker(name=f"w{os.getpid()}"), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    print("DONE", flush=True)
    """
)


@pytest.fixture
def lp(tmp_path: Path) -> EmbeddedLaunchPad:
    store = Store.embedded(tmp_path / "store")
    pad = init_launchpad(store.launchpad())
    assert isinstance(pad, EmbeddedLaunchPad)
    return pad


def record_wf(store_path: Path, n: int, name: str = "wf", sleep: float = 0.0) -> Workflow:
    fws = [Firework(RecordRun(store_path=str(store_path), label=f"{name}-{i}", sleep=sleep), name=f"{name}-{i}")
           for i in range(n)]
    return Workflow(fws, name=name)


def test_add_query_run_rerun(lp: EmbeddedLaunchPad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store_path = lp.store.path
    lp.add_wf(record_wf(store_path, 3, "a"))
    lp.add_wf(Workflow([Firework(ScriptTask.from_str("echo hi"), name="b-0")], name="b"))
    assert sorted(lp.get_wf_ids()) and len(lp.get_wf_ids()) == 2
    assert len(lp.get_fw_ids({"state": "READY"})) == 4
    assert lp.get_fw_ids(count_only=True) == 4
    assert len(lp.get_fw_ids(sort=[("created_on", -1)], limit=2)) == 2
    assert len(lp.get_wf_ids({"name": "a"}, sort=[("updated_on", 1)])) == 1
    assert len(lp.get_fw_ids_in_wfs({"name": "a"}, {"state": "READY"})) == 3
    b_id = lp.get_fw_ids({"name": "b-0"})[0]
    lp.defuse_fw(b_id)
    rapidfire(lp, FWorker(), sleep_time=0, strm_lvl="ERROR")
    assert len(lp.get_fw_ids({"state": "COMPLETED"})) == 3
    assert lp.get_fw_ids({"state": "DEFUSED"}) == [b_id]
    a_id = lp.get_fw_ids({"name": "a-0"})[0]
    assert lp.get_wf_summary_dict(a_id)["state"] == "COMPLETED"
    lp.rerun_fw(a_id)
    assert lp.get_fw_ids({"state": "READY"}) == [a_id]
    rapidfire(lp, FWorker(), sleep_time=0, strm_lvl="ERROR")
    runs = [d["label"] for d in lp.store.collection("runs").find()]
    assert sorted(runs) == ["a-0", "a-0", "a-1", "a-2"]
    # The launchpad shares the screener database.
    assert lp.db.name == lp.store.db.name and "fireworks" in lp.db.list_collection_names()


def test_two_worker_processes_run_each_firework_once(lp: EmbeddedLaunchPad, tmp_path: Path) -> None:
    n = 40
    store_path = lp.store.path
    for w in range(2):
        lp.add_wf(record_wf(store_path, n // 2, f"wf{w}", sleep=0.02))
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(store_path), str(go), str(TESTS)],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0 and "DONE" in out, err[-2000:]
    runs = list(lp.store.collection("runs").find())
    labels = sorted(d["label"] for d in runs)
    assert labels == sorted(f"wf{w}-{i}" for w in range(2) for i in range(n // 2)), "a Firework ran twice or never"
    assert len({d["pid"] for d in runs}) == 2, "both workers should have run Fireworks"
    assert len(lp.get_fw_ids({"state": "COMPLETED"})) == n
    launches = list(lp.launches.find({}, {"fw_id": 1}))
    assert len(launches) == n and len({d["fw_id"] for d in launches}) == n


def test_rocket_ping_thread_uses_its_own_connection(
    lp: EmbeddedLaunchPad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fireworks.core.rocket as rocket

    monkeypatch.setattr(rocket, "PING_TIME_SECS", 0.1)
    monkeypatch.chdir(tmp_path)
    pings: list[tuple[str, str]] = []
    original = EmbeddedLaunchPad.ping_launch

    def recording_ping(self: EmbeddedLaunchPad, launch_id: int, *args: object, **kwargs: object) -> None:
        try:
            original(self, launch_id, *args, **kwargs)
            pings.append((threading.current_thread().name, "ok"))
        except Exception as exc:  # a failing ping thread would otherwise die silently
            pings.append((threading.current_thread().name, repr(exc)))
            raise

    monkeypatch.setattr(EmbeddedLaunchPad, "ping_launch", recording_ping)
    lp.add_wf(record_wf(lp.store.path, 1, "slow", sleep=0.6))
    assert launch_rocket(lp, FWorker(), strm_lvl="ERROR")
    background = [p for p in pings if p[0] != threading.main_thread().name]
    assert background, f"the ping thread never pinged: {pings}"
    assert all(status == "ok" for _, status in pings), pings
    assert lp.get_fw_ids({"state": "COMPLETED"}) == lp.get_fw_ids()


def test_ping_from_another_thread_while_running(lp: EmbeddedLaunchPad, tmp_path: Path) -> None:
    lp.add_wf(record_wf(lp.store.path, 1, "p"))
    fw, launch_id = lp.checkout_fw(FWorker(), str(tmp_path))
    errors: list[BaseException] = []

    def ping() -> None:
        try:
            for _ in range(5):
                lp.ping_launch(launch_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=ping)
    thread.start()
    lp.complete_launch(launch_id, FWAction())
    thread.join()
    assert not errors
    assert lp.get_fw_by_id(fw.fw_id).state == "COMPLETED"


def test_lost_run_after_a_kill_is_detected_and_rerun(lp: EmbeddedLaunchPad, tmp_path: Path) -> None:
    """A worker killed mid-Firework leaves it RUNNING; detect_lostruns puts it back to READY."""
    lp.add_wf(record_wf(lp.store.path, 2, "k"))
    fw, launch_id = lp.checkout_fw(FWorker(), str(tmp_path))  # ... and the worker dies here
    assert lp.get_fw_by_id(fw.fw_id).state == "RUNNING"
    time.sleep(1.1)
    lost_launches, lost_fws, _ = lp.detect_lostruns(expiration_secs=1, rerun=True)
    assert lost_launches == [launch_id] and lost_fws == [fw.fw_id]
    assert sorted(lp.get_fw_ids({"state": "READY"})) == sorted(lp.get_fw_ids())
