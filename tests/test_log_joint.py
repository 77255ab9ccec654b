"""Models given only as a log-joint: autodiff E-step, Fisher identity, GEM M-step.

The reference is the closed-form Gaussian mixture: the same model written
as a log-joint must give the same posterior and log-likelihood, gradients of
Q that equal gradients of the log-likelihood at θ_old, and, by gradient
M-steps, the same fitted log-likelihood.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import gammaln
from jax.scipy.stats import multivariate_normal

import jaxem
from jaxem import gem
from jaxem.inference import expected_log_joint, posterior_from_gradient
from tests.conftest import make_blobs

pytestmark = pytest.mark.usefixtures("x64")

K = 3


class GMM(NamedTuple):
    weights: jax.Array
    means: jax.Array
    covariances: jax.Array


def gmm_log_joint(params: GMM, x):
    per_component = jax.vmap(
        lambda mean, cov: multivariate_normal.logpdf(x, mean, cov), out_axes=1
    )(params.means, params.covariances)
    return jnp.log(params.weights) + per_component


GMM_CONSTRAINTS = GMM(gem.simplex, None, gem.positive_definite)


def gmm_init_from(closed_form_params):
    return GMM(*closed_form_params[:3])


class PoissonMixture(NamedTuple):
    logits: jax.Array
    log_rates: jax.Array


def poisson_log_joint(params: PoissonMixture, x):
    rates = jnp.exp(params.log_rates)  # (K, D)
    per_component = (
        x @ params.log_rates.T - jnp.sum(rates, axis=1) - jnp.sum(gammaln(x + 1.0), 1)[:, None]
    )
    return jax.nn.log_softmax(params.logits) + per_component


@pytest.fixture(scope="module")
def data():
    with jax.enable_x64(True):
        x = jnp.asarray(make_blobs(seed=3, n=150, num_components=K))
        closed = jaxem.GaussianMixture(K, reg_covar=0.0)
        start = jax.jit(closed.init)(jax.random.key(0), x)
        return x, closed, start


def gmm_random_init(key, x, num_components=K):
    rows = jax.random.choice(key, x.shape[0], (num_components,), replace=False)
    cov = jnp.broadcast_to(jnp.cov(x.T), (num_components, x.shape[1], x.shape[1]))
    return GMM(jnp.full(num_components, 1.0 / num_components), x[rows], cov)


def gmm_model(gradient_step=None, **kwargs):
    return jaxem.LogJointModel(
        gmm_log_joint, gmm_random_init, gradient_step=gradient_step, **kwargs
    )


def test_autodiff_posterior_and_log_likelihood_equal_the_closed_form(data):
    x, closed, start = data
    weights = jnp.linspace(0.5, 2.0, x.shape[0])
    model = gmm_model()

    @jax.jit
    def evaluate(start, x, weights):
        params = gmm_init_from(start)
        stats, log_lik = model.e_step(params, x, weights)
        return (
            stats.values,
            log_lik,
            model.log_prob(params, x),
            closed.e_step(start, x, weights)[1],
            closed.posterior(start, x),
            closed.log_prob(start, x),
        )

    resp, log_lik, log_prob, closed_log_lik, closed_resp, closed_log_prob = evaluate(
        start, x, weights
    )
    np.testing.assert_allclose(log_lik, closed_log_lik, rtol=1e-12)
    np.testing.assert_allclose(resp, closed_resp * weights[:, None], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(log_prob, closed_log_prob, rtol=1e-12)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_fisher_identity(family, data):
    """∇θ log p(x | θ) = ∇θ Q(θ, θ_old) at θ = θ_old."""
    if family == "gaussian":
        x, _, start = data
        log_joint, params = gmm_log_joint, gmm_init_from(start)
    else:
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.poisson([[1.0, 5.0], [6.0, 2.0]][0], size=(80, 2)), jnp.float64)
        log_joint = poisson_log_joint
        params = PoissonMixture(
            jnp.array([0.3, -0.2]), jnp.log(jnp.array([[1.5, 4.0], [5.0, 1.0]]))
        )

    @jax.jit
    def gradients(params, x):
        log_lik = lambda p: jnp.sum(jax.nn.logsumexp(log_joint(p, x), axis=1))
        resp, _ = posterior_from_gradient(log_joint(params, x))
        q = lambda p: expected_log_joint(resp, log_joint(p, x))
        return jax.grad(log_lik)(params), jax.grad(q)(params)

    grad_log_lik, grad_q = gradients(params, x)
    for a, b in zip(jax.tree.leaves(grad_log_lik), jax.tree.leaves(grad_q), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_gem_reaches_the_closed_form_fit(data):
    """Gradient M-steps (L-BFGS in the unconstrained space) from the same
    start reach the closed-form EM fit's log-likelihood, monotonically."""
    x, closed, start = data
    model = gmm_model(gem.GradientMStep(optax.lbfgs(), num_steps=15, constraints=GMM_CONSTRAINTS))
    key = jax.random.key(0)
    reference = jaxem.fit(closed, x, key=key, init_params=start, max_iter=500, tol=1e-10)
    result = jaxem.fit(model, x, key=key, init_params=gmm_init_from(start), max_iter=300, tol=1e-10)
    assert not bool(result.decreased[0])
    np.testing.assert_allclose(result.log_likelihood, reference.log_likelihood, rtol=1e-4)
    history = np.asarray(result.history[0])
    history = history[np.isfinite(history)]
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))


