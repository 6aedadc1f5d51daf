"""Tree-ensemble barrier model on physical band descriptors (screener.model.descriptors).

Trees fit the 559 training barriers without a GPU and the spread of the ensemble members gives an
uncertainty; that spread is only a ranking of confidence, so it is rescaled on host-grouped
out-of-fold predictions of the training split until mean +- 1.645 std covers ~90%.

The barrier is the interquartile mean of the trees (TRIM), not their mean: fitted on log E_m and
taken back to eV, the trees' predictions of a hop are skewed to high values, so a few trees that
put it among much higher barriers pull the mean up (low barriers came out +0.12 eV too high on
average under the grouped CV); the scores are MAE-type, whose best point estimate is the centre of
that distribution, not its mean.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from pymatgen.core import Structure
from scipy.stats import trim_mean
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

from screener.model.base import BarrierModel, checkpoint_model_id, read_checkpoint, write_checkpoint
from screener.model.descriptors import DESCRIPTOR_NAMES, descriptor_matrix
from screener.model.metrics import Z90
from screener.sources.dataset import load_bands

KINDS = ("et", "rf", "gbm")
_LOG_OFFSET = 0.05  # eV; log(y + offset) keeps the 3 meV barriers finite
_STD_FLOOR = 1e-3
#: Fraction of the members' predictions (eV) cut from each end before averaging: 0.25, the
#: interquartile mean. Host-grouped CV of the training split (five seeds of the trees): descriptor
#: model MAE 0.2656 vs 0.2738 for the plain mean (0.2677 at 0.1, 0.2662 for the median), the
#: gated blend 0.2562 vs 0.2648, better on every fold and seed (scripts/model_tries.py).
TRIM = 0.25
#: eV; an irreducible part of the uncertainty: DFT-NEB barriers of one hop differ by about this much
#: between set-ups, so no prediction is surer than that, even on a training hop (where the trees agree).
NOISE_FLOOR_EV = 0.05


def calibrated_std(raw: np.ndarray, scale: float, floor: float) -> np.ndarray:
    """Member spread rescaled, plus the noise floor in quadrature."""
    return np.sqrt((scale * np.asarray(raw)) ** 2 + floor**2)


def calibrate_scale(residual: np.ndarray, raw: np.ndarray, floor: float, target: float = 0.9) -> float:
    """Smallest scale whose mean +- Z90 * calibrated_std covers ``target`` of the residuals."""
    residual = np.abs(np.asarray(residual))

    def coverage(scale: float) -> float:
        return float(np.mean(residual <= Z90 * calibrated_std(raw, scale, floor)))

    lo, hi = 0.0, 1.0
    while coverage(hi) < target and hi < 1e4:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if coverage(mid) >= target else (mid, hi)
    return hi


# --- dataset -------------------------------------------------------------------------------------

def load_split(split: str = "train") -> tuple[list[Structure], np.ndarray, list[dict]]:
    """(bands, E_m targets, entry metadata) of the shipped dataset's ``split``."""
    entries = load_bands(split)
    bands = [e.band for e in entries]
    y = np.array([e.target for e in entries])
    meta = [{"sys_name": e.sys_name, "host_name": e.host_name, "class": e.cls, "xc": e.xc}
            for e in entries]
    return bands, y, meta


def load_folds() -> np.ndarray:
    """Host-grouped fold index of each training band (folds-train.json, same order)."""
    return np.asarray([e.fold for e in load_bands("train")], dtype=int)


# --- model ---------------------------------------------------------------------------------------

#: The shipped ExtraTrees recipe, chosen by host-grouped CV on the training split only: leaves of
#: one band, half the descriptors per split, 200 trees (500 gain 0.001 eV at 2.5x the checkpoint).
ET_PARAMS: dict[str, Any] = {"max_features": 0.5, "min_samples_leaf": 1}
ET_TREES = 200

