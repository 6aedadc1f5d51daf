"""How far can a CHGNet site finder go on the charged-host hops? Ceiling of the recovery benchmark.

A site finder can only land on a dataset end point if that point is where the ion rests. For each
given dataset entry (charged host: the band's ion is the only one), the ion is put on each DFT end
point of the band's own framework, kicked 0.15 A in a fixed random direction (a point held by
symmetry has zero force without being a minimum) and relaxed with CHGNet (FIRE, fmax 0.05 eV/A):

- framework fixed (the ion alone moves: what candidate_sites(relax="chgnet") does), up to 150 steps;
- where that leaves the ion more than TOL from the end point: ion AND framework relaxed (cell fixed,
  up to 300 steps; frameworks of at most 260 atoms), the ion measured against the framework's mean
  displacement, i.e. what a DFT study does when it relaxes the host around each end point.

An entry is reachable when both end points come back within TOL (the benchmark's 0.3 A), by the
first relaxation or the second. Per entry one JSON line goes to --out (re-running skips the
entries already there, so the run resumes); the summary counts entries reachable each way.

Whether a finder that relaxes the framework does land there is hop_recovery's job:
`python scripts/hop_recovery.py --only charged --relax chgnet-framework --names FILE --relax-cache DIR`.

    python scripts/hop_recovery.py --only charged > recovery.txt   # its MISS lines name the misses
    python scripts/site_ceiling.py --names recovery.txt --out ceiling.jsonl [--limit N]

--names: a file of dataset names, one per line, or hop_recovery's output (its "MISS charged" lines
are read, hops over the enumerator's length limit left out: no site finder changes those). Without
--names every charged entry is run (about 1 min each on one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

#: The recovery benchmark's tolerance (Angstrom).
TOL = 0.3
KICK = 0.15
FMAX = 0.05
FIXED_STEPS, FULL_STEPS, FULL_MAX_ATOMS = 150, 300, 260


def _ion_in(host, ion, frac: np.ndarray):
    """ASE atoms of host with the ion inserted first (index 0) at fractional frac."""
    from pymatgen.io.ase import AseAtomsAdaptor

    s = host.copy()
    s.insert(0, ion, frac)
    return AseAtomsAdaptor.get_atoms(s)


def _drift(atoms, calc, fix_framework: bool, steps: int) -> tuple[float, float, int]:
    """(distance of the relaxed ion from its start against the framework's mean displacement, force
    on the ion at the start (eV/A), optimiser steps): FIRE relaxation (cell fixed) of a copy of atoms
    whose ion is index 0, after a kick of KICK A in a fixed random direction."""
    from ase.constraints import FixAtoms
    from ase.optimize import FIRE

    a = atoms.copy()
    a.calc = calc
    if fix_framework:
        a.set_constraint(FixAtoms(indices=list(range(1, len(a)))))
    p0 = a.get_positions().copy()
    f0 = float(np.linalg.norm(a.get_forces()[0]))
    direction = np.random.default_rng(len(a)).normal(size=3)
    p = a.get_positions()
    p[0] += KICK * direction / np.linalg.norm(direction)
    a.set_positions(p)
    opt = FIRE(a, logfile=None)
    opt.run(fmax=FMAX, steps=steps)
    d = a.get_positions() - p0
    return float(np.linalg.norm(d[0] - d[1:].mean(axis=0))), f0, int(opt.nsteps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=Path, default=None, help="dataset names or hop_recovery output (default: every charged entry)")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per entry (resumes)")
    ap.add_argument("--limit", type=int, default=None, help="first N entries only")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hop_recovery import read_names, rebuild_host
    from screener.followups.mlip_neb import chgnet_calculator
    from screener.sources.dataset import load_bands

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    bands = {b.sys_name: b for sp in ("train", "test") for b in load_bands(sp)}
    names = read_names(args.names) if args.names else [n for n, b in bands.items() if rebuild_host(b.band)[2] == "charged"]
    if unknown := [n for n in names if n not in bands]:
        raise SystemExit(f"--names {args.names}: not dataset entries: {', '.join(unknown[:5])}")
    names = names[: args.limit] if args.limit else names
    done = {}
    if args.out.exists():
        done = {r["sys_name"]: r for r in map(json.loads, args.out.read_text().splitlines()) if r}
        if bad := next((n for n, r in done.items() if not {"fixed0", "fixed1"} <= r.keys()), None):
            raise SystemExit(f"--out {args.out}: not this script's end-point records ({bad} has no fixed0/fixed1); use another file")
    calc = chgnet_calculator()
    from tqdm import tqdm

    with args.out.open("a") as fh:
        for name in tqdm(names, desc="end points", mininterval=5):
            if name in done:
                continue
            band = bands[name].band
            t0 = time.perf_counter()
            framework = band.copy()
            framework.remove_sites(range(5))
            rec = {"sys_name": name, "natoms": len(framework) + 1}
            for k, idx in (("0", 0), ("1", 4)):
                atoms = _ion_in(framework, band[idx].specie, band[idx].frac_coords)
                d, f0, n = _drift(atoms, calc, True, FIXED_STEPS)
                rec[f"force{k}"], rec[f"fixed{k}"], rec[f"fixed_steps{k}"] = f0, d, n
                if d > TOL and len(atoms) <= FULL_MAX_ATOMS:
                    d, _, n = _drift(atoms, calc, False, FULL_STEPS)
                    rec[f"full{k}"], rec[f"full_steps{k}"] = d, n
            rec["seconds"] = time.perf_counter() - t0
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[name] = rec
    rows = [done[n] for n in names if n in done]
    fixed = sum(max(r["fixed0"], r["fixed1"]) < TOL for r in rows)
    best = sum(max(min(r[f"fixed{k}"], r.get(f"full{k}", np.inf)) for k in "01") < TOL for r in rows)
    print(json.dumps({"n": len(rows), "reachable_framework_fixed": fixed, "reachable_framework_relaxed": best,
                      "seconds": round(sum(r["seconds"] for r in rows))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
