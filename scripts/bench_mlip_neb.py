"""Benchmark the CHGNet-NEB tier on the paper's 60 test hops against DFT, MACE-MP-0 NEB and MODEL-3.

End points: ``endpoints-test.json`` (the dataset's own initial and final end points; in 10 of the
60 hops the final one carries the host relaxed around the ion at the final site, which
``band_endpoints`` of the band can't give), relaxed with CHGNet before the NEB -- the protocol of the
paper's "MACE-MP-0 NEB, relaxed end points" column. Per-hop results go to ``hops.jsonl`` as they
finish (``--resume`` skips hops already there, so a killed run continues); the summary (metrics
JSON, per-hop CSV, markdown table, parity PNG) is rewritten at the end, or alone with
``--summary-only`` while a run is still going.

    nice -n 10 python scripts/bench_mlip_neb.py [--limit N] [--resume] [--json] [--summary-only]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ.setdefault(_v, "1")

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from screener.config import DEFAULT_THRESHOLD_EV
from screener.followups.mlip_neb import MlipNebSettings, run_mlip_neb
from screener.model.base import DEFAULT_MODEL
from screener.model.metrics import bootstrap_accuracy_ci, score
from screener.sources.dataset import DATASET_DIR, jarvis_to_structure

OUT = Path(__file__).resolve().parents[1] / "screener" / "data" / "benchmarks" / "mlip_neb"
#: The tier's defaults (fmax 0.1, relax_fmax 0.1, <= 80 steps per stage, 3 images, LBFGS, 5 A freeze radius).
SETTINGS = MlipNebSettings()


def _load_hops() -> list[dict]:
    with open(DATASET_DIR / "endpoints-test.json", encoding="utf-8") as fh:
        return json.load(fh)


def _cost(h: dict) -> int:
    """Cost proxy of a hop: atom pairs within 3 A (CHGNet's bond-graph cutoff); it tracks the
    measured CPU time of one CHGNet call on the 60 test hops with r = 0.98."""
    return len(jarvis_to_structure(h["atoms_ini"]).get_neighbor_list(3.0)[0])


def _anchors() -> dict[str, dict]:
    with open(DATASET_DIR / "anchors.csv", newline="", encoding="utf-8") as fh:
        return {r["sys_name"]: r for r in csv.DictReader(fh) if r["split"] == "test"}


def _done(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that hop runs again
                    continue
                out[rec["sys_name"]] = rec
    return out


def _append(path: Path, rec: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _wall_per_cost(done: dict[str, dict], hops: list[dict]) -> float | None:
    """Median wall seconds per unit of _cost over the finished hops (None before the first)."""
    by_name = {h["sys_name"]: h for h in hops}
    ratios = [r["wall_seconds"] / max(_cost(by_name[n]), 1) for n, r in done.items() if "barrier_ev" in r and n in by_name]
    return float(np.median(ratios)) if ratios else None


def run_hops(out: Path, limit: int | None, resume: bool, order: str, retry_failed: bool = False,
             deadline: float | None = None) -> None:
    """Run the NEB on each test hop not yet in hops.jsonl (all of them without --resume); with
    order "cost" the cheapest first, so a run stopped early has scored as many hops as it could."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    jsonl = out / "hops.jsonl"
    if not resume and jsonl.exists():
        jsonl.unlink()
    done = {k: r for k, r in _done(jsonl).items() if not (retry_failed and "error" in r)}
    hops = _load_hops()
    if order == "cost":
        hops = sorted(hops, key=_cost)
    hops = hops[: limit or None]
    todo = [h for h in hops if h["sys_name"] not in done]
    rate = _wall_per_cost(done, hops) if deadline else None
    for h in tqdm(todo, desc="CHGNet-NEB", unit="hop", file=sys.stderr):
        name = h["sys_name"]
        if deadline and rate and time.time() + rate * _cost(h) > deadline:
            print(f"stopping before {name}: its estimated {rate * _cost(h) / 60:.0f} min would pass --deadline; "
                  "--resume continues", file=sys.stderr)
            break
        ini, fin = jarvis_to_structure(h["atoms_ini"]), jarvis_to_structure(h["atoms_fin"])
        rec = {"sys_name": name, "target_ev": float(h["target"]), "n_atoms": len(ini),
               "ion": ini[0].specie.symbol, "settings": asdict(SETTINGS)}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            r = run_mlip_neb(ini, fin, SETTINGS, label=f"test hop {name}")
            rec |= {"barrier_ev": r.barrier_ev, "energies_ev": r.energies_ev, "path_ang": r.path_ang,
                    "converged": r.converged, "final_fmax": r.final_fmax, "n_force_calls": r.n_force_calls,
                    "steps": r.steps, "n_frozen": r.n_frozen, "hop_length_ang": r.extra["hop_length_ang"],
                    "cell_strain": r.extra["cell_strain"]}
        except ValueError as exc:  # MlipNebError: recorded, the run goes on
            rec["error"] = str(exc)
        rec |= {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}
        _append(jsonl, rec)
        if "barrier_ev" in rec:
            done[name] = rec
            rate = _wall_per_cost(done, hops) if deadline else None


def _metrics(t: np.ndarray, p: np.ndarray) -> dict:
    s = score(t, p, threshold=DEFAULT_THRESHOLD_EV)
    lo, hi = bootstrap_accuracy_ci(t, p, threshold=DEFAULT_THRESHOLD_EV)
    return {"n": s["n"], "mae": s["mae"], "r2": s["r2"], "accuracy": s["accuracy"], "accuracy_ci95": [lo, hi],
            "mse_signed": float((p - t).mean()), "precision_good": s["precision_good"],
            "recall_good": s["recall_good"]}


def _num(text: str) -> float | None:
    """A number from anchors.csv; None where the paper has no value."""
    return float(text) if text.strip() else None


def _screening_predictions(names: list[str]) -> dict[str, float]:
    """The shipped default screening model on the same test bands (reported, never tuned on)."""
    from screener.model.base import load_model
    from screener.sources.dataset import load_bands

    bands = {b.sys_name: b.band for b in load_bands("test")}
    mean, _ = load_model("default").predict([bands[n] for n in names])
    return {n: float(m) for n, m in zip(names, mean)}


def _parity(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r["target_ev"] for r in rows])
    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=120)
    for key, lab, mk in (("chgnet_neb_ev", "CHGNet-NEB (this work)", "o"),
                         ("mace_relax_ev", "MACE-MP-0 NEB (paper)", "s"),
                         ("model3_ev", "MODEL-3 ALIGNN (paper)", "^"),
                         ("screening_ev", f"{DEFAULT_MODEL} (shipped default)", "x")):
        ax.scatter(t, [r[key] for r in rows], s=14, marker=mk, alpha=0.7, label=lab)
    hi = 1.05 * max(float(t.max()), max(max(r["chgnet_neb_ev"], r["mace_relax_ev"], r["model3_ev"]) for r in rows))
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    for f in (ax.axvline, ax.axhline):
        f(DEFAULT_THRESHOLD_EV, color="grey", ls="--", lw=0.7)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="DFT-NEB E_m (eV)", ylabel="predicted E_m (eV)")
    ax.set_title(f"{len(rows)} test hops", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summarise(out: Path) -> dict:
    """Metrics of every method on the hops CHGNet-NEB finished; writes JSON, CSV, markdown, PNG."""
    done = _done(out / "hops.jsonl")
    anchors = _anchors()
    ok = [r for r in done.values() if "barrier_ev" in r]
    failed = {r["sys_name"]: r["error"] for r in done.values() if "error" in r}
    names = [h["sys_name"] for h in _load_hops() if h["sys_name"] in {r["sys_name"] for r in ok}]
    if not names:
        raise SystemExit(f"{out / 'hops.jsonl'}: no finished hops to summarise")
    desc = _screening_predictions(names)
    rows = []
    for n in names:
        r, a = done[n], anchors[n]
        rows.append({"sys_name": n, "ion": r["ion"], "n_atoms": r["n_atoms"], "target_ev": r["target_ev"],
                     "chgnet_neb_ev": r["barrier_ev"], "converged": r["converged"],
                     "final_fmax": r["final_fmax"], "cpu_seconds": r["cpu_seconds"],
                     "mace_relax_ev": _num(a["mace_relax_ev"]), "mace_norelax_ev": _num(a["mace_norelax_ev"]),
                     "model3_ev": _num(a["model3_ev"]), "screening_ev": desc[n]})
        if abs(float(a["target_ev"]) - r["target_ev"]) > 1e-6:
            raise SystemExit(f"{n}: anchors.csv target {a['target_ev']} != endpoints-test.json {r['target_ev']}")
    t = np.array([r["target_ev"] for r in rows])
    methods = {"chgnet_neb_ev": "CHGNet-NEB, CHGNet-relaxed end points (this benchmark)",
               "mace_relax_ev": "MACE-MP-0 NEB, relaxed end points (paper, anchors.csv)",
               "mace_norelax_ev": "MACE-MP-0 NEB, unrelaxed end points (paper, anchors.csv)",
               "model3_ev": "MODEL-3 ALIGNN (paper, anchors.csv)",
               "screening_ev": f"{DEFAULT_MODEL}, the shipped default screening model"}
    metrics = {}
    for k in methods:  # each method on the hops it has a value for (MACE unrelaxed lacks 3 of the 60)
        have = [i for i, r in enumerate(rows) if r[k] is not None]
        metrics[k] = _metrics(t[have], np.array([rows[i][k] for i in have]))
    conv = [i for i, r in enumerate(rows) if r["converged"]]
    if conv:
        metrics["chgnet_neb_converged_only"] = _metrics(t[conv], np.array([rows[i]["chgnet_neb_ev"] for i in conv]))
        methods["chgnet_neb_converged_only"] = f"CHGNet-NEB, only the {len(conv)} hops that reached fmax"
    cpu = np.array([r["cpu_seconds"] for r in rows])
    report = {"n_hops_total": len(_load_hops()), "n_done": len(rows), "n_failed": len(failed), "failed": failed,
              "n_converged": len(conv), "settings": done[names[0]].get("settings") or asdict(SETTINGS),
              "cpu_seconds": {"total": float(cpu.sum()), "mean": float(cpu.mean()), "median": float(np.median(cpu)),
                              "max": float(cpu.max())},
              "metrics": metrics, "methods": methods,
              "command": "nice -n 10 python scripts/bench_mlip_neb.py --resume"}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _parity(rows, out / "parity.png")
    lines = [(f"CHGNet-NEB on {len(rows)} of the {report['n_hops_total']} test hops "
              f"({len(conv)} reached fmax {SETTINGS.fmax} eV/Å; {len(failed)} raised an error; "
              f"{report['n_hops_total'] - len(rows) - len(failed)} not run yet), same hops for every row "
              f"(MACE unrelaxed: where the paper has a value); "
              f"mean signed error = pred - DFT."), "",
             "| method | MAE (eV) | R² | accuracy at 0.65 eV (95% CI) | mean signed error (eV) |",
             "|---|---|---|---|---|"]
    for k, lab in methods.items():
        m = metrics[k]
        lines.append(f"| {lab} (n={m['n']}) | {m['mae']:.3f} | {m['r2']:.3f} | {m['accuracy']:.1%} "
                     f"({m['accuracy_ci95'][0]:.0%}–{m['accuracy_ci95'][1]:.0%}) | {m['mse_signed']:+.3f} |")
    lines += ["", (f"CPU time per hop (one core): mean {cpu.mean():.0f} s, median {np.median(cpu):.0f} s, "
                   f"max {cpu.max():.0f} s; total {cpu.sum() / 60:.1f} min."), ""]
    (out / "table.md").write_text("\n".join(lines), encoding="utf-8")
    report["table_md"] = "\n".join(lines)
    return report


def _deadline(text: str | None) -> float | None:
    """Epoch seconds of today's HH:MM UTC."""
    if not text:
        return None
    import datetime as dt

    hh, mm = (int(x) for x in text.split(":"))
    now = dt.datetime.now(dt.UTC)
    return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N test hops")
    ap.add_argument("--resume", action="store_true", help="keep hops.jsonl and run only the missing hops")
    ap.add_argument("--order", choices=("cost", "dataset"), default="cost",
                    help="cost: cheapest hops first (default); dataset: file order")
    ap.add_argument("--retry-failed", action="store_true", help="with --resume: run hops that failed again")
    ap.add_argument("--deadline", default=None, metavar="HH:MM",
                    help="UTC time (today) not to pass: no hop is started whose estimated time would end after it")
    ap.add_argument("--summary-only", action="store_true", help="don't run; summarise hops.jsonl as it is")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        run_hops(args.out, args.limit, args.resume, args.order, args.retry_failed, _deadline(args.deadline))
    report = summarise(args.out)
    if args.json:
        report.pop("table_md")
        print(json.dumps(report, indent=2))
    else:
        print(report["table_md"])
        print(f"written: {args.out}/results.json, results.csv, table.md, parity.png, hops.jsonl")


if __name__ == "__main__":
    main()
