"""Fine-tuning: MPT weights in, one member per host-grouped fold, resumable, a loadable ensemble."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from screener.model.base import load_model
from screener.model.finetune import (
    FinetuneConfig,
    LogTargetAlignnModel,
    finetune,
    member_path,
)
from screener.model.pretrain import (
    ModelConfig,
    PretrainConfig,
    load_checkpoint,
    pretrain,
)
from screener.sources.dataset import load_bands

TINY = ModelConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=16)


@pytest.fixture(scope="module")
def mpt(tmp_path_factory) -> dict:
    """A tiny MPT checkpoint: 16 structures, 2 steps."""
    d = tmp_path_factory.mktemp("mpt")
    pretrain(PretrainConfig(out_dir=str(d / "mpt"), limit=17, batch_size=8, epochs=1, threads=1,
                            model=TINY, graph_cache=str(d / "graphs")), progress=False)
    return {"ckpt": d / "mpt" / "last.pt", "graphs": str(d / "graphs")}


def _cfg(mpt: dict, out, **kw) -> FinetuneConfig:
    base = {"pretrained": str(mpt["ckpt"]), "out_dir": str(out), "epochs": 1, "members": 2,
            "limit": 20, "batch_size": 8, "graph_cache": mpt["graphs"]}
    return FinetuneConfig(**{**base, **kw})


def test_two_members_one_epoch_give_a_loadable_calibrated_ensemble(mpt, tmp_path):
    summary = finetune(_cfg(mpt, tmp_path / "ft"), progress=False)
    assert summary["stopped"] == "done" and summary["members_done"] == 2
    model = load_model(summary["model"])
    assert isinstance(model, LogTargetAlignnModel) and len(model.networks) == 2
    bands = [b.band for b in load_bands("test")[:3]]
    mean, std = model.predict(bands)
    assert np.isfinite(mean).all() and (mean >= 0).all() and (std > 0).all()
    # out-of-fold = the bands of folds 0 and 1 among the first 20, each predicted by its own member
    folds = np.array([b.fold for b in load_bands("train")[:20]])
    oof = model.info["oof"]
    assert len(oof["y"]) == int(np.isin(folds, [0, 1]).sum()) == summary["grouped_cv"]["n"]
    assert model.std_scale > 0 and all(s >= model.std_floor for s in oof["std"])
    metrics = json.loads((tmp_path / "ft" / "alignn.metrics.json").read_text())
    assert metrics["test"]["n"] == 60 and math.isfinite(metrics["test"]["mae"])
    assert set(metrics) >= {"test", "grouped_cv"}
    log = (tmp_path / "ft" / "finetune.log").read_text()
    assert "member 0 epoch 1" in log and "member 1 epoch 1" in log


def test_backbone_comes_from_the_mpt_checkpoint(mpt, tmp_path):
    # lr 0: the members are exactly the MPT network plus a fresh (per-member) output layer
    finetune(_cfg(mpt, tmp_path / "ft", lr=0.0, weight_decay=0.0), progress=False)
    mpt_state = load_checkpoint(mpt["ckpt"])["model"]
    m0 = load_checkpoint(member_path(tmp_path / "ft", 0))["best_model"]
    m1 = load_checkpoint(member_path(tmp_path / "ft", 1))["best_model"]
    backbone = [k for k in m0 if not k.startswith("fc.")]
    assert backbone and all(torch.equal(m0[k], mpt_state[k]) for k in backbone)
    assert m0["fc.weight"].shape[0] == 1 and not torch.equal(m0["fc.weight"], m1["fc.weight"])


def test_budget_stop_then_resume_continues_the_epoch_count(mpt, tmp_path):
    out = tmp_path / "ft"
    stopped = finetune(_cfg(mpt, out, budget_minutes=0.0), progress=False)
    assert stopped["stopped"] == "budget" and stopped["members_done"] == 0
    one = finetune(_cfg(mpt, out, members=1), resume=True, progress=False)
    assert one["stopped"] == "done"
    assert load_checkpoint(member_path(out, 0))["epoch"] == 1
    two = finetune(_cfg(mpt, out, members=1, epochs=2), resume=True, progress=False)
    st = load_checkpoint(member_path(out, 0))
    assert two["stopped"] == "done" and st["epoch"] == 2 and [h["epoch"] for h in st["history"]] == [1, 2]
    assert "member 0: resumed at epoch 1" in (out / "finetune.log").read_text()


def test_missing_pretrained_checkpoint_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="pretrain checkpoint .*no such file") as exc:
        finetune(FinetuneConfig(pretrained=str(tmp_path / "none.pt"), out_dir=str(tmp_path)))
    assert "\n" not in str(exc.value)


def test_band_readout_member_from_mpt_weights(mpt, tmp_path):
    """--readout band: the member starts from the MPT message-passing weights and the ensemble
    records the readout, so the saved model rebuilds the same network."""
    summary = finetune(_cfg(mpt, tmp_path / "ftb", members=1, readout="band"), progress=False)
    assert summary["stopped"] == "done"
    model = load_model(summary["model"])
    assert model.model_config.readout == "band"
    pre = load_checkpoint(mpt["ckpt"])["model"]
    st = torch.load(member_path(tmp_path / "ftb", 0), weights_only=False)
    assert st["config"]["readout"] == "band"
    mean, std = model.predict([b.band for b in load_bands("test")[:2]])
    assert np.isfinite(mean).all() and (std > 0).all()
    assert "fc.weight" in pre and model.member_states[0]["fc.weight"].shape[1] == 3 * TINY.hidden_features


def test_anneal_stage_follows_the_constant_stage_and_last_keeps_the_final_epoch(mpt, tmp_path):
    """A member done with its constant-lr epochs is continued on --resume by the annealing stage
    (lr falling from lr to lr_min), and select="last" keeps the final weights and their out-of-fold
    predictions, not the best epoch's."""
    out = tmp_path / "fta"
    finetune(_cfg(mpt, out, members=1), progress=False)
    summary = finetune(_cfg(mpt, out, members=1, anneal_epochs=2, lr=1e-3, lr_min=1e-5, select="last"),
                       resume=True, progress=False)
    st = load_checkpoint(member_path(out, 0))
    assert summary["stopped"] == "done" and st["epoch"] == 3 and st["anneal_from"] == 1
    lrs = [h["lr"] for h in st["history"][1:]]
    assert 1e-5 < lrs[1] < lrs[0] < 1e-3
    model = load_model(summary["model"])
    assert all(torch.equal(model.networks[0].state_dict()[k].cpu(), st["model"][k].cpu()) for k in st["model"])
    assert model.info["members"][0]["kept_epoch"] == 3
    assert model.info["oof"]["mean"] == pytest.approx(st["last_val_pred"], abs=1e-6)
    with pytest.raises(ValueError, match="select: 'worst'"):
        finetune(_cfg(mpt, out, members=1, select="worst"), resume=True, progress=False)


