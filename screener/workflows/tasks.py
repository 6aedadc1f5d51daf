"""FireTasks of a campaign chunk: enumerate hops -> build bands -> predict -> flag, then a summary.

Every task works on the hosts of one chunk, reads its state from the store and skips what is already
done, so a rerun (after a crash, a SIGKILL or `lpad rerun_fws`) finishes the work without duplicates.
A host that fails (no ion, time-out, a band too large) is recorded with its reason and the chunk goes
on; only a systemic error (the store unreachable) fizzles the Firework.
"""

from __future__ import annotations

import logging
from typing import Any

from fireworks import FiretaskBase, FWAction

from screener.campaign import (
    CampaignContext,
    chunk_hosts,
    mark_chunk_flagged,
    summarise_campaign,
)
from screener.bands import BandError
from screener.hops import HopError
from screener.hosts import Host

log = logging.getLogger(__name__)


class _Task(FiretaskBase):
    """Serialised by full dotted path, so any worker with screener installed can load it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fw_name = "{{%s.%s}}" % (cls.__module__, cls.__name__)


class _ChunkTask(_Task):
    """Common plumbing: open the store the campaign lives in and load its settings."""

    required_params = ["campaign", "chunk"]
    optional_params = ["store"]

    def context(self, fw_spec: dict[str, Any]) -> CampaignContext:
        return CampaignContext.open(self["campaign"], self.get("store"), fw_spec.get("_fw_env"))


def _site_relax_settings(cfg):
    """Site relaxations of a campaign are cached under $SCREENER_HOME, so a re-run step or a
    resumed campaign doesn't relax the same sites again (None when sites aren't relaxed)."""
    from screener.config import screener_home
    from screener.sites import site_relax_settings

    return site_relax_settings(cfg.site_model, cache_dir=str(screener_home() / "site-relax"))


class EnumerateHopsTask(_ChunkTask):
    """Symmetry-distinct hops of each pending host; failures are recorded per host."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.hops import enumerate_hops
        from screener.sites import insertion_hops

        ctx = self.context(fw_spec)
        cfg = ctx.config
        site_settings = _site_relax_settings(cfg)
        done = failed = 0
        for ch in chunk_hosts(ctx.store, self["campaign"], self["chunk"], state="pending"):
            host = Host.from_doc(ctx.store.hosts.find_one({"_id": ch["host_id"]}))
            ion = ch["working_ion"]
            try:
                if host.has_ion(ion):
                    hops = enumerate_hops(host.structure, host.host_id, ion,
                                          max_length=cfg.max_hop_length, symprec=cfg.symprec,
                                          timeout_s=cfg.hop_timeout_s)
                else:  # an empty (charged) framework: hops between the ion's insertion sites
                    length = 6.5 if cfg.max_hop_length == "auto" else cfg.max_hop_length
                    _, hops = insertion_hops(host.structure, host.host_id, ion, max_length=length,
                                             timeout_s=cfg.hop_timeout_s,  # sites at SITE_SYMPREC
                                             relax=cfg.site_model, relax_settings=site_settings)
            except Exception as exc:  # one host's problem never stops its chunk
                ctx.set_host_state(ch["_id"], "failed", error=_one_line(exc), stage="hops")
                failed += 1
                continue
            ctx.store.insert_new("hops", [h.to_doc() for h in hops])
            ctx.set_host_state(
                ch["_id"], "hops", hop_keys=[h.hop_key for h in hops], n_hops=len(hops)
            )
            done += 1
        ctx.close()
        return FWAction(stored_data={"hosts_done": done, "hosts_failed": failed})


