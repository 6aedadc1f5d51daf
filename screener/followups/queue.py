"""Queue follow-ups of a campaign's best hops as FireWorks workflows, each hop and tier once.

A follow-up is claimed by inserting its ``followups`` document (``_id`` "<tier>|<hop_key>") with
insert_new, then its workflow is added to the store's LaunchPad and its Firework ids recorded. A
crash between the two is repaired on the next call: the workflow is found by its metadata
(``followup``), so nothing is added twice and nothing is lost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from fireworks import Firework, Workflow
from pymatgen.core import Structure

from screener.followups import TIERS
from screener.followups.tasks import (
    FOLLOWUPS,
    MlipNebTask,
    ParseNeb,
    RunVasp,
    WriteEndpointInputs,
    WriteNebInputs,
)
from screener.store import Store

#: Firework category per tier: FWorkers with that category pick them up (fw_specs/fworker_*.yaml).
CATEGORY = {"dft-neb": "dft", "mlip-neb": "mlip"}


class FollowupError(ValueError):
    """Bad follow-up request; str() is one line naming the campaign/hop/tier and the reason."""


def followup_id(tier: str, hop_key: str) -> str:
    """``_id`` of a followups document."""
    return f"{tier}|{hop_key}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _spec(category: str, meta: dict[str, Any]) -> dict[str, Any]:
    # `followup`, not `campaign`: campaign runs (query spec.campaign) must not count these.
    return {"_category": category, "followup": dict(meta)}


# ---------------------------------------------------------------------------------------------
# workflows


def dft_neb_workflow(
    band: Structure,
    meta: dict[str, Any],
    *,
    store: dict | None = None,
    vasp_cmd: str | list = ">>vasp_cmd<<",
    nimages: int = 3,
    endpoint_incar: dict | None = None,
    neb_incar: dict | None = None,
    potcar_spec: bool | None = None,
) -> Workflow:
    """Relax both end points (in parallel), then CI-NEB on IDPP images and parse it.

    ``meta``: {id, tier, campaign, hop_key}; every Firework has ``_category`` "dft"."""
    from screener.bands import band_endpoints

    initial, final = band_endpoints(band)
    key = meta["hop_key"]
    common = {} if potcar_spec is None else {"potcar_spec": potcar_spec}
    ends = []
    for label, s in (("initial", initial), ("final", final)):
        ends.append(
            Firework(
                [
                    WriteEndpointInputs(
                        structure=s.as_dict(), label=label, user_incar_settings=endpoint_incar or {}, **common
                    ),
                    RunVasp(vasp_cmd=vasp_cmd, pass_dir_as=f"endpoint_dirs->{label}"),
                ],
                spec=_spec("dft", meta),
                name=f"dft-neb {key} relax {label}",
            )
        )
    parse = {"followup_id": meta["id"], **({"store": store} if store else {})}
    neb = Firework(
        [
            WriteNebInputs(nimages=nimages, user_incar_settings=neb_incar or {}, **common),
            RunVasp(vasp_cmd=vasp_cmd),
            ParseNeb(**parse),
        ],
        spec=_spec("dft", meta),
        name=f"dft-neb {key} ci-neb",
        parents=ends,
    )
    return Workflow(ends + [neb], name=f"dft-neb {key}", metadata=_metadata(meta))


def mlip_neb_workflow(meta: dict[str, Any], *, store: dict | None = None, settings: dict | None = None) -> Workflow:
    """One Firework (``_category`` "mlip"): CHGNet NEB of the hop's band, loaded from the store."""
    params: dict[str, Any] = {"followup_id": meta["id"], "hop_key": meta["hop_key"]}
    if store:
        params["store"] = store
    if settings:
        params["settings"] = dict(settings)
    fw = Firework([MlipNebTask(**params)], spec=_spec("mlip", meta), name=f"mlip-neb {meta['hop_key']}")
    return Workflow([fw], name=f"mlip-neb {meta['hop_key']}", metadata=_metadata(meta))


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    return {"followup": meta["id"], "tier": meta["tier"], "followup_campaign": meta["campaign"],
            "hop_key": meta["hop_key"]}


