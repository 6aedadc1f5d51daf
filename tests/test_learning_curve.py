"""scripts/learning_curve.py: host-grouped subsampling and the power-law fit behind the
"how many barriers would the goal take" estimate."""

from __future__ import annotations

import numpy as np

from _scripts import load_script

lc = load_script("learning_curve")


def test_power_law_fit_recovers_a_known_curve_and_the_bands_a_goal_takes():
    n = np.array([50, 100, 200, 400, 800.0])
    rows = [{"train_bands": float(k), "mae": float(lc.power_law(k, 0.15, 2.0, 0.5))} for k in n]
    law = lc.fit(rows)
    assert abs(law["a"] - 0.15) < 1e-3 and abs(law["c"] - 0.5) < 1e-2
    assert abs(law["train_bands_for_mae"]["0.25"] - 400) < 2  # 0.15 + 2/sqrt(400) = 0.25
    assert law["train_bands_for_mae"]["0.18"] > 4000
    assert law["mae_change_per_doubling"] < 0


def test_curve_keeps_hosts_whole_and_more_data_helps_on_a_learnable_target(tmp_path):
    rng = np.random.default_rng(1)
    hosts = np.repeat(np.arange(100), 3)
    X = rng.uniform(0, 1, (300, 4))
    y = 0.2 + 1.5 * X[:, 0] ** 2 + 0.02 * rng.standard_normal(300)
    folds = hosts % 5
    rows = lc.curve(X, y, folds, hosts.astype(str), fractions=(0.1, 1.0), reps=2)
    small, full = rows
    assert full["train_bands"] == 240 and small["train_bands"] == 24  # whole hosts: 8 of 80, 3 hops each
    assert full["mae"] < small["mae"]
    law_png = lc.plot(rows + [{**full, "train_bands": 120.0}], {"a": 0.1, "b": 1.0, "c": 0.5}, tmp_path / "lc.png")
    assert law_png.stat().st_size > 1000