def test_closed_form_override_equals_the_gaussian_mixture_m_step(data):
    x, closed, start = data

    def m_step(resp, x, params):
        counts = jnp.sum(resp, axis=0)
        means = (resp.T @ x) / counts[:, None]
        centred = x[None] - means[:, None]
        covs = jnp.einsum("nk,knd,kne->kde", resp, centred, centred) / counts[:, None, None]
        return GMM(counts / jnp.sum(counts), means, covs)

    model = gmm_model(m_step_fn=m_step)
    assert model.gradient_step is None
    new, log_lik = jaxem.em_step(model, gmm_init_from(start), x)
    expected, expected_log_lik = jaxem.em_step(closed, start, x)
    np.testing.assert_allclose(log_lik, expected_log_lik, rtol=1e-12)
    assert isinstance(new, GMM)  # the user's own pytree, in and out
    for got, want in zip(new, expected[:3], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_restarts_use_the_user_initialiser_and_num_parameters_counts_free_entries():
    x = jnp.asarray(make_blobs(seed=5, n=120, num_components=2))

    def init(key, x):
        return gmm_random_init(key, x, 2)

    model = jaxem.LogJointModel(
        gmm_log_joint,
        init,
        gradient_step=gem.GradientMStep(
            optax.adam(0.05), num_steps=10, constraints=GMM_CONSTRAINTS
        ),
    )
    result = jaxem.fit(model, x, key=jax.random.key(2), num_restarts=3, max_iter=40)
    assert result.history.shape == (3, 40)
    assert not bool(jnp.any(result.decreased))
    starts = jax.jit(jax.vmap(lambda k: init(k, x)))(jax.random.split(jax.random.key(2), 3))
    assert not np.allclose(starts.means[0], starts.means[1])
    # weights: K − 1, means: K·D, covariances: K·D(D+1)/2; as the closed form counts.
    assert isinstance(result.params, GMM)
    assert model.num_parameters(result.params) == jaxem.GaussianMixture(2).num_parameters(
        jaxem.models.GaussianMixtureParams(*result.params)
    )


def test_map_objective_includes_the_log_prior():
    x = jnp.asarray(make_blobs(seed=6, n=60, num_components=2))
    log_prior = lambda p: -0.5 * jnp.sum(p.means**2)
    model = jaxem.LogJointModel(
        gmm_log_joint,
        lambda key, x: gmm_random_init(key, x, 2),
        gradient_step=gem.GradientMStep(optax.adam(0.05), num_steps=5, constraints=GMM_CONSTRAINTS),
        log_prior_fn=log_prior,
    )
    params = GMM(jnp.array([0.4, 0.6]), x[:2], jnp.broadcast_to(jnp.eye(2), (2, 2, 2)))
    _, objective = jaxem.em_step(model, params, x)
    # (one program: run eagerly, every operation compiles on its own)
    log_lik, prior = jax.jit(lambda p: (model.e_step(p, x)[1], log_prior(p)))(params)
    np.testing.assert_allclose(objective, (log_lik + prior) / x.shape[0])


def test_bad_configuration_and_missing_sampler():
    with pytest.raises(TypeError, match="log_joint_fn must be callable"):
        jaxem.LogJointModel("not a function", gmm_random_init)
    with pytest.raises(TypeError, match=r"gradient_step must be a jaxem\.gem\.GradientMStep"):
        jaxem.LogJointModel(gmm_log_joint, gmm_random_init, gradient_step=optax.adam(0.1))
    with pytest.raises(ValueError, match="not both"):
        jaxem.LogJointModel(
            gmm_log_joint,
            gmm_random_init,
            gradient_step=gem.GradientMStep(optax.adam(0.1)),
            m_step_fn=lambda r, x, p: p,
        )
    model = gmm_model()
    with pytest.raises(TypeError, match="no sampler"):
        model.sample(jax.random.key(0), GMM(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1))), 5)
    with pytest.raises(TypeError, match="params must have the structure"):
        jaxem.em_step(model, (jnp.ones(3), jnp.zeros((3, 1))), jnp.zeros((4, 1)))
