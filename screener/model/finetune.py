"""Fine-tuning the ALIGNN barrier ensemble from the multi-property pre-trained (MPT) weights.

Why this shape: one member per host-grouped fold of the TRAINING split (folds-train.json). Member k
trains on the other folds, all layers unfrozen (the MPT paper's best strategy), at a constant
learning rate and then, optionally, a cosine annealing stage; it keeps its best epoch on fold k
(select="best") or the last epoch of the fixed schedule (select="last", which leaves the
out-of-fold score free of selection). The 60 test bands never train, stop or select anything.
The members' predictions on their own validation folds are out-of-fold for every training band:
they give the grouped-CV score and calibrate the ensemble spread into a 90% interval, for free.

Built for a shared 2-core CPU: graphs come from the on-disk GraphCache (epochs after the first cost
only the network), each member checkpoints every epoch (``member-<k>.pt``), ``resume=True`` skips
finished members and continues an unfinished one from its last whole epoch, and the run stops on a
time budget (the epoch in progress is redone on resume).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from screener.config import screener_home
from screener.model.alignn_model import (
    AlignnModel,
    attach_hop_descriptors,
    descriptor_scaler,
    network_from_pretrained,
)
from screener.model.descriptor_model import (
    NOISE_FLOOR_EV,
    calibrate_scale,
    calibrated_std,
    load_folds,
    load_split,
)
from screener.model.device import resolve_device
from screener.model.graphs import (
    CrystalGraph,
    GraphCache,
    GraphSettings,
    band_graph,
    batch_graphs,
)
from screener.model.metrics import score, score_with_ci
from screener.model.pretrain import (
    BEST_NAME,
    ModelConfig,
    _rng_state,
    _set_rng_state,
    default_out_dir,
    load_checkpoint,
    log_to_file,
    save_checkpoint,
    tune_allocator,
)

LOG_OFFSET = 0.05  # eV, as the descriptor model: log(E_m + 0.05) keeps 3 meV barriers finite
MODEL_FILE = "alignn.joblib"
METRICS_FILE = "alignn.metrics.json"

log = logging.getLogger("screener.finetune")


class LogTargetAlignnModel(AlignnModel):
    """AlignnModel whose members predict log(E_m + 0.05): members' outputs are mapped back to eV
    before the mean and spread are taken (so the uncertainty is in eV, like the descriptor model)."""

    def member_predictions(self, bands: Sequence[Any]) -> np.ndarray:
        return np.maximum(np.exp(super().member_predictions(bands)) - LOG_OFFSET, 0.0)


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on; stored in every member checkpoint."""

    pretrained: str = ""
    """MPT checkpoint (default: $SCREENER_HOME/training/mpt/best.pt)."""
    out_dir: str = ""
    """Default: $SCREENER_HOME/training/finetune."""
    epochs: int = 40
    patience: int = 10
    """Stop a member after this many epochs without a better validation MAE (0: never)."""
    anneal_epochs: int = 0
    """After the constant-lr stage (epochs / patience), this many more epochs with the learning
    rate cosine-annealed from lr to lr_min (patience does not cut them short)."""
    lr_min: float = 1e-5
    swa_epochs: int = 0
    """After the main (and anneal) stage, this many more epochs at swa_lr whose end-of-epoch weights
    are averaged (stochastic weight averaging): an ensemble's variance reduction at one network's
    inference cost. The network has no batch norm, so the average needs no statistics update."""
    swa_lr: float = 2e-4
    select: str = "best"
    """Which weights a member keeps: "best" (its lowest validation MAE, chosen on its own fold, so
    the grouped-CV score is slightly optimistic) or "last" (the final epoch of a fixed schedule, or
    with swa_epochs the weight average: validation is only watched, and the CV score is untouched
    by selection)."""
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 1e-5
    log_target: bool = True
    readout: str = "mean"
    """"mean" (alignn's, as the paper) or "band" (+ the five hop sites; screener.model.readout)."""
    crop_radius: float = 0.0
    """Graph only the atoms within this of the hop's five sites (Angstrom; 0 = the whole band)."""
    hop_descriptors: bool = False
    """Band readout: also feed the descriptor model's standardised hop descriptors to the output
    layer (the physical descriptors beside the graph)."""
    members: int | None = None
    """Train members for the first N folds only (default: every fold)."""
    limit: int | None = None
    """Use only the first N training bands (tests, quick checks)."""
    budget_minutes: float = 150.0
    threads: int = 1
    tune_malloc: bool = True
    graph_cache: str | None = None
    device: str = "auto"
    """auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N."""
    seed: int = 0
    name: str = "alignn"
    score_test: bool = True
    """Score the finished ensemble on the 60 test bands. Off for tries: a model still being
    chosen should not even print a test number (the grouped CV is its score)."""


