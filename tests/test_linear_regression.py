"""Mixtures of linear regressions (jaxem.Mixture(LinearRegression(), K))
against references.

References, in float64: scipy.stats.norm densities, a plain numpy weighted
least-squares EM iteration (ridge and inverse-gamma prior included),
brute-force repetition of rows for integer weights, and automatic
differentiation of Q + log prior (the closed-form M-step must be a
stationary point). Sizes are tiny and the compiled functions few.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st
from scipy.special import logsumexp

import jaxem
from jaxem import LinearRegression
from jaxem.models.components import LinearRegressionParams

pytestmark = pytest.mark.usefixtures("x64")

K, P = 3, 2


def make_regressions(seed=0, n=90, num_inputs=P, num_targets=None, num_components=K):
    """Inputs, and targets from ``num_components`` random linear models."""
    rng = np.random.default_rng(seed)
    t = 1 if num_targets is None else num_targets
    inputs = rng.normal(size=(n, num_inputs))
    coefficients = rng.normal(scale=3.0, size=(num_components, num_inputs, t))
    intercepts = rng.normal(scale=3.0, size=(num_components, t))
    labels = np.arange(n) % num_components
    targets = np.einsum("np,npt->nt", inputs, coefficients[labels]) + intercepts[labels]
    targets = targets + 0.5 * rng.normal(size=targets.shape)
    return inputs, (targets[:, 0] if num_targets is None else targets)


def random_params(rng, num_inputs=P, num_targets=None, k=K, fit_intercept=True):
    t = () if num_targets is None else (num_targets,)
    intercepts = rng.normal(scale=2.0, size=(k, *t)) if fit_intercept else np.zeros((k, *t))
    return jaxem.models.MixtureParams(
        jnp.asarray(rng.dirichlet(2 * np.ones(k))),
        LinearRegressionParams(
            jnp.asarray(rng.normal(size=(k, num_inputs, *t))),
            jnp.asarray(intercepts),
            jnp.asarray(rng.uniform(0.5, 4.0, size=(k, *t))),
        ),
    )


def as_matrices(params):
    """(K, P, T) coefficients, (K, T) intercepts and variances in numpy."""
    c = params.components
    k, p = c.coefficients.shape[:2]
    return (
        np.asarray(c.coefficients).reshape(k, p, -1),
        np.asarray(c.intercepts).reshape(k, -1),
        np.asarray(c.variances).reshape(k, -1),
    )


def numpy_log_joint(inputs, targets, params):
    coefficients, intercepts, variances = as_matrices(params)
    y = targets.reshape(len(targets), -1)
    return np.stack(
        [
            np.log(params.weights[k])
            + st.norm(inputs @ coefficients[k] + intercepts[k], np.sqrt(variances[k]))
            .logpdf(y)
            .sum(1)
            for k in range(len(params.weights))
        ],
        axis=1,
    )


def numpy_em_step(inputs, targets, w, params, component):
    """One weighted EM iteration: per-component weighted (ridge) least
    squares, then the (MAP) variance, floored at reg_covar."""
    n, p = inputs.shape
    y = targets.reshape(n, -1)
    joint = numpy_log_joint(inputs, targets, params)
    log_norm = logsumexp(joint, axis=1)
    resp = np.exp(joint - log_norm[:, None]) * w[:, None]
    nk = resp.sum(0)
    design = np.hstack([inputs, np.ones((n, 1))]) if component.fit_intercept else inputs
    penalty = np.diag([1.0] * p + [0.0] * (design.shape[1] - p)) * component.coefficient_precision
    coefficients, intercepts, variances = [], [], []
    for k in range(len(nk)):
        r = resp[:, k]
        solution = np.linalg.solve(
            design.T @ (r[:, None] * design) + penalty, design.T @ (r[:, None] * y)
        )
        rss = r @ np.square(y - design @ solution)
        numerator = rss + component.coefficient_precision * np.square(solution[:p]).sum(0)
        denominator = nk[k] + (p if component.coefficient_precision > 0 else 0)
        if component.variance_prior is not None:
            a, b = component.variance_prior
            numerator, denominator = numerator + 2 * b, denominator + 2 * (a + 1)
        coefficients.append(solution[:p])
        intercepts.append(solution[p] if component.fit_intercept else np.zeros(y.shape[1]))
        variances.append(np.maximum(numerator / denominator, component.reg_covar))
    return (
        nk / nk.sum(),
        np.stack(coefficients),
        np.stack(intercepts),
        np.stack(variances),
        (w * log_norm).sum() / w.sum(),
    )


# ---------------------------------------------------------------- densities


def test_log_prob_matches_scipy_one_and_two_targets():
    rng = np.random.default_rng(1)
    model = jaxem.Mixture(LinearRegression(), K)
    log_prob = jax.jit(model.log_prob)
    for num_targets in (None, 2):
        inputs, targets = make_regressions(n=40, num_targets=num_targets)
        params = random_params(rng, num_targets=num_targets)
        expected = logsumexp(numpy_log_joint(inputs, targets, params), axis=1)
        np.testing.assert_allclose(log_prob(params, (inputs, targets)), expected, rtol=1e-12)


# ---------------------------------------------------------------- one step

STEP_CONFIGS = [
    pytest.param(LinearRegression(reg_covar=1e-4), None, id="one-target"),
    pytest.param(
        LinearRegression(coefficient_precision=2.0, variance_prior=(2.0, 0.5)),
        2,
        id="two-targets-ridge-inverse-gamma",
    ),
    pytest.param(LinearRegression(fit_intercept=False), None, id="no-intercept"),
]


@pytest.mark.parametrize(("component", "num_targets"), STEP_CONFIGS)
def test_weighted_em_step_matches_numpy(component, num_targets):
    rng = np.random.default_rng(4)
    inputs, targets = make_regressions(num_targets=num_targets)
    w = rng.uniform(0.0, 3.0, size=len(inputs))
    params = random_params(rng, num_targets=num_targets, fit_intercept=component.fit_intercept)
    model = jaxem.Mixture(component, K)
    new, objective = jaxem.em_step(model, params, (inputs, targets), weights=w)
    w = w * (len(w) / w.sum())  # (weights are relative: the prior meets them at mean one)
    weights, coefficients, intercepts, variances, expected = numpy_em_step(
        inputs, targets, w, params, component
    )
    shape = params.components.coefficients.shape
    np.testing.assert_allclose(new.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(
        new.components.coefficients, coefficients.reshape(shape), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        new.components.intercepts, intercepts.reshape(shape[:1] + shape[2:]), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        new.components.variances, variances.reshape(shape[:1] + shape[2:]), rtol=1e-9
    )
    prior = jaxem.Mixture(component, K).log_prior(params)
    np.testing.assert_allclose(objective, expected + prior / w.sum(), rtol=1e-12)


def test_m_step_is_a_stationary_point_of_q_plus_log_prior():
    """With the responsibilities fixed, the gradient of Q + log prior with
    respect to (coefficients, intercepts, log variances) vanishes at the
    M-step's parameters (ridge and inverse-gamma prior included)."""
    rng = np.random.default_rng(6)
    inputs, targets = make_regressions(num_targets=2)
    component = LinearRegression(coefficient_precision=2.0, variance_prior=(2.0, 0.5))
    model = jaxem.Mixture(component, K)
    params = random_params(rng, num_targets=2)
    x = (jnp.asarray(inputs), jnp.asarray(targets))

    @jax.jit
    def m_step_and_gradient(params, x):
        resp = model.posterior(params, x)
        stats = component.statistics(x, resp, params.components)
        new, _ = component.maximize(stats, jnp.sum(resp, axis=0), params.components, ())

        def objective(free):
            coefficients, intercepts, log_variances = free
            candidate = LinearRegressionParams(coefficients, intercepts, jnp.exp(log_variances))
            log_lik = component.log_likelihoods(component.prepare(candidate), x)
            return jnp.sum(resp * log_lik) + component.log_prior(candidate)

        return jax.grad(objective)((new.coefficients, new.intercepts, jnp.log(new.variances)))

    for gradient in m_step_and_gradient(params, x):
        np.testing.assert_allclose(gradient, 0.0, atol=1e-8)


