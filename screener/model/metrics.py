"""Scores for barrier predictions, shared by every model so numbers are comparable.

"Good" means a good conductor, E_m <= threshold (0.65 eV, Devi et al.), which is the decision the
screen makes; accuracy / precision / recall are of that binary call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from screener.config import DEFAULT_THRESHOLD_EV

#: Two-sided 90% interval of a normal distribution: mean +- 1.645 std.
Z90 = 1.6448536269514722


def _arrays(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"score: y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("score: no values to score")
    return t, p


def score(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    y_std: Sequence[float] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD_EV,
) -> dict:
    """{"n","mae","r2","accuracy","precision_good","recall_good","coverage90"}.

    precision/recall are None when undefined (nothing predicted / nothing truly good);
    coverage90 is the fraction of y_true inside mean +- 1.645 std (None without std).
    """
    t, p = _arrays(y_true, y_pred)
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float(((t - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    good_t, good_p = t <= threshold, p <= threshold
    tp = int((good_t & good_p).sum())
    coverage = None
    if y_std is not None:
        s = np.asarray(y_std, dtype=float).ravel()
        if s.shape != t.shape:
            raise ValueError(f"score: y_std has {s.size} values but y_true has {t.size}")
        coverage = float((np.abs(t - p) <= Z90 * s).mean())
    return {
        "n": int(t.size),
        "mae": float(np.abs(t - p).mean()),
        "r2": r2,
        "accuracy": float((good_t == good_p).mean()),
        "precision_good": tp / int(good_p.sum()) if good_p.any() else None,
        "recall_good": tp / int(good_t.sum()) if good_t.any() else None,
        "coverage90": coverage,
    }


def score_with_ci(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    y_std: Sequence[float] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD_EV,
) -> dict:
    """score() plus "accuracy_ci95" (bootstrap_accuracy_ci): how a test split is reported."""
    out = score(y_true, y_pred, y_std, threshold=threshold)
    out["accuracy_ci95"] = list(bootstrap_accuracy_ci(y_true, y_pred, threshold=threshold))
    return out


def bootstrap_accuracy_ci(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD_EV,
    n: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the accuracy (on 60 points one point is 1.7%)."""
    t, p = _arrays(y_true, y_pred)
    hit = ((t <= threshold) == (p <= threshold)).astype(float)
    rng = np.random.default_rng(seed)
    acc = hit[rng.integers(0, hit.size, size=(n, hit.size))].mean(axis=1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return float(lo), float(hi)
