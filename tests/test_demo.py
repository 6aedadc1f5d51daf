"""`screener demo` from the command line, as the README runs it (slow: about two minutes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_prints_a_ranked_table_and_reuses_the_store(tmp_path):
    env = {**os.environ, "SCREENER_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "screener.cli", "demo"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "the 20 best hosts" in first.stdout and "Traceback" not in first.stderr
    rows = [ln for ln in first.stdout.splitlines() if ln.startswith("│")]
    assert len(rows) == 20
    barriers = [float(r.split("│")[6]) for r in rows]
    assert barriers == sorted(barriers)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "0 Fireworks run" in again.stdout
    assert "0 new, 440 already stored" in again.stderr
