"""The README's two set-up commands stay true: CI runs the test command
verbatim, and the demo command names the demo that test_demo.py runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


def python_blocks(section: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    text = readme.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_example_component_is_complete():
    """The Architecture section's example component runs as written (fit
    with restarts), and one of its EM steps is the textbook one in numpy."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from scipy.special import logsumexp

    import jaxem

    (block,) = python_blocks("Architecture")
    namespace: dict = {}
    exec(compile(block, "README.md (Architecture)", "exec"), namespace)
    result = namespace["result"]
    assert np.isfinite(float(result.log_likelihood)) and not bool(np.any(result.decreased))
    found = np.asarray(result.params.components.probs)
    found = found[np.argsort(found[:, 0])]
    np.testing.assert_allclose(found, [[0.2, 0.7], [0.6, 0.1]], atol=0.08)  # the two clusters

    x = np.asarray(namespace["counts"], dtype=np.float32)
    model = jaxem.Mixture(namespace["Geometric"](), 2)
    params = jaxem.models.MixtureParams(
        jnp.array([0.3, 0.7]), namespace["GeometricParams"](jnp.array([[0.3, 0.4], [0.6, 0.8]]))
    )
    new, objective = jaxem.em_step(model, params, x)
    p = np.asarray(params.components.probs, dtype=np.float64)
    joint = np.log(params.weights)[None] + x @ np.log1p(-p).T + np.log(p).sum(1)
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    counts, sum_x = resp.sum(0), resp.T @ x
    np.testing.assert_allclose(new.weights, counts / counts.sum(), rtol=1e-5)
    np.testing.assert_allclose(
        new.components.probs, counts[:, None] / (counts[:, None] + sum_x), rtol=1e-5
    )
    np.testing.assert_allclose(objective, logsumexp(joint, axis=1).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        jaxem.fit(model, x - 0.5, key=jax.random.key(0))