def test_swa_stage_averages_the_weights_of_its_epochs_and_last_keeps_the_average(mpt, tmp_path):
    """--swa-epochs: after the schedule, each epoch at swa_lr is folded into a running mean of the
    weights; select="last" keeps that mean and its out-of-fold predictions. Checked against the
    weights of each SWA epoch, taken by resuming one epoch at a time."""
    out = tmp_path / "fts"
    finetune(_cfg(mpt, out, members=1), progress=False)
    snaps = []
    for n in (1, 2, 3):
        summary = finetune(_cfg(mpt, out, members=1, swa_epochs=n, swa_lr=1e-3, select="last"),
                           resume=True, progress=False)
        st = load_checkpoint(member_path(out, 0))
        snaps.append({k: v.clone() for k, v in st["model"].items()})
    assert st["swa_from"] == 1 and st["swa_n"] == 3 and st["epoch"] == 4
    assert [h["lr"] for h in st["history"][1:]] == [1e-3] * 3
    assert not torch.equal(snaps[0]["fc.weight"], snaps[2]["fc.weight"])  # the epochs moved
    model = load_model(summary["model"])
    kept = model.networks[0].state_dict()
    for k in st["model"]:
        if st["model"][k].is_floating_point():
            mean = sum(s[k] for s in snaps) / 3
            assert torch.allclose(kept[k].cpu(), mean, atol=1e-6), k
    assert model.info["oof"]["mean"] == pytest.approx(st["swa_val_pred"], abs=1e-6)
    assert st["history"][-1]["swa_val_mae"] == pytest.approx(model.info["members"][0]["val_mae"])
    with pytest.raises(ValueError, match="swa_lr=0.001, this run has swa_lr=0.0005"):
        finetune(_cfg(mpt, out, members=1, swa_epochs=4, swa_lr=5e-4, select="last"),
                 resume=True, progress=False)
    with pytest.raises(ValueError, match="swa_epochs: -1 is negative"):
        finetune(_cfg(mpt, out, swa_epochs=-1), progress=False)


