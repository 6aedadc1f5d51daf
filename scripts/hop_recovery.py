"""Hop-recovery benchmark: does the enumerator find the hops the literature's DFT-NEB studies computed?

For every dataset entry the host is rebuilt from the band (the host sites, plus the ion on both end
points when the host holds other ions of that kind: a vacancy hop in a discharged host; no ion at
all when the band's ion is the only one: a charged host, whose sites come from insertion_sites).
The dataset hop is recovered when one enumerated hop maps onto it by the host's symmetry (end points
within 0.3 A). Usage: python scripts/hop_recovery.py [--json] [--split train|test|all] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from screener.hops import HopError, enumerate_hops, matching_hop
from screener.sites import SiteError, _nearest, insertion_hops
from screener.sources.dataset import DatasetBand, load_bands

#: Longest hop asked of the enumerator (Angstrom): generous, the dataset's hops run to 9 A and
#: 97% of them are shorter than this.
MAX_LENGTH = 6.5
#: How far (Angstrom) a symmetry-mapped end point may be from the dataset's.
TOL = 0.3


@dataclass
class Outcome:
    sys_name: str
    kind: str  # "discharged" or "charged"
    recovered: bool
    why: str = ""
    seconds: float = 0.0


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


def _why_not(host: Structure, hops: list, ion: str, length: float, ends: np.ndarray, charged: bool) -> str:
    if length > MAX_LENGTH:
        return f"hop {length:.2f} A is longer than max_length {MAX_LENGTH} A"
    if charged:
        room = _nearest(host, ends)
        sites = np.array([s.frac_coords for s in hops[1] if s.specie.symbol == ion]) if hops else np.zeros((0, 3))
        far = []
        for p, r in zip(ends, room):
            d = sites - p
            d -= np.rint(d)
            dist = float(np.min(np.linalg.norm(d @ host.lattice.matrix, axis=1))) if len(sites) else float("inf")
            if dist >= TOL:
                far.append(f"end point {dist:.2f} A from the nearest insertion site (room there {r:.2f} A)")
        if far:
            return "; ".join(far)
        hops = hops[0]
    near = min((abs(h.length - length) for h in hops), default=float("inf"))
    return f"no enumerated hop maps onto it ({len(hops)} hops; closest length differs by {near:.2f} A)"


def check(entry: DatasetBand) -> Outcome:
    """Recovery of one dataset hop (never raises: failures are misses with their reason)."""
    t0 = time.perf_counter()
    band = entry.band
    host, ion, kind = rebuild_host(band)
    ends = band.frac_coords[[0, 4]]
    length = float(np.linalg.norm(band.lattice.get_cartesian_coords(ends[1] - ends[0])))
    try:
        if kind == "discharged":
            hops = enumerate_hops(host, entry.sys_name, ion, max_length=MAX_LENGTH)
            found = matching_hop(host, hops, ends[0], ends[1], tol=TOL)
            why = "" if found else _why_not(host, hops, ion, length, ends, False)
        else:
            filled, hops = insertion_hops(host, entry.sys_name, ion, max_length=MAX_LENGTH)
            found = matching_hop(host, hops, ends[0], ends[1], tol=TOL)
            why = "" if found else _why_not(host, (hops, filled), ion, length, ends, True)
    except (HopError, SiteError) as exc:
        found, why = None, str(exc)
    return Outcome(entry.sys_name, kind, found is not None, why, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help='print only {"discharged": {"n", "recovered"}, "charged": {...}}')
    ap.add_argument("--split", choices=("train", "test", "all"), default="all")
    ap.add_argument("--limit", type=int, default=None, help="first N entries only")
    args = ap.parse_args(argv)
    entries = [b for sp in (("train", "test") if args.split == "all" else (args.split,)) for b in load_bands(sp)]
    entries = entries[: args.limit] if args.limit else entries
    t0 = time.perf_counter()
    outcomes = []
    for k, e in enumerate(entries):
        outcomes.append(check(e))
        if not args.json:
            o = outcomes[-1]
            print(f"[{k + 1}/{len(entries)}] {o.sys_name} {o.kind} {'ok' if o.recovered else 'MISS'} {o.seconds:.1f}s", file=sys.stderr)
    summary = {
        kind: {"n": sum(o.kind == kind for o in outcomes), "recovered": sum(o.kind == kind and o.recovered for o in outcomes)}
        for kind in ("discharged", "charged")
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    for kind, s in summary.items():
        frac = s["recovered"] / s["n"] if s["n"] else float("nan")
        print(f"{kind}: {s['recovered']}/{s['n']} recovered ({100 * frac:.1f}%)")
    print(f"time: {time.perf_counter() - t0:.0f} s for {len(outcomes)} entries (max_length {MAX_LENGTH} A, tol {TOL} A)")
    for o in outcomes:
        if not o.recovered:
            print(f"MISS {o.kind} {o.sys_name}: {o.why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
