"""Hop-recovery benchmark: does the enumerator find the hops the literature's DFT-NEB studies computed?

For every dataset entry the host is rebuilt from the band (the host sites, plus the ion on both end
points when the host holds other ions of that kind: a vacancy hop in a discharged host; no ion at
all when the band's ion is the only one: a charged host, whose sites come from insertion_sites).
The dataset hop is recovered when one enumerated hop maps onto it by the host's symmetry (end points
within 0.3 A). Misses are listed with a category and the reason. Usage:
python scripts/hop_recovery.py [--json] [--split train|test|all] [--only discharged|charged] [--limit N]
                               [--relax none|chgnet|chgnet-framework] [--relax-cache DIR] [--names FILE] [--emptied]
(--relax chgnet: charged hosts' sites are where CHGNet relaxes the ion from each cavity centre;
chgnet-framework: the ion with the framework around it. --relax-cache keeps the relaxations, so
a killed or repeated run resumes where it stopped. --names: only these entries, one name per line,
or an earlier run's output, whose "MISS charged" lines are read, hops over the length limit left out.
--emptied: sites instead of hops, in the discharged hosts with every ion of the working kind taken
out, where the framework was relaxed with the ions in place: the fraction of the ion's DFT sites
within 0.3 A of an insertion site, a check of the site finder that no charged entry enters.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
from pymatgen.core import Structure

from screener.hops import HopError, enumerate_hops, matching_hop
from screener.site_relax import RelaxSettings
from screener.sites import (
    RELAX_MODES,
    SiteError,
    _nearest,
    candidate_sites,
    default_min_distance,
    insertion_hops,
    site_relax_settings,
)
from screener.sources.dataset import DatasetBand, load_bands

#: Longest hop asked of the enumerator (Angstrom): generous, the dataset's hops run to 9 A and
#: 97% of them are shorter than this.
MAX_LENGTH = 6.5
#: How far (Angstrom) a symmetry-mapped end point may be from the dataset's.
TOL = 0.3
#: An end point closer than this (Angstrom) to a framework cation is not a site an ion can hold:
#: at the 934 end points of the 467 discharged entries (DFT-relaxed ion sites) the nearest
#: framework cation is never closer than 2.21 A (1% are under 2.58 A); the three olivine XPO4/Li
#: charged entries put Li 1.73-1.87 A from P or Ni (their ion and framework come from different
#: origins), so no site finder should find them.
CLASH = 2.0


@dataclass
class Outcome:
    sys_name: str
    kind: str  # "discharged" or "charged"
    recovered: bool
    why: str = ""
    seconds: float = 0.0
    category: str = ""
    split: str = ""
    sites: int = 0  # charged hosts: symmetry-distinct cavity centres found


def rebuild_host(band: Structure) -> tuple[Structure, str, str]:
    """(host, working ion, kind) of a dataset band, the dataset hop left as sites 0.. of nothing:
    discharged hosts get the ion on both end points, charged hosts no ion at all."""
    ion = band[0].specie.symbol
    rest = list(band)[5:]
    if any(s.specie.symbol == ion for s in rest):
        host = Structure.from_sites(rest)
        for end in (band[0], band[4]):  # some sources already hold the ion on an end point
            if not any(s.specie.symbol == ion for s in host.get_sites_in_sphere(end.coords, 0.3)):
                host.append(ion, end.frac_coords)
        return host, ion, "discharged"
    return Structure.from_sites(rest), ion, "charged"


def _nearest_point(points: np.ndarray, p: np.ndarray, lat: np.ndarray) -> float:
    """Periodic distance (Angstrom) from fractional p to the nearest of points (inf if none)."""
    if len(points) == 0:
        return float("inf")
    d = points - p
    d -= np.rint(d)
    return float(np.min(np.linalg.norm(d @ lat, axis=1)))


def _nearest_cation(host: Structure, ion: str, frac: np.ndarray) -> tuple[float, str]:
    """(distance in A, element) of the framework cation nearest to a fractional point."""
    from screener.sites import ANIONS

    near = [(n.nn_distance, n.specie.symbol) for n in host.get_sites_in_sphere(host.lattice.get_cartesian_coords(frac), 4.0)
            if n.specie.symbol != ion and n.specie.symbol not in ANIONS]
    return min(near, default=(float("inf"), "-"))


def _site_miss(host: Structure, ion: str, ends: np.ndarray, trace: dict | None = None) -> tuple[str, str] | None:
    """(category, reason) when an end point of a charged hop is not an insertion site, else None.
    The reason describes both end points, the worst first (it names the category).

    Categories follow the site finder's stages: "cation clash" (end point closer than CLASH to a
    framework cation: not a site in this framework at all), "squeezed" (end point closer to the framework
    than the room window), "no cavity" (no cavity centre within TOL), "relaxed away" (with
    relaxation: no candidate relaxed to within TOL of it), "merged" (a centre or relaxed point was
    there but the symmetry merge / separation dropped it), "dropped" (max_sites / max_energy).
    trace: candidate_sites' trace of the run being diagnosed (default: a fresh run without relaxation)."""
    if not trace:
        trace = {}
        candidate_sites(host, ion, trace=trace)
    lat = host.lattice.matrix
    room = _nearest(host, ends)
    dmin = default_min_distance(ion)
    order = ("cation clash", "squeezed", "no cavity", "relaxed away", "merged", "dropped")
    relaxed = "relaxed" in trace
    worst, details = None, []
    for k, (p, r) in enumerate(zip(ends, room)):
        d = {st: _nearest_point(trace.get(st, np.zeros((0, 3))), p, lat) for st in ("centres", "distinct", "relaxed", "kept")}
        if d["kept"] < TOL:
            details.append((len(order), f"end point {k} is a site ({d['kept']:.2f} A)"))
            continue
        clash = _nearest_cation(host, ion, p)
        if clash[0] < CLASH:
            cat = "cation clash"
        elif r < dmin:
            cat = "squeezed"
        elif relaxed and d["relaxed"] >= TOL:
            cat = "relaxed away"
        elif not relaxed and d["centres"] >= TOL:
            cat = "no cavity"
        elif d["relaxed" if relaxed else "distinct"] >= TOL:
            cat = "merged"
        else:
            cat = "dropped"
        details.append((order.index(cat), (f"end point {k} has room {r:.2f} A (window {dmin:.2f}), nearest cation "
                        f"{clash[1]} {clash[0]:.2f} A, nearest cavity centre {d['centres']:.2f} A, "
                        + (f"nearest relaxed point {d['relaxed']:.2f} A, " if relaxed else "")
                        + f"nearest site {d['kept']:.2f} A")))
        if worst is None or order.index(cat) < order.index(worst):
            worst = cat
    if worst is None:
        return None
    # the worst end point first (it names the category), then the other one, found or not
    details.sort(key=lambda x: x[0])
    return worst, f"{worst}: " + "; ".join(text for _, text in details)


