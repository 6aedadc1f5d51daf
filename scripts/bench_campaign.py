"""A whole campaign on Materials Project hosts from the shipped pre-training set: time per stage.

Takes the first N structures of screener/data/pretrain that contain a working ion, stores them as
hosts in a fresh embedded store, launches one campaign (working ion "auto") and runs it, then
reports hosts, hops, bands and predictions with the time each FireTask step took in total.

    python scripts/bench_campaign.py [--hosts 200] [--workers 2] [--chunk 50] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def _parse(t) -> dt.datetime:
    return dt.datetime.fromisoformat(t) if isinstance(t, str) else t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("SCREENER_HOME", tempfile.mkdtemp(prefix="bench_campaign_"))

    from screener.campaign import campaign_status, launch_campaign
    from screener.config import KNOWN_IONS, ScreenerConfig
    from screener.hosts import HostInputError, host_from_structure
    from screener.model.pretrain import PRETRAIN_FILE
    from screener.runner import run_campaign
    from screener.sources.dataset import jarvis_to_structure
    from screener.store import Store

    with gzip.open(PRETRAIN_FILE, "rt") as fh:
        entries = json.load(fh)
    hosts = []
    for e in entries:
        if not set(e["atoms"]["elements"]) & set(KNOWN_IONS):
            continue
        try:
            hosts.append(host_from_structure(jarvis_to_structure(e["atoms"]), e["id"], {"kind": "mp", "id": e["id"]}))
        except HostInputError:
            continue
        if len(hosts) >= args.hosts:
            break
    store = Store.connect(db=str(Path(os.environ["SCREENER_HOME"]) / "store"))
    store.ensure_indexes()
    t0 = time.perf_counter()
    store.insert_new("hosts", [h.to_doc() for h in hosts])
    t_hosts = time.perf_counter() - t0
    t0 = time.perf_counter()
    launch_campaign(store, "bench", ScreenerConfig(working_ion="auto", chunk_size=args.chunk))
    t_launch = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_campaign(store, "bench", workers=args.workers)
    t_run = time.perf_counter() - t0
    status = campaign_status(store, "bench")
    lp = store.launchpad()
    per_step: dict[str, float] = defaultdict(float)
    for fw in lp.fireworks.find({"spec.campaign": "bench"}, {"name": 1, "launches": 1}):
        for launch in lp.launches.find({"launch_id": {"$in": fw["launches"]}}):
            if launch.get("time_end"):
                secs = (_parse(launch["time_end"]) - _parse(launch["time_start"])).total_seconds()
                per_step[fw["name"].split(":")[-1]] += secs
    result = {
        "hosts": len(hosts),
        "host_ion_pairs": status["hosts"]["total"],
        "done": status["hosts"]["done"],
        "failed": status["hosts"]["failed"],
        "hops": status["hops"],
        "bands": status["bands"],
        "predictions": status["predictions"],
        "store_hosts_s": round(t_hosts, 1),
        "launch_s": round(t_launch, 1),
        "run_s": round(t_run, 1),
        "step_s": {k: round(v, 1) for k, v in sorted(per_step.items())},
        "hosts_per_min": round(60 * len(hosts) / t_run, 1),
    }
    store.close()
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for k, v in result.items():
            print(f"{k:16s} {v}")


if __name__ == "__main__":
    main()
