"""SQUAREM acceleration: ``fit(accelerate="squarem")`` and ``squarem_step``.

References: plain EM itself (the same optimum, to 1e-8 in float64; the
accelerated fit is a fixed point of the EM map), two plain EM steps (a
SQUAREM step with ``step_max = 1`` is exactly that), and monotonicity for a
model of every latent structure.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from tests.families import FAMILIES

pytestmark = pytest.mark.usefixtures("x64")


def _clusters(separation):
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.0, 1.0, (150, 2)), rng.normal(separation, 1.3, (150, 2))])


@pytest.fixture(scope="module")
def overlapping():
    """Two heavily overlapping 2-D Gaussian clusters: EM's slow case (plain
    EM takes about 1150 iterations to tol 1e-10)."""
    return _clusters(1.5)


GMM = jaxem.GaussianMixture(2, covariance_type="full")


def _fit(x, accelerate, tol):
    return jaxem.fit(GMM, x, key=jax.random.key(0), accelerate=accelerate, max_iter=3000, tol=tol)


@pytest.fixture(scope="module")
def fits(overlapping):
    with jax.enable_x64(True):  # (module fixtures are set up before "x64")
        return _fit(overlapping, None, 1e-10), _fit(overlapping, "squarem", 1e-10)


def _sorted(params):
    order = jnp.argsort(params.means[:, 0])
    return jax.tree.map(lambda leaf: leaf[order], params)


def test_same_optimum_as_plain_em():
    # Less overlap, so that 3000 plain EM iterations reach the optimum to
    # rounding (tol=0 runs them all); SQUAREM runs its 3000 iterations too.
    x = _clusters(2.0)
    plain, fast = _fit(x, None, 0.0), _fit(x, "squarem", 0.0)
    for a, b in zip(
        jax.tree.leaves(_sorted(plain.params)), jax.tree.leaves(_sorted(fast.params)), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-8, rtol=0)
    assert float(fast.log_likelihood) >= float(plain.log_likelihood) - 1e-12
    # The accelerated solution is a fixed point of the EM map.
    moved, _ = jaxem.em_step(GMM, fast.params, x)
    for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(fast.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8, rtol=0)


def test_fewer_m_steps_on_a_slow_problem(fits):
    plain, fast = fits
    assert bool(plain.converged[0]) and bool(fast.converged[0])
    assert float(fast.log_likelihood) >= float(plain.log_likelihood) - 1e-10
    assert int(plain.num_m_steps[0]) == int(plain.num_iter[0])
    # Three times fewer evaluations of the EM map at least (measured ~10x).
    assert 3 * int(fast.num_m_steps[0]) < int(plain.num_m_steps[0])
    assert 2 * int(fast.num_iter[0]) <= int(fast.num_m_steps[0]) <= 3 * int(fast.num_iter[0])


def _monotone(history, rtol=1e-10):
    history = np.asarray(history)
    history = history[np.isfinite(history)]
    steps = np.diff(history)
    assert np.all(steps >= -rtol * np.maximum(1.0, np.abs(history[1:]))), steps.min()


def test_history_is_monotone(fits):
    for result in fits:
        _monotone(result.history[0])
        assert not bool(result.decreased[0])


def test_step_max_one_is_two_em_steps(overlapping):
    params = GMM.init(jax.random.key(3), overlapping)
    step = jaxem.squarem_step(GMM, params, overlapping, step_max=1.0)
    once, before = jaxem.em_step(GMM, params, overlapping)
    twice, middle = jaxem.em_step(GMM, once, overlapping)
    _, after = jaxem.em_step(GMM, twice, overlapping)
    for a, b in zip(jax.tree.leaves(step.params), jax.tree.leaves(twice), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(step.log_likelihood, before, rtol=1e-13)
    np.testing.assert_allclose(step.new_log_likelihood, after, rtol=1e-13)
    assert int(step.num_m_steps) == 2
    assert middle >= before


def test_squarem_steps_climb_and_grow_their_step(overlapping):
    params = GMM.init(jax.random.key(3), overlapping)
    step_max, values = 1.0, []
    for _ in range(6):
        step = jaxem.squarem_step(GMM, params, overlapping, step_max=step_max)
        values.append(float(step.log_likelihood))
        assert float(step.new_log_likelihood) >= float(step.log_likelihood) - 1e-12
        params, step_max = step.params, step.step_max
    assert np.all(np.diff(values) >= -1e-12)
    assert float(step_max) > 1.0  # accepted long steps raised the bound


def test_restarts_and_vmap_match_separate_fits(overlapping):
    # (the options of the fixture's fits: the single fits reuse their program)
    x = jnp.asarray(overlapping)
    options = {"max_iter": 3000, "tol": 1e-8, "accelerate": "squarem"}
    keys = jaxem.restart_keys(jax.random.key(0), 3)
    batched = jaxem.fit(GMM, x, key=jax.random.key(0), num_restarts=3, **options)
    for r in range(3):
        alone = jaxem.fit(GMM, x, key=keys[r], **options)
        np.testing.assert_allclose(
            batched.restart_log_likelihood[r], alone.log_likelihood, rtol=1e-10
        )
        assert int(batched.num_m_steps[r]) == int(alone.num_m_steps[0])
    datasets = jnp.stack([x, x[::-1] * 1.5])
    vmapped = jax.vmap(lambda d: jaxem.fit(GMM, d, key=jax.random.key(0), **options))(datasets)
    for i in range(2):
        alone = jaxem.fit(GMM, datasets[i], key=jax.random.key(0), **options)
        np.testing.assert_allclose(vmapped.log_likelihood[i], alone.log_likelihood, rtol=1e-9)
        assert int(vmapped.num_m_steps[i, 0]) == int(alone.num_m_steps[0])


def test_no_recompilation_for_new_values(overlapping):
    options = {"max_iter": 3000, "tol": 1e-8, "accelerate": "squarem"}
    jaxem.fit(GMM, overlapping, key=jax.random.key(0), **options)
    from jaxem import _driver

    before = _driver._jitted_fit._cache_size()
    jaxem.fit(GMM, overlapping * 2.0 + 1.0, key=jax.random.key(5), **options)
    assert _driver._jitted_fit._cache_size() == before


def test_float32(overlapping):
    x = np.asarray(overlapping, np.float32)
    result = jaxem.fit(GMM, x, key=jax.random.key(0), max_iter=200, tol=1e-6, accelerate="squarem")
    assert result.params.means.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(result.params.covariances)))
    assert not bool(result.decreased[0]) and not bool(result.nonfinite[0])
    _monotone(result.history[0], rtol=1e-5)


def test_bad_options(overlapping):
    with pytest.raises(ValueError, match="accelerate must be None or one of"):
        jaxem.fit(GMM, overlapping, key=jax.random.key(0), accelerate="aitken")
    with pytest.raises(ValueError, match="accelerate does not apply with stream=True"):
        jaxem.fit(
            GMM, overlapping, key=jax.random.key(0), stream=True, chunk_size=50,
            accelerate="squarem",
        )  # fmt: skip
    params = GMM.init(jax.random.key(0), overlapping)
    with pytest.raises(ValueError, match="step_max must be >= 1"):
        jaxem.squarem_step(GMM, params, overlapping, step_max=0.5)


# One model of every latent structure, and components of every kind
# (closed form, gradient M-steps, a prior, missing values): SQUAREM's
# extrapolation runs in each one's free coordinates.
STRUCTURES = [
    "gmm-tied",
    "poisson",
    "student-t",
    "mixture-of-fa",
    "factor-analysis",
    "mixture-of-mixtures",
    "logistic",
    "experts-linear",
    "hmm",
    "lds",
    "log-joint",
]


@pytest.mark.parametrize("name", STRUCTURES)
def test_monotone_for_every_structure(name):
    family = FAMILIES[name]
    x = family.data(np.random.default_rng(1))
    result = jaxem.fit(
        family.make(), x, key=jax.random.key(0), max_iter=8, tol=0.0, accelerate="squarem"
    )
    assert not bool(result.nonfinite[0]), name
    assert not bool(result.decreased[0]), name
    _monotone(result.history[0], rtol=1e-9)
    assert int(result.num_m_steps[0]) >= 2 * (int(result.num_iter[0]) - 1)