def _why_not(
    host: Structure, hops: list, ion: str, length: float, ends: np.ndarray, charged: bool, trace: dict | None = None,
) -> tuple[str, str]:
    """(category, reason) of a miss."""
    if length > MAX_LENGTH:
        return "too long", f"hop {length:.2f} A is longer than max_length {MAX_LENGTH} A"
    if charged:
        miss = _site_miss(host, ion, ends, trace)
        if miss:
            return miss
    near = min((abs(h.length - length) for h in hops), default=float("inf"))
    return "not matched", f"no enumerated hop maps onto it ({len(hops)} hops; closest length differs by {near:.2f} A)"


def emptied_site_distances(host: Structure, ion: str, relax: str = "none", relax_settings=None) -> np.ndarray:
    """Distance (A) from each of the working ion's sites in a discharged host to the nearest
    insertion site candidate_sites finds once every ion of that kind is taken out: how well the
    site finder does where the framework was relaxed with the ion in place (no answer-key entry of
    the charged benchmark is involved)."""
    framework = host.copy()
    framework.remove_species([ion])
    ion_sites = np.array([s.frac_coords for s in host if s.specie.symbol == ion])
    sites = candidate_sites(framework, ion, relax=relax, relax_settings=relax_settings)
    points = np.vstack([s.orbit for s in sites]) if sites else np.zeros((0, 3))
    return np.array([_nearest_point(points, p, framework.lattice.matrix) for p in ion_sites])


