"""Blends: the weight is found on out-of-fold predictions, the CV is nested, components are pinned."""

from __future__ import annotations

import numpy as np
import pytest

from screener.model.base import load_model
from screener.model.blend import BlendModel, BlendRule, best_rule, best_weight, mixture, nested_rule_oof
from screener.model.descriptor_model import DescriptorModel
from screener.sources.dataset import load_bands


@pytest.fixture(scope="module")
def bands_y():
    entries = load_bands("train")[:60]
    return [e.band for e in entries], np.array([e.target for e in entries])


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, bands_y):
    """Two small, different descriptor models saved as checkpoints."""
    bands, y = bands_y
    d = tmp_path_factory.mktemp("blend")
    folds = np.arange(40) % 4
    a = DescriptorModel(kind="et", n_estimators=20, name="tiny-et").fit(bands[:40], y[:40], folds=folds)
    b = DescriptorModel(kind="rf", n_estimators=20, name="tiny-rf").fit(bands[:40], y[:40], folds=folds)
    return str(a.save(d / "a.joblib")), str(b.save(d / "b.joblib"))


def test_best_weight_recovers_the_better_mix():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1.5, 400)
    good, bad = y + rng.normal(0, 0.05, 400), y + rng.normal(0, 0.4, 400)
    assert best_weight(y, good, bad) >= 0.85
    assert best_weight(y, bad, good) <= 0.15
    # two equally noisy, independent models: the mix beats both
    a, b = y + rng.normal(0, 0.2, 400), y + rng.normal(0, 0.2, 400)
    w = best_weight(y, a, b)
    assert 0.25 <= w <= 0.75
    mix = np.mean(np.abs(w * a + (1 - w) * b - y))
    assert mix < min(np.mean(np.abs(a - y)), np.mean(np.abs(b - y)))


def test_nested_weights_come_from_other_folds():
    y = np.arange(10.0)
    a, b = y.copy(), y + 1.0  # a is exact everywhere except fold 0, where b is exact
    a[:5] += 1.0
    b[:5] -= 1.0
    folds = np.array([0] * 5 + [1] * 5)
    out, rules = nested_rule_oof(y, a, b, folds, objective="mae", gates=(None,))
    # fold 0's weight is chosen on fold 1 (where a is exact) -> w=1 -> a's error on fold 0
    assert [r.weight for r in rules] == [1.0, 0.0]
    np.testing.assert_allclose(out[:5], a[:5])


def test_gated_rule_trusts_each_model_where_it_is_right():
    """a is right below 1 eV and squashes high barriers; b is noisy below and right above: the
    rule finds a gate near 1 eV, leans on a below it and on b above it, and beats one weight."""
    rng = np.random.default_rng(2)
    y = np.concatenate([rng.uniform(0.1, 0.9, 300), rng.uniform(1.6, 4.0, 100)])
    a = np.where(y < 1.0, y + rng.normal(0, 0.05, 400), 1.0 + 0.1 * y)
    b = y + rng.normal(0, 0.25, 400)
    rule = best_rule(y, a, b, objective="mse")
    assert rule.gate_ev is not None and 0.8 <= rule.gate_ev <= 1.5
    assert rule.weight >= 0.7 and rule.weight_above <= 0.1
    one = best_rule(y, a, b, objective="mse", gates=(None,))
    assert one == BlendRule(None, one.weight, one.weight)
    assert np.mean((rule.apply(a, b) - y) ** 2) < np.mean((one.apply(a, b) - y) ** 2)


def test_mixture_std_includes_disagreement():
    means = np.array([[1.0], [0.0]])
    stds = np.array([[0.0], [0.0]])
    mu, sd = mixture(means, stds, np.array([0.5, 0.5]))
    assert mu[0] == pytest.approx(0.5) and sd[0] == pytest.approx(0.5)


