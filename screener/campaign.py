"""Campaigns: which hosts are screened for which ion, how far each got, and what came out.

A campaign is a document (settings, chunks and their workflows) plus one ``campaign_hosts`` document
per (host, working ion) that walks through the states

    pending -> hops -> bands -> predicted -> done        (or failed, with the reason)

Each FireTask advances the hosts of its chunk by one state, so the state in the store, not the
FireWorks state, says what is left to do; reruns skip what is done.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from screener.config import KNOWN_IONS, ScreenerConfig, screener_home
from screener.store import Store

STATES = ("pending", "hops", "bands", "predicted", "done", "failed")


class CampaignError(ValueError):
    """A one-line problem with a campaign (unknown name, conflicting settings, ...)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def ch_id(campaign: str, host_id: str, ion: str) -> str:
    """``_id`` of a campaign_hosts document."""
    return f"{campaign}|{host_id}|{ion}"


@dataclass
class CampaignContext:
    """What a FireTask needs: the store, the campaign's settings and the Dask endpoint."""

    name: str
    store: Store
    config: ScreenerConfig
    dask_scheduler: str | None = None
    dask_workers: int | None = None
    _own_store: bool = field(default=True, repr=False)

    @classmethod
    def open(cls, name: str, store_spec: dict | None, fw_env: dict | None = None) -> "CampaignContext":
        """Open the campaign's store: the FWorker's ``screener_store``, else the store recorded in
        the Firework; where those have no password (never recorded), ``$SCREENER_DB``."""
        env = fw_env or {}
        spec = env.get("screener_store") or store_spec
        redacted = "***@" in str((spec or {}).get("uri", ""))
        if os.environ.get("SCREENER_DB") and (not spec or redacted):
            store = Store.connect(db=os.environ["SCREENER_DB"])
        else:
            store = Store.from_spec(spec)
        doc = store.campaigns.find_one({"_id": name})
        if doc is None:
            store.close()
            raise CampaignError(f"campaign {name!r}: not found in {store.describe()}")
        return cls(
            name=name,
            store=store,
            config=ScreenerConfig.from_dict(doc["config"]),
            dask_scheduler=env.get("dask_scheduler"),
            dask_workers=env.get("dask_workers"),
        )

    def set_host_state(self, ch: str, state: str, **fields: Any) -> None:
        """Advance one campaign host; ``error``/``stage`` record why and where it failed."""
        self.store.update_many_by_id(
            "campaign_hosts", [(ch, {"state": state, "updated_at": _now(), **fields})]
        )

    def close(self) -> None:
        if self._own_store:
            self.store.close()


def chunk_hosts(store: Store, campaign: str, chunk: int, state: str) -> Iterator[dict]:
    """Campaign hosts of one chunk in one state, in a stable order."""
    docs = list(store.campaign_hosts.find({"campaign": campaign, "chunk": chunk, "state": state}))
    yield from sorted(docs, key=lambda d: d["_id"])


def host_ions(host_doc: dict, working_ion: str, insertion: bool = False) -> list[str]:
    """Ions to screen a host for: the given one, or with "auto" every known ion it contains.
    insertion=True also takes hosts without the given ion (its insertion sites are found)."""
    elements = set(host_doc.get("elements") or [])
    if working_ion == "auto":
        return [ion for ion in KNOWN_IONS if ion in elements]
    return [working_ion] if insertion or working_ion in elements else []


# ---------------------------------------------------------------------------------------------
# launch


@dataclass
class LaunchReport:
    """What ``launch_campaign`` did; re-launching reports zeros."""

    campaign: str
    new_hosts: int
    new_workflows: int
    skipped_hosts: int  # hosts without the working ion
    total_hosts: int
    chunks: int


