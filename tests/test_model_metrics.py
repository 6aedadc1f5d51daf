"""score() and bootstrap_accuracy_ci() on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from screener.model.metrics import bootstrap_accuracy_ci, score


def test_score_hand_made():
    t = np.array([0.2, 0.5, 0.9, 1.5])
    p = np.array([0.3, 0.8, 0.6, 1.5])
    s = score(t, p, threshold=0.65)
    assert s["n"] == 4
    assert s["mae"] == pytest.approx((0.1 + 0.3 + 0.3 + 0.0) / 4)
    ss_res, ss_tot = 0.01 + 0.09 + 0.09, float(((t - t.mean()) ** 2).sum())
    assert s["r2"] == pytest.approx(1 - ss_res / ss_tot)
    # truth good: 0.2, 0.5; predicted good: 0.3 (ok), 0.6 (false good); 0.8 is a missed good
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["precision_good"] == pytest.approx(0.5)
    assert s["recall_good"] == pytest.approx(0.5)
    assert s["coverage90"] is None


def test_score_coverage_and_edge_cases():
    t = np.array([1.0, 1.0, 1.0, 1.0])
    p = np.array([1.1, 1.5, 0.9, 3.0])
    s = score(t, p, y_std=np.full(4, 0.1))  # 1.645 * 0.1 = 0.1645 covers the first and third
    assert s["coverage90"] == pytest.approx(0.5)
    assert s["precision_good"] is None and s["recall_good"] is None  # nothing good anywhere
    with pytest.raises(ValueError, match="y_pred has 2"):
        score([1, 2, 3], [1, 2])


def test_perfect_predictions():
    t = np.linspace(0.1, 2.0, 20)
    s = score(t, t, y_std=np.full(20, 0.01))
    assert s["mae"] == 0 and s["r2"] == 1 and s["accuracy"] == 1 and s["coverage90"] == 1


def test_bootstrap_ci_brackets_accuracy():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 2, 60)
    p = t + rng.normal(0, 0.3, 60)
    acc = score(t, p)["accuracy"]
    lo, hi = bootstrap_accuracy_ci(t, p, n=500, seed=1)
    assert 0 <= lo <= acc <= hi <= 1 and hi - lo > 0.02
    assert (lo, hi) == bootstrap_accuracy_ci(t, p, n=500, seed=1)
    assert bootstrap_accuracy_ci(t, t, n=200) == (1.0, 1.0)
