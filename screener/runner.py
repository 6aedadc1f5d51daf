"""Run a campaign's Fireworks here: rapidfire with one Dask cluster shared by all inference steps.

Each runner holds an exclusive lock file named after its host and process id and runs as the
FWorker ``screener-<host>-<pid>``; a RUNNING Firework whose runner on this host no longer holds its
lock was lost (the process was killed) and is rerun before new work starts. On a real MongoDB,
runs lost on other machines are found by FireWorks' own ping-based ``detect_lostruns``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from filelock import FileLock, Timeout

from screener.config import screener_home
from screener.store import Store

#: Runs on other machines count as lost when they have not pinged for this long (real MongoDB).
LOST_AFTER_S = 4 * 3600


def _runners_dir() -> Path:
    d = screener_home() / "runners"
    d.mkdir(parents=True, exist_ok=True)
    return d


@functools.lru_cache(maxsize=None)
def fireworks_log(home: Path) -> TextIO:
    """Where the Rockets' own log lines go during a run (kept open for the process's life, since
    FireWorks binds its stream handlers to whatever stdout was when it made them)."""
    path = home / "logs" / "fireworks.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", buffering=1)  # noqa: SIM115


def runner_name(pid: int | None = None) -> str:
    return f"screener-{socket.gethostname()}-{pid or os.getpid()}"


@contextlib.contextmanager
def runner_lock() -> Iterator[str]:
    """Hold this process's liveness lock for the duration of a run; yields the FWorker name."""
    name = runner_name()
    lock = FileLock(str(_runners_dir() / f"{name}.lock"))
    with lock:
        yield name


def _runner_alive(fworker_name: str) -> bool | None:
    """True/False for runners of this host (by their lock), None when it cannot be told here."""
    prefix = f"screener-{socket.gethostname()}-"
    if not fworker_name.startswith(prefix):
        return None
    if fworker_name == runner_name():
        return True
    path = _runners_dir() / f"{fworker_name}.lock"
    try:
        with FileLock(str(path), timeout=0):
            pass
    except Timeout:
        return True
    with contextlib.suppress(OSError):
        path.unlink()
    return False


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def fireworks_states(store: Store, campaign: str) -> dict[str, int]:
    """Firework counts per state for one campaign."""
    lp = store.launchpad()
    states = Counter(d["state"] for d in lp.fireworks.find({"spec.campaign": campaign}, {"state": 1}))
    return dict(sorted(states.items()))


def clear_stale_workflow_locks(store: Store, campaign: str, fw_ids: list[int] | None = None) -> int:
    """Release FireWorks workflow locks left by a killed runner; returns how many were set.

    A runner killed inside a workflow update leaves the workflow ``locked`` and every later update
    of it waits five minutes and fails. On the embedded store every workflow lock is taken inside
    the store's cross-process lock, so under that lock any set flag is stale. On a real MongoDB only
    the workflows of runs known to be lost (``fw_ids``) are released.
    """
    lp = store.launchpad()
    query: dict[str, Any] = {"metadata.campaign": campaign, "locked": {"$exists": True}}
    if store.mode != "embedded":
        if not fw_ids:
            return 0
        query["nodes"] = {"$in": list(fw_ids)}
    with store.write_lock():
        return lp.workflows.update_many(query, {"$unset": {"locked": True}}).modified_count


def lost_runs(store: Store, campaign: str) -> list[int]:
    """The campaign's RUNNING/RESERVED Fireworks whose runner is gone (read-only).

    The runner is the FWorker of the Firework's newest launch: gone when it ran on this host and
    no longer holds its lock file. On the embedded store every checkout runs under the store's
    lock, so a RESERVED or RUNNING Firework without a launch, seen under that lock, is what a
    runner killed mid-checkout left behind, and is lost too.
    """
    lp = store.launchpad()
    lost = []
    with store.write_lock():
        for fw in lp.fireworks.find(
            {"spec.campaign": campaign, "state": {"$in": ["RUNNING", "RESERVED"]}}, {"fw_id": 1}
        ):
            launch = lp.launches.find_one({"fw_id": fw["fw_id"]}, sort=[("launch_id", -1)])
            if launch is None or launch.get("state") not in ("RUNNING", "RESERVED"):
                if store.mode == "embedded":
                    lost.append(fw["fw_id"])
                continue
            if _runner_alive((launch.get("fworker") or {}).get("name", "")) is False:
                lost.append(fw["fw_id"])
    return sorted(lost)


