"""jaxem.GaussianMixture against independent references, in float64.

References: scikit-learn's EM (same initial parameters, same iterations),
scipy densities, a plain-numpy weighted EM, brute-force repetition of rows
for integer weights, and automatic differentiation of Q + log prior for the
MAP M-step (the closed form must be a stationary point).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import jaxem
from tests.conftest import make_blobs

pytestmark = pytest.mark.usefixtures("x64")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
K = 3


def full_covariances(params, covariance_type, dim):
    """Every component's covariance as a (K, D, D) numpy array."""
    cov = np.asarray(params.covariances)
    k = np.shape(params.means)[0]
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, dim, dim))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(dim)


def sklearn_start(x, covariance_type, seed=0):
    """Initial parameters from scikit-learn's own k-means initialisation."""
    start = SklearnGaussianMixture(
        K, covariance_type=covariance_type, max_iter=0, random_state=seed
    ).fit(x)
    params = jaxem.models.GaussianMixtureParams(
        jnp.asarray(start.weights_), jnp.asarray(start.means_), jnp.asarray(start.covariances_)
    )
    return start, params


def random_params(rng, covariance_type, dim, k=K):
    weights = rng.dirichlet(np.ones(k) * 2)
    means = rng.normal(scale=3, size=(k, dim))
    if covariance_type == "full":
        a = rng.normal(size=(k, dim, dim))
        cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(dim)
    elif covariance_type == "tied":
        a = rng.normal(size=(dim, dim))
        cov = a @ a.T + 0.5 * np.eye(dim)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(k, dim))
    else:
        cov = rng.uniform(0.3, 2.0, size=k)
    return jaxem.models.GaussianMixtureParams(
        jnp.asarray(weights), jnp.asarray(means), jnp.asarray(cov)
    )


