"""MPT pre-training: masked L1, a 2-step run that checkpoints and resumes, the data file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from screener.model.pretrain import (
    PROPERTIES, ModelConfig, PretrainConfig, load_checkpoint, load_pretrain_set, masked_l1, pretrain,
    split_indices)


def test_masked_l1_only_present_properties_count():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.5, float("nan"), 0.0], [float("nan"), -1.0, float("nan")]])
    mask = ~torch.isnan(target)
    # present: |1-1.5|=0.5, |3-0|=3, |0-(-1)|=1 -> mean 1.5; the NaNs and their preds are ignored
    loss = masked_l1(pred, target, mask)
    assert loss.item() == pytest.approx(1.5)
    pred.requires_grad_(True)
    masked_l1(pred, target, mask).backward()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 0] == 0 and pred.grad[1, 2] == 0
    assert not torch.isnan(pred.grad).any()
    assert masked_l1(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_masked_l1_shape_mismatch_is_one_line():
    with pytest.raises(ValueError, match="shapes differ") as exc:
        masked_l1(torch.zeros(2, 7), torch.zeros(2, 6), torch.ones(2, 7, dtype=torch.bool))
    assert "\n" not in str(exc.value)


def test_pretrain_set_layout():
    ids, structures, y = load_pretrain_set(limit=50)
    assert len(ids) == len(structures) == 50 and y.shape == (50, len(PROPERTIES))
    assert np.nanmax(np.abs(y)) <= 1.0
    assert (~np.isnan(y)).sum(axis=1).min() >= 1  # every structure has some property
    train, val = split_indices(100, 0.05, 0)
    assert len(val) == 5 and len(np.intersect1d(train, val)) == 0


def test_two_steps_checkpoint_then_resume_continues(tmp_path):
    cfg = dict(out_dir=str(tmp_path / "mpt"), limit=17, batch_size=8, epochs=1, threads=1,
               model=ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16,
                                 embedding_features=16), graph_cache=str(tmp_path / "graphs"),
               log_every=1)
    first = pretrain(PretrainConfig(**cfg), progress=False)
    # 17 structures, 1 held out for validation -> 16 train -> 2 steps of 8
    assert (first["epoch"], first["step"], first["stopped"]) == (1, 2, "epochs")
    ckpt = load_checkpoint(tmp_path / "mpt" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["epoch"] == 1 and set(ckpt["rng"]) == {"torch", "numpy", "python"}
    assert "optimizer" in ckpt and math.isfinite(first["val"]["mae"])
    assert (tmp_path / "mpt" / "best.pt").is_file()
    log = (tmp_path / "mpt" / "pretrain.log").read_text()
    assert "epoch 1 done step 2" in log

    second = pretrain(PretrainConfig(**{**cfg, "epochs": 2}), resume=True, progress=False)
    assert (second["epoch"], second["step"]) == (2, 4)
    after = load_checkpoint(tmp_path / "mpt" / "last.pt")
    assert len(after["history"]) == 2
    assert not all(torch.equal(after["model"][k], ckpt["model"][k]) for k in ckpt["model"])
    assert "cache hits 17, built 0" in (tmp_path / "mpt" / "pretrain.log").read_text()


def test_budget_stop_mid_epoch_resumes_at_the_same_position(tmp_path):
    cfg = dict(out_dir=str(tmp_path / "mpt"), limit=33, batch_size=8, epochs=1, threads=1,
               model=ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16,
                                 embedding_features=16), graph_cache=str(tmp_path / "graphs"),
               budget_minutes=0.0)
    first = pretrain(PretrainConfig(**cfg), progress=False)
    assert (first["stopped"], first["step"], first["epoch"]) == ("budget", 1, 0)
    st = load_checkpoint(tmp_path / "mpt" / "last.pt")
    assert st["pos"] == 8 and st["perm"] is not None
    done = pretrain(PretrainConfig(**{**cfg, "budget_minutes": 60.0}), resume=True, progress=False)
    # 32 train structures = 4 steps per epoch; 1 was done before the stop
    assert (done["stopped"], done["step"], done["epoch"]) == ("epochs", 4, 1)
