"""A weighted blend of barrier models (e.g. the ALIGNN ensemble and the descriptor model).

Why: the two see the band differently (a graph network vs hand-made hop descriptors) and their
errors are only partly correlated, so a weighted mean beats either. The weight is chosen on the
host-grouped out-of-fold (OOF) predictions of the TRAINING split only; the CV score stored with the
blend is nested (each fold's weight chosen on the other folds' OOF), so choosing the weight does
not flatter it. The uncertainty is the std of the components' mixture (their own calibrated
spreads plus their disagreement), rescaled on the OOF residuals so a 90% interval covers ~90%.

The checkpoint names its components (shipped names or paths) with the model ids they had when
the blend was fitted: a blend refuses to load over a changed component.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from screener.model.base import (
    BarrierModel,
    checkpoint_model_id,
    load_model,
    read_checkpoint,
    write_checkpoint,
)
from screener.model.descriptor_model import NOISE_FLOOR_EV, calibrate_scale, calibrated_std

#: Weights tried for the first component (the rest goes to the second).
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def mixture(means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the weighted mixture of components (rows) per band (columns)."""
    w = np.asarray(weights, float)[:, None]
    mu = (w * means).sum(axis=0)
    var = (w * (stds ** 2 + (means - mu) ** 2)).sum(axis=0)
    return mu, np.sqrt(var)


def best_weight(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Weight of ``a`` in w*a + (1-w)*b with the lowest MAE against y (ties: the smaller w)."""
    maes = [float(np.mean(np.abs(w * a + (1 - w) * b - y))) for w in WEIGHT_GRID]
    return float(WEIGHT_GRID[int(np.argmin(maes))])


def nested_oof(y: np.ndarray, a: np.ndarray, b: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Blend OOF predictions where fold k's weight is chosen on the other folds only."""
    out, ws = np.zeros(len(y)), []
    for k in np.unique(folds):
        te = folds == k
        w = best_weight(y[~te], a[~te], b[~te])
        out[te] = w * a[te] + (1 - w) * b[te]
        ws.append(w)
    return out, ws


class BlendModel(BarrierModel):
    """Weighted mean of component barrier models with a mixture uncertainty."""

    def __init__(self, components: Sequence[str], weights: Sequence[float], *,
                 component_ids: Sequence[str] | None = None, std_scale: float = 1.0,
                 std_floor: float = NOISE_FLOOR_EV, name: str = "blend",
                 info: dict[str, Any] | None = None, models: Sequence[BarrierModel] | None = None):
        if len(components) < 2 or len(components) != len(weights):
            raise ValueError(f"model {name}: a blend needs >= 2 components with one weight each")
        w = np.asarray(weights, float)
        if (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"model {name}: weights {w.tolist()} must be >= 0 and sum to 1")
        self.name, self.components, self.weights = name, list(components), w
        self.models = list(models) if models is not None else [load_model(c) for c in components]
        ids = [m.model_id for m in self.models]
        if component_ids is not None and list(component_ids) != ids:
            changed = [f"{c} (fitted with {old}, found {new})"
                       for c, old, new in zip(components, component_ids, ids) if old != new]
            raise ValueError(f"model {name}: component changed since the blend was fitted: {'; '.join(changed)}")
        self.component_ids = ids
        self.std_scale, self.std_floor = float(std_scale), float(std_floor)
        self.info = dict(info or {})
        self.model_id = f"{name}@unsaved"

    @property
    def cache(self) -> Any:
        return next((m.cache for m in self.models if hasattr(m, "cache")), None)

    @cache.setter
    def cache(self, value: Any) -> None:  # the CLI hands a graph cache to models that use one
        for m in self.models:
            if hasattr(m, "graph_settings"):
                m.cache = value

    @property
    def graph_settings(self) -> Any:
        """The graph settings of the graph component (AttributeError when none has graphs)."""
        for m in self.models:
            if hasattr(m, "graph_settings"):
                return m.graph_settings
        raise AttributeError("graph_settings")

    def component_predictions(self, bands: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """(components, bands) means and calibrated stds."""
        got = [m.predict(bands) for m in self.models]
        return np.array([g[0] for g in got]), np.array([g[1] for g in got])

    def predict(self, bands: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """E_m mean and standard deviation (eV), one per band (first five sites = the hop)."""
        if len(bands) == 0:
            return np.zeros(0), np.zeros(0)
        means, stds = self.component_predictions(bands)
        mu, raw = mixture(means, stds, self.weights)
        return mu, calibrated_std(raw, self.std_scale, self.std_floor)

    @classmethod
    def fit_on_oof(cls, components: Sequence[str], y: np.ndarray, oof_means: np.ndarray,
                   oof_stds: np.ndarray, folds: np.ndarray, *, name: str = "blend",
                   info: dict[str, Any] | None = None,
                   models: Sequence[BarrierModel] | None = None) -> "BlendModel":
        """Fit the weight of two components on their OOF predictions (rows = components) over the
        training split; store the nested-CV OOF of the blend (info["oof"]) for `--split cv`.
        ``models``: the components already loaded (else they are loaded from ``components``)."""
        if len(components) != 2:
            raise ValueError("fit_on_oof blends exactly two components")
        y, means, stds = np.asarray(y, float), np.asarray(oof_means, float), np.asarray(oof_stds, float)
        w = best_weight(y, means[0], means[1])
        weights = np.array([w, 1 - w])
        nested, fold_ws = nested_oof(y, means[0], means[1], np.asarray(folds))
        # spread of the mixture at the per-fold weights, rescaled on the nested residuals
        raw = np.zeros(len(y))
        for k, wk in zip(np.unique(folds), fold_ws):
            te = np.asarray(folds) == k
            raw[te] = mixture(means[:, te], stds[:, te], np.array([wk, 1 - wk]))[1]
        scale = calibrate_scale(y - nested, raw, NOISE_FLOOR_EV)
        oof = {"y": y.tolist(), "mean": nested.tolist(),
               "std": calibrated_std(raw, scale, NOISE_FLOOR_EV).tolist(), "fold_weights": fold_ws}
        return cls(components, weights, std_scale=scale, name=name,
                   info={**(info or {}), "oof": oof}, models=models)

    def save(self, path: Path) -> Path:
        """Write the blend (component names + ids, weights, calibration); model_id = name@hash."""
        state = {"components": self.components, "component_ids": self.component_ids,
                 "weights": self.weights.tolist(), "std_scale": self.std_scale,
                 "std_floor": self.std_floor, "info": self.info}
        return write_checkpoint(Path(path), self, state)

    @classmethod
    def load(cls, path: Path) -> "BlendModel":
        """Rebuild from save(); one-line ValueError naming the file if it or a component is off."""
        path = Path(path)
        doc = read_checkpoint(path)
        st = doc["state"]
        try:
            model = cls(st["components"], st["weights"], component_ids=st["component_ids"],
                        std_scale=st["std_scale"], std_floor=st["std_floor"],
                        name=doc["name"], info=st.get("info"))
        except KeyError as exc:
            raise ValueError(f"model checkpoint {path}: bad BlendModel state (missing {exc})") from exc
        except ValueError as exc:
            raise ValueError(f"model checkpoint {path}: {exc}") from exc
        model.model_id = checkpoint_model_id(model.name, path)
        return model
