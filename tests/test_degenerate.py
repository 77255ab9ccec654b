"""Degenerate data: the fit stays finite in float32 and float64, and the
result says what happened (never NaN parameters)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from tests.conftest import make_blobs

DTYPES = [np.float32, np.float64]
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def fit(x, covariance_type="full", k=2, **options):
    dtype = np.asarray(x).dtype
    with jax.enable_x64(dtype == np.float64):
        model = jaxem.GaussianMixture(k, covariance_type=covariance_type)
        result = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=2, **options)
        result = jax.device_get(result)
    for leaf in jax.tree.leaves(result.restarts):
        assert np.all(np.isfinite(leaf)), "NaN or inf in the fitted parameters"
    assert np.isfinite(result.log_likelihood)
    assert result.params.means.dtype == dtype
    return result


# Compiling dominates: the fits of 300 two-dimensional rows with the default
# options share one compiled program per covariance type and dtype across the
# tests below (identical points, constant feature, extreme scales, offset).
N = 300

# Tied and spherical covariances in float32 only: their float64 fits of
# identical rows are tests/test_matrix.py's "duplicates" case (finite, no
# false flag), and full and diag run here in both dtypes.
IDENTICAL = [
    (covariance_type, dtype)
    for covariance_type in COVARIANCE_TYPES
    for dtype in DTYPES
    if covariance_type in ("full", "diag") or dtype == np.float32
]


@pytest.mark.parametrize(("covariance_type", "dtype"), IDENTICAL)
def test_identical_points(covariance_type, dtype):
    x = np.tile(np.array([[1.5, -2.0]], dtype), (N, 1))
    result = fit(x, covariance_type)
    assert np.all(np.asarray(result.converged))
    # All points sit at one place: every component has reg_covar variance there.
    np.testing.assert_allclose(result.params.means, np.tile(x[:1], (2, 1)), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_feature(dtype):
    x = make_blobs(n=N, num_components=2, dtype=dtype)
    x[:, 1] = 3.0
    result = fit(x)
    variances = np.asarray(result.params.covariances)[:, 1, 1]
    np.testing.assert_allclose(variances, 1e-6, rtol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_component_that_loses_all_its_points_is_flagged(dtype):
    x = make_blobs(n=200, num_components=2, separation=3.0, dtype=dtype)
    far = np.array([[1e3, 1e3]], dtype)
    start = jaxem.models.GaussianMixtureParams(
        np.array([0.4, 0.3, 0.3], dtype),
        np.concatenate([x[:2], far]),
        np.stack([np.eye(2, dtype=dtype)] * 3),
    )
    result = fit(x, k=3, init_params=start, max_iter=50)
    collapsed = np.asarray(result.diagnostics["collapsed"])
    assert collapsed[:, 2].all() and not collapsed[:, :2].any()
    # The empty component keeps its place and gets the regularised covariance.
    np.testing.assert_allclose(result.params.means[2], far[0], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e8, 1e-8])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_extreme_scales(dtype, scale, covariance_type):
    base = make_blobs(n=N, num_components=2, separation=6.0)
    result = fit((base * scale).astype(dtype), covariance_type)
    assert not np.any(result.nonfinite)
    if scale > 1:
        # Far above reg_covar the fit is the unscaled one, rescaled: the
        # mean log-likelihood shifts by exactly D log(scale).
        reference = fit(base.astype(dtype), covariance_type)
        shift = 2 * np.log(scale)
        np.testing.assert_allclose(
            result.log_likelihood + shift, reference.log_likelihood, rtol=1e-3, atol=1e-3
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offset_keeps_float32_accurate(dtype):
    """Moments are taken about the current means, so a common offset far
    larger than the spread does not cancel the covariances away."""
    base = make_blobs(n=N, num_components=2, separation=6.0)
    shifted = fit((base + 1e4).astype(dtype))
    reference = fit(base.astype(dtype))
    np.testing.assert_allclose(shifted.log_likelihood, reference.log_likelihood, rtol=1e-3)
    order = lambda r: np.argsort(np.asarray(r.params.means)[:, 0])
    np.testing.assert_allclose(
        np.asarray(shifted.params.covariances)[order(shifted)],
        np.asarray(reference.params.covariances)[order(reference)],
        rtol=2e-2,
        atol=1e-3,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_as_many_components_as_points(dtype):
    x = make_blobs(n=6, num_components=2, dtype=dtype)
    result = fit(x, k=6)
    assert result.params.means.shape == (6, 2)


def test_covariance_singular_in_float32_is_repaired():
    """A covariance that is singular in float32 gets jitter, not NaN."""
    model = jaxem.GaussianMixture(1, reg_covar=0.0)
    t = np.linspace(-1, 1, 50, dtype=np.float32)
    x = np.stack([t, 2 * t, 1e-4 * np.sin(40 * t)], axis=1).astype(np.float32) * 1e3
    result = jaxem.fit(model, x, key=jax.random.key(0))
    covariance = np.asarray(result.params.covariances[0])
    assert np.all(np.isfinite(covariance))
    assert np.all(np.isfinite(np.linalg.cholesky(covariance.astype(np.float64))))
    assert np.isfinite(float(result.log_likelihood))
    assert jnp.isfinite(jax.jit(model.log_prob)(result.params, x)).all()