def n_hop_descriptors(cfg: FinetuneConfig) -> int:
    """How many hop descriptors the output layer reads (0 without --hop-descriptors)."""
    from screener.model.descriptors import DESCRIPTOR_NAMES

    return len(DESCRIPTOR_NAMES) if cfg.hop_descriptors else 0


def default_finetune_dir() -> Path:
    return screener_home() / "training" / "finetune"


def member_path(out_dir: Path, fold: int) -> Path:
    return Path(out_dir) / f"member-{fold}.pt"


def _fwd(y: np.ndarray, log_target: bool) -> np.ndarray:
    return np.log(np.maximum(y, 0.0) + LOG_OFFSET) if log_target else y


def _inv(z: np.ndarray, log_target: bool) -> np.ndarray:
    return np.maximum(np.exp(z) - LOG_OFFSET, 0.0) if log_target else z


@torch.no_grad()
def predict_graphs(net: torch.nn.Module, graphs: Sequence[CrystalGraph], log_target: bool,
                   batch_size: int = 64) -> np.ndarray:
    """E_m (eV) of one network on pre-built band graphs."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        out = [net(batch_graphs(graphs[i:i + batch_size]).model_input(device))["out"].reshape(-1).cpu().numpy()
               for i in range(0, len(graphs), batch_size)]
    net.train(was_training)
    return _inv(np.concatenate(out) if out else np.zeros(0), log_target)


def pretrained_setup(ckpt: Path, readout: str = "mean") -> tuple[ModelConfig, GraphSettings]:
    """The network size and graph settings the MPT checkpoint was trained with (fine-tuning must
    build graphs the same way, or the pre-trained weights see different inputs)."""
    state = load_checkpoint(ckpt)
    try:
        model_cfg = ModelConfig(**{**state["config"]["model"], "output_features": 1, "readout": readout})
        settings = GraphSettings(**state["graph_settings"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"pretrain checkpoint {ckpt}: no model config / graph settings ({exc})") from exc
    return model_cfg, settings


def _main_stage_over(st: dict[str, Any], cfg: FinetuneConfig) -> bool:
    """The constant-lr stage is over: out of epochs, or no better validation MAE for ``patience``."""
    stale = st["epoch"] - st["best_epoch"]
    return st["epoch"] >= cfg.epochs or (cfg.patience > 0 and stale >= cfg.patience)


def _schedule_over(st: dict[str, Any], cfg: FinetuneConfig) -> bool:
    """Main stage over and, with annealing, anneal_epochs run after it (SWA comes after this)."""
    if st.get("swa_from") is not None:
        return True  # once averaging began, a new best epoch must not reopen the main stage
    if st.get("anneal_from") is not None:
        return st["epoch"] >= st["anneal_from"] + cfg.anneal_epochs
    return _main_stage_over(st, cfg) and cfg.anneal_epochs <= 0


def _finished(st: dict[str, Any], cfg: FinetuneConfig) -> bool:
    """Schedule over and, with SWA, swa_epochs averaged after it."""
    if not _schedule_over(st, cfg):
        return False
    if cfg.swa_epochs <= 0:
        return True
    return st.get("swa_from") is not None and st["epoch"] >= st["swa_from"] + cfg.swa_epochs


def _epoch_lr(st: dict[str, Any], cfg: FinetuneConfig, frac: float) -> float:
    """Learning rate at fraction frac of the coming epoch: lr in the main stage, then a cosine
    from lr to lr_min over the anneal epochs, then swa_lr while weights are averaged."""
    if st.get("swa_from") is not None:
        return cfg.swa_lr
    if st.get("anneal_from") is None:
        return cfg.lr
    t = (st["epoch"] - st["anneal_from"] + frac) / max(cfg.anneal_epochs, 1)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * min(t, 1.0)))


#: FinetuneConfig fields a resumed member must share with the run that started it (older
#: checkpoints lack crop_radius and seed: they were 0).
RECIPE_FIELDS = {"readout": "mean", "log_target": True, "crop_radius": 0.0, "seed": 0, "hop_descriptors": False}


def _check_same_recipe(path: Path, saved: dict[str, Any], cfg: FinetuneConfig) -> None:
    """ValueError when --resume would continue a member under another recipe (other graphs or
    targets would silently mix two models in one)."""
    for field, default in RECIPE_FIELDS.items():
        if saved.get(field, default) != getattr(cfg, field):
            raise ValueError(f"{path}: started with {field}={saved.get(field, default)!r}, this run has "
                             f"{field}={getattr(cfg, field)!r}; use another --out or the same setting")


def _train_member(k: int, cfg: FinetuneConfig, ckpt: Path, graphs: list[CrystalGraph],
                  z: torch.Tensor, y: np.ndarray, folds: np.ndarray, deadline: float,
                  resume: bool, progress: bool) -> dict[str, Any] | None:
    """Train member k (validates on fold k) until done; its final state dict, or None when the
    budget ran out first (its last whole epoch is checkpointed)."""
    from tqdm import tqdm

    out_dir = Path(cfg.out_dir)
    path = member_path(out_dir, k)
    train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    val_graphs = [graphs[i] for i in val_idx]
    torch.manual_seed(cfg.seed + 1000 * k)  # fresh output layer and shuffling differ per member
    np.random.seed(cfg.seed + 1000 * k)
    device = resolve_device(cfg.device)
    net = network_from_pretrained(ckpt, output_features=1, readout=cfg.readout,
                                  hop_descriptors=n_hop_descriptors(cfg)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    st: dict[str, Any] = {"fold": k, "epoch": 0, "best_val": math.inf, "best_epoch": 0,
                          "best_model": None, "history": [], "done": False}
    if resume and path.is_file():
        st = load_checkpoint(path)
        _check_same_recipe(path, st.get("config", {}), cfg)
        # "done" is re-judged under this run's epochs/patience: a longer run continues a member
        st["done"] = _finished(st, cfg)
        if st["done"]:
            log.info("member %d: finished earlier (best epoch %d, val MAE %.4f)", k,
                     st["best_epoch"], st["best_val"])
            return st
        if st.get("swa_from") is not None and st["config"].get("swa_lr") != cfg.swa_lr:
            raise ValueError(f"{path}: weight averaging started with swa_lr={st['config'].get('swa_lr')!r}, "
                             f"this run has swa_lr={cfg.swa_lr!r}; use another --out or the same setting")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        _set_rng_state(st["rng"])
        log.info("member %d: resumed at epoch %d", k, st["epoch"])
    else:
        log.info("member %d: start train=%d val=%d", k, len(train_idx), len(val_idx))

    net.train()
    while not st["done"]:
        if st.get("anneal_from") is None and cfg.anneal_epochs > 0 and _main_stage_over(st, cfg):
            st["anneal_from"] = st["epoch"]
            log.info("member %d: annealing lr %.1e -> %.1e over epochs %d-%d", k, cfg.lr, cfg.lr_min,
                     st["epoch"] + 1, st["epoch"] + cfg.anneal_epochs)
        if st.get("swa_from") is None and cfg.swa_epochs > 0 and _schedule_over(st, cfg):
            st["swa_from"], st["swa_n"] = st["epoch"], 0
            log.info("member %d: averaging weights at lr %.1e over epochs %d-%d", k, cfg.swa_lr,
                     st["epoch"] + 1, st["epoch"] + cfg.swa_epochs)
        perm = train_idx[np.random.permutation(len(train_idx))]
        n_batches = math.ceil(len(perm) / cfg.batch_size)
        bar = tqdm(total=n_batches, desc=f"member {k} epoch {st['epoch'] + 1}", disable=not progress,
                   mininterval=2, leave=False)
        total, t0 = 0.0, time.monotonic()
        for b in range(n_batches):
            if time.monotonic() > deadline:
                bar.close()
                log.info("member %d: budget reached in epoch %d; resume redoes that epoch", k,
                         st["epoch"] + 1)
                return None
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = _epoch_lr(st, cfg, b / n_batches)
            pred = net(batch_graphs([graphs[i] for i in idx]).model_input(device))["out"].reshape(-1)
            loss = torch.nn.functional.l1_loss(pred, z[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            bar.update(1)
        bar.close()
        st["epoch"] += 1
        val_pred = predict_graphs(net, val_graphs, cfg.log_target)
        val_mae = float(np.abs(val_pred - y[val_idx]).mean()) if len(val_idx) else math.nan
        st["history"].append({"epoch": st["epoch"], "train_l1": total / max(len(perm), 1),
                              "val_mae": val_mae, "lr": opt.param_groups[0]["lr"],
                              "seconds": round(time.monotonic() - t0, 1)})
        st["last_val_pred"] = val_pred.tolist()
        log.info("member %d epoch %d train_l1 %.4f val_mae %.4f (%.1f s)", k, st["epoch"],
                 st["history"][-1]["train_l1"], val_mae, time.monotonic() - t0)
        if st.get("swa_from") is not None:
            _average_in(st, net, val_graphs, cfg.log_target)
            st["history"][-1]["swa_val_mae"] = (float(np.abs(np.asarray(st["swa_val_pred"]) - y[val_idx]).mean())
                                                if len(val_idx) else math.nan)
            log.info("member %d epoch %d: average of %d epochs val_mae %.4f", k, st["epoch"],
                     st["swa_n"], st["history"][-1]["swa_val_mae"])
        if val_mae < st["best_val"] or st["best_model"] is None:
            st["best_val"], st["best_epoch"] = val_mae, st["epoch"]
            st["best_model"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            st["val_pred"] = val_pred.tolist()
        st["done"] = _finished(st, cfg)
        st.update(model=net.state_dict(), optimizer=opt.state_dict(), rng=_rng_state(),
                  config=asdict(cfg))
        save_checkpoint(path, st)
    log.info("member %d: done after %d epochs, best epoch %d val MAE %.4f, last epoch val MAE %.4f",
             k, st["epoch"], st["best_epoch"], st["best_val"], st["history"][-1]["val_mae"])
    return st


def _average_in(st: dict[str, Any], net: torch.nn.Module, val_graphs: Sequence[CrystalGraph],
                log_target: bool) -> None:
    """Fold this epoch's weights into the member's running SWA average and predict its fold with it."""
    import copy

    w = {key: v.detach().cpu().clone() for key, v in net.state_dict().items()}
    n = st["swa_n"]
    if n == 0:
        st["swa_model"] = w
    else:
        avg = st["swa_model"]
        for key, v in w.items():
            if v.is_floating_point():
                avg[key] += (v - avg[key]) / (n + 1)
    st["swa_n"] = n + 1
    avg_net = copy.deepcopy(net)
    avg_net.load_state_dict(st["swa_model"])
    st["swa_val_pred"] = predict_graphs(avg_net, val_graphs, log_target).tolist()


def _kept(st: dict[str, Any], select: str) -> tuple[dict[str, Any], list[float], int, float]:
    """(weights, out-of-fold predictions, epoch, validation MAE) a member keeps under select."""
    if select == "last" and st.get("swa_model") is not None:
        return st["swa_model"], st["swa_val_pred"], st["epoch"], st["history"][-1]["swa_val_mae"]
    if select == "last":
        if "last_val_pred" not in st:
            raise ValueError(f"member {st['fold']}: its checkpoint keeps no last-epoch predictions "
                             "(written before --select last existed); train it on with --resume")
        weights = {k: v.detach().cpu() for k, v in st["model"].items()}
        return weights, st["last_val_pred"], st["epoch"], st["history"][-1]["val_mae"]
    return st["best_model"], st["val_pred"], st["best_epoch"], st["best_val"]


def finetune(cfg: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune (or continue) the members; when all are done, save the ensemble and its metrics.

    Returns {"stopped": "done"|"budget", "members_done", "model", "metrics", "grouped_cv", "test"}
    (model/metrics paths and scores only when stopped == "done").
    """
    t_start = time.monotonic()
    if cfg.select not in ("best", "last"):
        raise ValueError(f"select: {cfg.select!r} is not one of best, last")
    if cfg.anneal_epochs < 0:
        raise ValueError(f"anneal_epochs: {cfg.anneal_epochs} is negative")
    if cfg.swa_epochs < 0:
        raise ValueError(f"swa_epochs: {cfg.swa_epochs} is negative")
    if cfg.swa_epochs > 0 and not cfg.swa_lr > 0:
        raise ValueError(f"swa_lr: {cfg.swa_lr} is not positive")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_finetune_dir()
    cfg.out_dir = str(out_dir)
    ckpt = Path(cfg.pretrained) if cfg.pretrained else default_out_dir() / BEST_NAME
    cfg.pretrained = str(ckpt)
    if not ckpt.is_file():
        raise ValueError(f"pretrain checkpoint {ckpt}: no such file (run `screener model pretrain`)")
    log_to_file(log, out_dir / "finetune.log")
    torch.set_num_threads(cfg.threads)
    malloc_tuned = tune_allocator() if cfg.tune_malloc else False
    model_cfg, settings = pretrained_setup(ckpt, cfg.readout)
    if cfg.crop_radius < 0:
        raise ValueError(f"crop_radius: {cfg.crop_radius} is negative")
    settings = replace(settings, crop_radius=float(cfg.crop_radius))
    if cfg.hop_descriptors and cfg.readout != "band":
        raise ValueError("hop_descriptors: needs --readout band")
    model_cfg = replace(model_cfg, hop_descriptors=n_hop_descriptors(cfg))
    log.info("start resume=%s malloc_tuned=%s config=%s", resume, malloc_tuned, json.dumps(asdict(cfg)))

    bands, y, meta = load_split("train")
    folds = load_folds()
    if cfg.limit is not None:
        bands, y, meta, folds = bands[:cfg.limit], y[:cfg.limit], meta[:cfg.limit], folds[:cfg.limit]
    fold_ids = [int(f) for f in np.unique(folds)][: cfg.members or None]
    cache = GraphCache(cfg.graph_cache or (screener_home() / "graphs"), settings)
    from tqdm import tqdm
    graphs = [band_graph(b, settings, cache, name=f"bands-train.json [{m['sys_name']}]")
              for b, m in tqdm(list(zip(bands, meta)), desc="graphs", disable=not progress,
                               mininterval=5, leave=False)]
    log.info("graphs: %d (cache hits %d, built %d) in %.1f s; members for folds %s", len(graphs),
             cache.hits, cache.misses, time.monotonic() - t_start, fold_ids)
    scaler = None
    if cfg.hop_descriptors:
        from screener.model.descriptors import descriptor_matrix

        X = descriptor_matrix(bands)
        scaler = descriptor_scaler(X)  # from the training bands' descriptors only (no targets)
        attach_hop_descriptors(graphs, None, scaler, X=X)
    z = torch.tensor(_fwd(y, cfg.log_target), dtype=torch.float32)
    deadline = t_start + cfg.budget_minutes * 60.0

    states: list[dict[str, Any]] = []
    for k in fold_ids:
        st = _train_member(k, cfg, ckpt, graphs, z, y, folds, deadline, resume, progress)
        if st is None:
            log.info("stop (budget) with %d of %d members done", len(states), len(fold_ids))
            return {"stopped": "budget", "members_done": len(states), "members": len(fold_ids),
                    "out_dir": str(out_dir)}
        states.append(st)

    model = _assemble(cfg, model_cfg, settings, states, fold_ids, graphs, y, folds, meta, scaler)
    model.cache = cache
    model_path = model.save(out_dir / MODEL_FILE)
    metrics = _metrics(model, cfg.pretrained, score_test=cfg.score_test)
    metrics_path = out_dir / METRICS_FILE
    metrics_path.write_text(json.dumps(metrics, indent=1))
    test_mae = f"{metrics['test']['mae']:.4f}" if metrics["test"] else "not scored"
    log.info("saved %s (%s): test MAE %s, grouped-CV MAE %.4f", model_path, model.model_id,
             test_mae, metrics["grouped_cv"]["mae"])
    return {"stopped": "done", "members_done": len(states), "members": len(fold_ids),
            "out_dir": str(out_dir), "model": str(model_path), "metrics": str(metrics_path),
            "test": metrics["test"], "grouped_cv": metrics["grouped_cv"]}


