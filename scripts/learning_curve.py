"""How the descriptor model's host-grouped CV error falls with the number of training barriers: is
the barrier model limited by the model or by the 559 DFT-NEB barriers it learns from?

    python scripts/learning_curve.py [--reps 8] [--json] [--png PATH]

For each outer fold of `folds-train.json`, a random fraction of the other folds' HOSTS (all their
hops, so no host is split) trains the shipped descriptor-et configuration, which then predicts
the held-out fold; repeated --reps times per fraction with new host draws. A power law
MAE(n) = a + b n^-c fitted to the curve says how many training bands a given CV error would take
(an extrapolation: it assumes new barriers look like these). The test split is never loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from screener.model.base import MODELS_DIR
from screener.model.descriptor_model import ET_PARAMS, ET_TREES, TRIM, DescriptorModel, load_folds, load_split
from screener.model.descriptors import descriptor_matrix
from screener.model.metrics import score

FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PNG = MODELS_DIR / "figures" / "learning_curve.png"


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.power(n, -c)


def curve(X: np.ndarray, y: np.ndarray, folds: np.ndarray, hosts: np.ndarray, fractions=FRACTIONS,
          reps: int = 8, seed: int = 0) -> list[dict]:
    """One row per fraction: mean training bands per fold, CV MAE mean and spread over reps."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in fractions:
        maes, n_train = [], []
        for rep in range(reps if f < 1 else 1):
            pred = np.zeros(len(y))
            for k in np.unique(folds):
                te = folds == k
                pool = np.unique(hosts[~te])
                chosen = rng.choice(pool, max(1, int(round(f * len(pool)))), replace=False)
                tr = ~te & np.isin(hosts, chosen)
                n_train.append(int(tr.sum()))
                model = DescriptorModel(kind="et", n_estimators=ET_TREES, params=ET_PARAMS, seed=rep, trim=TRIM)
                members = model._fit_members(X[tr], model._fwd(y[tr]))
                pred[te] = model._centre(model._member_predictions(members, X[te]))
            maes.append(score(y, pred)["mae"])
        rows.append({"fraction": f, "train_bands": float(np.mean(n_train)), "mae": float(np.mean(maes)),
                     "mae_std": float(np.std(maes)), "reps": len(maes)})
    return rows


def fit(rows: list[dict]) -> dict:
    """Power-law fit of MAE against training bands, and the bands each CV MAE would take."""
    n = np.array([r["train_bands"] for r in rows])
    m = np.array([r["mae"] for r in rows])
    (a, b, c), _ = curve_fit(power_law, n, m, p0=(0.2, 2.0, 0.5), maxfev=20000)
    need = {f"{goal:.2f}": (float((b / (goal - a)) ** (1 / c)) if goal > a else None) for goal in (0.25, 0.22, 0.18)}
    slope = float(np.polyfit(np.log(n), m, 1)[0] * np.log(2))
    return {"a": float(a), "b": float(b), "c": float(c), "train_bands_for_mae": need,
            "mae_change_per_doubling": slope}


def plot(rows: list[dict], law: dict, path: Path) -> Path:
    from screener.plots import plt, save_figure

    n = np.array([r["train_bands"] for r in rows])
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    ax.errorbar(n, [r["mae"] for r in rows], yerr=[r["mae_std"] for r in rows], fmt="o", color="#4477aa",
                label="descriptor-et, host-grouped CV")
    grid = np.linspace(n.min(), 3 * n.max(), 200)
    ax.plot(grid, power_law(grid, law["a"], law["b"], law["c"]), color="#4477aa", alpha=0.6,
            label=f"{law['a']:.3f} + {law['b']:.2f} n^-{law['c']:.2f}")
    ax.axhline(0.25, color="#cc3311", ls="--", label="issue goal 0.25 eV")
    ax.set_xlabel("training bands per fold")
    ax.set_ylabel("CV MAE (eV)")
    ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=8, help="host draws per fraction")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--png", type=Path, default=PNG)
    args = ap.parse_args(argv)
    bands, y, meta = load_split("train")
    X = descriptor_matrix(bands, progress=not args.json)
    hosts = np.array([m["host_name"] for m in meta])
    rows = curve(X, y, load_folds(), hosts, reps=args.reps)
    law = fit(rows)
    plot(rows, law, args.png)
    if args.json:
        print(json.dumps({"rows": rows, "power_law": law, "png": str(args.png)}, indent=1))
        return
    for r in rows:
        print(f"fraction {r['fraction']:.1f}: {r['train_bands']:5.0f} training bands per fold, "
              f"CV MAE {r['mae']:.4f} ± {r['mae_std']:.4f}")
    need = ", ".join(f"{g} eV: {v:.0f}" if v else f"{g} eV: never (asymptote {law['a']:.3f})"
                     for g, v in law["train_bands_for_mae"].items())
    print(f"power law: MAE = {law['a']:.3f} + {law['b']:.2f} n^-{law['c']:.2f}; "
          f"{law['mae_change_per_doubling']:+.3f} eV per doubling; training bands per fold for a CV MAE of {need}")
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