# ---------------------------------------------------------------------------------------------
# queueing


@dataclass
class FollowupReport:
    """What queue_followups did; a repeat reports everything as skipped."""

    campaign: str
    tier: str
    queued: list[dict[str, Any]] = field(default_factory=list)  # {hop_key, followup_id, fw_ids, workflow}
    skipped: list[str] = field(default_factory=list)  # hop keys already queued at this tier

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _select(store: Store, campaign: str, top: int | None, hop_keys: list[str] | None) -> list[dict]:
    """Candidate rows: the campaign's ``top`` best hops, then the given hop keys, no repeats."""
    from screener.campaign import candidates

    if top is None and not hop_keys:
        raise FollowupError(f"campaign {campaign!r}: give --top N or at least one --hop KEY")
    if top is not None and top < 1:
        raise FollowupError(f"campaign {campaign!r}: --top must be at least 1, got {top}")
    rows = candidates(store, campaign)
    chosen = list(rows[:top]) if top else []
    by_key = {r["hop_key"]: r for r in rows}
    for key in hop_keys or []:
        if key not in by_key:
            raise FollowupError(f"hop {key}: not a predicted hop of campaign {campaign!r}")
        if all(r["hop_key"] != key for r in chosen):
            chosen.append(by_key[key])
    return chosen


def queue_followups(
    store: Store,
    campaign: str,
    *,
    top: int | None = None,
    hop_keys: list[str] | None = None,
    tier: str = "dft-neb",
    mlip_settings: dict | None = None,
    vasp_cmd: str | list = ">>vasp_cmd<<",
    endpoint_incar: dict | None = None,
    neb_incar: dict | None = None,
) -> FollowupReport:
    """Add one workflow per chosen hop to ``store.launchpad()``; hops already queued at ``tier``
    are skipped. Chosen: the campaign's ``top`` best candidates and/or ``hop_keys``."""
    from screener.bands import band_from_doc

    if tier not in TIERS:
        raise FollowupError(f"tier {tier!r}: unknown; use one of {', '.join(TIERS)}")
    rows = _select(store, campaign, top, hop_keys)
    report = FollowupReport(campaign=campaign, tier=tier)
    store_spec = store.spec(secrets=False)
    lp = store.launchpad()
    coll = store.collection(FOLLOWUPS)
    for row in rows:
        key = row["hop_key"]
        fid = followup_id(tier, key)
        meta = {"id": fid, "tier": tier, "campaign": campaign, "hop_key": key}
        with store.write_lock():  # one queuer at a time decides "queued or not" per hop
            store.insert_new(
                FOLLOWUPS,
                [
                    {
                        "_id": fid,
                        "tier": tier,
                        "hop_key": key,
                        "host_id": row["host_id"],
                        "working_ion": row["working_ion"],
                        "campaign": campaign,
                        "state": "queued",
                        "prediction": {k: row[k] for k in ("model_id", "barrier_ev", "barrier_std_ev")},
                        "queued_at": _now(),
                    }
                ],
            )
            if coll.find_one({"_id": fid}).get("fw_ids"):
                report.skipped.append(key)
                continue
            found = lp.workflows.find_one({"metadata.followup": fid}, {"nodes": 1, "name": 1, "links": 1})
            if found is not None:  # added before a crash, never recorded
                fw_ids, name = sorted(found["nodes"]), found["name"]
                (last,) = [int(i) for i, children in found["links"].items() if not children]
            else:
                if tier == "dft-neb":
                    hop = store.hops.find_one({"_id": key}, {"band": 1})
                    if hop is None or not hop.get("band"):
                        raise FollowupError(f"hop {key}: no band stored, cannot write DFT-NEB inputs")
                    wf = dft_neb_workflow(
                        band_from_doc(hop["band"]), meta, store=store_spec, vasp_cmd=vasp_cmd,
                        endpoint_incar=endpoint_incar, neb_incar=neb_incar,
                    )
                else:
                    wf = mlip_neb_workflow(meta, store=store_spec, settings=mlip_settings)
                name = wf.name
                (leaf,) = [fw.fw_id for fw in wf.fws if not wf.links[fw.fw_id]]
                id_map = lp.add_wf(wf)
                fw_ids, last = sorted(id_map.values()), id_map[leaf]
            store.update_many_by_id(
                FOLLOWUPS, [(fid, {"fw_ids": fw_ids, "fw_id": last, "workflow": name})]
            )
        report.queued.append({"hop_key": key, "followup_id": fid, "fw_ids": fw_ids, "workflow": name})
    return report