# ------------------------------------------------------------ scikit-learn


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_iterations_match_sklearn(covariance_type):
    """k EM iterations from identical parameters equal scikit-learn's (1e-8)."""
    x = make_blobs(n=400, dim=3)
    start, params = sklearn_start(x, covariance_type)
    iterations = 7
    reference = SklearnGaussianMixture(
        K,
        covariance_type=covariance_type,
        max_iter=iterations,
        tol=0.0,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
        reference.fit(x)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    result = jaxem.fit(
        model, x, key=jax.random.key(0), max_iter=iterations, tol=0.0, init_params=params
    )
    assert result.params.weights.dtype == jnp.float64
    np.testing.assert_allclose(result.params.weights, reference.weights_, rtol=1e-8)
    np.testing.assert_allclose(result.params.means, reference.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        result.params.covariances, reference.covariances_, rtol=1e-8, atol=1e-10
    )
    # history[t] is the mean log-likelihood entering iteration t + 1.
    np.testing.assert_allclose(result.history[0], reference.lower_bounds_, rtol=1e-10)
    assert int(result.num_iter[0]) == reference.n_iter_ == iterations
    # The final objective scores the returned parameters.
    np.testing.assert_allclose(result.log_likelihood, reference.score(x), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_convergence_matches_sklearn(covariance_type):
    """Run to convergence: the same number of iterations and the same optimum."""
    x = make_blobs(seed=3, n=300, dim=2)
    start, params = sklearn_start(x, covariance_type, seed=1)
    reference = SklearnGaussianMixture(
        K,
        covariance_type=covariance_type,
        tol=1e-8,
        max_iter=1000,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    ).fit(x)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    result = jaxem.fit(model, x, key=jax.random.key(0), max_iter=1000, tol=1e-8, init_params=params)
    assert bool(result.converged[0]) and reference.converged_
    assert int(result.num_iter[0]) == reference.n_iter_
    np.testing.assert_allclose(result.params.means, reference.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        result.params.covariances, reference.covariances_, rtol=1e-8, atol=1e-10
    )


def test_em_step_equals_fit_iterations():
    # (the data's shapes and the fit's options of test_em_iterations_match_sklearn:
    # the fit reuses its compiled program)
    x = make_blobs(n=400, dim=3)
    model = jaxem.GaussianMixture(K)
    params = jax.jit(model.init)(jax.random.key(2), jnp.asarray(x))
    stepped = params
    objectives = []
    for _ in range(7):
        stepped, objective = jaxem.em_step(model, stepped, x)
        objectives.append(float(objective))
    result = jaxem.fit(model, x, key=jax.random.key(0), max_iter=7, tol=0.0, init_params=params)
    np.testing.assert_allclose(result.history[0], objectives, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(stepped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_num_parameters_matches_sklearn():
    x = make_blobs(n=100, dim=3)
    for covariance_type in COVARIANCE_TYPES:
        reference = SklearnGaussianMixture(K, covariance_type=covariance_type, max_iter=0).fit(x)
        params = random_params(np.random.default_rng(0), covariance_type, 3)
        model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
        assert model.num_parameters(params) == reference._n_parameters()


# --------------------------------------------------------------- densities


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_and_posterior_match_scipy(covariance_type):
    rng = np.random.default_rng(1)
    dim = 3
    params = random_params(rng, covariance_type, dim)
    x = rng.normal(scale=3, size=(50, dim))
    covariances = full_covariances(params, covariance_type, dim)
    joint = np.stack(
        [
            np.log(params.weights[k])
            + st.multivariate_normal(params.means[k], covariances[k]).logpdf(x)
            for k in range(K)
        ],
        axis=1,
    )
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    log_prob, posterior, (_, summed) = jax.jit(
        lambda p, x: (model.log_prob(p, x), model.posterior(p, x), model.e_step(p, x))
    )(params, jnp.asarray(x))
    np.testing.assert_allclose(log_prob, logsumexp(joint, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        posterior, np.exp(joint - logsumexp(joint, axis=1)[:, None]), atol=1e-12
    )
    np.testing.assert_allclose(summed, logsumexp(joint, axis=1).sum(), rtol=1e-12)


def test_blocked_e_step_equals_one_block():
    """Row blocks (with a remainder) add up to the unblocked statistics."""
    x = jnp.asarray(make_blobs(n=257, dim=2))
    weights = jnp.asarray(np.random.default_rng(0).uniform(size=257))
    for covariance_type in COVARIANCE_TYPES:
        params = random_params(np.random.default_rng(1), covariance_type, 2)
        # (complete data, declared: no missing-value branch to compile)
        whole = jaxem.GaussianMixture(
            K, covariance_type=covariance_type, block_size=1000, missing=False
        )
        blocked = jaxem.GaussianMixture(
            K, covariance_type=covariance_type, block_size=64, missing=False
        )
        models = (whole, blocked)
        evaluate = jax.jit(
            lambda params, x, w, models=models: [
                (m.e_step(params, x, w), m.posterior(params, x), m.log_prob(params, x))
                for m in models
            ]
        )
        (stats_a, posterior_a, log_prob_a), (stats_b, posterior_b, log_prob_b) = evaluate(
            params, x, weights
        )
        for a, b in zip(jax.tree.leaves(stats_a), jax.tree.leaves(stats_b), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(posterior_a, posterior_b, atol=1e-14)
        np.testing.assert_allclose(log_prob_a, log_prob_b, rtol=1e-13)


# ------------------------------------------------------------ sample weights


def numpy_weighted_em_step(x, w, params, covariance_type, reg_covar):
    """A plain numpy/scipy weighted EM iteration (the textbook formulas)."""
    dim = x.shape[1]
    covariances = full_covariances(params, covariance_type, dim)
    joint = np.stack(
        [
            np.log(params.weights[k])
            + st.multivariate_normal(params.means[k], covariances[k]).logpdf(x)
            for k in range(K)
        ],
        axis=1,
    )
    resp = np.exp(joint - logsumexp(joint, axis=1)[:, None]) * w[:, None]
    nk = resp.sum(0)
    weights = nk / nk.sum()
    means = resp.T @ x / nk[:, None]
    scatter = np.stack([(resp[:, k, None] * (x - means[k])).T @ (x - means[k]) for k in range(K)])
    if covariance_type == "full":
        cov = scatter / nk[:, None, None] + reg_covar * np.eye(dim)
    elif covariance_type == "tied":
        cov = scatter.sum(0) / nk.sum() + reg_covar * np.eye(dim)
    elif covariance_type == "diag":
        cov = np.stack([np.diag(s) for s in scatter]) / nk[:, None] + reg_covar
    else:
        cov = np.trace(scatter, axis1=1, axis2=2) / (nk * dim) + reg_covar
    return weights, means, cov, (w * logsumexp(joint, axis=1)).sum() / w.sum()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_weighted_em_step_matches_numpy(covariance_type):
    rng = np.random.default_rng(4)
    x = make_blobs(n=120, dim=3)
    w = rng.uniform(0.0, 3.0, size=120)
    params = random_params(rng, covariance_type, 3)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type, reg_covar=1e-4)
    new, objective = jaxem.em_step(model, params, x, weights=w)
    weights, means, cov, expected = numpy_weighted_em_step(x, w, params, covariance_type, 1e-4)
    np.testing.assert_allclose(new.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(new.means, means, rtol=1e-10)
    np.testing.assert_allclose(new.covariances, cov, rtol=1e-10)
    np.testing.assert_allclose(objective, expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    rng = np.random.default_rng(5)
    x = make_blobs(n=90, dim=2)
    counts = rng.integers(0, 4, size=90)
    repeated = np.repeat(x, counts, axis=0)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    params = random_params(rng, covariance_type, 2)
    weighted = jaxem.fit(
        model, x, key=jax.random.key(0), weights=counts, init_params=params, max_iter=20, tol=0
    )
    plain = jaxem.fit(
        model, repeated, key=jax.random.key(0), init_params=params, max_iter=20, tol=0
    )
    for a, b in zip(jax.tree.leaves(weighted.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.history, plain.history, rtol=1e-10)


# ------------------------------------------------------------- monotonicity

# MLE and MAP for every covariance type (each its own M-step); weights and a
# Dirichlet weight concentration once: weights enter only the statistics,
# whose weighted form every covariance type checks against numpy
# (test_weighted_em_step_matches_numpy), and the concentration only the
# mixing weights' update, which no covariance type changes.
MONOTONE_CONFIGS = [
    pytest.param(covariance_type, prior, weighted, id=f"{covariance_type}-{label}")
    for covariance_type in COVARIANCE_TYPES
    for prior, weighted, label in [
        (None, False, "mle"),
        (jaxem.GaussianMixturePrior(), False, "map"),
        (jaxem.GaussianMixturePrior(weight_concentration=2.0), True, "map-weighted"),
    ]
    if label != "map-weighted" or covariance_type == "full"
]


@pytest.mark.parametrize(("covariance_type", "prior", "weighted"), MONOTONE_CONFIGS)
def test_objective_never_decreases(covariance_type, prior, weighted):
    """log p(x | θ) + log p(θ) is non-decreasing along every restart.

    reg_covar is 0 (with it the M-step is not the exact argmax); the
    tolerance is float64 rounding of a mean of 400 log-densities.
    """
    x = make_blobs(seed=7, n=400, dim=3, separation=2.0)
    w = np.random.default_rng(0).uniform(0.2, 2.0, size=400) if weighted else None
    model = jaxem.GaussianMixture(4, covariance_type=covariance_type, reg_covar=0.0, prior=prior)
    result = jaxem.fit(
        model, x, key=jax.random.key(3), weights=w, num_restarts=3, max_iter=60, tol=0.0
    )
    history = np.asarray(result.history)
    assert np.all(np.isfinite(history))
    steps = np.diff(history, axis=1)
    assert steps.min() >= -1e-12 * np.abs(history).max(), steps.min()
    assert not np.any(result.decreased)
    # The final objective (of the returned parameters) is the largest.
    assert np.all(result.restart_log_likelihood >= history[:, -1] - 1e-12)


# ---------------------------------------------------------------- the prior


def unconstrained(params, covariance_type):
    """Parameters as free real arrays: logits, means, log-Cholesky factors."""
    cov = params.covariances
    if covariance_type in ("full", "tied"):
        factor = jnp.linalg.cholesky(cov)
        diagonal = jnp.diagonal(factor, axis1=-2, axis2=-1)
        raw = jnp.tril(factor, -1) + jnp.vectorize(jnp.diag, signature="(d)->(d,d)")(
            jnp.log(diagonal)
        )
    else:
        raw = jnp.log(cov)
    return jnp.log(params.weights), params.means, raw


def constrained(free, covariance_type, prior):
    logits, means, raw = free
    if covariance_type in ("full", "tied"):
        diagonal = jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))
        factor = jnp.tril(raw, -1) + jnp.vectorize(jnp.diag, signature="(d)->(d,d)")(diagonal)
        cov = factor @ jnp.swapaxes(factor, -1, -2)
    else:
        cov = jnp.exp(raw)
    return jaxem.models.GaussianMixtureParams(jax.nn.softmax(logits), means, cov, prior)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
def test_m_step_is_a_stationary_point_of_q_plus_log_prior(covariance_type, with_prior):
    """∇(Q + log p) = 0 at the closed-form M-step (autodiff reference)."""
    x = jnp.asarray(make_blobs(seed=11, n=150, dim=3))
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 1.5, size=150))
    prior = jaxem.GaussianMixturePrior(weight_concentration=1.5) if with_prior else None
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type, reg_covar=0.0, prior=prior)
    # Any parameters will do as the old ones (random ones: no k-means to compile).
    old = random_params(np.random.default_rng(2), covariance_type, 3)
    old = old._replace(prior=model.resolve_prior(x, w))

    @jax.jit
    def step(old, x, w):
        resp = model.posterior(old, x) * w[:, None]  # held fixed
        stats, _ = model.e_step(old, x, w)
        return resp, model.m_step(stats, old)[0]

    resp, new = step(old, x, w)

    def objective(free):
        params = constrained(free, covariance_type, old.prior)
        joint = jnp.log(params.weights) + jnp.stack(
            [
                jax.scipy.stats.multivariate_normal.logpdf(x, params.means[k], cov)
                for k, cov in enumerate(full_covariances_jnp(params, covariance_type, 3))
            ],
            axis=1,
        )
        return jnp.sum(resp * joint) + model.log_prior(params)

    @jax.jit
    def check(new):
        free = unconstrained(new, covariance_type)
        nudged = jax.tree.map(lambda a: a + 1e-3, free)
        return jax.grad(objective)(free), objective(free), objective(nudged)

    gradient, at_m_step, nudged = check(new)
    for g in jax.tree.leaves(gradient):
        np.testing.assert_allclose(g, 0.0, atol=1e-7)
    # And the closed form beats a perturbed point.
    assert at_m_step > nudged


def full_covariances_jnp(params, covariance_type, dim):
    cov = params.covariances
    k = params.means.shape[0]
    if covariance_type == "full":
        return list(cov)
    if covariance_type == "tied":
        return [cov] * k
    if covariance_type == "diag":
        return [jnp.diag(c) for c in cov]
    return [c * jnp.eye(dim) for c in cov]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prior_matches_scipy(covariance_type):
    rng = np.random.default_rng(8)
    dim = 3
    x = jnp.asarray(make_blobs(n=60, dim=dim))
    prior_config = jaxem.GaussianMixturePrior(weight_concentration=1.7, mean_precision=0.3)
    hyper = prior_config.resolve(x, K, covariance_type)
    params = random_params(rng, covariance_type, dim)._replace(prior=hyper)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type, prior=prior_config)
    alpha = np.full(K, prior_config.weight_concentration)
    expected = st.dirichlet(alpha).logpdf(np.asarray(params.weights))
    kappa, nu, scale = float(hyper.mean_precision), float(hyper.degrees_of_freedom), hyper.scale
    m0 = np.asarray(hyper.mean)
    cov = np.asarray(params.covariances)
    means = np.asarray(params.means)
    if covariance_type == "full":
        for k in range(K):
            expected += st.invwishart(nu, np.asarray(scale)).logpdf(cov[k])
            expected += st.multivariate_normal(m0, cov[k] / kappa).logpdf(means[k])
    elif covariance_type == "tied":
        expected += st.invwishart(nu, np.asarray(scale)).logpdf(cov)
        for k in range(K):
            expected += st.multivariate_normal(m0, cov / kappa).logpdf(means[k])
    elif covariance_type == "diag":
        psi = np.asarray(scale)
        expected += st.invgamma(nu / 2, scale=psi / 2).logpdf(cov).sum()
        expected += st.norm(m0, np.sqrt(cov / kappa)).logpdf(means).sum()
    else:
        psi = float(scale)
        expected += st.invgamma(nu / 2, scale=psi / 2).logpdf(cov).sum()
        expected += st.norm(m0, np.sqrt(cov[:, None] / kappa)).logpdf(means).sum()
    # (jitted: run eagerly, every operation compiles on its own)
    np.testing.assert_allclose(jax.jit(model.log_prior)(params), expected, rtol=1e-10)
    flat = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    assert float(jax.jit(flat.log_prior)(params)) == 0


def test_data_driven_prior_defaults_follow_fraley_raftery():
    x = jnp.asarray(make_blobs(n=200, dim=3))
    data_cov = np.cov(np.asarray(x), rowvar=False, bias=True)
    for covariance_type in COVARIANCE_TYPES:
        hyper = jaxem.GaussianMixturePrior().resolve(x, 4, covariance_type)
        np.testing.assert_allclose(hyper.mean, np.mean(x, axis=0), rtol=1e-12)
        assert float(hyper.degrees_of_freedom) == 3 + 2
        assert float(hyper.mean_precision) == 0.01
        expected = {
            "full": data_cov,
            "tied": data_cov,
            "diag": np.diag(data_cov),
            "spherical": np.trace(data_cov) / 3,
        }[covariance_type] / 4 ** (2 / 3)
        np.testing.assert_allclose(hyper.scale, expected, rtol=1e-10)


def test_prior_keeps_a_collapsing_component_broad():
    """A component with one point: MLE shrinks it to reg_covar, MAP does not."""
    x = np.concatenate([make_blobs(n=200, dim=2, num_components=1), [[40.0, 40.0]]])
    means = np.array([[0.0, 0.0], [40.0, 40.0]])
    params = jaxem.models.GaussianMixtureParams(
        jnp.array([0.5, 0.5]), jnp.asarray(means), jnp.stack([jnp.eye(2)] * 2)
    )
    mle = jaxem.GaussianMixture(2)
    map_model = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior())
    mle_fit = jaxem.fit(mle, x, key=jax.random.key(0), init_params=params, max_iter=50)
    map_params = params._replace(prior=map_model.prior.resolve(jnp.asarray(x), 2, "full"))
    map_fit = jaxem.fit(map_model, x, key=jax.random.key(0), init_params=map_params, max_iter=50)
    assert np.linalg.det(mle_fit.params.covariances[1]) < 1e-10
    assert np.linalg.det(map_fit.params.covariances[1]) > 1e-2


# ------------------------------------------------------------ init, sample


@pytest.mark.parametrize("init_method", ["kmeans", "k-means++", "random", "random_from_data"])
def test_init_methods_give_valid_parameters(init_method):
    x = jnp.asarray(make_blobs(n=300, dim=2, separation=8.0))
    model = jaxem.GaussianMixture(K, init_method=init_method)
    params = jax.jit(model.init)(jax.random.key(1), x)
    np.testing.assert_allclose(jnp.sum(params.weights), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(params.covariances)) > 0)
    assert np.all(np.isfinite(np.asarray(params.means)))
    result = jaxem.fit(model, x, key=jax.random.key(1), num_restarts=4)
    assert np.all(result.converged)


