"""The evidence lower bound (``jaxem.elbo``) and the models'
``expected_log_joint``, against independent references: scipy densities for
mixtures, brute-force enumeration of every state path for hidden Markov
models.

Float64 (the ``x64`` fixture, as the other reference tests do: switching
``jax_enable_x64`` at the top of this module would switch it for every module
collected after it). Tolerances: the identities hold exactly in exact
arithmetic; sums of ~100 terms of size ~10 in float64 agree to ~1e-12, so
1e-10 leaves two orders of margin.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import jaxem
from jaxem.models import (
    FactorAnalysisParams,
    GaussianMixtureParams,
    HMMParams,
    InputDrivenHMMParams,
    MixtureOfExpertsParams,
    MixtureParams,
)
from jaxem.models.components import GaussianParams, LinearRegressionParams, PoissonParams

pytestmark = pytest.mark.usefixtures("x64")

RNG = np.random.default_rng(0)


# ------------------------------------------------------------ the mixtures


def gaussian_case():
    n = 60
    labels = RNG.integers(2, size=n)
    x = np.array([[0.0, 0.0], [3.0, 1.0]])[labels] + RNG.normal(size=(n, 2))
    model = jaxem.GaussianMixture(2)
    theta = GaussianMixtureParams(
        np.array([0.4, 0.6]),
        np.array([[0.0, 0.1], [3.0, 1.0]]),
        np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.5, 0.0], [0.0, 1.5]]]),
    )
    q = GaussianMixtureParams(
        np.array([0.7, 0.3]),
        np.array([[0.5, -0.2], [2.5, 1.5]]),
        np.array([[[2.0, -0.2], [-0.2, 1.0]], [[0.8, 0.1], [0.1, 0.7]]]),
    )

    def log_joint(p):
        return np.stack(
            [
                np.log(p.weights[k])
                + stats.multivariate_normal(p.means[k], p.covariances[k]).logpdf(x)
                for k in range(2)
            ],
            axis=1,
        )

    return model, x, theta, q, log_joint


def poisson_case():
    n = 60
    rates = np.array([[1.0, 4.0, 0.5], [6.0, 1.5, 3.0]])
    x = RNG.poisson(rates[RNG.integers(2, size=n)]).astype(np.float64)
    model = jaxem.Mixture(jaxem.Poisson(), num_components=2)
    theta = MixtureParams(
        np.array([0.5, 0.5]), PoissonParams(np.array([[1.2, 3.5, 0.6], [5.0, 2.0, 2.5]]))
    )
    q = MixtureParams(
        np.array([0.2, 0.8]), PoissonParams(np.array([[2.0, 2.0, 1.0], [4.0, 1.0, 4.0]]))
    )

    def log_joint(p):
        rates = p.components.rates
        return np.stack(
            [
                np.log(p.weights[k]) + stats.poisson(rates[k]).logpmf(x).sum(axis=1)
                for k in range(2)
            ],
            axis=1,
        )

    return model, x, theta, q, log_joint


CASES = {"gaussian": gaussian_case, "poisson": poisson_case}


def reference(log_joint, theta, q, weights):
    """``(elbo, kl, log_likelihood)`` with numpy and scipy densities."""
    ell_theta, ell_q = log_joint(theta), log_joint(q)
    log_r_theta = ell_theta - logsumexp(ell_theta, axis=1, keepdims=True)
    log_r_q = ell_q - logsumexp(ell_q, axis=1, keepdims=True)
    r_q = np.exp(log_r_q)
    log_likelihood = np.sum(weights * logsumexp(ell_theta, axis=1))
    kl = np.sum(weights[:, None] * r_q * (log_r_q - log_r_theta))
    elbo = np.sum(weights[:, None] * r_q * (ell_theta - log_r_q))
    return elbo, kl, log_likelihood


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", list(CASES))
def test_mixture_bound_against_scipy(case, weighted):
    model, x, theta, q, log_joint = CASES[case]()
    weights = RNG.uniform(0.0, 2.0, x.shape[0]) if weighted else np.ones(x.shape[0])
    if weighted:
        weights[3] = 0.0
    bound = jaxem.elbo(model, theta, x, q=q, weights=weights if weighted else None)
    elbo, kl, log_likelihood = reference(log_joint, theta, q, weights)
    assert kl > 1.0  # (a real gap)
    np.testing.assert_allclose(float(bound.log_likelihood), log_likelihood, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(bound.elbo), elbo, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(bound.kl), kl, rtol=0, atol=1e-10)
    # elbo + KL = log-likelihood, with the KL computed independently
    np.testing.assert_allclose(float(bound.elbo) + kl, log_likelihood, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_tight_at_the_posterior(case):
    model, x, theta, q, _ = CASES[case]()
    for bound in (jaxem.elbo(model, theta, x), jaxem.elbo(model, theta, x, q=theta)):
        assert abs(float(bound.kl)) <= 1e-12
        assert abs(float(bound.elbo - bound.log_likelihood)) <= 1e-12
    assert float(jaxem.elbo(model, theta, x, q=q).kl) >= 0.0


@pytest.mark.parametrize("case", list(CASES))
def test_tangent_to_the_log_likelihood(case):
    """Fisher's identity: at θ = θ_old the bound's gradient in θ is the
    log-likelihood's."""
    model, x, _, old, _ = CASES[case]()
    old = jax.tree.map(jnp.asarray, old)
    grad_bound = jax.grad(lambda p: jaxem.elbo(model, p, x, q=old).elbo)(old)
    grad_log_lik = jax.jit(jax.grad(lambda p: jnp.sum(model.log_prob(p, jnp.asarray(x)))))(old)
    for a, b in zip(jax.tree.leaves(grad_bound), jax.tree.leaves(grad_log_lik), strict=True):
        assert np.max(np.abs(np.asarray(b))) > 1e-3  # (not stationary)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("case", list(CASES))