def test_blend_predicts_saves_loads_and_pins_components(two_models, bands_y, tmp_path):
    bands, y = bands_y
    pa, pb = two_models
    ma, mb = load_model(pa), load_model(pb)
    held = bands[40:60]
    rng = np.random.default_rng(1)
    n = 200
    yy = rng.uniform(0, 1.5, n)
    oof = np.array([yy + rng.normal(0, 0.1, n), yy + rng.normal(0, 0.3, n)])
    sds = np.full((2, n), 0.1)
    blend = BlendModel.fit_on_oof([pa, pb], yy, oof, sds, np.arange(n) % 5, name="tiny-blend")
    assert blend.weights[0] > blend.weights[1]
    assert len(blend.info["oof"]["fold_weights"]) == 5 and blend.std_scale > 0
    mu, sd = blend.predict(held)
    (ma_mu, _), (mb_mu, _) = ma.predict(held), mb.predict(held)
    rule = BlendRule(blend.gate_ev, float(blend.weights[0]), float(blend.weights_above[0]))
    np.testing.assert_allclose(mu, rule.apply(ma_mu, mb_mu))
    assert (sd > 0).all()
    path = blend.save(tmp_path / "blend.joblib")
    again = load_model(str(path))
    assert isinstance(again, BlendModel) and again.model_id == blend.model_id
    assert again.gate_ev == blend.gate_ev and np.array_equal(again.weights_above, blend.weights_above)
    np.testing.assert_allclose(again.predict(held)[0], mu)
    # a component retrained in place -> the blend refuses to load, naming the file
    DescriptorModel(kind="et", n_estimators=5, name="tiny-et").fit(bands[:30], y[:30]).save(pa)
    with pytest.raises(ValueError, match="component changed") as exc:
        load_model(str(path))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_bad_weights_are_refused(two_models):
    with pytest.raises(ValueError, match="sum to 1"):
        BlendModel(list(two_models), [0.7, 0.7])
    with pytest.raises(ValueError, match=">= 2 components"):
        BlendModel([two_models[0]], [1.0])


def test_blend_command_fits_on_grouped_oof_and_scores_test_once(tmp_path):
    """`screener model blend` on two descriptor models: both are refitted per host-grouped fold of
    the training split, the weight comes from those out-of-fold predictions, and the metrics file
    has both protocols."""
    import json

    from typer.testing import CliRunner

    from screener.cli_model import model_app
    from screener.model.descriptor_model import load_split

    bands, y, _ = load_split("train")
    rf = DescriptorModel(kind="rf", n_estimators=10, name="small-rf").fit(bands[:80], y[:80])
    rf_path = rf.save(tmp_path / "rf.joblib")
    out = tmp_path / "mix.joblib"
    res = CliRunner().invoke(model_app, ["blend", "--component", "descriptor-et", "--component",
                                         str(rf_path), "--out", str(out), "--name", "mix", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["grouped_cv"]["n"] == 559 and doc["test"]["n"] == 60
    assert sum(doc["weights"]) == 1.0 and len(doc["fold_weights"]) == 5
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["model_id"] == load_model(str(out)).model_id
    # the blend is never worse under the (nested) CV than the worse of its parts
    worst = max(c["mae"] for c in doc["components_cv"].values())
    assert doc["grouped_cv"]["mae"] <= worst
    res = CliRunner().invoke(model_app, ["blend", "--component", "descriptor-et", "--out", str(out)])
    assert res.exit_code == 2 and "exactly two" in res.stderr


def test_gated_blend_skips_a_component_where_its_weight_is_zero(two_models, bands_y):
    """Above the gate with weight 0 for the first model, that model is not asked at all, and the
    result is the same as asking it."""
    bands, _ = bands_y
    held = bands[40:60]
    pa, pb = two_models
    ma, mb = load_model(pa), load_model(pb)
    b_mu = mb.predict(held)[0]
    gate = float(np.median(b_mu))
    blend = BlendModel([pa, pb], [0.6, 0.4], gate_ev=gate, weights_above=[0.0, 1.0], models=[ma, mb])
    asked: list[int] = []
    predict_a = ma.predict
    ma.predict = lambda bs: (asked.append(len(bs)), predict_a(bs))[1]
    mu, sd = blend.predict(held)
    assert asked == [int((b_mu < gate).sum())] and 0 < asked[0] < len(held)
    a_mu, a_sd = predict_a(held)
    full = mixture(np.array([a_mu, b_mu]), np.array([a_sd, mb.predict(held)[1]]), blend.band_weights(b_mu))
    np.testing.assert_allclose(mu, full[0])
    assert (sd > 0).all()
