"""A weighted blend of barrier models (e.g. the ALIGNN ensemble and the descriptor model).

Why: the two see the band differently (a graph network vs hand-made hop descriptors) and their
errors are only partly correlated, so a weighted mean beats either. The weight is chosen on the
host-grouped out-of-fold (OOF) predictions of the TRAINING split only; the CV score stored with the
blend is nested (each fold's weight chosen on the other folds' OOF), so choosing the weight does
not flatter it. The weight may change at a gate on the last component's prediction (a "gated"
blend): an ALIGNN fitted on log(E_m) compresses high barriers, while the descriptor model, fitted
in eV, places them better, so above the gate the blend can lean on the descriptor model alone. The
gate is on a prediction, never on the target, and is chosen with the weights (nested likewise).
The uncertainty is the std of the components' mixture (their own calibrated
spreads plus their disagreement), rescaled on the OOF residuals so a 90% interval covers ~90%.

The checkpoint names its components (shipped names or paths) with the model ids they had when
the blend was fitted: a blend refuses to load over a changed component.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
#: Gates (eV, on the last component's prediction) tried by a gated blend; None = one weight.
GATE_GRID: tuple[float | None, ...] = (None, 0.65, 0.8, 1.0, 1.2, 1.5)
OBJECTIVES = ("mae", "mse")


def above_gate(gate_means: np.ndarray, gate_ev: float | None) -> np.ndarray:
    """Bands whose gate-component prediction is at or above the gate (none without a gate)."""
    return np.asarray(gate_means) >= (np.inf if gate_ev is None else gate_ev)


def _loss(pred: np.ndarray, y: np.ndarray, objective: str) -> float:
    err = pred - y
    return float(np.mean(np.abs(err)) if objective == "mae" else np.mean(err ** 2))


def mixture(means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the weighted mixture of components (rows) per band (columns); weights are
    one per component, or one per component and band."""
    w = np.asarray(weights, float)
    w = w[:, None] if w.ndim == 1 else w
    mu = (w * means).sum(axis=0)
    var = (w * (stds ** 2 + (means - mu) ** 2)).sum(axis=0)
    return mu, np.sqrt(var)


def best_weight(y: np.ndarray, a: np.ndarray, b: np.ndarray, objective: str = "mae") -> float:
    """Weight of ``a`` in w*a + (1-w)*b with the lowest MAE (or MSE) against y (ties: the smaller w)."""
    losses = [_loss(w * a + (1 - w) * b, y, objective) for w in WEIGHT_GRID]
    return float(WEIGHT_GRID[int(np.argmin(losses))])