def test_m_step_climbs_the_bound(case):
    model, x, _, old, _ = CASES[case]()
    new, _ = jaxem.em_step(model, old, x)
    before = jaxem.elbo(model, old, x, q=old)
    after = jaxem.elbo(model, new, x, q=old)
    assert float(after.elbo) > float(before.elbo) + 1e-3
    assert float(after.log_likelihood) >= float(after.elbo)
    assert float(after.log_likelihood) > float(before.log_likelihood)


def test_mixture_of_experts_bound():
    """The gate makes the posterior depend on the inputs: still tight at
    ``q = θ`` and tangent to the log-likelihood."""
    rng = np.random.default_rng(1)
    u = rng.uniform(-2.0, 2.0, 50)
    data = (u[:, None], np.where(u < 0, 1.0 + 2.0 * u, 1.0 - u) + 0.1 * rng.normal(size=50))
    model = jaxem.MixtureOfExperts(jaxem.LinearRegression(), num_experts=2)
    old = MixtureOfExpertsParams(
        jnp.array([[1.0, -1.0]]),
        jnp.array([0.2, -0.2]),
        LinearRegressionParams(
            jnp.array([[1.5], [-0.5]]), jnp.array([0.8, 1.2]), jnp.array([0.3, 0.5])
        ),
    )
    assert abs(float(jaxem.elbo(model, old, data).kl)) <= 1e-12
    grad_bound = jax.grad(lambda p: jaxem.elbo(model, p, data, q=old).elbo)(old)
    inputs = tuple(jnp.asarray(a) for a in data)
    grad_log_lik = jax.jit(jax.grad(lambda p: jnp.sum(model.log_prob(p, inputs))))(old)
    for a, b in zip(jax.tree.leaves(grad_bound), jax.tree.leaves(grad_log_lik), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-8)


def test_without_expected_log_joint():
    x = RNG.normal(size=(30, 3))
    model = jaxem.FactorAnalysis(1)
    params = FactorAnalysisParams(np.zeros(3), np.ones((3, 1)), np.ones(3))
    with pytest.raises(TypeError, match="expected_log_joint"):
        jaxem.elbo(model, params, x)


# ------------------------------------------------- hidden Markov models