def test_kmeans_init_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = rng.integers(3, size=600)
    x = centres[labels] + rng.normal(size=(600, 2))
    params = jax.jit(jaxem.GaussianMixture(3).init)(jax.random.key(0), jnp.asarray(x))
    order = np.lexsort(np.asarray(params.means).T[::-1])
    np.testing.assert_allclose(np.asarray(params.means)[order], centres[[0, 2, 1]], atol=0.25)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_samples_have_the_model_moments(covariance_type):
    rng = np.random.default_rng(9)
    params = random_params(rng, covariance_type, 2)
    model = jaxem.GaussianMixture(K, covariance_type=covariance_type)
    n = 60_000
    x, labels = jax.jit(model.sample, static_argnums=2)(jax.random.key(0), params, n)
    x, labels = np.asarray(x), np.asarray(labels)
    assert x.shape == (n, 2) and labels.shape == (n,)
    frequencies = np.bincount(labels, minlength=K) / n
    np.testing.assert_allclose(frequencies, params.weights, atol=4 * np.sqrt(0.25 / n))
    covariances = full_covariances(params, covariance_type, 2)
    for k in range(K):
        rows = x[labels == k]
        np.testing.assert_allclose(rows.mean(0), params.means[k], atol=0.08)
        np.testing.assert_allclose(np.cov(rows, rowvar=False), covariances[k], atol=0.12)


def test_bic_and_aic_match_sklearn_formulae():
    x = make_blobs(n=150, dim=2)
    reference = SklearnGaussianMixture(K, random_state=0).fit(x)
    params = jaxem.models.GaussianMixtureParams(
        jnp.asarray(reference.weights_),
        jnp.asarray(reference.means_),
        jnp.asarray(reference.covariances_),
    )
    model = jaxem.GaussianMixture(K)
    np.testing.assert_allclose(jaxem.bic(model, params, x), reference.bic(x), rtol=1e-10)
    np.testing.assert_allclose(jaxem.aic(model, params, x), reference.aic(x), rtol=1e-10)