def test_two_seeds_merge_into_one_ensemble_with_averaged_out_of_fold_predictions(mpt, tmp_path):
    from screener.model.finetune import merge_ensembles

    runs = [load_model(finetune(_cfg(mpt, tmp_path / f"s{seed}", seed=seed), progress=False)["model"])
            for seed in (0, 1)]
    assert runs[0].info["oof"]["mean"] != runs[1].info["oof"]["mean"]  # another seed, another net
    merged = merge_ensembles(runs, name="merged")
    assert len(merged.networks) == 4 and isinstance(merged, LogTargetAlignnModel)
    np.testing.assert_allclose(merged.info["oof"]["mean"],
                               np.mean([r.info["oof"]["mean"] for r in runs], axis=0))
    bands = [b.band for b in load_bands("test")[:3]]
    mean, std = merged.predict(bands)
    np.testing.assert_allclose(mean, np.mean([r.member_predictions(bands) for r in runs], axis=(0, 1)), atol=1e-6)
    assert (std > 0).all() and merged.std_scale > 0
    with pytest.raises(ValueError, match="at least two"):
        merge_ensembles(runs[:1])
    other = load_model(finetune(_cfg(mpt, tmp_path / "one", members=1), progress=False)["model"])
    with pytest.raises(ValueError, match="other folds"):
        merge_ensembles([runs[0], other])


def test_cropped_member_trains_and_resume_refuses_another_crop(mpt, tmp_path):
    out = tmp_path / "ft"
    done = finetune(_cfg(mpt, out, members=1, crop_radius=4.0), progress=False)
    assert done["stopped"] == "done"
    model = load_model(done["model"])
    assert model.graph_settings.crop_radius == 4.0  # inference crops the way training did
    with pytest.raises(ValueError, match=r"member-0\.pt: started with crop_radius=4\.0") as exc:
        finetune(_cfg(mpt, out, members=1, epochs=2, crop_radius=0.0), resume=True, progress=False)
    assert "\n" not in str(exc.value)


def test_hop_descriptors_beside_the_graph_reach_the_prediction(mpt, tmp_path):
    """--hop-descriptors: the output layer reads the 54 standardised hop descriptors too; the saved
    ensemble carries their scaler, so a band whose descriptors change gets another prediction."""
    from screener.model.descriptors import DESCRIPTOR_NAMES, descriptor_matrix

    summary = finetune(_cfg(mpt, tmp_path / "fth", members=1, readout="band", crop_radius=4.0,
                            hop_descriptors=True), progress=False)
    model = load_model(summary["model"])
    n = len(DESCRIPTOR_NAMES)
    assert model.model_config.hop_descriptors == n
    assert model.member_states[0]["fc.weight"].shape[1] == 3 * TINY.hidden_features + n
    X = descriptor_matrix([b.band for b in load_bands("train")[:20]])
    assert model.descriptor_scaler["mean"] == pytest.approx(X.mean(axis=0).tolist())
    bands = [b.band for b in load_bands("test")[:3]]
    mean, _ = model.predict(bands)
    assert np.isfinite(mean).all()
    # same graph, other descriptors: the descriptor part of the output layer is really used
    shifted = dict(model.descriptor_scaler, mean=[m + 1.0 for m in model.descriptor_scaler["mean"]])
    model.descriptor_scaler = shifted
    assert not np.allclose(model.predict(bands)[0], mean)
    with pytest.raises(ValueError, match="hop_descriptors: needs --readout band"):
        finetune(_cfg(mpt, tmp_path / "ftm", members=1, hop_descriptors=True), progress=False)


def test_no_score_test_never_loads_the_test_split(mpt, tmp_path, monkeypatch):
    import screener.model.finetune as ft

    real = ft.load_split
    asked: list[str] = []
    monkeypatch.setattr(ft, "load_split", lambda split: asked.append(split) or real(split))
    summary = finetune(_cfg(mpt, tmp_path / "ft", members=1, score_test=False), progress=False)
    assert asked == ["train"] and summary["test"] is None
    metrics = json.loads((tmp_path / "ft" / "alignn.metrics.json").read_text())
    assert metrics["test"] is None and metrics["grouped_cv"]["n"] > 0
    assert "test MAE not scored" in (tmp_path / "ft" / "finetune.log").read_text()
