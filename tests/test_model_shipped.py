"""The shipped graph models: the checkpoints are the ones their metrics describe, and they
reproduce their stored test scores (the 60 test bands are only scored here, never fitted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from screener.model.base import MODELS_DIR, available_models, load_model
from screener.model.metrics import score
from screener.sources.dataset import load_bands


@pytest.fixture(scope="module")
def test_split():
    entries = load_bands("test")
    return [e.band for e in entries], np.array([e.target for e in entries])


@pytest.mark.parametrize("name", ["alignn", "blend"])
def test_shipped_model_matches_its_metrics(name, test_split):
    assert name in available_models()
    metrics = json.loads((MODELS_DIR / f"{name}.metrics.json").read_text())
    model = load_model(name)
    assert model.model_id == metrics["model_id"]
    bands, y = test_split
    mean, std = model.predict(bands)
    s = score(y, mean, std)
    assert s["mae"] == pytest.approx(metrics["test"]["mae"], abs=1e-4)
    assert s["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert (std > 0).all()
    # the CV numbers are the stored out-of-fold predictions of the training split
    assert metrics["grouped_cv"]["n"] == 559


def test_blend_is_pinned_to_the_shipped_components():
    blend = load_model("blend")
    assert blend.component_ids == [load_model("alignn").model_id, load_model("descriptor-et").model_id]
    assert blend.weights.sum() == pytest.approx(1.0)