# ---------------------------------------------------------------------------------------------
# state


def _state(doc: dict, fw_states: dict[int, str]) -> str:
    """queued / running / done / failed (or paused, defused) of one follow-up."""
    if doc.get("state") == "done":
        return "done"
    states = [fw_states.get(i) for i in doc.get("fw_ids") or []]
    if not states or None in states:  # not added yet, or its Fireworks were deleted
        return doc.get("state") or "queued"
    if "FIZZLED" in states:
        return "failed"
    if all(s == "COMPLETED" for s in states):
        return "done"
    if any(s in ("RUNNING", "RESERVED") for s in states) or "COMPLETED" in states:
        return "running"
    for s in ("DEFUSED", "PAUSED"):
        if s in states:
            return s.lower()
    return "queued"


def followups_by_hop(store: Store, hop_keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """{hop_key: [{tier, state, barrier_ev, fw_id, workflow}, ...]} for hops with follow-ups."""
    if not hop_keys:
        return {}
    docs = list(store.collection(FOLLOWUPS).find({"hop_key": {"$in": list(hop_keys)}}))
    if not docs:
        return {}
    ids = sorted({i for d in docs for i in d.get("fw_ids") or []})
    fw_states = {
        d["fw_id"]: d["state"]
        for d in store.collection("fireworks").find({"fw_id": {"$in": ids}}, {"fw_id": 1, "state": 1})
    } if ids else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for d in sorted(docs, key=lambda d: (d["hop_key"], d["tier"])):
        out.setdefault(d["hop_key"], []).append(
            {
                "tier": d["tier"],
                "state": _state(d, fw_states),
                "barrier_ev": d.get("barrier_ev"),
                "fw_id": d.get("fw_id"),
                "workflow": d.get("workflow"),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# running here


def run_followups(store: Store, campaign: str, *, tier: str = "mlip-neb", max_fireworks: int | None = None,
                  torch_threads: int | None = None) -> dict[str, Any]:
    """Run the campaign's ready follow-up Fireworks of ``tier`` here (rapidfire as an FWorker of
    that tier's category) until none is left; returns how many ran and the follow-ups' states."""
    from fireworks import FWorker

    from screener.config import screener_home
    from screener.runner import launch_until_done, runner_lock

    if tier not in TIERS:
        raise FollowupError(f"tier {tier!r}: unknown; use one of {', '.join(TIERS)}")
    query = {"spec.followup.campaign": campaign, "spec.followup.tier": tier}
    launch_dir = screener_home() / "launches" / "followups" / campaign
    launch_dir.mkdir(parents=True, exist_ok=True)
    ran = 0
    with runner_lock() as name:
        env: dict[str, Any] = {"screener_store": store.spec(secrets=False)}
        if torch_threads:
            env["torch_threads"] = torch_threads
        fworker = FWorker(name=name, category=[CATEGORY[tier]], query=query, env=env)
        ran = launch_until_done(store, fworker, launch_dir, max_fireworks)
    keys = [d["hop_key"] for d in store.collection(FOLLOWUPS).find({"campaign": campaign, "tier": tier}, {"hop_key": 1})]
    rows = {k: [f for f in v if f["tier"] == tier] for k, v in followups_by_hop(store, keys).items()}
    return {"ran": ran, "followups": {k: v[0] for k, v in rows.items() if v}}
