"""Band-site readout: alignn's layers unchanged (pre-trained weights load), the hop's sites matter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from screener.model.graphs import GraphSettings, band_graph, batch_graphs
from screener.model.pretrain import ModelConfig, build_model
from screener.sources.dataset import load_bands

SMALL = ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=16,
                    output_features=1)


@pytest.fixture(scope="module")
def batch():
    bands = [b.band for b in load_bands("test")[:3]]
    return batch_graphs([band_graph(b, GraphSettings()) for b in bands])


def test_band_readout_reproduces_alignn_when_it_ignores_the_band(batch):
    """With output weights only on the global-mean part, the band readout equals alignn's model:
    its message passing is alignn's, so MPT weights transfer unchanged."""
    torch.manual_seed(0)
    mean = build_model(SMALL)
    band = build_model(ModelConfig(**{**SMALL.__dict__, "readout": "band"}))
    missing, unexpected = band.load_state_dict(
        {k: v for k, v in mean.state_dict().items() if not k.startswith("fc.")}, strict=False)
    assert not unexpected and all(k.startswith("fc.") for k in missing)
    h = SMALL.hidden_features
    with torch.no_grad():
        band.fc.weight.zero_()
        band.fc.weight[:, :h] = mean.fc.weight
        band.fc.bias.copy_(mean.fc.bias)
    mean.eval(), band.eval()
    with torch.no_grad():
        np.testing.assert_allclose(band(batch.model_input())["out"].numpy(),
                                   mean(batch.model_input())["out"].numpy(), atol=1e-5)


def test_band_readout_sees_the_hop(batch):
    torch.manual_seed(1)
    band = build_model(ModelConfig(**{**SMALL.__dict__, "readout": "band"})).eval()
    with torch.no_grad():
        out = band(batch.model_input())["out"]
        h = SMALL.hidden_features
        band.fc.weight[:, h:] = 0.0  # drop the band-site part
        out_no_band = band(batch.model_input())["out"]
    assert out.shape == (3,)
    assert not torch.allclose(out, out_no_band)


def test_unknown_readout():
    with pytest.raises(ValueError, match="unknown readout"):
        build_model(ModelConfig(readout="max"))