def _emptied_hosts(entries) -> dict[tuple[str, str], Structure]:
    """One rebuilt discharged host per (host name, ion) of the dataset entries."""
    hosts: dict[tuple[str, str], Structure] = {}
    for _, e in entries:
        host, ion, kind = rebuild_host(e.band)
        if kind == "discharged":
            hosts.setdefault((e.host_name, ion), host)
    return hosts


def read_names(path) -> list[str]:
    """Dataset names from a file: one per line, or this script's output (its "MISS charged" lines,
    hops over the length limit left out: no site finder changes those)."""
    from pathlib import Path

    out = []
    for line in Path(path).read_text().splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "MISS":
            if len(tok) > 3 and tok[1] == "charged" and "is longer than max_length" not in line:
                out.append(tok[3].rstrip(":"))
        elif len(tok) == 1:
            out.append(tok[0])
    return out


def check(entry: DatasetBand, relax: str = "none", relax_settings=None) -> Outcome:
    """Recovery of one dataset hop (never raises: failures are misses with their reason); relax:
    the charged hosts' site model (see candidate_sites)."""
    t0 = time.perf_counter()
    band = entry.band
    host, ion, kind = rebuild_host(band)
    ends = band.frac_coords[[0, 4]]
    length = float(np.linalg.norm(band.lattice.get_cartesian_coords(ends[1] - ends[0])))
    cat, why = "", ""
    trace: dict = {}
    try:
        if kind == "discharged":
            hops = enumerate_hops(host, entry.sys_name, ion, max_length=MAX_LENGTH)
        else:
            _, hops = insertion_hops(host, entry.sys_name, ion, max_length=MAX_LENGTH, relax=relax, trace=trace,
                                     relax_settings=relax_settings)
        found = matching_hop(host, hops, ends[0], ends[1], tol=TOL)
        if not found:
            cat, why = _why_not(host, hops, ion, length, ends, kind == "charged", trace)
    except (HopError, SiteError) as exc:
        found, why = None, str(exc)
        cat = "timeout" if "timed out" in why else "error"
        if kind == "charged" and (miss := _site_miss(host, ion, ends, trace)):
            cat, why = miss[0], f"{why}; {miss[1]}"
    return Outcome(entry.sys_name, kind, found is not None, why, time.perf_counter() - t0, cat,
                   sites=int(trace.get("n_distinct", 0)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help='print only {"discharged": {"n", "recovered"}, "charged": {...}}')
    ap.add_argument("--split", choices=("train", "test", "all"), default="all")
    ap.add_argument("--limit", type=int, default=None, help="first N entries only")
    ap.add_argument("--only", choices=("discharged", "charged"), default=None, help="entries of one kind only")
    ap.add_argument("--relax", choices=RELAX_MODES, default="none", help="site model of charged hosts (see candidate_sites)")
    ap.add_argument("--relax-cache", default=None, help="folder that keeps CHGNet site relaxations between runs")
    ap.add_argument("--fmax", type=float, default=None, help="site relaxation force limit (eV/A; default RelaxSettings')")
    ap.add_argument("--names", default=None, help="only these entries: names one per line, or an earlier run's output (its charged misses)")
    ap.add_argument("--emptied", action="store_true",
                    help="sites, not hops: the discharged hosts emptied of the working ion; are its DFT sites found?")
    args = ap.parse_args(argv)
    if args.relax != "none":
        import torch

        torch.set_num_threads(1)  # one core: the benchmark must not crowd out other work
    settings = site_relax_settings(args.relax, cache_dir=args.relax_cache) or RelaxSettings()
    if args.fmax:
        settings = replace(settings, fmax=args.fmax)
    entries = [(sp, b) for sp in (("train", "test") if args.split == "all" else (args.split,)) for b in load_bands(sp)]
    if args.names:
        try:
            wanted = read_names(args.names)
        except OSError as exc:
            raise SystemExit(f"--names {args.names}: {exc.strerror or exc}") from None
        wanted_set = set(wanted)
        if unknown := sorted(wanted_set - {b.sys_name for _, b in entries}):
            where = "" if args.split == "all" else f" of the {args.split} split"
            raise SystemExit(f"--names {args.names}: not dataset entries{where}: {', '.join(unknown[:5])}")
        entries = [(sp, b) for sp, b in entries if b.sys_name in wanted_set]
    if args.only:
        entries = [(sp, b) for sp, b in entries if rebuild_host(b.band)[2] == args.only]
    entries = entries[: args.limit] if args.limit else entries
    t0 = time.perf_counter()
    if args.emptied:
        return _emptied_report(entries, args, settings, t0)
    outcomes = []
    for k, (sp, e) in enumerate(entries):
        o = check(e, args.relax, settings)
        o.split = sp
        outcomes.append(o)
        if not args.json:
            print(f"[{k + 1}/{len(entries)}] {o.sys_name} {o.kind} {'ok' if o.recovered else 'MISS'} {o.seconds:.1f}s", file=sys.stderr)
    summary = {
        kind: {"n": sum(o.kind == kind for o in outcomes), "recovered": sum(o.kind == kind and o.recovered for o in outcomes)}
        for kind in ("discharged", "charged")
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    for kind, s in summary.items():
        if not s["n"]:
            continue
        mine = [o for o in outcomes if o.kind == kind]
        splits = ", ".join(
            f"{sp} {sum(o.recovered for o in mine if o.split == sp)}/{sum(o.split == sp for o in mine)}" for sp in ("train", "test")
        )
        secs = np.array([o.seconds for o in mine])
        print(f"{kind}: {s['recovered']}/{s['n']} recovered ({100 * s['recovered'] / s['n']:.1f}%; {splits}); "
              f"per hop {np.median(secs):.1f} s median, {secs.max():.1f} s max")
        if kind == "charged":
            n_sites = np.array([o.sites for o in mine])
            print(f"  distinct cavity centres per host: median {np.median(n_sites):g}, max {n_sites.max()}, "
                  f"total {n_sites.sum()}")
        cats = Counter(o.category for o in mine if not o.recovered)
        if cats:
            print("  misses: " + ", ".join(f"{c} {n}" for c, n in cats.most_common()))
    print(f"time: {time.perf_counter() - t0:.0f} s for {len(outcomes)} entries (max_length {MAX_LENGTH} A, tol {TOL} A, "
          f"relax {args.relax})")
    for o in outcomes:
        if not o.recovered:
            print(f"MISS {o.kind} {o.split} {o.sys_name}: {o.why}")
    return 0


def _emptied_report(entries, args, settings, t0: float) -> int:
    """--emptied: for each distinct discharged host, the ion's sites within TOL of an insertion site."""
    hosts = _emptied_hosts(entries)
    found, n_sites, complete, misses = 0, 0, 0, []
    for k, ((name, ion), host) in enumerate(hosts.items()):
        try:
            d = emptied_site_distances(host, ion, args.relax, settings)
        except SiteError as exc:
            d = np.full(sum(s.specie.symbol == ion for s in host), np.inf)
            misses.append(f"MISS emptied {name} {ion}: {exc}")
        else:
            if (d >= TOL).any():
                misses.append(f"MISS emptied {name} {ion}: {int((d >= TOL).sum())}/{len(d)} ion sites off, "
                              f"farthest {d.max():.2f} A from an insertion site")
        found += int((d < TOL).sum())
        n_sites += len(d)
        complete += bool((d < TOL).all())
        if not args.json:
            print(f"[{k + 1}/{len(hosts)}] {name} {ion} {int((d < TOL).sum())}/{len(d)}", file=sys.stderr)
    summary = {"hosts": len(hosts), "hosts_all_sites": complete, "ion_sites": n_sites, "ion_sites_found": found}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"emptied discharged hosts: {found}/{n_sites} ion sites within {TOL} A of an insertion site "
          f"({100 * found / max(n_sites, 1):.1f}%); every site found in {complete}/{len(hosts)} hosts; "
          f"{time.perf_counter() - t0:.0f} s (relax {args.relax})")
    print("\n".join(misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
