"""Is model A really ahead of model B on the 60 test bands? A paired bootstrap of the differences
in MAE and R² (the same resampled bands for both models), for reporting only: nothing is fitted
or chosen here.

    python scripts/paired_bootstrap.py --model blend --model descriptor-et [--n 10000] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from screener.model.base import load_model
from screener.model.metrics import score
from screener.sources.dataset import load_bands


def _diff(y: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> tuple[float, float]:
    """(MAE of A - MAE of B, R² of A - R² of B), scored as everywhere else (metrics.score)."""
    sa, sb = score(y, pa), score(y, pb)
    return sa["mae"] - sb["mae"], sa["r2"] - sb["r2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="give exactly two: A then B")
    ap.add_argument("--n", type=int, default=10000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if len(args.model) != 2:
        raise SystemExit(f"--model: give exactly two models, got {len(args.model)}")

    entries = load_bands("test")
    bands, y = [e.band for e in entries], np.array([e.target for e in entries])
    pa, pb = (np.asarray(load_model(m).predict(bands)[0]) for m in args.model)
    rng = np.random.default_rng(args.seed)
    boot = np.array([_diff(y[i], pa[i], pb[i])
                     for i in (rng.integers(0, len(y), len(y)) for _ in range(args.n))])
    mae_diff, r2_diff = _diff(y, pa, pb)
    out = {"a": args.model[0], "b": args.model[1], "n_bands": len(y),
           "mae_diff": mae_diff, "mae_diff_ci95": np.percentile(boot[:, 0], [2.5, 97.5]).round(4).tolist(),
           "r2_diff": r2_diff, "r2_diff_ci95": np.percentile(boot[:, 1], [2.5, 97.5]).round(4).tolist()}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['a']} - {out['b']} on {out['n_bands']} test bands: MAE {out['mae_diff']:+.4f} eV "
          f"(95% CI {out['mae_diff_ci95']}), R² {out['r2_diff']:+.4f} (95% CI {out['r2_diff_ci95']})")


if __name__ == "__main__":
    main()
