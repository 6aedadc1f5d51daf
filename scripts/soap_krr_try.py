"""A third kind of barrier model, scored under the host-grouped CV only: kernel ridge regression on
SOAP power spectra of the hop's environment (dscribe), alone and blended with the shipped models.

    python -m pip install -e ".[tries]"      # dscribe, which the engine does not need
    python scripts/soap_krr_try.py [--json]

Why: the ALIGNN is the shipped model's structural component, and on 559 bands a kernel on a fixed
local-environment descriptor is the classic alternative to a graph network. The test split is
never loaded.

The representation. For each of the five band positions, the SOAP spectrum of the host around it
(the band's own five sites left out), with the host's atoms in seven chemical channels rather than
their ~60 elements: other ions of the working kind, O, halides, chalcogenide anions, N/C of
cyanides, polyanion formers (P, Si, B, As, Ge; S/Se/C when they sit in an oxo-anion) and every
other cation. The end points are averaged, and so are the two quarter images, so the vector does
not depend on the hop's direction; each of the three blocks is normalised. The kernel is the mean
of the three blocks' squared dot products, times `ion_mismatch` between bands of different ions.

Honest scores: the hyper-parameters (cutoff, ion_mismatch, ridge, log or sqrt target) are chosen
per outer fold by an inner CV over the other four folds; blends are nested as `screener model
blend` fits them (gate and weights from the other folds' out-of-fold predictions).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Structure

from screener.cli_model import train_oof
from screener.model.base import load_model
from screener.model.blend import _loss, best_rule, nested_rule_oof
from screener.model.descriptor_model import load_folds, load_split
from screener.model.metrics import score

POLYANION = {"P", "Si", "B", "As", "Ge"}
HALIDES = {"F", "Cl", "Br", "I"}
CHALCOGENS = {"S", "Se", "Te"}
CHANNELS = ["H", "O", "F", "S", "N", "P", "Fe"]  # placeholder elements dscribe needs, one per channel
CUTOFFS = (3.0, 3.5, 5.0)
GRID = list(itertools.product(CUTOFFS, (1.0, 0.5, 0.2), (3e-3, 1e-2, 3e-2), ("log", "sqrt")))
TARGETS: dict[str, tuple[Callable, Callable]] = {
    "log": (lambda v: np.log(v + 0.05), lambda p: np.exp(p) - 0.05),
    "sqrt": (np.sqrt, lambda p: np.maximum(p, 0.0) ** 2),
}


def channel(element: str, ion: str, elements: set[str]) -> str:
    """The channel of a host atom (see the module docstring)."""
    if element == ion:
        return "H"
    if element == "O":
        return "O"
    if element in HALIDES:
        return "F"
    if element in CHALCOGENS:
        return "P" if {"O", "F"} & elements else "S"  # sulfate S is a cation, sulfide S an anion
    if element == "N" or (element == "C" and "N" in elements):
        return "N"
    if element in POLYANION or element == "C":
        return "P"
    return "Fe"


def soap_blocks(bands: Sequence[Structure], r_cut: float, n_max: int = 6, l_max: int = 4,
                sigma: float = 0.4) -> np.ndarray:
    """(n_bands, 3, dim) normalised SOAP blocks: end points, quarter images, middle image."""
    from ase import Atoms
    from dscribe.descriptors import SOAP

    soap = SOAP(species=CHANNELS, r_cut=r_cut, n_max=n_max, l_max=l_max, sigma=sigma, periodic=True)
    out = []
    for band in bands:
        ion = band[0].specie.symbol
        host = [site.specie.symbol for site in band][5:]
        labels = [channel(e, ion, set(host)) for e in host]
        atoms = Atoms(symbols=labels, positions=band.cart_coords[5:], cell=band.lattice.matrix, pbc=True)
        v = soap.create(atoms, centers=band.cart_coords[:5])
        out.append(np.stack([(v[0] + v[4]) / 2, (v[1] + v[3]) / 2, v[2]]))
    f = np.array(out)
    return f / np.maximum(np.linalg.norm(f, axis=2, keepdims=True), 1e-12)


class SoapKRR:
    """Kernel ridge on precomputed Gram matrices, one per cutoff."""

    def __init__(self, grams: dict[float, np.ndarray], ions: np.ndarray, y: np.ndarray) -> None:
        self.grams, self.same, self.y = grams, ions[:, None] == ions[None, :], y

    def kernel(self, r_cut: float, mismatch: float) -> np.ndarray:
        return self.grams[r_cut] * np.where(self.same, 1.0, mismatch)

    def fit_predict(self, hp: tuple, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        r_cut, mismatch, ridge, target = hp
        fwd, inv = TARGETS[target]
        K = self.kernel(r_cut, mismatch)
        z = fwd(self.y[train])
        alpha = np.linalg.solve(K[np.ix_(train, train)] + ridge * np.eye(train.sum()), z - z.mean())
        return np.maximum(inv(K[np.ix_(test, train)] @ alpha + z.mean()), 0.0)

    def inner_mae(self, hp: tuple, folds: np.ndarray, outer: int) -> float:
        err = []
        for k in np.unique(folds[folds != outer]):
            te = folds == k
            tr = (folds != k) & (folds != outer)
            err.append(np.abs(self.fit_predict(hp, tr, te) - self.y[te]))
        return float(np.mean(np.concatenate(err)))

    def nested_oof(self, folds: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
        """Out-of-fold predictions, each fold's hyper-parameters chosen on the other four."""
        out, chosen = np.zeros(len(self.y)), []
        for k in np.unique(folds):
            hp = min(GRID, key=lambda h: self.inner_mae(h, folds, k))
            out[folds == k] = self.fit_predict(hp, folds != k, folds == k)
            chosen.append(hp)
        return out, chosen