def test_integer_weights_equal_repeated_rows():
    """Weights 0, 1, 2 equal dropping, keeping and doubling rows (the
    repeated data have as many rows, so the em_step compiled for the
    one-target configuration above serves both)."""
    rng = np.random.default_rng(5)
    inputs, targets = make_regressions()
    n = len(inputs)
    counts = rng.permutation(np.repeat([0, 1, 2], n // 3))
    repeated = (np.repeat(inputs, counts, axis=0), np.repeat(targets, counts))
    model = jaxem.Mixture(LinearRegression(reg_covar=1e-4), K)
    weighted = plain = random_params(rng)
    for _ in range(3):
        weighted, a = jaxem.em_step(model, weighted, (inputs, targets), weights=counts * 1.0)
        plain, b = jaxem.em_step(model, plain, repeated, weights=np.ones(n))
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(weighted), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_blocked_statistics_add_up():
    """The statistics are additive: row blocks sum to one block's."""
    inputs, targets = make_regressions(n=160, num_targets=2)
    x = (jnp.asarray(inputs), jnp.asarray(targets))
    w = jnp.asarray(np.random.default_rng(0).uniform(size=160))
    params = random_params(np.random.default_rng(1), num_targets=2)
    whole = jaxem.Mixture(LinearRegression(), K, block_size=1000)
    blocked = jaxem.Mixture(LinearRegression(), K, block_size=40)
    both = jax.jit(lambda p, x, w: (whole.e_step(p, x, w), blocked.e_step(p, x, w)))
    one, many = both(params, x, w)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_empty_component_stays_finite():
    """A component with zero weight, and one whose line is far from every
    target (zero responsibilities), keep finite parameters even with
    reg_covar = 0."""
    rng = np.random.default_rng(8)
    inputs, targets = make_regressions()
    params = random_params(rng)
    c = params.components
    params = jaxem.models.MixtureParams(
        jnp.asarray([0.5, 0.5, 0.0]), c._replace(intercepts=c.intercepts.at[1].set(1e6))
    )
    model = jaxem.Mixture(LinearRegression(reg_covar=0.0), K)
    for _ in range(3):
        params, objective = jaxem.em_step(model, params, (inputs, targets), weights=np.ones(90))
        assert np.isfinite(float(objective))
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
    assert bool(jnp.all(params.components.variances > 0))


# ---------------------------------------------------------------- the fit


def test_log_likelihood_never_decreases():
    """EM with a variance floor is exact coordinate ascent: the
    log-likelihood never drops over 30 iterations from a random start
    (tolerance: float64 rounding of a mean of 90 log-densities). The model
    and shapes are the one-target configuration's, so nothing recompiles."""
    inputs, targets = make_regressions(seed=9)
    model = jaxem.Mixture(LinearRegression(reg_covar=1e-4), K)
    params = random_params(np.random.default_rng(9))
    history = []
    for _ in range(30):
        params, objective = jaxem.em_step(
            model, params, (inputs, targets), weights=np.ones(len(inputs))
        )
        history.append(float(objective))
    history = np.asarray(history)
    assert np.all(np.isfinite(history))
    assert np.diff(history).min() >= -1e-12 * np.abs(history).max()
    assert history[-1] > history[0] + 0.1  # it did move


def test_float32_fit_recovers_two_lines():
    """Two well-separated lines, fitted in float32 from the k-means start:
    slopes, intercepts, noise and weights are recovered, the run is finite
    and not flagged as decreasing (1000 eps relative)."""
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-1.0, 1.0, size=(300, 1))
    labels = np.arange(300) % 2
    slopes, intercepts = np.array([2.0, -1.0]), np.array([3.0, -3.0])
    targets = slopes[labels] * inputs[:, 0] + intercepts[labels] + 0.1 * rng.normal(size=300)
    model = jaxem.Mixture(LinearRegression(), 2)
    x = (inputs.astype(np.float32), targets.astype(np.float32))
    result = jaxem.fit(model, x, key=jax.random.key(0), max_iter=50)
    params = result.params.components
    assert params.coefficients.dtype == jnp.float32
    assert not np.any(result.decreased) and not np.any(result.nonfinite)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))
    order = np.argsort(np.asarray(params.intercepts))
    np.testing.assert_allclose(np.asarray(params.coefficients)[order, 0], [-1.0, 2.0], atol=0.05)
    np.testing.assert_allclose(np.asarray(params.intercepts)[order], [-3.0, 3.0], atol=0.05)
    np.testing.assert_allclose(np.asarray(params.variances), 0.01, rtol=0.3)
    np.testing.assert_allclose(result.params.weights, 0.5, atol=0.01)