def launch_campaign(
    store: Store,
    name: str,
    config: ScreenerConfig,
    host_ids: list[str] | None = None,
) -> LaunchReport:
    """Create (or extend) campaign ``name`` and add one workflow per new chunk to the LaunchPad.

    Safe to repeat: hosts already in the campaign are not added again, and a chunk whose workflow
    is already on the LaunchPad (found by its metadata) is not added twice, even after a crash
    between adding the workflow and recording it.
    """
    from screener.workflows.build import chunk_workflow

    existing = store.campaigns.find_one({"_id": name})
    if existing is not None:
        old = ScreenerConfig.from_dict(existing["config"])
        if old != config:
            diff = {
                k: (v, config.as_dict()[k])
                for k, v in old.as_dict().items()
                if config.as_dict()[k] != v
            }
            raise CampaignError(
                f"campaign {name!r} exists with other settings ({diff}); choose another name"
            )
    else:
        store.insert_new(
            "campaigns",
            [
                {
                    "_id": name,
                    "name": name,
                    "config": config.as_dict(),
                    "created_at": _now(),
                    "chunk_wfs": {},
                    "chunks_flagged": [],
                    "summary_for_chunks": 0,
                    "store": store.spec(secrets=False),
                }
            ],
        )

    query: dict[str, Any] = {} if host_ids is None else {"_id": {"$in": list(host_ids)}}
    host_docs = list(store.hosts.find(query, {"_id": 1, "elements": 1}))
    if host_ids is not None:
        missing = set(host_ids) - {d["_id"] for d in host_docs}
        if missing:
            raise CampaignError(f"campaign {name!r}: unknown host ids {sorted(missing)[:5]}")
    pairs = []
    skipped = 0
    for d in sorted(host_docs, key=lambda d: d["_id"]):
        ions = host_ions(d, config.working_ion, config.insertion)
        if not ions:
            skipped += 1
        pairs.extend((d["_id"], ion) for ion in ions)

    with store.write_lock():
        have = {
            d["_id"]
            for d in store.campaign_hosts.find({"campaign": name}, {"_id": 1})
        }
        new_pairs = [(h, ion) for h, ion in pairs if ch_id(name, h, ion) not in have]
        last = store.campaign_hosts.find_one(
            {"campaign": name}, {"chunk": 1}, sort=[("chunk", -1)]
        )
        first_chunk = 0 if last is None else int(last["chunk"]) + 1
        docs = []
        for k, (host_id, ion) in enumerate(new_pairs):
            docs.append(
                {
                    "_id": ch_id(name, host_id, ion),
                    "campaign": name,
                    "host_id": host_id,
                    "working_ion": ion,
                    "chunk": first_chunk + k // config.chunk_size,
                    "state": "pending",
                    "hop_keys": [],
                    "updated_at": _now(),
                }
            )
        store.insert_new("campaign_hosts", docs)

    chunks = sorted({d["chunk"] for d in store.campaign_hosts.find({"campaign": name}, {"chunk": 1})})
    campaign = store.campaigns.find_one({"_id": name})
    recorded = {int(k) for k in campaign.get("chunk_wfs", {})}
    lp = store.launchpad()
    new_wfs = 0
    for chunk in chunks:
        if chunk in recorded:
            continue
        on_lp = lp.workflows.find_one(
            {"metadata.campaign": name, "metadata.chunk": chunk}, {"nodes": 1}
        )
        if on_lp is None:
            wf = chunk_workflow(name, chunk, store.spec(secrets=False), gpu=config.gpu)
            id_map = lp.add_wf(wf)
            root = min(id_map.values())
            new_wfs += 1
        else:
            root = min(on_lp["nodes"])
        store.update_many_by_id("campaigns", [(name, {f"chunk_wfs.{chunk}": root})])
    return LaunchReport(
        campaign=name,
        new_hosts=len(new_pairs),
        new_workflows=new_wfs,
        skipped_hosts=skipped,
        total_hosts=len(have) + len(new_pairs),
        chunks=len(chunks),
    )


def get_campaign(store: Store, name: str) -> dict:
    doc = store.campaigns.find_one({"_id": name})
    if doc is None:
        known = sorted(d["_id"] for d in store.campaigns.find({}, {"_id": 1}))
        raise CampaignError(
            f"campaign {name!r}: not found in {store.describe()} (known: {', '.join(known) or 'none'})"
        )
    return doc


