"""The ``screener`` command line: a thin layer over hosts, campaigns, the runner and rankings.

Tables and progress go to the terminal; with ``--json`` a command prints one JSON document on
stdout and nothing else. Bad input gives one line per problem on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from screener.cli_common import fail as _fail
from screener.cli_common import open_store as _store

app = typer.Typer(
    help="High-throughput screening of ionic migration barriers (E_m) in battery materials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
hosts_app = typer.Typer(help="Import and list host structures.", no_args_is_help=True)
campaign_app = typer.Typer(help="Launch, run and inspect screening campaigns.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")
app.add_typer(campaign_app, name="campaign")


def _register_model_app() -> None:
    """`screener model ...` (train, evaluate, predict); see screener.cli_model."""
    from screener.cli_model import model_app

    app.add_typer(model_app, name="model")


_register_model_app()


def _register_followup_cmd() -> None:
    """`screener followup NAME ...` (DFT-NEB / CHGNet-NEB follow-ups); see screener.cli_followup."""
    from screener.cli_followup import followup_cmd

    app.command("followup")(followup_cmd)


_register_followup_cmd()


out = Console()
if not out.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
    out = Console(width=120)
err = Console(stderr=True)

DbOpt = Annotated[
    Optional[str],
    typer.Option("--db", help="MongoDB URI (mongodb://host/db). Default: the embedded store."),
]
LpOpt = Annotated[
    Optional[Path],
    typer.Option("--launchpad", help="FireWorks my_launchpad.yaml: use its MongoDB database."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, indent=1) + "\n")


def _quiet_logs() -> None:
    for name in ("distributed", "launchpad", "rocket.launcher", "fireworks", "pymatgen"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------------
# hosts


def _add_hosts(store, hosts, errors, working_ion: str | None) -> tuple[int, int, list[str]]:
    """Store hosts (skipping any without ``working_ion``); returns (new, existing, messages)."""
    messages = [str(e) for e in errors]
    keep = []
    for host in hosts:
        if working_ion and not host.has_ion(working_ion):
            messages.append(
                f"{host.name}: no {working_ion} in host {host.formula} "
                "(to screen empty hosts, add them without --working-ion and launch with --insertion)"
            )
            continue
        keep.append(host)
    unique = {h.host_id: h for h in keep}
    new = store.insert_new("hosts", [h.to_doc() for h in unique.values()])
    return new, len(keep) - new, messages


@hosts_app.command("add")
def hosts_add(
    paths: Annotated[
        Optional[list[Path]], typer.Argument(help="CIF, POSCAR, pymatgen/JARVIS JSON files or folders.")
    ] = None,
    working_ion: Annotated[
        Optional[str], typer.Option("--working-ion", help="Refuse hosts without this ion.")
    ] = None,
    dataset: Annotated[
        bool, typer.Option("--dataset", help="Add the distinct hosts of the shipped 619-barrier dataset.")
    ] = False,
    mp: Annotated[
        bool, typer.Option("--mp", help="Add hosts from the Materials Project (API key in MP_API_KEY).")
    ] = False,
    chemsys: Annotated[
        Optional[str], typer.Option("--chemsys", help="--mp: chemical system(s), e.g. Li-Fe-P-O (comma: several).")
    ] = None,
    elements: Annotated[
        Optional[str], typer.Option("--elements", help="--mp: materials with all these elements, e.g. Li,Fe,O.")
    ] = None,
    formula: Annotated[
        Optional[str], typer.Option("--formula", help="--mp: formula(s), e.g. LiFePO4 (comma: several).")
    ] = None,
    material_ids: Annotated[
        Optional[str], typer.Option("--material-ids", help="--mp: material ids, e.g. mp-19017,mp-22584.")
    ] = None,
    e_above_hull: Annotated[
        float, typer.Option("--e-above-hull", help="--mp: highest energy above the hull (eV/atom).")
    ] = 0.05,
    mp_endpoint: Annotated[
        Optional[str],
        typer.Option("--mp-endpoint", help="--mp: API URL (default: $MP_API_ENDPOINT, else the client's)."),
    ] = None,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Import host structures (files, the dataset, Materials Project); re-adding a stored host is a
    no-op."""
    from screener.config import KNOWN_IONS

    if working_ion and working_ion not in KNOWN_IONS:
        _fail(f"--working-ion: unknown ion {working_ion!r}; known: {', '.join(KNOWN_IONS)}", 2)
    mp_query = {"chemsys": chemsys, "elements": elements, "formula": formula, "material_ids": material_ids}
    if not mp and (any(mp_query.values()) or mp_endpoint):
        _fail("--chemsys, --elements, --formula, --material-ids and --mp-endpoint need --mp", 2)
    if mp and not any(mp_query.values()):
        _fail("--mp needs --chemsys, --elements, --formula or --material-ids", 2)
    if not paths and not dataset and not mp:
        _fail("give one or more PATHs, --dataset or --mp", 2)
    store = _store(db, launchpad)
    hosts, errors = [], []
    if mp:
        from screener.sources.mp import MPError, fetch_mp

        try:
            got = fetch_mp(**mp_query, working_ion=working_ion, e_above_hull_max=e_above_hull,
                           endpoint=mp_endpoint)
        except MPError as exc:
            store.close()
            _fail(str(exc))
        dropped = f", {len(got.dropped)} without {working_ion} dropped" if working_ion else ""
        err.print(f"Materials Project ({got.endpoint}, database {got.database_version or '?'}): "
                  f"{got.n_found} materials{dropped}", highlight=False, soft_wrap=True)
        hosts += got.hosts
        errors += got.errors
    with err.status("reading structures..."):
        if paths:
            from screener.sources.files import read_hosts

            got, bad = read_hosts([str(p) for p in paths])
            hosts += got
            errors += bad
        if dataset:
            from screener.sources.dataset import dataset_hosts

            hosts += dataset_hosts()
    new, existing, messages = _add_hosts(store, hosts, errors, working_ion)
    for m in messages:
        err.print(f"[red]error:[/red] {m}", highlight=False, soft_wrap=True)
    out.print(
        f"{new} new hosts stored, {existing} already stored, {len(messages)} refused "
        f"({store.describe()})",
        highlight=False,
    )
    store.close()
    if messages:
        raise typer.Exit(1)