def test_sample_targets_and_num_parameters():
    component = LinearRegression()
    params = LinearRegressionParams(
        jnp.asarray([[2.0], [-1.0]]), jnp.asarray([3.0, -3.0]), jnp.asarray([0.25, 1.0])
    )
    inputs = jnp.ones((20000, 1))
    labels = jnp.arange(20000) % 2
    draws = np.asarray(jax.jit(component.sample_targets)(jax.random.key(0), params, inputs, labels))
    assert draws.shape == (20000,)
    np.testing.assert_allclose([draws[::2].mean(), draws[1::2].mean()], [5.0, -4.0], atol=0.05)
    np.testing.assert_allclose([draws[::2].var(), draws[1::2].var()], [0.25, 1.0], rtol=0.06)
    assert component.num_parameters(params) == 2 * (1 + 1 + 1)
    wide = LinearRegressionParams(jnp.zeros((3, 4, 2)), jnp.zeros((3, 2)), jnp.ones((3, 2)))
    assert LinearRegression(fit_intercept=False).num_parameters(wide) == 3 * 2 * (4 + 1)
    with pytest.raises(TypeError, match="sample_targets"):
        jaxem.Mixture(component, 2).sample(
            jax.random.key(0), jaxem.models.MixtureParams(jnp.ones(2) / 2, params), 5
        )