def list_campaigns(store: Store) -> list[dict]:
    """One row per campaign: name, ion, threshold, hosts and how many are done/failed."""
    rows = []
    for doc in sorted(store.campaigns.find({}), key=lambda d: d["_id"]):
        states = Counter(
            d["state"] for d in store.campaign_hosts.find({"campaign": doc["_id"]}, {"state": 1})
        )
        cfg = doc["config"]
        rows.append(
            {
                "name": doc["_id"],
                "working_ion": cfg["working_ion"],
                "threshold_ev": cfg["threshold_ev"],
                "model": cfg["model"],
                "hosts": sum(states.values()),
                "done": states.get("done", 0),
                "failed": states.get("failed", 0),
                "created_at": doc["created_at"].isoformat() if doc.get("created_at") else None,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# flag and summary


def hop_barriers(store: Store, hop_keys: list[str], model_id: str) -> dict[str, dict]:
    """Prediction documents of ``hop_keys`` by the model ``model_id``, keyed by hop key."""
    ids = [f"{model_id}|{k}" for k in hop_keys]
    return {d["hop_key"]: d for d in store.predictions.find({"_id": {"$in": ids}})}


def flag_host(ctx: CampaignContext, ch: dict) -> None:
    """Best barrier, flagged hops and percolation barriers of one predicted host."""
    from screener.hops import Hop, equivalent_hop_edges
    from screener.hosts import Host
    from screener.ranking import percolation_barriers

    preds = hop_barriers(ctx.store, ch["hop_keys"], ch["model_id"])
    barriers = {k: p["barrier_ev"] for k, p in preds.items()}
    flagged = sorted(k for k, b in barriers.items() if b <= ctx.config.threshold_ev)
    fields: dict[str, Any] = {
        "best_barrier_ev": min(barriers.values()) if barriers else None,
        "flagged_hops": flagged,
        "n_flagged": len(flagged),
        "n_predicted": len(barriers),
        "percolation_ev": {"1d": None, "2d": None, "3d": None},
    }
    if barriers:
        host = Host.from_doc(ctx.store.hosts.find_one({"_id": ch["host_id"]}))
        hops = [
            Hop.from_doc(d)
            for d in ctx.store.hops.find({"_id": {"$in": list(barriers)}}, {"band": 0})
        ]
        try:
            edges = equivalent_hop_edges(host.structure, ch["working_ion"], hops)
            fields["percolation_ev"] = percolation_barriers(
                host.structure, ch["working_ion"], edges, barriers
            )
        except Exception as exc:  # percolation is a ranking aid; never lose the host over it
            fields["percolation_error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
    ctx.set_host_state(ch["_id"], "done", **fields)


def mark_chunk_flagged(store: Store, campaign: str, chunk: int) -> bool:
    """Record a flagged chunk; True for exactly one caller once every chunk is flagged."""
    store.campaigns.update_one({"_id": campaign}, {"$addToSet": {"chunks_flagged": chunk}})
    doc = store.campaigns.find_one({"_id": campaign})
    chunks = {int(k) for k in doc.get("chunk_wfs", {})}
    if not chunks or not chunks <= set(doc.get("chunks_flagged", [])):
        return False
    won = store.campaigns.update_one(
        {"_id": campaign, "summary_for_chunks": {"$ne": len(chunks)}},
        {"$set": {"summary_for_chunks": len(chunks)}},
    )
    return won.modified_count == 1


def summarise_campaign(ctx: CampaignContext) -> dict[str, Any]:
    """Counts, flagged hosts and a barrier histogram (PNG) for the campaign; stored on it."""
    status = campaign_status(ctx.store, ctx.name, with_fireworks=False)
    rows = candidates(ctx.store, ctx.name)
    out_dir = screener_home() / "campaigns" / ctx.name
    out_dir.mkdir(parents=True, exist_ok=True)
    png = None
    values = [r["barrier_ev"] for r in rows if r["barrier_ev"] is not None]
    if values:
        from screener.plots import barrier_histogram

        png = str(barrier_histogram(values, ctx.config.threshold_ev, out_dir / "barriers.png"))
    summary = {
        "hosts": status["hosts"],
        "hops": status["hops"],
        "predictions": status["predictions"],
        "flagged_hops": status["flagged_hops"],
        "flagged_hosts": status["flagged_hosts"],
        "top": rows[:20],
        "histogram_png": png,
        "at": _now(),
    }
    ctx.store.update_many_by_id("campaigns", [(ctx.name, {"summary": summary})])
    return {k: v for k, v in summary.items() if k != "at"}


# ---------------------------------------------------------------------------------------------
# status and candidates


def _campaign_hop_keys(store: Store, name: str) -> tuple[list[dict], list[str]]:
    chs = list(store.campaign_hosts.find({"campaign": name}))
    keys = sorted({k for ch in chs for k in ch.get("hop_keys", [])})
    return chs, keys


def campaign_status(store: Store, name: str, *, with_fireworks: bool = True) -> dict[str, Any]:
    """Counts per stage straight from the store, and every failure with its reason."""
    doc = get_campaign(store, name)
    cfg = ScreenerConfig.from_dict(doc["config"])
    chs, keys = _campaign_hop_keys(store, name)
    states = Counter(ch["state"] for ch in chs)
    n_bands = store.hops.count_documents({"_id": {"$in": keys}, "band": {"$ne": None}})
    band_failures = [
        {"hop_key": d["_id"], "host_id": d["host_id"], "error": d["band_error"]}
        for d in store.hops.find(
            {"_id": {"$in": keys}, "band_error": {"$ne": None}}, {"host_id": 1, "band_error": 1}
        )
    ]
    model_ids = sorted({ch["model_id"] for ch in chs if ch.get("model_id")})
    n_pred = store.predictions.count_documents(
        {"hop_key": {"$in": keys}, "model_id": {"$in": model_ids}}
    )
    names = {
        d["_id"]: d.get("name", d["_id"])
        for d in store.hosts.find({"_id": {"$in": [ch["host_id"] for ch in chs]}}, {"name": 1})
    }
    failures = [
        {
            "host_id": ch["host_id"],
            "name": names.get(ch["host_id"]),
            "working_ion": ch["working_ion"],
            "stage": ch.get("stage"),
            "error": ch.get("error"),
        }
        for ch in sorted(chs, key=lambda c: c["_id"])
        if ch["state"] == "failed"
    ]
    status: dict[str, Any] = {
        "campaign": name,
        "store": store.describe(),
        "working_ion": cfg.working_ion,
        "threshold_ev": cfg.threshold_ev,
        "model_ids": model_ids,
        "hosts": {"total": len(chs), **{s: states.get(s, 0) for s in STATES}},
        "hops": len(keys),
        "bands": n_bands,
        "band_failures": band_failures,
        "predictions": n_pred,
        "flagged_hops": sum(ch.get("n_flagged", 0) for ch in chs),
        "flagged_hosts": sum(1 for ch in chs if ch.get("n_flagged", 0) > 0),
        "chunks": len(doc.get("chunk_wfs", {})),
        "failures": failures,
        "complete": len(chs) > 0 and states.get("done", 0) + states.get("failed", 0) == len(chs),
    }
    if with_fireworks:
        from screener.runner import fireworks_states, lost_runs

        status["fireworks"] = fireworks_states(store, name)
        status["lost_runs"] = lost_runs(store, name)
    return status


def candidates(
    store: Store,
    name: str,
    *,
    max_barrier: float | None = None,
    ion: str | None = None,
    limit: int | None = None,
    rank_by: str = "barrier",
    per_host: bool = False,
) -> list[dict[str, Any]]:
    """Every predicted hop of the campaign as a row, lowest barrier first (with ``per_host``, only
    the best hop of each host and ion); ``followups`` lists its DFT/MLIP-NEB follow-ups (tier,
    state, barrier_ev, fw_id, workflow), so a row shows the prediction next to any check of it."""
    from screener.ranking import rank_key

    doc = get_campaign(store, name)
    threshold = ScreenerConfig.from_dict(doc["config"]).threshold_ev
    query: dict[str, Any] = {"campaign": name, "state": "done"}
    if ion:
        query["working_ion"] = ion
    chs = list(store.campaign_hosts.find(query))
    hosts = {
        d["_id"]: d
        for d in store.hosts.find(
            {"_id": {"$in": [c["host_id"] for c in chs]}}, {"name": 1, "formula": 1}
        )
    }
    rows = []
    for ch in chs:
        preds = hop_barriers(store, ch["hop_keys"], ch["model_id"])
        lengths = {
            d["_id"]: d["length"]
            for d in store.hops.find({"_id": {"$in": list(preds)}}, {"length": 1})
        }
        host = hosts.get(ch["host_id"], {})
        for key, p in preds.items():
            barrier = p["barrier_ev"]
            if max_barrier is not None and barrier > max_barrier:
                continue
            rows.append(
                {
                    "host_id": ch["host_id"],
                    "name": host.get("name"),
                    "formula": host.get("formula"),
                    "working_ion": ch["working_ion"],
                    "hop_key": key,
                    "hop_length": lengths.get(key),
                    "barrier_ev": barrier,
                    "barrier_std_ev": p["barrier_std_ev"],
                    "flagged": barrier <= threshold,
                    "host_best_barrier_ev": ch.get("best_barrier_ev"),
                    "percolation_ev": ch.get("percolation_ev"),
                    "model_id": p["model_id"],
                }
            )
    rows.sort(key=lambda r: rank_key(r, rank_by))
    if per_host:
        seen: set[tuple[str, str]] = set()
        best = []
        for r in rows:
            if (r["host_id"], r["working_ion"]) not in seen:
                seen.add((r["host_id"], r["working_ion"]))
                best.append(r)
        rows = best
    rows = rows[:limit] if limit else rows
    from screener.followups.queue import followups_by_hop  # late: followups imports campaign

    followups = followups_by_hop(store, [r["hop_key"] for r in rows])
    for r in rows:
        r["followups"] = followups.get(r["hop_key"], [])
    return rows
