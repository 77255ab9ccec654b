"""Missing values (NaN) in Gaussian families: EM on incomplete data.

References: a plain-numpy loop over rows with the conditional-Gaussian
formulas (Ghahramani & Jordan 1994), scipy's multivariate normal on each
row's observed coordinates, and brute-force enumeration of an HMM's state
paths.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem
from jaxem.models import GaussianMixtureParams
from jaxem.models.components import GaussianParams
from jaxem.models.components._covariance import COVARIANCES

TYPES = ("full", "tied", "diag", "spherical")
REG = 1e-6


def incomplete(seed: int, n: int = 60, dim: int = 3, fraction: float = 0.3) -> np.ndarray:
    """Correlated data with about ``fraction`` of the entries missing
    completely at random (every row keeps one observed value)."""
    rng = np.random.default_rng(seed)
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.7]])[:dim, :dim]
    x = rng.normal(size=(n, dim)) @ mixing.T + np.where(rng.random(n) < 0.5, 3.0, -1.0)[:, None]
    gone = rng.random(x.shape) < fraction
    gone[np.all(gone, axis=1), 0] = False
    return np.where(gone, np.nan, x)


def start(covariance_type: str, dim: int = 3) -> GaussianMixtureParams:
    """Asymmetric starting parameters in every covariance structure."""
    full = np.array(
        [
            [[1.5, 0.4, -0.2], [0.4, 1.0, 0.3], [-0.2, 0.3, 0.8]],
            [[0.7, -0.1, 0.1], [-0.1, 1.2, 0.2], [0.1, 0.2, 1.4]],
        ]
    )[:, :dim, :dim]
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.array([0.9, 1.3]),
    }[covariance_type]
    means = np.array([[2.5, 1.0, -0.5], [-1.0, 0.5, 0.2]])[:, :dim]
    return GaussianMixtureParams(np.array([0.4, 0.6]), means, covariances)


def matrices(params: GaussianMixtureParams, covariance_type: str) -> np.ndarray:
    k, dim = np.shape(params.means)
    return np.asarray(
        COVARIANCES[covariance_type].matrices(jnp.asarray(params.covariances), k, dim)
    )


def reference_step(x, params, covariance_type, weights=None):
    """One EM step by a loop over rows: observed-coordinate densities
    (scipy), conditional means and covariances of the missing coordinates,
    and the M-step of the covariance structure. Returns (params, mean
    log-likelihood, conditional means (n, D))."""
    n, dim = x.shape
    k = len(params.weights)
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    sigmas = matrices(params, covariance_type)
    means = np.asarray(params.means)
    log_joint = np.zeros((n, k))
    hats = np.zeros((n, k, dim))
    spreads = np.zeros((n, k, dim, dim))
    for i in range(n):
        o = ~np.isnan(x[i])
        m = ~o
        for j in range(k):
            s_oo = sigmas[j][np.ix_(o, o)]
            log_joint[i, j] = np.log(params.weights[j]) + stats.multivariate_normal(
                means[j][o], s_oo
            ).logpdf(x[i][o])
            gain = sigmas[j][np.ix_(m, o)] @ np.linalg.inv(s_oo)
            hats[i, j] = x[i]
            hats[i, j][m] = means[j][m] + gain @ (x[i][o] - means[j][o])
            spreads[i, j][np.ix_(m, m)] = sigmas[j][np.ix_(m, m)] - gain @ sigmas[j][np.ix_(o, m)]
    log_marginal = np.logaddexp.reduce(log_joint, axis=1)
    resp = np.exp(log_joint - log_marginal[:, None]) * w[:, None]
    counts = resp.sum(0)
    new_means = np.einsum("nk,nkd->kd", resp, hats) / counts[:, None]
    dev = hats - new_means[None]
    scatter = np.einsum("nk,nkd,nke->kde", resp, dev, dev) + np.einsum(
        "nk,nkde->kde", resp, spreads
    )
    full = scatter / counts[:, None, None]
    eye = np.eye(dim)
    covariances = {
        "full": full + REG * eye,
        "tied": scatter.sum(0) / counts.sum() + REG * eye,
        "diag": np.diagonal(full, axis1=1, axis2=2) + REG,
        "spherical": np.trace(full, axis1=1, axis2=2) / dim + REG,
    }[covariance_type]
    conditional = np.einsum("nk,nkd->nd", resp / w[:, None], hats)
    new = GaussianMixtureParams(counts / counts.sum(), new_means, covariances)
    return new, np.sum(w * log_marginal) / w.sum(), conditional


@pytest.mark.parametrize("covariance_type", TYPES)
def test_one_em_step_equals_a_numpy_loop_over_rows(x64, covariance_type):
    x = incomplete(0)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, len(x))
    model = jaxem.GaussianMixture(2, covariance_type=covariance_type, reg_covar=REG)
    params = jax.tree.map(jnp.asarray, start(covariance_type))
    new, log_lik = jaxem.em_step(model, params, x, weights)
    expected, expected_log_lik, conditional = reference_step(x, params, covariance_type, weights)
    np.testing.assert_allclose(log_lik, expected_log_lik, rtol=1e-10)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(new, name), getattr(expected, name), atol=1e-9)
    # Imputation by the same conditional means.
    filled = jaxem.impute(model, params, x)
    np.testing.assert_allclose(filled, conditional, atol=1e-9)
    # Invariant to the weights' scale.
    scaled, _ = jaxem.em_step(model, params, x, 1e6 * weights)
    np.testing.assert_allclose(scaled.covariances, new.covariances, rtol=1e-9)


def test_observed_log_density_equals_scipy_on_the_observed_coordinates(x64):
    x = incomplete(2, n=40)
    params = start("full")
    model = jaxem.GaussianMixture(2)
    log_prob = jax.jit(model.log_prob)(jax.tree.map(jnp.asarray, params), jnp.asarray(x))
    for i in range(len(x)):
        o = ~np.isnan(x[i])
        densities = [
            params.weights[j]
            * stats.multivariate_normal(
                params.means[j][o], params.covariances[j][np.ix_(o, o)]
            ).pdf(x[i][o])
            for j in range(2)
        ]
        np.testing.assert_allclose(log_prob[i], np.log(sum(densities)), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_missing_value_code_on_complete_rows_is_the_complete_data_code(x64, covariance_type):
    """The masked densities and moments, run on rows with nothing missing,
    equal the complete-data products (which complete blocks take)."""
    cov = COVARIANCES[covariance_type]
    params = jax.tree.map(jnp.asarray, start(covariance_type))
    x = jnp.asarray(np.nan_to_num(incomplete(3, n=30), nan=0.7))
    resp = jax.nn.softmax(jax.random.normal(jax.random.key(0), (30, 2)), axis=1)

    @jax.jit  # (one program: run eagerly, every operation compiles on its own)
    def both(params, x, resp):
        prepared = cov.prepare(params.means, params.covariances)
        densities = (
            cov._missing_log_densities(prepared, x),
            cov._complete_log_densities(prepared, x),
        )
        centres = cov.centres(params.means)
        scale = jnp.asarray(2.0)  # (a frame other than 1)
        moments = (
            cov._missing_moments(x, resp, centres, scale, params.means, params.covariances),
            cov.moments(x, resp, centres, scale),
        )
        return densities, moments

    (missing, complete), (got, expected) = both(params, x, resp)
    np.testing.assert_allclose(missing, complete, rtol=1e-12)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_nothing_missing_fits_exactly_as_before(x64):
    """With no NaN, a fit is the complete-data fit (the same program)."""
    x = np.nan_to_num(incomplete(4), nan=0.0)
    model = jaxem.GaussianMixture(2)
    params = jax.tree.map(jnp.asarray, start("full"))
    new, _ = jaxem.em_step(model, params, x)
    expected, _, _ = reference_step(x, params, "full")
    np.testing.assert_allclose(new.covariances, expected.covariances, atol=1e-10)


def mixture_data(seed: int, n: int, fraction: float):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, -2.0]])
    chol = np.array([[1.0, 0.0, 0.0], [0.9, 0.5, 0.0], [-0.6, 0.4, 0.6]])
    labels = rng.random(n) < 0.4
    x = means[labels.astype(int)] + rng.normal(size=(n, 3)) @ chol.T
    gone = rng.random(x.shape) < fraction
    gone[np.all(gone, axis=1), 0] = False
    return x, np.where(gone, np.nan, x), means, chol @ chol.T


def test_recovery_at_30_percent_missing_beats_mean_imputation():
    """float32: EM on the incomplete data recovers the means and the
    covariance better than a complete-data fit of mean-imputed data, and
    its conditional means impute the held-out values better."""
    truth, x, means, covariance = mixture_data(5, 600, 0.3)
    x, truth = x.astype(np.float32), truth.astype(np.float32)
    model = jaxem.GaussianMixture(2, covariance_type="tied")
    key = jax.random.key(0)
    result = jaxem.fit(model, x, key=key, num_restarts=2, max_iter=300, tol=1e-6)
    filled = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    baseline = jaxem.fit(model, filled, key=key, num_restarts=2, max_iter=300, tol=1e-6)
    for fitted in (result, baseline):
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(fitted.params))
    history = np.asarray(result.history)
    steps = np.diff(history[:, ~np.all(np.isnan(history), axis=0)], axis=1)
    assert np.nanmin(steps) > -1e-5  # monotone (float32 rounding aside)

    def errors(params):
        order = np.argsort(np.asarray(params.means)[:, 0])
        mean_error = np.abs(np.asarray(params.means)[order] - means).max()
        return mean_error, np.abs(np.asarray(params.covariances) - covariance).max()

    em, mean_imputed = errors(result.params), errors(baseline.params)
    assert em[0] < 0.2 and em[1] < 0.25, em
    assert em[0] < mean_imputed[0] and em[1] < mean_imputed[1], (em, mean_imputed)
    gone = np.isnan(x)
    imputed = np.asarray(jaxem.impute(model, result.params, x))
    rmse = np.sqrt(np.mean((imputed[gone] - truth[gone]) ** 2))
    rmse_mean = np.sqrt(np.mean((filled[gone] - truth[gone]) ** 2))
    assert rmse < 0.75 * rmse_mean, (rmse, rmse_mean)
    draws = np.asarray(jaxem.impute(model, result.params, x, key=jax.random.key(1)))
    assert np.all(np.isfinite(draws)) and np.array_equal(draws[~gone], x[~gone])
    assert np.all(draws[gone] != imputed[gone])


def test_hmm_with_gaps_equals_brute_force_over_state_paths(x64):
    """A Gaussian HMM on a sequence with missing coordinates and a whole
    missing step: the log-likelihood sums over every state path, each
    step's density on its observed coordinates (none for the gap)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 4, 2))
    x[0, 1, 0] = np.nan
    x[0, 2] = np.nan  # a gap in time
    model = jaxem.HMM(jaxem.Gaussian("full"), 2)
    covariances = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 1.4]]])
    params = jaxem.models.HMMParams(
        initial=np.array([0.3, 0.7]),
        transitions=np.array([[0.8, 0.2], [0.35, 0.65]]),
        emissions=GaussianParams(np.array([[0.5, -0.2], [-0.4, 0.6]]), covariances),
    )
    total = 0.0
    for path in itertools.product(range(2), repeat=4):
        p = params.initial[path[0]]
        for t, state in enumerate(path):
            if t:
                p *= params.transitions[path[t - 1], state]
            o = ~np.isnan(x[0, t])
            if o.any():
                p *= stats.multivariate_normal(
                    params.emissions.means[state][o], covariances[state][np.ix_(o, o)]
                ).pdf(x[0, t][o])
        total += p
    params = jax.tree.map(jnp.asarray, params)
    log_prob = jax.jit(model.log_prob)(params, jnp.asarray(x))
    np.testing.assert_allclose(log_prob[0], np.log(total), rtol=1e-12)
    filled = np.asarray(jaxem.impute(model, params, x))
    assert np.all(np.isfinite(filled)) and np.array_equal(filled[0, 0], x[0, 0])
    # The gap's conditional mean lies between the states' means.
    lo, hi = np.min(params.emissions.means, 0), np.max(params.emissions.means, 0)
    assert np.all((filled[0, 2] >= lo) & (filled[0, 2] <= hi))