# ---------------------------------------------------------------- bad input


def test_bad_data_raises_clear_errors():
    model = jaxem.Mixture(LinearRegression(), 2)
    inputs, targets = make_regressions(n=20, num_components=2)
    key = jax.random.key(0)
    cases = [
        (inputs, TypeError, r"tuple \(inputs, targets\).*single array of shape \(20, 2\)"),
        ((inputs, targets, targets), ValueError, "2 arrays; got 3"),
        (
            (inputs[:, 0], targets),
            ValueError,
            r"inputs \(x\[0\]\) must be a 2-D.*inputs\[:, None\]",
        ),
        (
            (inputs, targets[:, None, None]),
            ValueError,
            r"targets \(x\[1\]\) must have shape \(n,\) or \(n, T\)",
        ),
        ((inputs, targets[:15]), ValueError, r"x\[1\] has 15 rows but x\[0\] has 20"),
        ((inputs[:1], targets[:1]), ValueError, "at least as many observations as components"),
        ((inputs, np.where(np.arange(20) == 3, np.nan, targets)), ValueError, r"x\[1\]\[3\]"),
    ]
    for x, error, message in cases:
        with pytest.raises(error, match=message):
            jaxem.fit(model, x, key=key)
    with pytest.raises(ValueError, match="nothing to fit"):
        jaxem.fit(
            jaxem.Mixture(LinearRegression(fit_intercept=False), 2),
            (inputs[:, :0], targets),
            key=key,
        )
    with pytest.raises(ValueError, match="reg_covar must be a finite number >= 0"):
        LinearRegression(reg_covar=-1.0)
    with pytest.raises(ValueError, match="coefficient_precision must be a finite number >= 0"):
        LinearRegression(coefficient_precision=float("inf"))
    with pytest.raises(ValueError, match="variance_prior"):
        LinearRegression(variance_prior=(0.0, 1.0))
    with pytest.raises(TypeError, match="fit_intercept must be True or False"):
        LinearRegression(fit_intercept="yes")


def test_bad_params_raise_clear_errors():
    inputs, targets = make_regressions(n=20, num_components=2)
    model = jaxem.Mixture(LinearRegression(), 2)
    good = LinearRegressionParams(jnp.zeros((2, P)), jnp.zeros(2), jnp.ones(2))
    weights = jnp.asarray([0.5, 0.5])
    cases = [
        (
            good._replace(coefficients=jnp.zeros((2, P, 1))),
            r"params.coefficients must have shape \(2, 2\) for num_components=2, P=2 inputs and one target",
        ),
        (good._replace(variances=jnp.ones(3)), r"params.variances must have shape \(2,\)"),
        (good._replace(variances=jnp.asarray([1.0, 0.0])), "variances must be positive"),
        (good._replace(intercepts=jnp.asarray([np.nan, 0.0])), "intercepts contains NaN"),
    ]
    for components, message in cases:
        with pytest.raises(ValueError, match=message):
            jaxem.em_step(model, jaxem.models.MixtureParams(weights, components), (inputs, targets))
    no_intercept = jaxem.Mixture(LinearRegression(fit_intercept=False), 2)
    with pytest.raises(ValueError, match="intercepts must be zero when fit_intercept=False"):
        jaxem.em_step(
            no_intercept,
            jaxem.models.MixtureParams(weights, good._replace(intercepts=jnp.ones(2))),
            (inputs, targets),
        )