class BlendRule(NamedTuple):
    """Weight of the first component below the gate and at or above it (gate None: one weight)."""

    gate_ev: float | None
    weight: float
    weight_above: float

    def apply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The blended prediction; the gate looks at b (the last component's prediction)."""
        w = self.weights_for(b)
        return w * a + (1 - w) * b

    def weights_for(self, b: np.ndarray) -> np.ndarray:
        """Per band weight of the first component."""
        return np.where(above_gate(b, self.gate_ev), self.weight_above, self.weight)


def best_rule(y: np.ndarray, a: np.ndarray, b: np.ndarray, objective: str = "mse",
              gates: Sequence[float | None] = GATE_GRID) -> BlendRule:
    """The gate and weights with the lowest loss against y; below and above a gate the weights
    are fitted on their own bands (a side with no band keeps the below-gate weight)."""
    best: tuple[float, BlendRule] | None = None
    for g in gates:
        if g is None:
            w = best_weight(y, a, b, objective)
            rule = BlendRule(None, w, w)
        else:
            hi = b >= g
            w_lo = best_weight(y[~hi], a[~hi], b[~hi], objective) if (~hi).any() else 0.0
            w_hi = best_weight(y[hi], a[hi], b[hi], objective) if hi.any() else w_lo
            rule = BlendRule(float(g), w_lo, w_hi)
        loss = _loss(rule.apply(a, b), y, objective)
        if best is None or loss < best[0] - 1e-12:
            best = (loss, rule)
    assert best is not None
    return best[1]


def nested_rule_oof(y: np.ndarray, a: np.ndarray, b: np.ndarray, folds: np.ndarray, objective: str = "mse",
                    gates: Sequence[float | None] = GATE_GRID) -> tuple[np.ndarray, list[BlendRule]]:
    """Blend OOF predictions where fold k's gate and weights are chosen on the other folds only."""
    out, rules = np.zeros(len(y)), []
    for k in np.unique(folds):
        te = folds == k
        rule = best_rule(y[~te], a[~te], b[~te], objective, gates)
        out[te] = rule.apply(a[te], b[te])
        rules.append(rule)
    return out, rules


class BlendModel(BarrierModel):
    """Weighted mean of component barrier models with a mixture uncertainty."""

    def __init__(self, components: Sequence[str], weights: Sequence[float], *,
                 gate_ev: float | None = None, weights_above: Sequence[float] | None = None,
                 component_ids: Sequence[str] | None = None, std_scale: float = 1.0,
                 std_floor: float = NOISE_FLOOR_EV, name: str = "blend",
                 info: dict[str, Any] | None = None, models: Sequence[BarrierModel] | None = None):
        if len(components) < 2 or len(components) != len(weights):
            raise ValueError(f"model {name}: a blend needs >= 2 components with one weight each")
        w = np.asarray(weights, float)
        if (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"model {name}: weights {w.tolist()} must be >= 0 and sum to 1")
        self.name, self.components, self.weights = name, list(components), w
        self.gate_ev = None if gate_ev is None else float(gate_ev)
        above = w if weights_above is None else np.asarray(weights_above, float)
        if above.shape != w.shape or (above < 0).any() or not np.isclose(above.sum(), 1.0):
            raise ValueError(f"model {name}: weights above the gate {above.tolist()} must be one per component, >= 0, sum to 1")
        self.weights_above = above
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
        if self.gate_ev is None:
            means, stds = self.component_predictions(bands)
            weights = self.band_weights(means[-1])
        else:  # the gate component first; the others only where their weight is not zero
            gate_mu, gate_sd = self.models[-1].predict(bands)
            weights = self.band_weights(gate_mu)
            means = np.vstack([np.repeat(gate_mu[None, :], len(self.models) - 1, axis=0), gate_mu[None, :]])
            stds = np.vstack([np.zeros((len(self.models) - 1, len(bands))), gate_sd[None, :]])
            for c, m in enumerate(self.models[:-1]):
                need = np.flatnonzero(weights[c] > 0)
                if len(need):
                    means[c, need], stds[c, need] = m.predict([bands[i] for i in need])
        mu, raw = mixture(means, stds, weights)
        return mu, calibrated_std(raw, self.std_scale, self.std_floor)

    def band_weights(self, gate_means: np.ndarray) -> np.ndarray:
        """(components, bands) weights: weights_above where the last component's prediction
        (gate_means) is at or above the gate, weights elsewhere."""
        above = above_gate(gate_means, self.gate_ev)
        return np.where(above[None, :], self.weights_above[:, None], self.weights[:, None])

    @classmethod
    def fit_on_oof(cls, components: Sequence[str], y: np.ndarray, oof_means: np.ndarray,
                   oof_stds: np.ndarray, folds: np.ndarray, *, name: str = "blend",
                   objective: str = "mse", gates: Sequence[float | None] = GATE_GRID,
                   info: dict[str, Any] | None = None,
                   models: Sequence[BarrierModel] | None = None) -> "BlendModel":
        """Fit the gate and weights of two components on their OOF predictions (rows =
        components) over the training split, minimising the MAE or MSE (objective); gates=(None,)
        fits one weight. Store the nested-CV OOF of the blend (info["oof"]) for `--split cv`.
        ``models``: the components already loaded (else they are loaded from ``components``)."""
        if len(components) != 2:
            raise ValueError("fit_on_oof blends exactly two components")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective: {objective!r} is not one of {', '.join(OBJECTIVES)}")
        y, means, stds = np.asarray(y, float), np.asarray(oof_means, float), np.asarray(oof_stds, float)
        folds = np.asarray(folds)
        rule = best_rule(y, means[0], means[1], objective, gates)
        nested, fold_rules = nested_rule_oof(y, means[0], means[1], folds, objective, gates)
        # spread of the mixture at the per-fold rules, rescaled on the nested residuals
        raw = np.zeros(len(y))
        for k, r in zip(np.unique(folds), fold_rules):
            te = folds == k
            w = r.weights_for(means[1, te])
            raw[te] = mixture(means[:, te], stds[:, te], np.array([w, 1 - w]))[1]
        scale = calibrate_scale(y - nested, raw, NOISE_FLOOR_EV)
        oof = {"y": y.tolist(), "mean": nested.tolist(),
               "std": calibrated_std(raw, scale, NOISE_FLOOR_EV).tolist(),
               "fold_weights": [r.weight for r in fold_rules],
               "fold_rules": [r._asdict() for r in fold_rules]}
        return cls(components, [rule.weight, 1 - rule.weight], gate_ev=rule.gate_ev,
                   weights_above=[rule.weight_above, 1 - rule.weight_above], std_scale=scale, name=name,
                   info={**(info or {}), "objective": objective, "gates": list(gates), "oof": oof},
                   models=models)

    def save(self, path: Path) -> Path:
        """Write the blend (component names + ids, weights, calibration); model_id = name@hash."""
        state = {"components": self.components, "component_ids": self.component_ids,
                 "weights": self.weights.tolist(), "gate_ev": self.gate_ev,
                 "weights_above": self.weights_above.tolist(), "std_scale": self.std_scale,
                 "std_floor": self.std_floor, "info": self.info}
        return write_checkpoint(Path(path), self, state)

    @classmethod
    def load(cls, path: Path) -> "BlendModel":
        """Rebuild from save(); one-line ValueError naming the file if it or a component is off."""
        path = Path(path)
        doc = read_checkpoint(path)
        st = doc["state"]
        try:
            model = cls(st["components"], st["weights"], gate_ev=st.get("gate_ev"),
                        weights_above=st.get("weights_above"), component_ids=st["component_ids"],
                        std_scale=st["std_scale"], std_floor=st["std_floor"],
                        name=doc["name"], info=st.get("info"))
        except KeyError as exc:
            raise ValueError(f"model checkpoint {path}: bad BlendModel state (missing {exc})") from exc
        except ValueError as exc:
            raise ValueError(f"model checkpoint {path}: {exc}") from exc
        model.model_id = checkpoint_model_id(model.name, path)
        return model