def two_stage(y: np.ndarray, first: np.ndarray, second: np.ndarray, other: np.ndarray, folds: np.ndarray,
              mix_is_gate: bool) -> np.ndarray:
    """Nested blend of three: mix = w*first + (1-w)*second (w on a 0.1 grid), then the gated rule
    between other and mix (mix_is_gate: the gate looks at mix) or between mix and other."""
    out = np.zeros(len(y))
    for k in np.unique(folds):
        te, tr = folds == k, folds != k
        best = None
        for w in np.round(np.linspace(0, 1, 11), 2):
            m = w * first + (1 - w) * second
            a, b = (other, m) if mix_is_gate else (m, other)
            rule = best_rule(y[tr], a[tr], b[tr])
            loss = _loss(rule.apply(a[tr], b[tr]), y[tr], "mse")
            if best is None or loss < best[0]:
                best = (loss, w, rule)
        _, w, rule = best
        m = w * first + (1 - w) * second
        a, b = (other, m) if mix_is_gate else (m, other)
        out[te] = rule.apply(a[te], b[te])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bands, y, _ = load_split("train")
    folds = load_folds()
    ions = np.array([b[0].specie.symbol for b in bands])
    grams = {}
    for r in CUTOFFS:
        f = soap_blocks(bands, r)
        grams[r] = sum((f[:, j] @ f[:, j].T) ** 2 for j in range(3)) / 3
    krr, chosen = SoapKRR(grams, ions, y).nested_oof(folds)
    alignn = train_oof(load_model("alignn"))[1]
    desc = train_oof(load_model("descriptor-et"))[1]

    def brief(p: np.ndarray) -> dict:
        s = score(y, p)
        return {k: round(float(s[k]), 4) for k in ("mae", "r2", "accuracy")}

    rows = {
        "soap-krr": brief(krr),
        "alignn": brief(alignn),
        "descriptor-et": brief(desc),
        "blend alignn|descriptor-et (shipped)": brief(nested_rule_oof(y, alignn, desc, folds)[0]),
        "blend soap-krr|descriptor-et": brief(nested_rule_oof(y, krr, desc, folds)[0]),
        "blend (alignn+soap-krr)|descriptor-et": brief(two_stage(y, alignn, krr, desc, folds, False)),
        "blend alignn|(descriptor-et+soap-krr)": brief(two_stage(y, desc, krr, alignn, folds, True)),
        "mean of the three": brief((alignn + krr + desc) / 3),
    }
    resid = np.corrcoef(np.vstack([krr - y, alignn - y, desc - y]))
    info = {"hyper_parameters_per_fold": [list(h) for h in chosen],
            "residual_correlation": {"soap-krr~descriptor-et": round(float(resid[0, 2]), 3),
                                     "soap-krr~alignn": round(float(resid[0, 1]), 3),
                                     "alignn~descriptor-et": round(float(resid[1, 2]), 3)}}
    if args.json:
        print(json.dumps({"grouped_cv": rows, **info}, indent=1))
        return
    for name, s in rows.items():
        print(f"{name:42s} MAE {s['mae']:.4f}  R2 {s['r2']:.3f}  acc {100 * s['accuracy']:.1f}%")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
