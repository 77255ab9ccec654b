"""Differentiating through a fit (implicit differentiation at the EM fixed
point: jaxem.fit's result and jaxem.fixed_point), in float64.

References: central finite differences of full refits (warm-started at the
solution, so at the same optimum), reverse-mode differentiation unrolled
through many EM iterations, and the envelope theorem for the objective.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem

pytestmark = pytest.mark.usefixtures("x64")

FIT = dict(key=jax.random.key(0), tol=0.0, max_iter=1000)
# A MAP model (the prior's resolved hyperparameters are fixed leaves of the
# parameters): simplex, real, positive and fixed coordinates (diagonal
# covariances: full ones compile twice as slowly; the positive-definite
# coordinates are tested in test_information.py). No reg_covar, so that the
# fixed point maximises the objective exactly.
MODEL = jaxem.GaussianMixture(
    2, "diag", reg_covar=0.0, prior=jaxem.GaussianMixturePrior(mean_precision=0.5)
)


def data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    x = rng.normal(size=(n, 2)) * np.where(labels, 0.6, 1.0)[:, None]
    return jnp.asarray(x + np.where(labels, 2.5, -1.0)[:, None])


def summary(params):
    """A scalar that reads every kind of parameter."""
    return (
        params.weights[0]
        + jnp.sum(params.means * jnp.array([[1.0, -0.5], [0.3, 2.0]]))
        + jnp.sum(params.covariances * jnp.array([[1.0, 0.2], [0.4, 1.0]]))
    )


@pytest.fixture(scope="module")
def solution():
    with jax.enable_x64(True):
        x = data()
        weights = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, x.shape[0]))
        start = MODEL.init(jax.random.key(0), x, weights)
        yield x, weights, refit(x, weights, start).params


def refit(x, weights, params):
    """The fit warm-started at ``params`` (same optimum; same compiled program)."""
    return jaxem.fit(MODEL, x, weights=weights, init_params=params, **FIT)


def test_gradients_match_finite_differences_of_refits_and_under_vmap(solution):
    x, weights, params = solution
    (out, objective), vjp = jax.vjp(
        lambda x, w: (lambda r: (r.params, r.log_likelihood))(refit(x, w, params)), x, weights
    )
    # Warm-started at the optimum, the refit stays there.
    np.testing.assert_allclose(out.means, params.means, atol=1e-10)

    grad_params = jax.grad(summary)(out)
    x_bar, w_bar = vjp((grad_params, jnp.zeros_like(objective)))
    x_obj, w_obj = vjp((jax.tree.map(jnp.zeros_like, out), jnp.ones_like(objective)))

    def loss(x, w):
        result = refit(x, w, params)
        return np.array([summary(result.params), result.log_likelihood])

    h = 1e-5
    for i, j in [(0, 0), (7, 1), (41, 0)]:
        e = jnp.zeros_like(x).at[i, j].set(h)
        fd = (loss(x + e, weights) - loss(x - e, weights)) / (2 * h)
        np.testing.assert_allclose([x_bar[i, j], x_obj[i, j]], fd, rtol=1e-6, atol=1e-9)
    for i in [3, 50]:
        e = jnp.zeros_like(weights).at[i].set(h)
        fd = (loss(x, weights + e) - loss(x, weights - e)) / (2 * h)
        np.testing.assert_allclose([w_bar[i], w_obj[i]], fd, rtol=1e-6, atol=1e-9)
    # Weights are relative: scaling them all changes nothing.
    np.testing.assert_allclose(jnp.dot(w_bar, weights), 0.0, atol=1e-9)

    # Under jax.vmap over datasets (the first is x): the same gradient.
    noise = jax.random.normal(jax.random.key(1), (2, *x.shape))
    xs = jnp.concatenate([x[None], x + 0.01 * noise])
    batched = jax.vmap(jax.grad(lambda x: summary(refit(x, weights, params).params)))(xs)
    np.testing.assert_allclose(batched[0], x_bar, rtol=1e-9, atol=1e-12)
    assert not np.allclose(batched[1], batched[0], rtol=1e-4)

    # The objective is maximised over the parameters: its total derivative
    # is its partial one (the parameters held fixed).
    def direct(x, w):
        w = w / jnp.mean(w)
        return (jnp.sum(w * MODEL.log_prob(params, x)) + MODEL.log_prior(params)) / jnp.sum(w)

    x_direct, w_direct = jax.grad(direct, argnums=(0, 1))(x, weights)
    np.testing.assert_allclose(x_obj, x_direct, atol=1e-8)
    np.testing.assert_allclose(w_obj, w_direct, atol=1e-8)


def make_model(reg_covar):
    """``MODEL`` with its ``reg_covar`` (a model field) as a hyperparameter."""
    return jaxem.GaussianMixture(2, "diag", reg_covar=reg_covar, prior=MODEL.prior)


def test_matches_unrolled_differentiation_and_hyperparameters(solution):
    """``fixed_point`` against reverse mode through 150 EM iterations from
    the solution, with respect to the data, the weights, a prior
    hyperparameter (a fixed leaf of the parameters) and a model field
    (``reg_covar``, traced)."""
    x, weights, params = solution
    kappa = params.prior.mean_precision
    with_kappa = lambda kappa: params._replace(prior=params.prior._replace(mean_precision=kappa))

    def implicit(x, w, kappa, reg_covar):
        start = with_kappa(kappa)
        fitted = jaxem.fixed_point(make_model, start, x, w, hyperparameters=reg_covar)
        return summary(fitted)

    def unrolled(x, w, kappa, reg_covar):
        model = make_model(reg_covar)
        w = w / jnp.mean(w)

        def step(p, _):
            stats, _ = model.e_step(p, x, w)
            return model.m_step(stats, p, ())[0], None

        return summary(jax.lax.scan(step, with_kappa(kappa), length=150)[0])

    args = (x, weights, kappa, 0.0)
    expected = jax.jit(jax.grad(unrolled, argnums=(0, 1, 2, 3)))(*args)
    got = jax.jit(jax.grad(implicit, argnums=(0, 1, 2, 3)))(*args)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    assert abs(float(got[2])) > 1e-3 and abs(float(got[3])) > 1e-3  # both matter

    # And against finite differences of refits in the prior hyperparameter.
    h = 1e-5
    refit_at = lambda kappa: float(summary(refit(x, weights, with_kappa(kappa)).params))
    fd = (refit_at(kappa + h) - refit_at(kappa - h)) / (2 * h)
    np.testing.assert_allclose(got[2], fd, rtol=1e-6)


def test_learning_a_prior_hyperparameter_on_held_out_data():
    """Gradient ascent on the held-out log-likelihood in the log prior
    strength κ₀ (a fixed leaf of the parameters): each step refits, warm
    started, and differentiates the fixed point."""
    full = data(3, 120)
    x, held_out = full[::2], full[1::2]
    model = MODEL
    params = jaxem.fit(model, x, init_params=model.init(jax.random.key(0), x), **FIT).params

    def held_out_log_lik(log_kappa, params):
        start = params._replace(prior=params.prior._replace(mean_precision=jnp.exp(log_kappa)))
        return jnp.mean(model.log_prob(jaxem.fixed_point(model, start, x), held_out))

    value_and_grad = jax.jit(jax.value_and_grad(held_out_log_lik))
    log_kappa = jnp.log(params.prior.mean_precision)
    values = []
    for _ in range(4):
        value, grad = value_and_grad(log_kappa, params)
        values.append(float(value))
        log_kappa = log_kappa + 2.0 * grad
        start = params._replace(prior=params.prior._replace(mean_precision=jnp.exp(log_kappa)))
        params = jaxem.fit(model, x, init_params=start, **FIT).params
    assert values[-1] > values[0]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
