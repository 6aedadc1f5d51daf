"""Multi-property pre-training (MPT) of the ALIGNN: one network, seven heads, masked L1 loss.

Why: only 559 barriers exist to train on; the MPT paper (Devi, Butler & Sai Gautam) shows that first
teaching the network seven bulk properties of 28k Materials Project crystals makes the barrier
fine-tune better. A structure contributes loss only for the properties it has.

The loop is built for a shared 2-core CPU: graphs are built once (on-disk cache), the run stops on a
time budget, checkpoints every few minutes and at each epoch end (model + optimizer + epoch + step
+ position in the epoch + RNG), and ``resume=True`` continues exactly where the last one stopped.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from screener.config import screener_home
from screener.model.device import resolve_device
from screener.model.graphs import CrystalGraph, GraphCache, GraphSettings, N_ATOM_FEATURES, batch_graphs

#: The seven MPT properties, in head order (scaled to [-1, 1] in the shipped file).
PROPERTIES: tuple[str, ...] = ("bg", "fe", "gv", "ebg", "ph", "dc", "pz")
PRETRAIN_FILE: Path = Path(str(resources.files("screener").joinpath(
    "data", "pretrain", "mp-properties-standardized.json.gz")))
CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"

log = logging.getLogger("screener.pretrain")


@dataclass
class ModelConfig:
    """Size of the ALIGNN (alignn's pure-torch ALIGNNAtomWisePure)."""

    alignn_layers: int = 2
    gcn_layers: int = 1
    hidden_features: int = 64
    embedding_features: int = 64
    output_features: int = len(PROPERTIES)
    readout: str = "mean"
    """"mean" (alignn's: mean over all atoms) or "band" (screener.model.readout: + the hop's sites)."""
    hop_descriptors: int = 0
    """Band readout only: this many standardised hop descriptors (screener.model.descriptors) go
    into the output layer beside the graph's features (0: the graph alone)."""


@dataclass
class PretrainConfig:
    """Everything a pre-training run depends on; stored in every checkpoint."""

    out_dir: str = ""
    data_file: str = str(PRETRAIN_FILE)
    model: ModelConfig = field(default_factory=ModelConfig)
    cutoff: float = 8.0
    max_neighbors: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 100
    budget_minutes: float = 60.0
    checkpoint_minutes: float = 5.0
    val_fraction: float = 0.05
    seed: int = 0
    limit: int | None = None
    """Use only the first N structures (tests, quick checks)."""
    threads: int = 1
    """torch threads. 1, not 2: on this shared 2-core CPU, 2 threads made a step ~4x slower whenever
    another process held the other core (1.2 s vs 4.8 s measured), and barely help when idle."""
    tune_malloc: bool = True
    graph_cache: str | None = None
    """Folder of the graph cache (default: $SCREENER_HOME/graphs)."""
    log_every: int = 50
    device: str = "auto"
    """auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N."""


def default_out_dir() -> Path:
    return screener_home() / "training" / "mpt"


def tune_allocator() -> bool:
    """glibc mallopt: mmap threshold and top pad 1 GiB, trim threshold max.

    Why: the network allocates and frees the same large edge/triplet tensors every step; with glibc
    defaults each of those is an mmap/munmap plus page faults. Keeping them in the heap roughly halves
    the step time at the price of resident memory. Returns False where mallopt is unavailable.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30)
    ok &= libc.mallopt(m_top_pad, 1 << 30)
    ok &= libc.mallopt(m_trim_threshold, 2**31 - 1)
    return bool(ok)


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """alignn's pure-torch ALIGNN as a multi-output property model (no forces, no energy scaling)."""
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    conf = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure", alignn_layers=cfg.alignn_layers, gcn_layers=cfg.gcn_layers,
        atom_input_features=N_ATOM_FEATURES, embedding_features=cfg.embedding_features,
        hidden_features=cfg.hidden_features, output_features=cfg.output_features,
        gradwise_weight=0.0, calculate_gradient=False, energy_mult_natoms=False, use_penalty=False,
        use_zbl=False, lg_on_fly=True)
    if cfg.readout == "band":
        from screener.model.readout import BandReadoutALIGNN

        return BandReadoutALIGNN(conf, hop_descriptors=cfg.hop_descriptors)
    if cfg.hop_descriptors:
        raise ValueError("model config: hop descriptors need the band readout (readout='band')")
    if cfg.readout != "mean":
        raise ValueError(f"model config: unknown readout {cfg.readout!r}; use mean or band")
    return ALIGNNAtomWisePure(conf)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the (structure, property) entries that exist (mask True).

    NaN targets where mask is False never reach the gradient. A batch with no entry gives 0.
    """
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(f"masked_l1: shapes differ: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, mask {tuple(mask.shape)}")
    diff = torch.where(mask, (pred - torch.nan_to_num(target)).abs(), torch.zeros_like(pred))
    return diff.sum() / mask.sum().clamp_min(1)


def load_pretrain_set(path: Path | str = PRETRAIN_FILE, limit: int | None = None
                      ) -> tuple[list[str], list[Any], np.ndarray]:
    """ids, Structures and (n, 7) property matrix (NaN where a property is missing)."""
    from screener.sources.dataset import jarvis_to_structure

    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"pretrain data {path}: unreadable ({type(exc).__name__})") from exc
    if limit is not None:
        entries = entries[:limit]
    ids, structures = [], []
    y = np.full((len(entries), len(PROPERTIES)), np.nan, dtype=np.float32)
    for i, e in enumerate(entries):
        try:
            structures.append(jarvis_to_structure(e["atoms"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"pretrain data {path}: entry {e.get('id', i)}: {exc}") from exc
        ids.append(str(e.get("id", i)))
        for j, p in enumerate(PROPERTIES):
            v = e.get("props", {}).get(p)
            if v is not None:
                y[i, j] = float(v)
    return ids, structures, y


def build_graphs(structures: Sequence[Any], ids: Sequence[str], cache: GraphCache,
                 progress: bool = True) -> list[CrystalGraph]:
    """Graphs of all structures through the on-disk cache (first run builds, later runs load)."""
    from tqdm import tqdm

    return [cache.get(s, name=f"pretrain structure {i}")
            for s, i in tqdm(list(zip(structures, ids)), desc="graphs", disable=not progress,
                             mininterval=5)]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random hold-out: (train, val) index arrays, fixed by the seed."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic torch.save (temp + rename): a kill during the write leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"pretrain checkpoint {path}: unreadable ({type(exc).__name__})") from exc


@torch.no_grad()
def evaluate(model: torch.nn.Module, graphs: Sequence[CrystalGraph], y: np.ndarray,
             batch_size: int = 64) -> dict[str, float]:
    """Masked L1 overall and per property on the given structures."""
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(graphs), batch_size):
        preds.append(model(batch_graphs(graphs[i:i + batch_size]).model_input(device))["out"].reshape(
            -1, len(PROPERTIES)).cpu())
    pred = torch.cat(preds).numpy() if preds else np.zeros((0, len(PROPERTIES)))
    mask = ~np.isnan(y)
    out = {"mae": float(np.abs(pred - np.nan_to_num(y))[mask].mean()) if mask.any() else float("nan")}
    for j, p in enumerate(PROPERTIES):
        m = mask[:, j]
        out[p] = float(np.abs(pred[m, j] - y[m, j]).mean()) if m.any() else float("nan")
    model.train()
    return out


def log_to_file(logger: logging.Logger, path: Path) -> None:
    """Send ``logger``'s INFO lines to ``path`` (replacing an earlier file of the same logger)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.FileHandler)] + [handler]
    logger.setLevel(logging.INFO)


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) MPT pre-training until the epochs or the time budget run out.

    Returns a summary: {"epoch", "step", "stopped", "val", "checkpoint"}.
    """
    from tqdm import tqdm

    t_start = time.monotonic()
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir()
    cfg.out_dir = str(out_dir)
    log_to_file(log, out_dir / "pretrain.log")
    torch.set_num_threads(cfg.threads)
    malloc_tuned = tune_allocator() if cfg.tune_malloc else False
    ckpt_path = out_dir / CHECKPOINT_NAME
    state: dict[str, Any] | None = None
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        saved = state["config"]
        # the data, model and split must match the checkpoint; budget/epochs/logging may change
        for k in ("data_file", "cutoff", "max_neighbors", "seed", "val_fraction", "limit", "batch_size"):
            setattr(cfg, k, saved[k])
        cfg.model = ModelConfig(**saved["model"])
    torch.manual_seed(cfg.seed)
    log.info("start resume=%s from_step=%s malloc_tuned=%s config=%s", resume,
             state["step"] if state else 0, malloc_tuned, json.dumps(asdict(cfg)))

    ids, structures, y = load_pretrain_set(cfg.data_file, cfg.limit)
    settings = GraphSettings(cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors)
    cache = GraphCache(cfg.graph_cache or (screener_home() / "graphs"), settings)
    t0 = time.monotonic()
    graphs = build_graphs(structures, ids, cache, progress)
    del structures
    log.info("graphs: %d (cache hits %d, built %d) in %.1f s", len(graphs), cache.hits, cache.misses,
             time.monotonic() - t0)
    train_idx, val_idx = split_indices(len(graphs), cfg.val_fraction, cfg.seed)

    device = resolve_device(cfg.device)
    model = build_model(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch, step, pos, perm, best, history = 0, 0, 0, None, math.inf, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch, step, pos = state["epoch"], state["step"], state["pos"]
        perm = np.asarray(state["perm"]) if state["perm"] is not None else None
        best, history = state.get("best", math.inf), state.get("history", [])
        _set_rng_state(state["rng"])
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model params=%d train=%d val=%d epoch=%d step=%d device=%s", n_params, len(train_idx),
             len(val_idx), epoch, step, device)

    def snapshot() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "step": step, "pos": pos, "perm": None if perm is None else perm.tolist(),
                "rng": _rng_state(), "config": asdict(cfg), "best": best, "history": history,
                "properties": list(PROPERTIES), "graph_settings": asdict(settings)}

    budget_s = cfg.budget_minutes * 60.0
    last_ckpt = time.monotonic()
    stopped = "epochs"
    yt = torch.from_numpy(y)
    model.train()
    running, n_running = 0.0, 0
    while epoch < cfg.epochs:
        if perm is None:
            perm = train_idx[np.random.permutation(len(train_idx))]
            pos = 0
        n_batches = math.ceil(len(perm) / cfg.batch_size)
        bar = tqdm(total=n_batches, initial=pos // cfg.batch_size, desc=f"epoch {epoch + 1}",
                   disable=not progress, mininterval=2)
        out_of_time = False
        while pos < len(perm):
            idx = perm[pos:pos + cfg.batch_size]
            batch = batch_graphs([graphs[i] for i in idx])
            target = yt[idx].to(device)
            pred = model(batch.model_input(device))["out"].reshape(len(idx), -1)
            loss = masked_l1(pred, target, ~torch.isnan(target))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            pos += len(idx)
            running += float(loss.detach())
            n_running += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                log.info("epoch %d step %d train_l1 %.4f", epoch + 1, step, running / n_running)
                bar.set_postfix(l1=f"{running / n_running:.4f}")
                running, n_running = 0.0, 0
            now = time.monotonic()
            if now - t_start > budget_s:
                out_of_time = True
                break
            if now - last_ckpt > cfg.checkpoint_minutes * 60 and pos < len(perm):
                save_checkpoint(ckpt_path, snapshot())
                last_ckpt = now
                log.info("checkpoint step %d", step)
        bar.close()
        if out_of_time:
            stopped = "budget"
            save_checkpoint(ckpt_path, snapshot())
            log.info("budget of %.1f min reached at epoch %d step %d: checkpoint written",
                     cfg.budget_minutes, epoch + 1, step)
            break
        epoch += 1
        perm = None
        pos = 0
        val = evaluate(model, [graphs[i] for i in val_idx], y[val_idx])
        history.append({"epoch": epoch, "step": step, "val": val,
                        "minutes": round((time.monotonic() - t_start) / 60, 2)})
        log.info("epoch %d done step %d val_l1 %.4f %s", epoch, step, val["mae"],
                 " ".join(f"{p}={val[p]:.3f}" for p in PROPERTIES))
        if val["mae"] < best:
            best = val["mae"]
            save_checkpoint(out_dir / BEST_NAME, snapshot())
        save_checkpoint(ckpt_path, snapshot())
        last_ckpt = time.monotonic()
    val = history[-1]["val"] if history else None
    log.info("stop (%s) epoch %d step %d", stopped, epoch, step)
    return {"epoch": epoch, "step": step, "stopped": stopped, "val": val, "checkpoint": str(ckpt_path)}
