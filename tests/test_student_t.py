"""Student-t components (jaxem.Mixture(StudentT(), K)) against references.

References, in float64: scipy.stats.multivariate_t densities, a plain
numpy/scipy ECM iteration (the textbook formulas of McLachlan & Peel 2000,
§7.5, with scipy.optimize.brentq for the degrees of freedom), brute-force
repetition of rows for integer weights, and scipy's digamma for the
one-dimensional ν solve. Sizes are tiny and the compiled functions few: the
file runs in seconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import brentq
from scipy.special import digamma, logsumexp, polygamma

import jaxem
from jaxem.models.components._student_t import (
    StudentT,
    StudentTParams,
    log_minus_digamma,
    solve_degrees_of_freedom,
)

pytestmark = pytest.mark.usefixtures("x64")

K, D = 3, 3
BOUNDS = (0.1, 1000.0)


def make_t_blobs(seed=0, n=150, dim=D, num_components=K, dof=4.0, separation=6.0):
    """Samples from ``num_components`` heavy-tailed (Student-t) blobs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(num_components, dim))
    labels = np.arange(n) % num_components
    mixing = rng.normal(size=(num_components, dim, dim)) / np.sqrt(dim) + np.eye(dim)
    noise = rng.normal(size=(n, dim)) / np.sqrt(rng.gamma(dof / 2, 2 / dof, size=n))[:, None]
    return centres[labels] + np.einsum("nd,nde->ne", noise, mixing[labels])


def random_params(rng, x, k=K):
    dim = x.shape[1]
    a = rng.normal(size=(k, dim, dim))
    return jaxem.models.MixtureParams(
        jnp.asarray(rng.dirichlet(2 * np.ones(k))),
        StudentTParams(
            jnp.asarray(x[rng.choice(len(x), k, replace=False)]),
            jnp.asarray(a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(dim)),
            jnp.asarray(rng.uniform(1.5, 30.0, size=k)),
        ),
    )


def numpy_log_joint(x, params):
    c = params.components
    return np.stack(
        [
            np.log(params.weights[k])
            + st.multivariate_t(c.means[k], c.scales[k], df=float(c.degrees_of_freedom[k])).logpdf(
                x
            )
            for k in range(len(params.weights))
        ],
        axis=1,
    )


def numpy_ecm_step(x, w, params, reg_covar, fixed=None):
    """One weighted ECM iteration with the textbook formulas."""
    c = params.components
    means, scales, dof = (np.asarray(a) for a in c)
    k, dim = means.shape
    joint = numpy_log_joint(x, params)
    log_norm = logsumexp(joint, axis=1)
    resp = np.exp(joint - log_norm[:, None]) * w[:, None]
    nk = resp.sum(0)
    new_means, new_scales, new_dof = [], [], []
    for j in range(k):
        diff = x - means[j]
        distances = np.einsum("nd,de,ne->n", diff, np.linalg.inv(scales[j]), diff)
        u = (dof[j] + dim) / (dof[j] + distances)
        ru = resp[:, j] * u
        mean = ru @ x / ru.sum()
        centred = x - mean
        new_means.append(mean)
        new_scales.append((ru[:, None] * centred).T @ centred / nk[j] + reg_covar * np.eye(dim))
        if fixed is not None:
            new_dof.append(fixed)
            continue
        half = (dof[j] + dim) / 2
        expected_log_tau = digamma(half) - np.log(half) + np.log(u)
        constant = (resp[:, j] * (expected_log_tau - u)).sum() / nk[j]
        equation = lambda nu, c=constant: -digamma(nu / 2) + np.log(nu / 2) + 1 + c
        new_dof.append(brentq(equation, *BOUNDS, xtol=1e-14, rtol=1e-14))
    return (
        nk / nk.sum(),
        np.stack(new_means),
        np.stack(new_scales),
        np.asarray(new_dof),
        (w * log_norm).sum() / w.sum(),
    )