@hosts_app.command("list")
def hosts_list(
    as_json: JsonOpt = False,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """List stored hosts."""
    from screener.config import KNOWN_IONS

    store = _store(db, launchpad)
    rows = [
        {
            "host_id": d["_id"],
            "name": d.get("name"),
            "formula": d.get("formula"),
            "nsites": d.get("nsites"),
            "ions": [i for i in KNOWN_IONS if i in (d.get("elements") or [])],
            "source": (d.get("source") or {}).get("kind"),
        }
        for d in sorted(store.hosts.find({}, {"structure": 0}), key=lambda d: d["_id"])
    ]
    store.close()
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} hosts")
    for col in ("host_id", "name", "formula", "nsites", "ions", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["host_id"], str(r["name"]), str(r["formula"]), str(r["nsites"]),
            ",".join(r["ions"]), str(r["source"]),
        )
    out.print(table)


# ---------------------------------------------------------------------------------------------
# campaigns


@campaign_app.command("launch")
def campaign_launch(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    working_ion: Annotated[
        str, typer.Option("--working-ion", help="Migrating ion (Li, Na, Mg, ...) or 'auto'.")
    ],
    threshold: Annotated[
        float, typer.Option("--threshold", help="Flag hops with E_m at or below this (eV).")
    ] = 0.65,
    chunk: Annotated[int, typer.Option("--chunk", help="Hosts per workflow.")] = 50,
    max_hop_length: Annotated[
        str, typer.Option("--max-hop-length", help="Longest hop (Angstrom), or auto: per host, where its hop network percolates.")
    ] = "5.0",
    model: Annotated[str, typer.Option("--model", help="Shipped model name or checkpoint path.")] = "default",
    gpu: Annotated[bool, typer.Option("--gpu", help="Route inference to GPU workers.")] = False,
    insertion: Annotated[bool, typer.Option("--insertion", help="Also screen hosts without the ion (charged frameworks): hops between its insertion sites.")] = False,
    site_model: Annotated[str, typer.Option("--site-model", help="Insertion sites (with --insertion): none (cavity centres), chgnet (ion relaxed), chgnet-framework (ion and its cage relaxed; minutes per host).")] = "none",
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Create a campaign over the stored hosts and add its workflows to the LaunchPad."""
    from screener.campaign import CampaignError, launch_campaign
    from screener.config import ScreenerConfig

    try:
        length: float | str = max_hop_length
        if max_hop_length.strip().lower() != "auto":
            try:
                length = float(max_hop_length)
            except ValueError:
                raise ValueError(f"--max-hop-length: expected a length in Angstrom or auto, got {max_hop_length!r}") from None
        config = ScreenerConfig(
            working_ion=working_ion, threshold_ev=threshold, chunk_size=chunk,
            max_hop_length=length, model=model, gpu=gpu, insertion=insertion, site_model=site_model,
        )
    except ValueError as exc:
        _fail(str(exc), 2)
    _check_model(model)
    store = _store(db, launchpad)
    try:
        report = launch_campaign(store, name, config)
    except CampaignError as exc:
        _fail(str(exc))
    store.close()
    out.print(
        f"campaign {name}: {report.new_hosts} new host/ion pairs in {report.new_workflows} new "
        f"workflows ({report.total_hosts} pairs in {report.chunks} chunks; "
        f"{report.skipped_hosts} hosts without {working_ion} skipped)",
        highlight=False,
    )


def _check_model(model: str) -> None:
    from screener.model import load_model

    try:
        load_model(model)
    except Exception as exc:  # one line, whatever the loader raised
        _fail(f"--model {model}: {str(exc).splitlines()[0] if str(exc) else repr(exc)}", 2)


@campaign_app.command("list")
def campaign_list(as_json: JsonOpt = False, db: DbOpt = None, launchpad: LpOpt = None) -> None:
    """List campaigns with their progress."""
    from screener.campaign import list_campaigns

    store = _store(db, launchpad)
    rows = list_campaigns(store)
    store.close()
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} campaigns")
    for col in ("name", "working_ion", "threshold_ev", "model", "hosts", "done", "failed"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("name", "working_ion", "threshold_ev", "model", "hosts", "done", "failed")))
    out.print(table)


def _run(store, name: str, dask_scheduler: str | None, workers: int, max_fireworks: int | None = None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from screener.runner import fireworks_states, run_campaign

    _quiet_logs()
    states = fireworks_states(store, name)
    total = sum(states.values())
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=False,
    ) as progress:
        task = progress.add_task(f"campaign {name}: Fireworks", total=total,
                                 completed=states.get("COMPLETED", 0))

        def update(s: dict[str, int]) -> None:
            progress.update(task, total=sum(s.values()), completed=s.get("COMPLETED", 0))

        return run_campaign(
            store, name, dask_scheduler=dask_scheduler, workers=workers,
            max_fireworks=max_fireworks, on_progress=update,
        )


@campaign_app.command("run")
def campaign_run(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    dask_scheduler: Annotated[
        Optional[str], typer.Option("--dask-scheduler", help="Dask scheduler address (tcp://host:8786).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local Dask worker processes.")] = 2,
    max_fireworks: Annotated[
        Optional[int], typer.Option("--max-fireworks", help="Stop after this many Fireworks.")
    ] = None,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Run the campaign's Fireworks here (rapidfire) until none are ready; resumes lost runs."""
    from screener.campaign import CampaignError, get_campaign

    if workers < 1:
        _fail("--workers must be at least 1", 2)
    store = _store(db, launchpad)
    try:
        get_campaign(store, name)
    except CampaignError as exc:
        _fail(str(exc))
    t0 = time.perf_counter()
    result = _run(store, name, dask_scheduler, workers, max_fireworks)
    store.close()
    states = ", ".join(f"{k} {v}" for k, v in result["fireworks"].items())
    out.print(
        f"campaign {name}: ran {result['ran']} Fireworks in {time.perf_counter() - t0:.1f} s "
        f"({states}); {len(result['lost_rerun'])} lost runs rerun",
        highlight=False,
    )
    if result["fireworks"].get("FIZZLED"):
        raise typer.Exit(1)


@campaign_app.command("status")
def campaign_status_cmd(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    as_json: JsonOpt = False,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Counts per stage (hosts, hops, bands, predictions), Firework states and failures."""
    from screener.campaign import CampaignError, campaign_status

    store = _store(db, launchpad)
    try:
        status = campaign_status(store, name)
    except CampaignError as exc:
        _fail(str(exc))
    store.close()
    if as_json:
        _print_json(status)
        return
    h = status["hosts"]
    out.print(f"[bold]campaign {name}[/bold] ({status['store']}), ion {status['working_ion']}, "
              f"threshold {status['threshold_ev']} eV")
    out.print(
        f"hosts {h['total']}: " + ", ".join(f"{k} {h[k]}" for k in h if k != "total"), highlight=False
    )
    out.print(
        f"hops {status['hops']}, bands {status['bands']} ({len(status['band_failures'])} failed), "
        f"predictions {status['predictions']}, flagged hops {status['flagged_hops']} "
        f"in {status['flagged_hosts']} hosts",
        highlight=False,
    )
    out.print("Fireworks: " + ", ".join(f"{k} {v}" for k, v in status["fireworks"].items()), highlight=False)
    if status["lost_runs"]:
        out.print(
            f"lost runs (their runner died): Fireworks {status['lost_runs']}; "
            f"`screener campaign run {name}` reruns them",
            highlight=False,
        )
    for f in status["failures"][:50]:
        out.print(f"  failed {f['name']} ({f['working_ion']}, {f['stage']}): {f['error']}", highlight=False)
    if len(status["failures"]) > 50:
        out.print(f"  ... and {len(status['failures']) - 50} more (--json lists all)")


# ---------------------------------------------------------------------------------------------
# candidates and demo


def _candidate_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    cols = [("#", "right"), ("host", "left"), ("formula", "left"), ("ion", "left"),
            ("hop (Å)", "right"), ("E_m (eV)", "right"), ("± (eV)", "right"), ("flagged", "center"),
            ("1D perc. (eV)", "right")]
    for col, justify in cols:
        table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis",
                         max_width=16 if col in ("host", "formula") else None)
    for k, r in enumerate(rows, 1):
        perc = (r.get("percolation_ev") or {}).get("1d")
        table.add_row(
            str(k), str(r["name"]), str(r["formula"]), r["working_ion"],
            f"{r['hop_length']:.2f}" if r["hop_length"] is not None else "-",
            f"{r['barrier_ev']:.2f}", f"{r['barrier_std_ev']:.2f}",
            "yes" if r["flagged"] else "", f"{perc:.2f}" if perc is not None else "-",
        )
    return table


@app.command("candidates")
def candidates_cmd(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    max_barrier: Annotated[
        Optional[float], typer.Option("--max-barrier", help="Only hops at or below this E_m (eV).")
    ] = None,
    ion: Annotated[Optional[str], typer.Option("--ion", help="Only this working ion.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many rows.")] = None,
    rank_by: Annotated[
        str, typer.Option("--rank-by", help="barrier (hop E_m) or percolation (host 1D value).")
    ] = "barrier",
    per_host: Annotated[
        bool, typer.Option("--per-host", help="Only the best hop of each host (and ion).")
    ] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Predicted hops of a campaign, ranked (lowest barrier first)."""
    from screener.campaign import CampaignError, candidates

    if rank_by not in ("barrier", "percolation"):
        _fail(f"--rank-by: expected barrier or percolation, got {rank_by!r}", 2)
    if limit is not None and limit < 1:
        _fail("--limit must be at least 1", 2)
    store = _store(db, launchpad)
    try:
        rows = candidates(
            store, name, max_barrier=max_barrier, ion=ion, limit=limit, rank_by=rank_by,
            per_host=per_host,
        )
    except CampaignError as exc:
        _fail(str(exc))
    store.close()
    if as_json:
        _print_json(rows)
        return
    out.print(_candidate_table(rows, f"campaign {name}: {len(rows)} candidate hops"))


@app.command("demo")
def demo(
    workers: Annotated[int, typer.Option("--workers", help="Local Dask worker processes.")] = 2,
    top: Annotated[int, typer.Option("--top", help="Rows in the ranked table.")] = 20,
    db: DbOpt = None,
    launchpad: LpOpt = None,
) -> None:
    """Import the shipped dataset's hosts, screen them for their ions, print the best hosts.

    Run again, it reuses what is stored and only finishes what is left.
    """
    from screener.campaign import launch_campaign
    from screener.config import ScreenerConfig
    from screener.sources.dataset import dataset_hosts

    t0 = time.perf_counter()
    store = _store(db, launchpad)
    with err.status("importing the dataset's hosts..."):
        hosts = dataset_hosts()
        new, existing, _ = _add_hosts(store, hosts, [], None)
    err.print(f"hosts: {new} new, {existing} already stored ({store.describe()})", highlight=False)
    report = launch_campaign(
        store, "demo", ScreenerConfig(working_ion="auto"), host_ids=sorted({h.host_id for h in hosts})
    )
    err.print(
        f"campaign demo: {report.total_hosts} host/ion pairs in {report.chunks} chunks "
        f"({report.new_workflows} new workflows)",
        highlight=False,
    )
    result = _run(store, "demo", None, workers)
    from screener.campaign import campaign_status, candidates

    rows = candidates(store, "demo", limit=top, per_host=True)
    status = campaign_status(store, "demo")
    store.close()
    out.print(_candidate_table(rows, f"demo: the {len(rows)} best hosts (best hop of each)"))
    h = status["hosts"]
    out.print(
        f"{h['done']} hosts screened, {h['failed']} failed, {status['flagged_hops']} hops in "
        f"{status['flagged_hosts']} hosts at or below {status['threshold_ev']} eV; "
        f"{result['ran']} Fireworks run in {time.perf_counter() - t0:.0f} s. "
        "More: screener campaign status demo / screener candidates demo",
        highlight=False,
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
