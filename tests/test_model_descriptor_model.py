"""The shipped descriptor model and DescriptorModel fit / save / load on real dataset bands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from screener.model import available_models, load_model
from screener.model.base import MODELS_DIR
from screener.model.descriptor_model import DescriptorModel, load_folds, load_split


@pytest.fixture(scope="module")
def test_split() -> tuple[list[Structure], np.ndarray]:
    bands, y, _ = load_split("test")
    return bands, y


@pytest.fixture(scope="module")
def default_model() -> DescriptorModel:
    return load_model("descriptor-et")


def test_default_predicts_finite(default_model, test_split):
    bands, y = test_split
    mu, sd = default_model.predict(bands[:6])
    assert mu.shape == sd.shape == (6,)
    assert np.isfinite(mu).all() and np.isfinite(sd).all()
    assert (mu >= 0).all() and (sd > 0).all()
    assert np.abs(mu - y[:6]).mean() < 0.6  # a real model, not the training mean
    assert default_model.model_id.startswith(default_model.name + "@")
    assert default_model.predict([])[0].shape == (0,)


def test_host_order_gives_same_prediction(default_model, test_split):
    band = test_split[0][3]
    host = list(band.sites[5:])
    perm = np.random.default_rng(0).permutation(len(host))
    shuffled = Structure.from_sites(list(band.sites[:5]) + [host[i] for i in perm])
    np.testing.assert_allclose(default_model.predict([shuffled]), default_model.predict([band]),
                               rtol=1e-9, atol=1e-9)


def test_shipped_metrics_match_checkpoint(default_model):
    assert default_model.name in available_models()
    metrics = json.loads((MODELS_DIR / f"{default_model.name}.metrics.json").read_text())
    assert metrics["model_id"] == default_model.model_id
    assert metrics["test"]["n"] == 60 and metrics["grouped_cv"]["n"] == 559
    assert (MODELS_DIR / f"{default_model.name}.joblib").stat().st_size < 10e6


def test_tiny_fit_save_load_round_trip(tmp_path, test_split):
    bands, y = test_split
    folds = np.arange(40) % 4
    model = DescriptorModel(kind="et", n_estimators=20, name="tiny-et").fit(bands[:40], y[:40],
                                                                          folds=folds)
    assert model.std_scale > 0
    path = model.save(tmp_path / "tiny.joblib")
    again = load_model(str(path))
    assert isinstance(again, DescriptorModel) and again.model_id == model.model_id
    np.testing.assert_array_equal(again.predict(bands[40:45])[0], model.predict(bands[40:45])[0])
    np.testing.assert_array_equal(again.predict(bands[40:45])[1], model.predict(bands[40:45])[1])


def test_gbm_kind_fits(test_split):
    bands, y = test_split
    model = DescriptorModel(kind="gbm", n_estimators=30, params={"n_members": 3})
    model.fit(bands[:40], y[:40])
    mu, sd = model.predict(bands[40:43])
    assert np.isfinite(mu).all() and (sd > 0).all()


def test_folds_cover_training_split():
    folds = load_folds()
    assert len(folds) == 559 and set(folds.tolist()) == {0, 1, 2, 3, 4}


def test_errors_are_one_line(tmp_path, test_split):
    with pytest.raises(ValueError, match="unknown model 'nope'") as err:
        load_model("nope")
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.joblib"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.joblib: unreadable") as err:
        load_model(str(bad))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no such file"):
        load_model(str(tmp_path / "missing.joblib"))
    with pytest.raises(ValueError, match="unknown kind"):
        DescriptorModel(kind="svm")
    with pytest.raises(ValueError, match="not fitted"):
        DescriptorModel().predict(test_split[0][:1])


def test_barrier_is_the_trees_interquartile_mean(tmp_path, test_split):
    """The point estimate is the mean of the middle half of the trees (eV), robust to the few
    trees that put a hop among much higher barriers; the shipped model uses it, a checkpoint
    written before it (no "trim" in its state) keeps the plain mean it was scored with."""
    from scipy.stats import trim_mean

    from screener.model.base import read_checkpoint, write_checkpoint
    from screener.model.descriptors import descriptor_matrix

    bands, y = test_split
    model = DescriptorModel(kind="et", n_estimators=40, name="tiny-et").fit(bands[:40], y[:40])
    X = descriptor_matrix(bands[40:50])
    trees = model._member_predictions(model.members, X[:, model._cols])
    mu, _ = model.predict_descriptors(X)
    np.testing.assert_allclose(mu, trim_mean(trees, 0.25, axis=0))
    assert not np.allclose(mu, trees.mean(axis=0))  # skewed trees: the two estimates differ
    assert load_model("descriptor-et").trim == 0.25

    path = model.save(tmp_path / "new.joblib")
    doc = read_checkpoint(path)
    del doc["state"]["trim"]
    old = tmp_path / "old.joblib"
    write_checkpoint(old, model, doc["state"])
    np.testing.assert_allclose(load_model(str(old)).predict_descriptors(X)[0], trees.mean(axis=0))
    median = DescriptorModel(kind="et", n_estimators=40, trim=0.5)
    median.members = model.members
    np.testing.assert_allclose(median.predict_descriptors(X)[0], np.median(trees, axis=0))
    with pytest.raises(ValueError, match="trim 0.7"):
        DescriptorModel(trim=0.7)
