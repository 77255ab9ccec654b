"""Information criteria (BIC, AIC, ICL) against hand formulas, and model
selection in one call (``jaxem.select``): it finds the true number of
clusters, and compiles one program per distinct configuration, none on a
second call.

Float64 for the reference comparisons (the ``x64`` fixture); the
tolerances cover float64 rounding of sums of a few hundred terms.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import jaxem
from jaxem import _criteria, _driver
from jaxem.models import GaussianMixtureParams, MixtureParams
from jaxem.models.components import PoissonParams
from tests.conftest import make_blobs

_COMPILED = [0]


def _count_compilations(name: str, duration: float, **kwargs: Any) -> None:
    if name.endswith("backend_compile_duration"):
        _COMPILED[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compilations)


@contextlib.contextmanager
def no_compilation():
    """Fail if XLA compiles anything inside the block."""
    before = _COMPILED[0]
    yield
    assert _COMPILED[0] == before, f"{_COMPILED[0] - before} program(s) compiled"


# ------------------------------------------------------ the criteria


def gaussian_case(rng):
    x = make_blobs(seed=1, n=80, num_components=2)
    params = GaussianMixtureParams(
        np.array([0.45, 0.55]),
        x[rng.choice(80, 2, replace=False)],
        np.array([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 1.5]]]),
    )
    log_joint = np.stack(
        [
            np.log(params.weights[k])
            + stats.multivariate_normal(params.means[k], params.covariances[k]).logpdf(x)
            for k in range(2)
        ],
        axis=1,
    )
    # K − 1 weights, K·D means, K·D(D + 1)/2 covariances
    return jaxem.GaussianMixture(2), params, x, log_joint, 1 + 2 * 2 + 2 * 3


def poisson_case(rng):
    rates = np.array([[1.0, 5.0, 2.0], [4.0, 1.0, 7.0]])
    x = rng.poisson(rates[rng.integers(2, size=80)]).astype(np.float64)
    params = MixtureParams(np.array([0.3, 0.7]), PoissonParams(rates + 0.5))
    log_joint = np.stack(
        [
            np.log(params.weights[k]) + stats.poisson(params.components.rates[k]).logpmf(x).sum(1)
            for k in range(2)
        ],
        axis=1,
    )
    # K − 1 weights, K·D rates
    return jaxem.Mixture(jaxem.Poisson(), num_components=2), params, x, log_joint, 1 + 2 * 3


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("case", [gaussian_case, poisson_case], ids=["gaussian", "poisson"])
def test_criteria_against_hand_formulas(case):
    model, params, x, log_joint, num_parameters = case(np.random.default_rng(0))
    n = x.shape[0]
    log_likelihood = np.sum(logsumexp(log_joint, axis=1))
    log_resp = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
    entropy = -np.sum(np.exp(log_resp) * log_resp)
    assert entropy > 0.1  # (overlapping components: ICL differs from BIC)
    bic = -2.0 * log_likelihood + num_parameters * np.log(n)
    aic = -2.0 * log_likelihood + 2.0 * num_parameters
    assert model.num_parameters(params) == num_parameters
    np.testing.assert_allclose(float(jaxem.bic(model, params, x)), bic, rtol=1e-12)
    np.testing.assert_allclose(float(jaxem.aic(model, params, x)), aic, rtol=1e-12)
    np.testing.assert_allclose(float(jaxem.icl(model, params, x)), bic + 2.0 * entropy, rtol=1e-12)


def test_icl_needs_expected_log_joint():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(TypeError, match="expected_log_joint"):
        jaxem.select([jaxem.FactorAnalysis(1)], x, key=jax.random.key(0), criterion="icl")
    with pytest.raises(ValueError, match="criterion"):
        jaxem.select([jaxem.GaussianMixture(1)], x, key=jax.random.key(0), criterion="likelihood")


# ------------------------------------------------------- the selection


def test_select_finds_three_clusters_and_compiles_once_per_configuration():
    x = make_blobs(seed=3, n=300, num_components=3, separation=6.0, dtype=np.float32)
    models = [jaxem.GaussianMixture(k, init_method="k-means++") for k in range(1, 6)]
    models.append(jaxem.GaussianMixture(3, init_method="k-means++"))  # (= models[2])
    options = dict(key=jax.random.key(0), num_restarts=2, max_iter=50)
    fits = _driver._jitted_fit._cache_size()
    scores = _criteria.scores._cache_size()

    selection = jaxem.select(models, x, **options)

    # one fit program and one criteria program per distinct configuration
    assert _driver._jitted_fit._cache_size() - fits == 5
    assert _criteria.scores._cache_size() - scores == 5
    assert selection.best_index == 2 and selection.best.num_components == 3
    assert selection.best_result is selection.results[2]
    icl = [row.icl for row in selection.table]
    bic = [row.bic for row in selection.table]
    assert int(np.argmin(icl)) == 2
    assert all(i >= b for i, b in zip(icl, bic, strict=True))  # the entropy is >= 0
    assert [row.num_parameters for row in selection.table] == [5, 11, 17, 23, 29, 17]
    assert selection.table[5] == selection.table[2]  # (same configuration, key and data)
    text = str(selection)
    assert "GaussianMixture(3, init_method='k-means++')" in text and text.count("\n") == len(models)
    assert text.splitlines()[3].startswith("*")

    with no_compilation():  # the same list again, choosing by ICL
        again = jaxem.select(models, x, **dict(options, criterion="icl"))
    assert again.best_index == 2
    with no_compilation():  # new data of the same shape
        shifted = jaxem.select(models[:3], x + np.float32(1.0), **options)
    assert shifted.best_index == 2
    assert np.allclose([r.bic for r in shifted.table], bic[:3], rtol=1e-4)  # (a translation)