class BuildBandsTask(_ChunkTask):
    """One band per hop (initial site, three images, final site, then the host), stored on the hop."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.bands import band_to_doc, build_band
        from screener.hops import Hop

        ctx = self.context(fw_spec)
        cfg = ctx.config
        built = band_failed = 0
        for ch in chunk_hosts(ctx.store, self["campaign"], self["chunk"], state="hops"):
            host = Host.from_doc(ctx.store.hosts.find_one({"_id": ch["host_id"]}))
            todo = ctx.store.hops.find(
                {"_id": {"$in": ch["hop_keys"]}, "band": None, "band_error": None},
            )
            updates = []
            for doc in todo:
                hop = Hop.from_doc(doc)
                try:
                    band = build_band(
                        host.structure,
                        hop,
                        min_length=cfg.band_min_length,
                        max_sites=cfg.max_band_sites,
                    )
                except Exception as exc:  # recorded on the hop; the other hops go on
                    updates.append((hop.hop_key, {"band_error": _one_line(exc)}))
                    band_failed += 1
                    continue
                updates.append((hop.hop_key, {"band": band_to_doc(band), "band_nsites": len(band)}))
                built += 1
            ctx.store.update_many_by_id("hops", updates)
            ctx.set_host_state(ch["_id"], "bands")
        ctx.close()
        return FWAction(stored_data={"bands_built": built, "bands_failed": band_failed})


class PredictBarriersTask(_ChunkTask):
    """Batched inference of the chunk's pending bands on Dask; this task writes the predictions."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.inference import dask_client, predict_bands, worker_model

        ctx = self.context(fw_spec)
        cfg = ctx.config
        model = worker_model(cfg.model)
        hosts = list(chunk_hosts(ctx.store, self["campaign"], self["chunk"], state="bands"))
        keys = sorted({k for ch in hosts for k in ch["hop_keys"]})
        done = {
            d["hop_key"]
            for d in ctx.store.predictions.find(
                {"model_id": model.model_id, "hop_key": {"$in": keys}}, {"hop_key": 1}
            )
        }
        pending = [k for k in keys if k not in done]
        docs = {
            d["_id"]: d
            for d in ctx.store.hops.find(
                {"_id": {"$in": pending}, "band": {"$ne": None}},
                {"band": 1, "host_id": 1, "working_ion": 1},
            )
        }
        order = [k for k in pending if k in docs]

        def write(idx: list[int], means: list[float], stds: list[float]) -> None:
            ctx.store.insert_new(
                "predictions",
                [
                    {
                        "_id": f"{model.model_id}|{order[i]}",
                        "hop_key": order[i],
                        "host_id": docs[order[i]]["host_id"],
                        "working_ion": docs[order[i]]["working_ion"],
                        "model_id": model.model_id,
                        "barrier_ev": m,
                        "barrier_std_ev": s,
                    }
                    for i, m, s in zip(idx, means, stds)
                ],
            )

        if order:
            band_docs = [docs[k]["band"] for k in order]
            with dask_client(ctx.dask_scheduler, ctx.dask_workers) as client:
                predict_bands(
                    client,
                    cfg.model,
                    band_docs,
                    batch_size=cfg.batch_size,
                    gpu=cfg.gpu,
                    on_batch=write,
                )
        for ch in hosts:
            ctx.set_host_state(ch["_id"], "predicted", model_id=model.model_id)
        ctx.close()
        return FWAction(stored_data={"predicted": len(order), "model_id": model.model_id})


class FlagHostsTask(_ChunkTask):
    """Flag hops under the threshold and give each host its percolation barriers."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.campaign import flag_host

        ctx = self.context(fw_spec)
        for ch in chunk_hosts(ctx.store, self["campaign"], self["chunk"], state="predicted"):
            flag_host(ctx, ch)
        queue_summary = mark_chunk_flagged(ctx.store, self["campaign"], self["chunk"])
        ctx.close()
        if queue_summary:
            from screener.workflows.build import summary_firework

            return FWAction(additions=[summary_firework(self["campaign"], self.get("store"))])
        return FWAction()


class SummaryTask(_Task):
    """Campaign-wide counts, the top candidates and a barrier histogram, once all chunks are done."""

    required_params = ["campaign"]
    optional_params = ["store"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = CampaignContext.open(self["campaign"], self.get("store"), fw_spec.get("_fw_env"))
        summary = summarise_campaign(ctx)
        ctx.close()
        return FWAction(stored_data={"summary": summary})


def _one_line(exc: BaseException) -> str:
    """The first line of an exception message, for per-host failure records; errors other than
    the enumerator's and band builder's own carry their type, since their text may not say it."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if isinstance(exc, (HopError, BandError)):
        return line
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
