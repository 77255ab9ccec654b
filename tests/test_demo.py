"""The README's main job: ``python -m jaxem demo``."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_picks_two_clusters():
    completed = subprocess.run(
        [sys.executable, "-m", "jaxem", "demo", "--restarts", "4", "--max-components", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "Chosen by BIC: K = 2" in out
    assert out.count("<- best") == 1
    assert "once compiled" in out