def hmm_case(input_driven: bool):
    """Two sequences of T = 4 steps (the second of length 3, padded), with a
    gap (nothing observed) and a partly missing step unless input-driven;
    ``K = 2`` states with diagonal Gaussian emissions in ``D = 2``."""
    values = RNG.normal(size=(2, 4, 2)) + np.array([0.0, 1.0])
    if not input_driven:  # (an input-driven HMM takes no missing values)
        values[0, 1] = np.nan  # a gap
        values[1, 2, 0] = np.nan  # a partly observed step
    values[1, 3] = 99.0  # padding
    lengths = np.array([4, 3])
    emissions = lambda means, variances: GaussianParams(np.array(means), np.array(variances))
    if input_driven:
        inputs = RNG.normal(size=(2, 4, 1))
        model = jaxem.InputDrivenHMM(jaxem.Gaussian("diag", missing=True), num_states=2)

        def params(initial, weights, bias, means, variances):
            return InputDrivenHMMParams(
                np.array(initial), np.array(weights), np.array(bias), emissions(means, variances)
            )

        theta = params(
            [0.6, 0.4],
            [[[0.5, -0.5]], [[-1.0, 1.0]]],
            [[0.7, -0.7], [-0.2, 0.2]],
            [[0.0, 1.0], [1.0, 0.0]],
            [[1.0, 0.5], [0.8, 1.2]],
        )
        q = params(
            [0.3, 0.7],
            [[[-0.3, 0.3]], [[0.4, -0.4]]],
            [[0.1, -0.1], [0.5, -0.5]],
            [[0.5, 0.5], [-0.5, 1.5]],
            [[2.0, 1.0], [0.5, 0.5]],
        )
        x = (values, inputs, lengths)

        def log_transitions(p, b):
            logits = np.einsum("tp,ipj->tij", inputs[b], p.transition_weights) + p.transition_bias
            return logits - logsumexp(logits, axis=-1, keepdims=True)  # (T, K, K)

    else:
        model = jaxem.HMM(jaxem.Gaussian("diag", missing=True), num_states=2)
        theta = HMMParams(
            np.array([0.6, 0.4]),
            np.array([[0.8, 0.2], [0.3, 0.7]]),
            emissions([[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.5], [0.8, 1.2]]),
        )
        q = HMMParams(
            np.array([0.3, 0.7]),
            np.array([[0.5, 0.5], [0.1, 0.9]]),
            emissions([[0.5, 0.5], [-0.5, 1.5]], [[2.0, 1.0], [0.5, 0.5]]),
        )
        x = (values, lengths)

        def log_transitions(p, b):
            return np.broadcast_to(np.log(p.transitions), (4, 2, 2))

    def log_joints(p, b):
        """``{path: log p(x_b, z = path | p)}`` over every path of the valid steps."""
        length = lengths[b]
        means, variances = p.emissions.means, p.emissions.covariances
        per_dim = stats.norm(means[None], np.sqrt(variances[None])).logpdf(values[b][:, None])
        log_e = np.nansum(per_dim, axis=-1)  # (T, K): missing dimensions left out
        log_a = log_transitions(p, b)
        out = {}
        for path in itertools.product(range(2), repeat=length):
            total = np.log(p.initial[path[0]]) + log_e[0, path[0]]
            for t in range(1, length):
                total += log_a[t, path[t - 1], path[t]] + log_e[t, path[t]]
            out[path] = total
        return out

    return model, x, theta, q, log_joints


@pytest.mark.parametrize("input_driven", [False, True], ids=["hmm", "input-driven"])
def test_hmm_against_enumeration(input_driven):
    model, x, theta, q, log_joints = hmm_case(input_driven)
    weights = np.array([0.7, 1.6])
    expected = kl = log_likelihood = 0.0
    for b in range(2):
        under_theta, under_q = log_joints(theta, b), log_joints(q, b)
        paths = list(under_theta)
        ell_theta = np.array([under_theta[p] for p in paths])
        ell_q = np.array([under_q[p] for p in paths])
        log_post_q = ell_q - logsumexp(ell_q)
        log_post_theta = ell_theta - logsumexp(ell_theta)
        post_q = np.exp(log_post_q)
        expected += weights[b] * np.sum(post_q * ell_theta)
        kl += weights[b] * np.sum(post_q * (log_post_q - log_post_theta))
        log_likelihood += weights[b] * logsumexp(ell_theta)
    resolved = model.for_data(x)
    own = jax.jit(resolved.expected_log_joint)(
        jax.tree.map(jnp.asarray, theta),
        jax.tree.map(jnp.asarray, x),
        jax.tree.map(jnp.asarray, q),
        jnp.asarray(weights),
    )
    np.testing.assert_allclose(float(own), expected, rtol=0, atol=1e-10)
    bound = jaxem.elbo(model, theta, x, q=q, weights=weights)
    assert kl > 0.1
    np.testing.assert_allclose(float(bound.kl), kl, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(bound.log_likelihood), log_likelihood, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(bound.elbo) + kl, log_likelihood, rtol=0, atol=1e-10)
    assert abs(float(jaxem.elbo(model, theta, x, weights=weights).kl)) <= 1e-12
