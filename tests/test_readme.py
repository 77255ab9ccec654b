"""The README's two set-up commands stay true: CI runs the test command
verbatim, and the demo command names the demo that test_demo.py runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [
        line
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_two_setup_commands():
    demo, tests = setup_commands()
    assert demo.endswith("python -m jaxem demo")
    assert tests.endswith("python -m pytest") and '".[test]"' in tests


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
