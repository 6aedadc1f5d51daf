"""Pictures: the shared way to write a figure, and a campaign's barrier histogram (the model's
parity plots and confusion matrices live in ``screener.model.plots``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed) and free it."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def barrier_histogram(barriers: Sequence[float], threshold: float, path: Path) -> Path:
    """Histogram of predicted hop barriers with the flagging threshold marked."""
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.hist(list(barriers), bins=40, color="#4477aa", alpha=0.85)
    ax.axvline(threshold, color="#cc3311", ls="--", label=f"threshold {threshold:.2f} eV")
    ax.set_xlabel("predicted E_m (eV)")
    ax.set_ylabel("hops")
    ax.legend(frameon=False)
    return save_figure(fig, path)