def test_hmm_fit_with_missing_values_is_monotone_and_finite_in_float32():
    rng = np.random.default_rng(7)
    states = np.cumsum(rng.random((6, 40)) < 0.1, axis=1) % 2
    x = (rng.normal(size=(6, 40, 2)) + 3.0 * states[..., None]).astype(np.float32)
    x[rng.random(x.shape) < 0.25] = np.nan
    x[2, 10:14] = np.nan
    model = jaxem.HMM(jaxem.Gaussian("diag"), 2)
    result = jaxem.fit(model, x, key=jax.random.key(0), max_iter=40, tol=0.0)
    history = np.asarray(result.history[0])
    assert np.all(np.isfinite(history))
    assert np.min(np.diff(history)) > -1e-5 * np.abs(history).max()  # (float32 rounding)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))
    draws = np.asarray(jaxem.impute(model, result.params, x, key=jax.random.key(2)))
    assert np.all(np.isfinite(draws))


def test_families_without_missing_values_refuse_nan_and_impute_says_so():
    x = np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 3.0]])
    with pytest.raises(ValueError, match=r"non-finite value\(s\).*x\[1, 0\] = nan"):
        jaxem.fit(jaxem.Mixture(jaxem.Poisson(), 2), x, key=jax.random.key(0))
    params = jaxem.models.MixtureParams(
        jnp.array([0.5, 0.5]), jaxem.models.components.PoissonParams(jnp.ones((2, 2)))
    )
    with pytest.raises(TypeError, match="Poisson components have no missing values"):
        jaxem.impute(jaxem.Mixture(jaxem.Poisson(), 2), params, np.ones((3, 2)))
    with pytest.raises(TypeError, match="does not take missing values"):
        jaxem.impute(jaxem.MixtureOfExperts(jaxem.LinearRegression(), 2), None, x)


def test_under_a_users_jit_the_blocks_branch_on_nan(x64):
    """Unresolved (``missing=None``, data traced), each block of rows picks
    the missing-value or the complete-data code by itself: the same
    statistics as the model resolved on the concrete data."""
    x = incomplete(8, n=40)
    complete = np.nan_to_num(x, nan=0.3)
    model = jaxem.GaussianMixture(2, block_size=16)  # (blocks with and without NaN)
    x[:16] = complete[:16]
    params = jax.tree.map(jnp.asarray, start("full"))
    e_step = jax.jit(model.e_step)
    for data in (x, complete):
        resolved = model.for_data(data)
        assert resolved.missing == bool(np.isnan(data).any())
        got, expected = e_step(params, data), jax.jit(resolved.e_step)(params, data)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
