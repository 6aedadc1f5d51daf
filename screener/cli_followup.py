"""`screener followup NAME`: queue DFT-NEB or CHGNet-NEB follow-ups of a campaign's best hops.

Why a separate module: the command only wires options to screener.followups.queue, and the main
CLI registers it; pymatgen/FireWorks are imported when it runs. Bad input costs one line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from screener.cli_common import fail as _fail
from screener.cli_common import open_store as _store


def followup_cmd(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    top: Annotated[
        Optional[int], typer.Option("--top", help="Follow up the campaign's N best hops (lowest E_m).")
    ] = None,
    tier: Annotated[
        str, typer.Option("--tier", help="dft-neb (VASP CI-NEB, category dft) or mlip-neb (CHGNet NEB, category mlip).")
    ] = "dft-neb",
    hop: Annotated[
        Optional[list[str]], typer.Option("--hop", help="A hop key to follow up (repeatable).")
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="mlip-neb: run the queued follow-ups here now (rapidfire, category mlip).")
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", help="--run: torch threads for the MLIP (default: torch's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")] = False,
    db: Annotated[
        Optional[str], typer.Option("--db", help="MongoDB URI (mongodb://host/db). Default: the embedded store.")
    ] = None,
    launchpad: Annotated[
        Optional[Path], typer.Option("--launchpad", help="FireWorks my_launchpad.yaml: use its MongoDB database.")
    ] = None,
) -> None:
    """Queue one follow-up workflow per hop on the LaunchPad; hops already queued are skipped.

    dft-neb: relax both end points (MVLCINEBEndPointSet), CI-NEB on IDPP images (MVLCINEBSet),
    parse; run by VASP workers: rlaunch -w fw_specs/fworker_dft.yaml rapidfire.
    mlip-neb: CHGNet NEB; --run runs it here, or rlaunch -w fw_specs/fworker_mlip.yaml rapidfire.
    """
    from screener.campaign import CampaignError
    from screener.followups import TIERS
    from screener.followups.queue import FollowupError, queue_followups, run_followups

    if tier not in TIERS:
        _fail(f"--tier {tier}: unknown; use one of {', '.join(TIERS)}", 2)
    if run and tier != "mlip-neb":
        _fail("--run: only for --tier mlip-neb (DFT-NEB runs on a VASP worker: rlaunch -w fw_specs/fworker_dft.yaml)", 2)
    if top is None and not hop and not run:
        _fail("give --top N or --hop KEY (or --run to run what is queued)", 2)
    store = _store(db, launchpad)
    result: dict[str, Any] = {"campaign": name, "tier": tier, "queued": [], "skipped": []}
    try:
        if top is not None or hop:
            result.update(queue_followups(store, name, top=top, hop_keys=list(hop or []), tier=tier).as_dict())
        if not as_json:
            typer.echo(
                f"campaign {name}: {len(result['queued'])} {tier} workflows added, "
                f"{len(result['skipped'])} hops already queued ({store.describe()})"
            )
        if run:
            if not as_json:
                typer.echo("running the mlip-neb follow-ups here ...", err=True)
            done = run_followups(store, name, tier=tier, torch_threads=threads)
            result["ran"] = done["ran"]
            result["followups"] = done["followups"]
    except (FollowupError, CampaignError) as exc:
        store.close()
        _fail(str(exc))
    store.close()
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, indent=1) + "\n")
        return
    for q in result["queued"]:
        typer.echo(f"  queued {q['hop_key']}: Fireworks {q['fw_ids']}")
    for key, f in (result.get("followups") or {}).items():
        barrier = f"{f['barrier_ev']:.3f} eV" if f.get("barrier_ev") is not None else "-"
        typer.echo(f"  {key}: {f['state']}, barrier {barrier}")
    if result.get("followups") and any(f["state"] == "failed" for f in result["followups"].values()):
        raise typer.Exit(1)
