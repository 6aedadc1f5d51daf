"""Parity and confusion-matrix figures of barrier predictions (matplotlib Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from screener.config import DEFAULT_THRESHOLD_EV  # noqa: E402
from screener.model.metrics import Z90, score  # noqa: E402
from screener.plots import save_figure  # noqa: E402


def parity_plot(
    y_true: Sequence[float], y_pred: Sequence[float], y_std: Sequence[float] | None, path: Path,
    title: str = "", threshold: float = DEFAULT_THRESHOLD_EV,
) -> Path:
    """Predicted vs DFT E_m with 90% error bars and the threshold lines; writes a PNG."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    s = score(t, p, y_std, threshold=threshold)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=120)
    yerr = None if y_std is None else Z90 * np.asarray(y_std, float)
    ax.errorbar(t, p, yerr=yerr, fmt="o", ms=3, alpha=0.6, elinewidth=0.6, capsize=0)
    hi = float(max(t.max(), p.max())) * 1.05
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    ax.axvline(threshold, color="grey", ls="--", lw=0.7)
    ax.axhline(threshold, color="grey", ls="--", lw=0.7)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="DFT E_m (eV)", ylabel="predicted E_m (eV)")
    ax.set_title(f"{title}\nMAE {s['mae']:.3f} eV, R2 {s['r2']:.2f}, acc {s['accuracy']:.0%}",
                 fontsize=9)
    return save_figure(fig, path)


def confusion_plot(
    y_true: Sequence[float], y_pred: Sequence[float], path: Path, title: str = "",
    threshold: float = DEFAULT_THRESHOLD_EV,
) -> Path:
    """2x2 confusion matrix of good (E_m <= threshold) vs poor conductors; writes a PNG."""
    t = np.asarray(y_true, float) <= threshold
    p = np.asarray(y_pred, float) <= threshold
    m = np.array([[np.sum(t & p), np.sum(t & ~p)], [np.sum(~t & p), np.sum(~t & ~p)]])
    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=120)
    ax.imshow(m, cmap="Blues")
    labels = ["good", "poor"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="DFT")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_title(f"{title} (E_m <= {threshold} eV = good)", fontsize=9)
    return save_figure(fig, path)
