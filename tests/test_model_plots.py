"""Figures are written as PNG files."""

from __future__ import annotations

import numpy as np

from screener.model.plots import confusion_plot, parity_plot


def test_plots_write_png(tmp_path):
    t = np.array([0.2, 0.5, 0.9, 1.5, 0.4])
    p = np.array([0.3, 0.8, 0.6, 1.4, 0.45])
    for path in (parity_plot(t, p, np.full(5, 0.1), tmp_path / "parity.png", "t"),
                 parity_plot(t, p, None, tmp_path / "parity_nostd.png"),
                 confusion_plot(t, p, tmp_path / "sub" / "confusion.png", "t")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