class DescriptorModel(BarrierModel):
    """Ensemble of trees on band descriptors; mean and calibrated spread of the members."""

    def __init__(
        self,
        kind: str = "et",
        n_estimators: int = 300,
        log_target: bool = True,
        features: Sequence[str] | None = None,
        seed: int = 0,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        trim: float = TRIM,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"DescriptorModel: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        unknown = sorted(set(features or ()) - set(DESCRIPTOR_NAMES))
        if unknown:
            raise ValueError(f"DescriptorModel: unknown descriptors {unknown}")
        if not 0.0 <= float(trim) <= 0.5:
            raise ValueError(f"DescriptorModel: trim {trim!r} must be in [0, 0.5] (0.5: the median)")
        self.trim = float(trim)
        self.kind = kind
        self.n_estimators = int(n_estimators)
        self.log_target = bool(log_target)
        self.features = list(features) if features else list(DESCRIPTOR_NAMES)
        self.seed = int(seed)
        self.params = dict(params or {})
        self.name = name or f"descriptor-{kind}"
        self.model_id = f"{self.name}@unsaved"
        self.members: list[Any] = []
        self.std_scale = 1.0
        self.std_floor = NOISE_FLOOR_EV
        self.info: dict[str, Any] = {}
        self._cols = np.array([DESCRIPTOR_NAMES.index(f) for f in self.features])

    # targets live in log space when log_target: barriers span 3 meV .. 9 eV
    def _fwd(self, y: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(y, 0.0) + _LOG_OFFSET) if self.log_target else y

    def _inv(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(np.exp(z) - _LOG_OFFSET, 0.0) if self.log_target else z

    def _new_estimators(self) -> list[Any]:
        p = dict(self.params)
        if self.kind == "et":
            return [ExtraTreesRegressor(n_estimators=self.n_estimators, random_state=self.seed,
                                        n_jobs=1, **{"max_features": 0.5, "min_samples_leaf": 2, **p})]
        if self.kind == "rf":
            return [RandomForestRegressor(n_estimators=self.n_estimators, random_state=self.seed,
                                          n_jobs=1, **{"max_features": 0.5, "min_samples_leaf": 2, **p})]
        n_members = int(p.pop("n_members", 10))
        defaults = {"n_estimators": self.n_estimators, "learning_rate": 0.05, "max_depth": 3,
                    "subsample": 0.7, "loss": "huber", "max_features": 0.5}
        return [GradientBoostingRegressor(random_state=self.seed + i, **{**defaults, **p})
                for i in range(n_members)]

    def _fit_members(self, X: np.ndarray, z: np.ndarray) -> list[Any]:
        members = self._new_estimators()
        rng = np.random.default_rng(self.seed)
        for est in members:
            if self.kind == "gbm" and len(members) > 1:  # bag the boosters so they disagree
                idx = rng.integers(0, len(z), len(z))
                est.fit(X[idx], z[idx])
            else:
                est.fit(X, z)
        return members

    def _centre(self, pm: np.ndarray) -> np.ndarray:
        """The barrier from the members' predictions (n_members, n_bands): their mean with the
        fraction trim cut from each end (0.5: their median)."""
        if self.trim >= 0.5:
            return np.median(pm, axis=0)
        return trim_mean(pm, self.trim, axis=0) if self.trim > 0 else pm.mean(axis=0)

    def _member_predictions(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        """(n_members, n_bands) predictions in eV."""
        if self.kind in ("et", "rf"):
            z = np.stack([t.predict(X) for t in members[0].estimators_])
        else:
            z = np.stack([m.predict(X) for m in members])
        return self._inv(z)

    def fit(
        self,
        bands: Sequence[Structure] | None,
        y: Sequence[float],
        folds: Sequence[int] | None = None,
        X: np.ndarray | None = None,
    ) -> "DescriptorModel":
        """Fit on bands (or a precomputed full descriptor matrix X); with folds, first calibrate
        the std scale on out-of-fold predictions (one refit per fold)."""
        X_full = descriptor_matrix(bands) if X is None else np.asarray(X, dtype=float)
        Xs = X_full[:, self._cols]
        y = np.asarray(y, dtype=float)
        if folds is not None:
            oof_mean, oof_raw = self.out_of_fold(Xs, y, np.asarray(folds))
            self.std_scale = calibrate_scale(y - oof_mean, oof_raw, self.std_floor)
            self.info["oof_mean"], self.info["oof_raw_std"] = oof_mean.tolist(), oof_raw.tolist()
        self.members = self._fit_members(Xs, self._fwd(y))
        self.info.update(n_train=int(len(y)), sklearn=sklearn.__version__,
                         python=platform.python_version())
        return self

    def out_of_fold(self, Xs: np.ndarray, y: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold (barrier, uncalibrated std) over host-grouped folds."""
        mean, raw = np.zeros(len(y)), np.zeros(len(y))
        for f in np.unique(folds):
            te = folds == f
            members = self._fit_members(Xs[~te], self._fwd(y[~te]))
            pm = self._member_predictions(members, Xs[te])
            mean[te], raw[te] = self._centre(pm), pm.std(axis=0)
        return mean, raw

    def predict_descriptors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Barrier (see _centre) and calibrated std from a full descriptor matrix (columns = DESCRIPTOR_NAMES)."""
        if not self.members:
            raise ValueError(f"model {self.name}: not fitted")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(DESCRIPTOR_NAMES):
            raise ValueError(f"model {self.name}: descriptor matrix of shape {X.shape}, "
                             f"need (n, {len(DESCRIPTOR_NAMES)})")
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        pm = self._member_predictions(self.members, X[:, self._cols])
        return self._centre(pm), calibrated_std(pm.std(axis=0), self.std_scale, self.std_floor)

    def predict(self, bands: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """E_m mean and standard deviation (eV), one per band (first five sites = the hop)."""
        return self.predict_descriptors(descriptor_matrix(bands))

    # --- persistence ----------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write a compressed joblib checkpoint and set model_id to name@hash of that file."""
        if not self.members:
            raise ValueError(f"model {self.name}: not fitted, nothing to save")
        info = {k: v for k, v in self.info.items() if not k.startswith("oof_")}
        state = {"kind": self.kind, "n_estimators": self.n_estimators, "log_target": self.log_target,
                 "features": self.features, "seed": self.seed, "params": self.params, "trim": self.trim,
                 "members": self.members, "std_scale": self.std_scale, "std_floor": self.std_floor,
                 "info": info}
        path = write_checkpoint(Path(path), self, state)
        return path

    @classmethod
    def load(cls, path: Path) -> "DescriptorModel":
        """Rebuild from a checkpoint written by save(); one-line ValueError naming the file."""
        path = Path(path)
        doc = read_checkpoint(path)
        st = doc["state"]
        try:
            model = cls(kind=st["kind"], n_estimators=st["n_estimators"], log_target=st["log_target"],
                        features=st["features"], seed=st["seed"], name=doc["name"],
                        params=st["params"], trim=st.get("trim", 0.0))  # older checkpoints: the plain mean
            model.members, model.std_scale = st["members"], float(st["std_scale"])
            model.std_floor = float(st.get("std_floor", _STD_FLOOR))
            model.info = dict(st.get("info", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"model checkpoint {path}: bad DescriptorModel state ({exc})") from exc
        model.model_id = checkpoint_model_id(model.name, path)
        return model


# --- the two evaluation protocols ----------------------------------------------------------------

def evaluate_protocols(
    model: DescriptorModel,
    X_train: np.ndarray,
    y_train: np.ndarray,
    folds: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    threshold: float = 0.65,
) -> dict[str, Any]:
    """Scores of a fitted model under both protocols, plus the predictions (for plots).

    "test": the fitted model (trained on all 559) scored once on the 60 test bands, with a bootstrap
    interval of the accuracy. "grouped_cv": the same hyper-parameters refitted per host-grouped fold
    of the training split; its coverage90 uses the std scale calibrated on these same out-of-fold
    predictions, so it is ~0.90 by construction; coverage90_heldout_scale calibrates each fold's
    scale on the other four folds instead (and the test coverage is the plain held-out check).
    """
    from screener.model.metrics import score, score_with_ci

    mu_t, sd_t = model.predict_descriptors(X_test)
    test = score_with_ci(y_test, mu_t, sd_t, threshold=threshold)
    mu_cv, raw_cv = model.out_of_fold(np.asarray(X_train)[:, model._cols], np.asarray(y_train), folds)
    sd_cv = calibrated_std(raw_cv, model.std_scale, model.std_floor)
    cv = score(y_train, mu_cv, sd_cv, threshold=threshold)
    # honest variant: each fold's coverage with the scale calibrated on the other four folds
    res = np.abs(y_train - mu_cv)
    covered = np.zeros(len(res), dtype=bool)
    for f in np.unique(folds):
        k = folds == f
        scale = calibrate_scale(res[~k], raw_cv[~k], model.std_floor)
        covered[k] = res[k] <= Z90 * calibrated_std(raw_cv[k], scale, model.std_floor)
    cv["coverage90_heldout_scale"] = float(covered.mean())
    cv["per_fold_mae"] = [float(np.abs(y_train[folds == f] - mu_cv[folds == f]).mean())
                          for f in np.unique(folds)]
    return {
        "test": test,
        "grouped_cv": cv,
        "predictions": {"test": (np.asarray(y_test), mu_t, sd_t),
                        "grouped_cv": (np.asarray(y_train), mu_cv, sd_cv)},
    }