def refresh_stalled_workflows(store: Store, campaign: str) -> list[int]:
    """Make READY the Fireworks left WAITING although all their parents completed (a runner killed
    between completing a launch and refreshing its workflow); returns their ids."""
    lp = store.launchpad()
    fixed = []
    for wf in lp.workflows.find({"metadata.campaign": campaign}, {"nodes": 1, "parent_links": 1}):
        states = {
            d["fw_id"]: d["state"]
            for d in lp.fireworks.find({"fw_id": {"$in": wf["nodes"]}}, {"fw_id": 1, "state": 1})
        }
        for fw_id, state in sorted(states.items()):
            parents = (wf.get("parent_links") or {}).get(str(fw_id), [])
            if state == "WAITING" and parents and all(states.get(p) == "COMPLETED" for p in parents):
                # FireWorks refreshes from the workflow's cached fw_states: sync them first
                with store.write_lock():
                    lp.workflows.update_one(
                        {"_id": wf["_id"]},
                        {"$set": {f"fw_states.{k}": v for k, v in states.items()}},
                    )
                lp._refresh_wf(fw_id)
                fixed.append(fw_id)
    return fixed


def recover_lost_runs(store: Store, campaign: str) -> list[int]:
    """Rerun the campaign's lost Fireworks (see ``lost_runs``; on a real MongoDB also those whose
    runner elsewhere stopped pinging); returns their ids."""
    lp = store.launchpad()
    if store.mode == "embedded":
        clear_stale_workflow_locks(store, campaign)
    lost = lost_runs(store, campaign)
    for fw_id in lost:
        clear_stale_workflow_locks(store, campaign, [fw_id])
        lp.rerun_fw(fw_id)
    if store.mode == "mongodb":  # runs of other machines: FireWorks' ping-based detection
        _, stale, _ = lp.detect_lostruns(
            expiration_secs=LOST_AFTER_S, query={"spec.campaign": campaign}
        )
        clear_stale_workflow_locks(store, campaign, stale)
        for fw_id in stale:
            lp.rerun_fw(fw_id)
        lost.extend(stale)
    refresh_stalled_workflows(store, campaign)
    return sorted(set(lost))


def launch_until_done(store: Store, fworker: Any, launch_dir: Path, max_fireworks: int | None = None,
                      after_each: Callable[[], Any] | None = None) -> int:
    """Launch the Fireworks fworker may run, one at a time, until none is ready (or max_fireworks
    ran); returns how many ran. The tasks reopen the store (a server's password travels by
    environment, not the database), FireWorks' chatter goes to the log file, the cwd is restored."""
    from fireworks.core.rocket_launcher import rapidfire

    lp = store.launchpad()
    ran = 0
    with contextlib.ExitStack() as stack:
        if store.mode == "mongodb" and store.uri:
            stack.enter_context(_environ("SCREENER_DB", store.uri))
        cwd = os.getcwd()
        stack.enter_context(contextlib.redirect_stdout(fireworks_log(screener_home())))
        try:
            while lp.run_exists(fworker):
                rapidfire(lp, fworker, m_dir=str(launch_dir), nlaunches=1, strm_lvl="ERROR")
                ran += 1
                if after_each is not None:
                    after_each()
                if max_fireworks is not None and ran >= max_fireworks:
                    break
        finally:
            os.chdir(cwd)
    return ran


def run_campaign(
    store: Store,
    campaign: str,
    *,
    dask_scheduler: str | None = None,
    workers: int = 2,
    max_fireworks: int | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, Any]:
    """Run the campaign's ready Fireworks until none are left (or ``max_fireworks`` ran).

    One Dask client serves every inference step of this run: on ``dask_scheduler`` when given,
    else on a LocalCluster of ``workers`` processes started here. Returns the Firework states.
    """
    from fireworks import FWorker

    from screener.campaign import get_campaign
    from screener.inference import dask_client

    doc = get_campaign(store, campaign)
    gpu = bool(doc["config"].get("gpu"))
    lp = store.launchpad()
    launch_dir = screener_home() / "launches" / campaign
    launch_dir.mkdir(parents=True, exist_ok=True)
    categories = ["cpu", "gpu"] if gpu else ["cpu"]
    query = {"spec.campaign": campaign}
    ran = 0
    with runner_lock() as name:
        lost = recover_lost_runs(store, campaign)
        if not lp.run_exists(FWorker(name=name, category=categories, query=query)):
            return {"ran": 0, "lost_rerun": lost, "fireworks": fireworks_states(store, campaign)}
        with contextlib.ExitStack() as stack:
            scheduler = dask_scheduler
            if scheduler is None:
                client = stack.enter_context(dask_client(None, workers))
                scheduler = client.scheduler.address
            fworker = FWorker(
                name=name,
                category=categories,
                query=query,
                env={
                    "dask_scheduler": scheduler,
                    "dask_workers": workers,
                    "screener_store": store.spec(secrets=False),
                },
            )
            report = (lambda: on_progress(fireworks_states(store, campaign))) if on_progress else None
            ran = launch_until_done(store, fworker, launch_dir, max_fireworks, report)
    return {"ran": ran, "lost_rerun": lost, "fireworks": fireworks_states(store, campaign)}
