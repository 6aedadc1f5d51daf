"""ALIGNN barrier model: an ensemble of alignn pure-torch networks on the band graph.

Why an ensemble: the mean is the prediction and the members' spread the uncertainty (rescaled on
validation data, plus the DFT noise floor, as for the descriptor model). Members share one graph
per band, so graph building is paid once however many members there are. Fine-tuning starts from
the multi-property pre-trained (MPT) weights: ``network_from_pretrained`` copies everything but
the 7-property output layer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from screener.model.base import BarrierModel, checkpoint_model_id, read_checkpoint, write_checkpoint
from screener.model.descriptor_model import NOISE_FLOOR_EV, calibrated_std
from screener.model.device import resolve_device
from screener.model.graphs import GraphCache, GraphSettings, band_graph, batch_graphs
from screener.model.pretrain import ModelConfig, build_model, load_checkpoint, tune_allocator

#: Set to 0 to keep glibc's allocator defaults in processes that run the ALIGNN on the CPU.
TUNE_MALLOC_ENV = "SCREENER_TUNE_MALLOC"


def network_from_pretrained(ckpt_path: Path | str, output_features: int = 1,
                            readout: str = "mean", hop_descriptors: int = 0) -> torch.nn.Module:
    """A network with the MPT checkpoint's weights everywhere except a fresh output layer
    (readout "band": the output layer reads the hop's sites too, see screener.model.readout)."""
    state = load_checkpoint(Path(ckpt_path))
    try:
        cfg = ModelConfig(**{**state["config"]["model"], "output_features": output_features,
                             "readout": readout, "hop_descriptors": hop_descriptors})
        weights = {k: v for k, v in state["model"].items() if not k.startswith("fc.")}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"pretrain checkpoint {ckpt_path}: no model config/weights ({exc})") from exc
    net = build_model(cfg)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("fc.") for k in missing):
        raise ValueError(f"pretrain checkpoint {ckpt_path}: weights do not fit the network "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net


def descriptor_scaler(X: np.ndarray) -> dict[str, list[float]]:
    """Mean and spread of the hop descriptors of the training bands (no targets involved)."""
    X = np.asarray(X, dtype=float)
    return {"mean": X.mean(axis=0).tolist(), "std": np.where(X.std(axis=0) > 1e-12, X.std(axis=0), 1.0).tolist()}


def attach_hop_descriptors(graphs: Sequence[Any], bands: Sequence[Structure] | None,
                           scaler: dict[str, list[float]], X: np.ndarray | None = None) -> None:
    """Give every band graph its standardised hop descriptors (computed from the bands unless X,
    the raw descriptor matrix, is given), for the band readout that reads them."""
    from screener.model.descriptors import descriptor_matrix

    X = descriptor_matrix(bands) if X is None else np.asarray(X, dtype=float)
    Z = (X - np.asarray(scaler["mean"])) / np.asarray(scaler["std"])
    for g, z in zip(graphs, Z):
        g.hop_descriptors = z.astype(np.float32)


class AlignnModel(BarrierModel):
    """Ensemble of ALIGNN members predicting E_m (eV) from the band graph."""

    def __init__(self, members: Sequence[dict[str, torch.Tensor]], model_config: ModelConfig,
                 graph_settings: GraphSettings = GraphSettings(), std_scale: float = 1.0,
                 std_floor: float = NOISE_FLOOR_EV, name: str = "alignn", batch_size: int = 32,
                 info: dict[str, Any] | None = None, device: str = "auto",
                 descriptor_scaler: dict[str, list[float]] | None = None):
        if not members:
            raise ValueError(f"model {name}: an ensemble needs at least one member")
        self.name = name
        self.model_config = model_config
        self.graph_settings = graph_settings
        self.std_scale, self.std_floor = float(std_scale), float(std_floor)
        self.batch_size = batch_size
        self.info = dict(info or {})
        self.member_states = [dict(m) for m in members]
        if model_config.hop_descriptors and not descriptor_scaler:
            raise ValueError(f"model {name}: hop descriptors need their scaler (mean, std)")
        self.descriptor_scaler = descriptor_scaler
        self.device = resolve_device(device)
        if self.device.type == "cpu" and os.environ.get(TUNE_MALLOC_ENV, "1") != "0":
            # ~2x the bands/s on the CPU for ~0.5 GB more resident memory (README, bench_inference)
            tune_allocator()
        self.networks = []
        for st in self.member_states:
            net = build_model(model_config)
            net.load_state_dict(st)
            net.eval()
            self.networks.append(net.to(self.device))
        self.model_id = f"{name}@unsaved"
        self.cache: GraphCache | None = None

    def member_predictions(self, bands: Sequence[Structure]) -> np.ndarray:
        """(members, bands) raw predictions."""
        graphs = [band_graph(b, self.graph_settings, self.cache, name=f"band {i}")
                  for i, b in enumerate(bands)]
        if self.model_config.hop_descriptors:
            attach_hop_descriptors(graphs, bands, self.descriptor_scaler)
        out = np.zeros((len(self.networks), len(graphs)))
        with torch.no_grad():
            for i in range(0, len(graphs), self.batch_size):
                inp = batch_graphs(graphs[i:i + self.batch_size]).model_input(self.device)
                for m, net in enumerate(self.networks):
                    out[m, i:i + self.batch_size] = net(inp)["out"].reshape(-1).cpu().numpy()
        return out

    def predict(self, bands: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """E_m mean and standard deviation (eV), one per band (first five sites = the hop)."""
        if len(bands) == 0:
            return np.zeros(0), np.zeros(0)
        pm = self.member_predictions(bands)
        return pm.mean(axis=0), calibrated_std(pm.std(axis=0), self.std_scale, self.std_floor)

    def save(self, path: Path) -> Path:
        """Write a compressed joblib checkpoint; model_id becomes name@hash of that file."""
        state = {"members": [{k: v.detach().cpu() for k, v in m.items()} for m in self.member_states],
                 "model_config": asdict(self.model_config),
                 "graph_settings": asdict(self.graph_settings), "std_scale": self.std_scale,
                 "std_floor": self.std_floor, "info": self.info, "descriptor_scaler": self.descriptor_scaler}
        path = write_checkpoint(Path(path), self, state)
        return path

    @classmethod
    def load(cls, path: Path) -> "AlignnModel":
        """Rebuild from a checkpoint written by save(); one-line ValueError naming the file."""
        path = Path(path)
        doc = read_checkpoint(path)
        st = doc["state"]
        try:
            model = cls(st["members"], ModelConfig(**st["model_config"]),
                        GraphSettings(**st["graph_settings"]), st["std_scale"], st["std_floor"],
                        name=doc["name"], info=st.get("info"), descriptor_scaler=st.get("descriptor_scaler"))
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"model checkpoint {path}: bad AlignnModel state "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
        model.model_id = checkpoint_model_id(model.name, path)
        return model