def _assemble(cfg: FinetuneConfig, model_cfg: ModelConfig, settings: GraphSettings,
              states: list[dict[str, Any]], fold_ids: list[int], graphs: list[CrystalGraph],
              y: np.ndarray, folds: np.ndarray, meta: list[dict],
              scaler: dict[str, list[float]] | None = None) -> AlignnModel:
    """Ensemble of the members' best epochs, std scale calibrated on out-of-fold residuals.

    The residual of a training band is its own fold's member's (out-of-fold); the raw spread is the
    whole ensemble's spread there, i.e. what predict() reports. Four of five members saw that band,
    so that spread is smaller than on a new host and the fitted scale errs on the wide side.
    """
    cls = LogTargetAlignnModel if cfg.log_target else AlignnModel
    kept = [_kept(s, cfg.select) for s in states]
    model = cls([w for w, *_ in kept], model_cfg, settings, name=cfg.name, descriptor_scaler=scaler)
    in_oof = np.isin(folds, fold_ids)
    oof = np.full(len(y), np.nan)
    for k, (_, val_pred, _, _) in zip(fold_ids, kept):
        oof[folds == k] = np.asarray(val_pred)
    idx = np.flatnonzero(in_oof)
    sub = [graphs[i] for i in idx]
    members = np.stack([predict_graphs(n, sub, cfg.log_target) for n in model.networks])
    raw = members.std(axis=0)
    model.std_scale = calibrate_scale(y[idx] - oof[idx], raw, NOISE_FLOOR_EV)
    std = calibrated_std(raw, model.std_scale, NOISE_FLOOR_EV)
    model.info = {
        "pretrained": cfg.pretrained, "config": asdict(cfg), "folds": fold_ids,
        "members": [{"fold": k, "kept_epoch": ep, "best_epoch": s["best_epoch"], "epochs": s["epoch"],
                     "val_mae": mae} for k, s, (_, _, ep, mae) in zip(fold_ids, states, kept)],
        "oof": {"sys_name": [meta[i]["sys_name"] for i in idx], "y": y[idx].tolist(),
                "mean": oof[idx].tolist(), "std": std.tolist()},
        "torch": torch.__version__,
    }
    return model


