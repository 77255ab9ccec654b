"""Observed information and standard errors (jaxem.observed_information,
jaxem.standard_errors), in float64.

References: central finite differences of the log-likelihood in free
coordinates, closed forms for one Poisson and one Gaussian, repeated rows for
integer weights, and the coverage of Wald intervals in a simulation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _free
from tests.conftest import make_blobs

pytestmark = pytest.mark.usefixtures("x64")


def test_matches_finite_differences_in_free_coordinates():
    x = jnp.asarray(make_blobs(seed=1, n=80, num_components=2))
    model = jaxem.GaussianMixture(2)  # full: simplex, real and positive-definite coordinates
    params = model.init(jax.random.key(0), x)
    information = jaxem.observed_information(model, params, x)
    constraints = model.constraints(params)
    u = _free.to_free(constraints, params)
    p = u.shape[0]
    assert information.shape == (p, p) == (11, 11)

    f = jax.jit(
        jax.vmap(lambda v: jnp.sum(model.log_prob(_free.from_free(constraints, v, params), x)))
    )
    h = 1e-4
    eye = np.eye(p) * h
    signs = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    points = np.stack(
        [u + a * eye[i] + b * eye[j] for a, b in signs for i in range(p) for j in range(p)]
    )
    values = np.asarray(f(points)).reshape(4, p, p)
    fd = -(values[0] - values[1] - values[2] + values[3]) / (4 * h * h)
    np.testing.assert_allclose(information, fd, rtol=1e-5, atol=1e-4 * np.abs(fd).max())
    np.testing.assert_array_equal(information, information.T)


def test_poisson_closed_form_and_integer_weights_are_repeated_rows():
    rng = np.random.default_rng(0)
    x = rng.poisson(3.0, (150, 2)).astype(np.float64)
    model = jaxem.Mixture(jaxem.Poisson(), num_components=1)
    params = model.init(jax.random.key(0), x)  # one component: the MLE, the mean
    rates = x.mean(axis=0)
    np.testing.assert_allclose(params.components.rates[0], rates, rtol=1e-12)
    se = jaxem.standard_errors(model, params, x)
    np.testing.assert_allclose(se.components.rates[0], np.sqrt(rates / 150), rtol=1e-10)
    np.testing.assert_array_equal(se.weights, 0.0)  # one weight: not estimated
    # Information in log-rates: n λ on the diagonal.
    np.testing.assert_allclose(
        jaxem.observed_information(model, params, x), np.diag(150 * rates), rtol=1e-10
    )

    counts = rng.integers(0, 4, 150)
    repeated = np.repeat(x, counts, axis=0)
    by_weights = jaxem.standard_errors(model, params, x, weights=counts)
    by_rows = jaxem.standard_errors(model, params, repeated)
    np.testing.assert_allclose(by_weights.components.rates, by_rows.components.rates, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gaussian_closed_form(covariance_type):
    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.5], [0.0, 2.0]]) + 3.0
    mean = x.mean(axis=0)
    cov = (x - mean).T @ (x - mean) / n  # the MLE
    covariances = cov[None] if covariance_type == "full" else np.diag(cov)[None]
    model = jaxem.GaussianMixture(1, covariance_type=covariance_type)
    params = model.init(jax.random.key(0), x)._replace(
        means=jnp.asarray(mean[None]), covariances=jnp.asarray(covariances)
    )
    se = jaxem.standard_errors(model, params, x)
    variances = np.diag(cov)
    np.testing.assert_allclose(se.means[0], np.sqrt(variances / n), rtol=1e-9)
    if covariance_type == "diag":
        np.testing.assert_allclose(se.covariances[0], variances * np.sqrt(2 / n), rtol=1e-9)
    else:  # Var(Σ̂_jk) = (Σ_jk² + Σ_jj Σ_kk) / n, mirrored entries alike
        expected = np.sqrt((cov**2 + np.outer(variances, variances)) / n)
        np.testing.assert_allclose(se.covariances[0], expected, rtol=1e-9)


def test_mixture_information_is_positive_definite_at_a_fit():
    x = jaxem.load_faithful()
    model = jaxem.GaussianMixture(2)
    params = jaxem.fit(model, x, key=jax.random.key(0), tol=1e-10, max_iter=500).params
    information = np.asarray(jaxem.observed_information(model, params, x))
    np.testing.assert_array_equal(information, information.T)
    assert np.linalg.eigvalsh(information).min() > 0
    se = jaxem.standard_errors(model, params, x)
    for leaf in jax.tree.leaves(se):
        assert np.all(np.isfinite(leaf)) and np.all(leaf > 0)
    # The two weights sum to one: equal standard errors.
    np.testing.assert_allclose(se.weights[0], se.weights[1], rtol=1e-10)


def test_not_a_maximum_or_not_identifiable_gives_nan():
    x = jnp.asarray(make_blobs(seed=2, n=200, dim=4, num_components=1))
    model = jaxem.FactorAnalysis(num_factors=2)  # loadings identified up to a rotation
    params = jaxem.fit(model, x, key=jax.random.key(0), tol=1e-12, max_iter=2000).params
    se = jaxem.standard_errors(model, params, x)
    assert all(np.all(np.isnan(leaf)) for leaf in jax.tree.leaves(se))
    # Far from a maximum, the information is indefinite.
    mixture = jaxem.GaussianMixture(2, covariance_type="diag")
    start = mixture.init(jax.random.key(0), x)._replace(means=jnp.zeros((2, 4)))
    se = jaxem.standard_errors(mixture, start, x)
    assert all(np.all(np.isnan(leaf)) for leaf in jax.tree.leaves(se))


def test_wald_interval_coverage():
    """95% Wald intervals of a two-component Poisson mixture's rates and
    weights cover the truth in 91-98% of 300 simulated datasets (fits and
    standard errors vmapped over datasets: one program each)."""
    replicates, n = 300, 300
    rates, weight = np.array([2.0, 9.0]), 0.4
    keys = jax.random.split(jax.random.key(0), 3)
    labels = jax.random.bernoulli(keys[0], 1 - weight, (replicates, n)).astype(int)
    x = jax.random.poisson(keys[1], jnp.asarray(rates)[labels])[..., None].astype(jnp.float64)
    model = jaxem.Mixture(jaxem.Poisson(), num_components=2)

    def fit_and_errors(x, key):
        params = jaxem.fit(model, x, key=key, tol=1e-9, max_iter=1000).params
        return params, jaxem.standard_errors(model, params, x)

    params, se = jax.vmap(fit_and_errors)(x, jax.random.split(keys[2], replicates))
    order = jnp.argsort(params.components.rates[:, :, 0], axis=1)  # label switching
    take = lambda a: jnp.take_along_axis(a, order, axis=1)
    estimates = take(params.components.rates[:, :, 0])
    errors = take(se.components.rates[:, :, 0])
    covered = np.abs(estimates - rates) <= 1.96 * errors
    weights, weight_errors = take(params.weights)[:, 0], take(se.weights)[:, 0]
    covered_weight = np.abs(weights - weight) <= 1.96 * weight_errors
    assert np.all(np.isfinite(errors))
    for coverage in (*covered.mean(axis=0), covered_weight.mean()):
        assert 0.91 <= coverage <= 0.98, coverage
