"""Compare ALIGNN fine-tuning runs under the host-grouped CV only: each run alone and its gated
blend with descriptor-et (nested, as `screener model blend` fits it). The test split is never
loaded, so tries can be ranked without looking at it.

    python scripts/compare_cv.py RUN [RUN ...] [--json] [--recalibrate]

--recalibrate also scores each blend after a monotone map of its output fitted on the other
folds' out-of-fold predictions (isotonic; linear; log-smearing, the log-target models' retransform
bias), i.e. whether the blend's squashing of high barriers is worth undoing.

RUN: an ensemble checkpoint (.joblib) or shipped name; join several with "+" to average their
out-of-fold predictions, as `screener model merge` does (e.g. seeds of one recipe).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from screener.cli_model import train_oof
from screener.model.base import load_model
from screener.model.blend import nested_rule_oof
from screener.model.descriptor_model import load_folds
from screener.model.metrics import score


def _brief(s: dict) -> dict:
    return {"mae": round(s["mae"], 4), "r2": round(s["r2"], 3), "accuracy": round(s["accuracy"], 3)}


def _nested_map(y: np.ndarray, p: np.ndarray, folds: np.ndarray, kind: str) -> np.ndarray:
    """p re-mapped fold by fold with a map fitted on the other folds (p: out-of-fold already)."""
    from sklearn.isotonic import IsotonicRegression

    out = np.empty_like(p)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        if kind == "isotonic":
            out[te] = IsotonicRegression(out_of_bounds="clip").fit(p[tr], y[tr]).predict(p[te])
        elif kind == "linear":
            out[te] = np.polyval(np.polyfit(p[tr], y[tr], 1), p[te])
        else:  # smearing (Duan): E[y] = exp(E[log]) * mean(exp(residual)) for a log(E_m + 0.05) fit
            ratio = np.mean((y[tr] + 0.05) / (p[tr] + 0.05))
            out[te] = (p[te] + 0.05) * ratio - 0.05
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="checkpoints or names; A+B averages their OOF predictions")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--recalibrate", action="store_true", help="also score monotone re-maps of each blend")
    args = ap.parse_args()

    folds = load_folds()
    y, desc, _ = train_oof(load_model("descriptor-et"))
    rows = {"descriptor-et": {"alone": _brief(score(y, desc))}}
    for run in args.runs:
        oofs = [train_oof(load_model(part))[1] for part in run.split("+")]
        a = np.mean(oofs, axis=0)
        if np.isnan(a).any():
            raise SystemExit(f"{run}: no out-of-fold prediction for some training bands (trained on fewer folds?)")
        blended, _ = nested_rule_oof(y, a, desc, folds)
        rows[run] = {"alone": _brief(score(y, a)), "blend_nested": _brief(score(y, blended))}
        if args.recalibrate:
            for kind in ("isotonic", "linear", "smearing"):
                rows[run][f"blend_{kind}"] = _brief(score(y, _nested_map(y, blended, folds, kind)))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for name, r in rows.items():
        line = "  ".join(f"{k}: MAE {v['mae']:.4f} R2 {v['r2']:.3f} acc {100 * v['accuracy']:.1f}%" for k, v in r.items())
        print(f"{name}\n  {line}")


if __name__ == "__main__":
    main()
