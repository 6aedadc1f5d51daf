"""scripts/random_init_checkpoint.py: the no-pre-training control starts from untrained weights
that fine-tuning accepts as it accepts the MPT checkpoint."""

from __future__ import annotations


import torch

from _scripts import load_script
from screener.model.alignn_model import network_from_pretrained
from screener.model.finetune import pretrained_setup
from screener.model.pretrain import load_checkpoint

random_init = load_script("random_init_checkpoint")


def test_same_size_checkpoint_is_untrained_reproducible_and_fine_tunable(tmp_path):
    out_a, out_b = tmp_path / "a.pt", tmp_path / "b.pt"
    random_init.main(["--out", str(out_a)])
    random_init.main(["--out", str(out_b)])
    template, a, b = (load_checkpoint(p) for p in (random_init.TEMPLATE, out_a, out_b))
    assert a["graph_settings"] == template["graph_settings"] and a["history"] == []
    shared = [k for k in template["model"] if not k.startswith("fc.")]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in shared)  # same seed, same weights
    assert not all(torch.equal(a["model"][k], template["model"][k]) for k in shared)  # not the MPT weights
    net = network_from_pretrained(out_a, readout="band")
    state = net.state_dict()
    assert all(torch.equal(state[k], a["model"][k]) for k in shared)  # loaded as fine-tuning loads MPT


def test_bigger_network_reaches_fine_tuning_with_its_size(tmp_path):
    out = tmp_path / "big.pt"
    random_init.main(["--out", str(out), "--hidden", "32", "--gcn-layers", "2", "--seed", "3"])
    model_cfg, settings = pretrained_setup(out, "band")
    assert (model_cfg.hidden_features, model_cfg.gcn_layers) == (32, 2)
    assert settings.max_neighbors == load_checkpoint(random_init.TEMPLATE)["graph_settings"]["max_neighbors"]
    net = network_from_pretrained(out, readout="band")
    small = network_from_pretrained(random_init.TEMPLATE, readout="band")
    assert sum(p.numel() for p in net.parameters()) != sum(p.numel() for p in small.parameters())