# ---------------------------------------------------------------- densities


def test_log_prob_and_posterior_match_scipy():
    x = make_t_blobs(n=60)
    params = random_params(np.random.default_rng(1), x)
    model = jaxem.Mixture(StudentT(), K)
    log_prob, posterior = jax.jit(lambda p, x: (model.log_prob(p, x), model.posterior(p, x)))(
        params, jnp.asarray(x)
    )
    joint = numpy_log_joint(x, params)
    np.testing.assert_allclose(log_prob, logsumexp(joint, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        posterior, np.exp(joint - logsumexp(joint, axis=1)[:, None]), rtol=1e-10, atol=1e-14
    )


def test_degrees_of_freedom_solve_matches_scipy():
    """log(ν/2) − ψ(ν/2) = c over ν in [0.1, 1000], from any start; beyond
    the bounds the nearer bound (the maximiser of the concave objective).
    g(z) = log z − ψ(z) and g' against scipy on both sides of the switch to
    the asymptotic series; float32 keeps its relative precision for large z
    (no log z − ψ(z) cancellation)."""
    nus = np.array([0.1, 0.25, 1.0, 2.5, 7.0, 40.0, 300.0, 1000.0])
    targets = np.concatenate([np.tile(np.log(nus / 2) - digamma(nus / 2), 3), [1e-9, 50.0]])
    starts = np.concatenate([np.repeat([0.1, 10.0, 1000.0], len(nus)), [10.0, 10.0]])
    expected = np.concatenate([np.tile(nus, 3), [1000.0, 0.1]])
    z = np.geomspace(0.05, 1e4, 97)

    @jax.jit
    def run(targets, starts, z, z32):
        return (
            solve_degrees_of_freedom(targets, starts, BOUNDS),
            log_minus_digamma(z),
            log_minus_digamma(z32)[0],
        )

    solved, (g, dg), g32 = run(targets, starts, z, z.astype(np.float32))
    np.testing.assert_allclose(solved, expected, rtol=1e-10)
    np.testing.assert_allclose(g, np.log(z) - digamma(z), rtol=1e-10)
    np.testing.assert_allclose(dg, 1 / z - polygamma(1, z), rtol=1e-9)
    np.testing.assert_allclose(g32, np.log(z) - digamma(z), rtol=1e-5)


# ---------------------------------------------------------------- one step


# One compiled em_step (model and shapes) serves the weighted, integer-weight
# and empty-component tests; compilation dominates this file's run time.
MODEL = jaxem.Mixture(StudentT(reg_covar=0.0), K)
N = 90


@pytest.mark.parametrize("fixed", [None, 5.0], ids=["free-dof", "fixed-dof"])
def test_weighted_ecm_step_matches_numpy(fixed):
    """One weighted iteration equals the textbook ECM step (ν from brentq)."""
    rng = np.random.default_rng(4)
    x = make_t_blobs(n=N)
    w = rng.uniform(0.0, 3.0, size=N)
    params = random_params(rng, x)
    model, reg_covar = MODEL, 0.0
    if fixed is not None:
        c = params.components
        params = params._replace(components=c._replace(degrees_of_freedom=jnp.full(K, fixed)))
        reg_covar = 1e-4
        model = jaxem.Mixture(StudentT(reg_covar=reg_covar, fix_degrees_of_freedom=fixed), K)
    new, objective = jaxem.em_step(model, params, x, weights=w)
    weights, means, scales, dof, expected = numpy_ecm_step(x, w, params, reg_covar, fixed)
    np.testing.assert_allclose(new.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(new.components.means, means, rtol=1e-10)
    np.testing.assert_allclose(new.components.scales, scales, rtol=1e-10)
    np.testing.assert_allclose(new.components.degrees_of_freedom, dof, rtol=1e-9)
    np.testing.assert_allclose(objective, expected, rtol=1e-12)


def test_integer_weights_equal_repeated_rows():
    """Weights 0, 1, 2 equal dropping, keeping and doubling rows (the
    repeated data have the same number of rows, so nothing recompiles)."""
    rng = np.random.default_rng(5)
    x = make_t_blobs(n=N)
    counts = rng.permutation(np.repeat([0, 1, 2], N // 3))
    repeated = np.repeat(x, counts, axis=0)
    weighted = plain = random_params(rng, x)
    for _ in range(3):
        weighted, a = jaxem.em_step(MODEL, weighted, x, weights=counts.astype(float))
        plain, b = jaxem.em_step(MODEL, plain, repeated, weights=np.ones(N))
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(weighted), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_statistics_are_additive():
    """Statistics of two halves of the rows add up to the whole's."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(make_t_blobs(n=160))
    resp = jnp.asarray(rng.dirichlet(np.ones(K), size=160))
    params = random_params(np.random.default_rng(1), np.asarray(x)).components
    component = StudentT()

    @jax.jit
    def whole_and_halves(x, resp, params):
        halves = jax.vmap(lambda xb, rb: component.statistics(xb, rb, params))(
            x.reshape(2, 80, D), resp.reshape(2, 80, K)
        )
        return component.statistics(x, resp, params), jax.tree.map(lambda a: a.sum(0), halves)

    whole, halves = whole_and_halves(x, resp, params)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(halves), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the fit


def test_log_likelihood_never_decreases():
    """ECM is monotone: with reg_covar = 0 the log-likelihood never drops
    over 40 iterations from a random start (tolerance: float64 rounding of a
    mean of 90 log-densities); ν stays within its bounds."""
    x = make_t_blobs(seed=7, n=N, separation=2.0)
    params = random_params(np.random.default_rng(3), x)
    history = []
    for _ in range(40):
        params, objective = jaxem.em_step(MODEL, params, x, weights=np.ones(N))
        history.append(float(objective))
    history = np.asarray(history)
    assert np.all(np.isfinite(history))
    assert np.diff(history).min() >= -1e-12 * np.abs(history).max()
    assert history[-1] > history[0] + 0.1  # it did move
    dof = np.asarray(params.components.degrees_of_freedom)
    assert np.all((dof >= BOUNDS[0]) & (dof <= BOUNDS[1]))


def test_float32_fit_is_monotone_finite_and_finds_the_clusters():
    """A float32 fit: finite, not flagged as decreasing (1000 eps relative),
    and it finds the blobs' centres and heavy tails."""
    x = make_t_blobs(seed=2, n=300, dim=2, num_components=2, dof=3.0, separation=8.0)
    model = jaxem.Mixture(StudentT(), 2)
    start = jaxem.models.MixtureParams(
        jnp.asarray([0.5, 0.5]),
        StudentTParams(jnp.asarray(x[:2]), jnp.stack([jnp.eye(2)] * 2), jnp.full(2, 10.0)),
    )  # rows 0 and 1 lie in different blobs
    x32 = x.astype(np.float32)
    result = jaxem.fit(model, x32, key=jax.random.key(0), init_params=start)
    params = result.params
    assert params.components.means.dtype == jnp.float32
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
    assert not np.any(result.decreased) and not np.any(result.nonfinite)
    history = np.asarray(result.history[0])
    history = history[np.isfinite(history)]
    assert np.diff(history).min() >= -1e3 * np.finfo(np.float32).eps * np.abs(history).max()
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=8.0, size=(2, 2))
    found = np.sort(np.asarray(params.components.means), axis=0)
    np.testing.assert_allclose(found, np.sort(centres, axis=0), atol=0.5)
    # Heavy tails are recognised (the blobs have ν = 3).
    assert np.all(np.asarray(params.components.degrees_of_freedom) < 10.0)


def test_empty_component_stays_finite():
    """A component with zero weight (exactly zero responsibilities) and one
    far from the data keep finite parameters step after step, even with
    reg_covar = 0."""
    rng = np.random.default_rng(8)
    x = make_t_blobs(n=N)
    params = random_params(rng, x)
    c = params.components
    params = jaxem.models.MixtureParams(
        jnp.asarray([0.5, 0.5, 0.0]), c._replace(means=c.means.at[1].set(1e4))
    )
    for _ in range(3):
        params, objective = jaxem.em_step(MODEL, params, x, weights=np.ones(N))
        assert np.isfinite(float(objective))
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
    assert bool(jnp.all(params.components.degrees_of_freedom >= BOUNDS[0]))


def test_samples_have_the_model_moments():
    """Draws have mean μ and covariance ν/(ν − 2) Σ (ν = 6, n = 40000: the
    tolerances are about five standard errors)."""
    scale = np.array([[2.0, 0.6], [0.6, 1.0]])
    params = StudentTParams(
        jnp.asarray([[1.0, -2.0], [0.0, 0.0]]),
        jnp.asarray(np.stack([scale, np.eye(2)])),
        jnp.asarray([6.0, 30.0]),
    )
    labels = jnp.zeros(40000, jnp.int32)
    draws = np.asarray(jax.jit(StudentT().sample)(jax.random.key(0), params, labels))
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.04)
    np.testing.assert_allclose(np.cov(draws.T), 1.5 * scale, rtol=0.08, atol=0.05)


def test_num_parameters():
    params = StudentTParams(jnp.zeros((3, 4)), jnp.zeros((3, 4, 4)), jnp.zeros(3))
    assert StudentT().num_parameters(params) == 3 * 4 + 3 * 10 + 3
    assert StudentT(fix_degrees_of_freedom=4.0).num_parameters(params) == 3 * 4 + 3 * 10


# ---------------------------------------------------------------- bad input


def test_bad_data_and_options_raise_clear_errors():
    model = jaxem.Mixture(StudentT(), 2)
    with pytest.raises(ValueError, match=r"2-D array of shape \(n, D\).*x\[:, None\]"):
        jaxem.fit(model, np.zeros(10), key=jax.random.key(0))
    with pytest.raises(ValueError, match="reg_covar must be a finite number >= 0"):
        StudentT(reg_covar=-1.0)
    with pytest.raises(ValueError, match="fix_degrees_of_freedom must be a finite number > 0"):
        StudentT(fix_degrees_of_freedom=0.0)
    with pytest.raises(ValueError, match="degrees_of_freedom_bounds"):
        StudentT(degrees_of_freedom_bounds=(5.0, 1.0))
    with pytest.raises(TypeError, match="degrees_of_freedom_bounds must be a pair"):
        StudentT(degrees_of_freedom_bounds=3.0)


def test_bad_params_raise_clear_errors():
    x = make_t_blobs(n=30, dim=2, num_components=2)
    model = jaxem.Mixture(StudentT(), 2)
    good = StudentTParams(jnp.zeros((2, 2)), jnp.stack([jnp.eye(2)] * 2), jnp.full(2, 5.0))
    weights = jnp.asarray([0.5, 0.5])
    bad = [
        (
            good._replace(scales=jnp.ones((2, 2))),
            ValueError,
            r"params.scales must have shape \(2, 2, 2\)",
        ),
        (good._replace(means=jnp.zeros((3, 2))), ValueError, r"params.means must have shape"),
        (
            good._replace(degrees_of_freedom=jnp.asarray([5.0, -1.0])),
            ValueError,
            "degrees_of_freedom must be > 0",
        ),
        (
            good._replace(scales=jnp.stack([jnp.eye(2), -jnp.eye(2)])),
            ValueError,
            "positive definite",
        ),
    ]
    for components, error, message in bad:
        with pytest.raises(error, match=message):
            jaxem.em_step(model, jaxem.models.MixtureParams(weights, components), x)