def _metrics(model: AlignnModel, pretrained: str, score_test: bool = True) -> dict[str, Any]:
    """{"test": ensemble on the 60 test bands (scored once, after every choice was made; None
    when score_test is off), "grouped_cv": the out-of-fold predictions} plus what produced them."""
    test = None
    if score_test:
        test_bands, y_test, _ = load_split("test")
        mu, sd = model.predict(test_bands)
        test = score_with_ci(y_test, mu, sd)
    oof = model.info["oof"]
    cv = score(oof["y"], oof["mean"], oof["std"])
    return {"model_id": model.model_id, "class": f"{type(model).__module__}:{type(model).__qualname__}",
            "pretrained": pretrained, "std_scale": model.std_scale,
            "members": model.info["members"], "test": test, "grouped_cv": cv}


def merge_ensembles(models: Sequence[AlignnModel], name: str = "alignn") -> AlignnModel:
    """One ensemble of the members of several fine-tuning runs (e.g. other ``--seed``s) on the
    same folds. Why: a second seed per fold averages out the seed-to-seed scatter of a network
    trained on ~450 bands. A training band's out-of-fold prediction is the mean of the runs' own
    out-of-fold predictions (every member behind it left that band's fold out), and the spread is
    re-calibrated on those residuals."""
    if len(models) < 2:
        raise ValueError("merge: give at least two ensembles")
    first = models[0]
    for m in models[1:]:
        if type(m) is not type(first) or m.model_config != first.model_config or m.graph_settings != first.graph_settings:
            raise ValueError(f"merge: {m.model_id} has another network, graph settings or target than {first.model_id}")
        if m.info.get("folds") != first.info.get("folds") or m.info["oof"]["sys_name"] != first.info["oof"]["sys_name"]:
            raise ValueError(f"merge: {m.model_id} was trained on other folds than {first.model_id}")
        if m.descriptor_scaler != first.descriptor_scaler:
            raise ValueError(f"merge: {m.model_id} scales its hop descriptors otherwise than {first.model_id}")
    oof_mean = np.mean([m.info["oof"]["mean"] for m in models], axis=0)
    merged = type(first)([s for m in models for s in m.member_states], first.model_config, first.graph_settings,
                         std_floor=first.std_floor, name=name, descriptor_scaler=first.descriptor_scaler)
    bands, y, meta = load_split("train")
    where = {m["sys_name"]: i for i, m in enumerate(meta)}
    idx = [where[n] for n in first.info["oof"]["sys_name"]]
    merged.cache = first.cache
    raw = merged.member_predictions([bands[i] for i in idx]).std(axis=0)  # in eV for either target
    merged.std_scale = calibrate_scale(y[idx] - oof_mean, raw, NOISE_FLOOR_EV)
    merged.info = {
        "merged": [m.model_id for m in models], "config": first.info.get("config"), "folds": first.info.get("folds"),
        "members": [dict(mem, run=r) for r, m in enumerate(models) for mem in m.info.get("members", [])],
        "oof": {"sys_name": first.info["oof"]["sys_name"], "y": y[idx].tolist(), "mean": oof_mean.tolist(),
                "std": calibrated_std(raw, merged.std_scale, NOISE_FLOOR_EV).tolist()},
        "torch": torch.__version__,
    }
    return merged


def merged_metrics(model: AlignnModel, score_test: bool = True) -> dict[str, Any]:
    """Test (scored once; None without score_test) and out-of-fold scores of a merged ensemble,
    as finetune writes them."""
    return _metrics(model, (model.info.get("config") or {}).get("pretrained", ""), score_test=score_test)
