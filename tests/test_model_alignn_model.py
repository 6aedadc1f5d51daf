"""ALIGNN barrier model: ensemble mean/spread, save/load, MPT init, host-order invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from screener.model.alignn_model import AlignnModel, network_from_pretrained
from screener.model.base import load_model
from screener.model.pretrain import ModelConfig, PretrainConfig, build_model, pretrain
from screener.sources.dataset import load_bands

SMALL = ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=16,
                    output_features=1)


def _members(n: int) -> list[dict]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(SMALL).state_dict())
    return out


@pytest.fixture(scope="module")
def bands() -> list[Structure]:
    return [b.band for b in load_bands("train")[:4]]


def test_ensemble_mean_and_spread_save_load(bands, tmp_path):
    model = AlignnModel(_members(3), SMALL, std_scale=2.0)
    mean, std = model.predict(bands)
    raw = model.member_predictions(bands)
    np.testing.assert_allclose(mean, raw.mean(axis=0))
    assert (raw.std(axis=0) > 0).all()  # members differ
    np.testing.assert_allclose(std, np.sqrt((2.0 * raw.std(axis=0)) ** 2 + model.std_floor**2))
    path = model.save(tmp_path / "alignn.joblib")
    again = load_model(str(path))
    assert isinstance(again, AlignnModel) and again.model_id == model.model_id
    np.testing.assert_allclose(again.predict(bands)[0], mean, rtol=1e-6)


def test_same_prediction_with_host_sites_in_another_order(bands):
    model = AlignnModel(_members(2), SMALL)
    band = bands[1]
    order = list(range(5)) + list(np.random.default_rng(3).permutation(range(5, len(band))))
    shuffled = Structure.from_sites([band[i] for i in order])
    m1, s1 = model.predict([band])
    m2, s2 = model.predict([shuffled])
    np.testing.assert_allclose(m1, m2, atol=1e-5)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_network_from_pretrained_keeps_backbone(tmp_path):
    cfg = PretrainConfig(out_dir=str(tmp_path / "mpt"), limit=9, batch_size=8, epochs=1, threads=1,
                         model=ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16,
                                           embedding_features=16),
                         graph_cache=str(tmp_path / "graphs"))
    pretrain(cfg, progress=False)
    state = torch.load(tmp_path / "mpt" / "last.pt", weights_only=False)["model"]
    net = network_from_pretrained(tmp_path / "mpt" / "last.pt")
    assert net.fc.out_features == 1
    for k, v in net.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, state[k]), k


def test_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_text("nope")
    with pytest.raises(ValueError, match=f"pretrain checkpoint {bad}: unreadable") as exc:
        network_from_pretrained(bad)
    assert "\n" not in str(exc.value)
