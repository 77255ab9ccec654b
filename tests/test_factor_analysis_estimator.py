"""jaxem.estimators.FactorAnalysis as a drop-in for scikit-learn's.

scikit-learn's FactorAnalysis maximises the same likelihood by another
algorithm (alternating SVD updates), so the references are its maximum (the
log-likelihood, the covariance, the precision, the rotated loadings, the
reconstruction from the factors), its convergence rule and its warnings, and
scikit-learn's own estimator checks. Every fit here has one of two shapes, so
the file compiles few programs beyond those of the checks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats as st
from sklearn.base import clone
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis
from sklearn.exceptions import ConvergenceWarning, NotFittedError, SkipTestWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from jaxem.estimators import FactorAnalysis
from tests.test_factor_analysis import XM, X, factor_data

TIGHT = dict(tol=1e-10, max_iter=5000)


@pytest.fixture(scope="module")
def tight():
    """Ours to a total log-likelihood change of 1e-10 (about 130 EM
    iterations); scikit-learn's to 1e-12 (about 2600 of its iterations: it
    converges linearly, slowly). The parameters are then within about 1e-6
    of the maximum."""
    return (
        FactorAnalysis(2, **TIGHT).fit(X),
        SklearnFactorAnalysis(2, svd_method="lapack", tol=1e-12, max_iter=20000).fit(X),
    )


def test_scikit_learn_estimator_checks():
    """scikit-learn's own checks (cloning, pickling with NaN in the data,
    dtypes, fitted-state errors, sample-order and subset invariance, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkipTestWarning)  # (array-API checks need scipy's flag)
        check_estimator(FactorAnalysis())


def test_reaches_sklearns_maximum(tight):
    """The same maximum: total log-likelihood (loglike_), per-sample scores,
    covariance and precision; the loadings up to a rotation (the
    reconstruction from the factors is rotation-free). loglike_ increases at
    every iteration and has one entry per iteration."""
    ours, reference = tight
    np.testing.assert_allclose(ours.loglike_[-1], reference.loglike_[-1], rtol=1e-9)
    np.testing.assert_allclose(ours.loglike_[-1], reference.score(X) * len(X), rtol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), atol=1e-5)
    np.testing.assert_allclose(ours.score(X), reference.score(X), rtol=1e-9)
    np.testing.assert_allclose(ours.get_covariance(), reference.get_covariance(), atol=1e-5)
    np.testing.assert_allclose(ours.get_precision(), reference.get_precision(), atol=1e-5)
    np.testing.assert_allclose(
        ours.get_precision() @ ours.get_covariance(), np.eye(X.shape[1]), atol=1e-10
    )
    np.testing.assert_allclose(
        ours.transform(X) @ ours.components_,
        reference.transform(X) @ reference.components_,
        atol=1e-4,
    )
    np.testing.assert_allclose(ours.mean_, X.mean(axis=0), rtol=1e-12)
    sigma = ours.get_covariance()
    np.testing.assert_allclose(
        ours.score_samples(X), st.multivariate_normal(ours.mean_, sigma).logpdf(X), rtol=1e-10
    )
    assert ours.components_.shape == (2, X.shape[1]) and ours.noise_variance_.shape == (6,)
    assert ours.n_features_in_ == 6 and ours.n_iter_ == len(ours.loglike_)
    assert np.all(np.diff(ours.loglike_) > 0)
    assert ours.loglike_[-1] - ours.loglike_[-2] < TIGHT["tol"]
    assert list(ours.get_feature_names_out()) == ["factoranalysis0", "factoranalysis1"]


@pytest.mark.parametrize("rotation", ["varimax", "quartimax"])
def test_rotations_match_sklearn(tight, rotation):
    """Varimax and quartimax give scikit-learn's rotated loadings (up to the
    order and signs of the factors) and orthomax criterion; a rotation
    changes neither the covariance nor the likelihood. (The rotation's
    iteration stops at a relative change of its criterion of 1e-6, from
    loadings in another orientation than scikit-learn's, so the rotations
    agree to about the square root of that.)"""
    ours = clone(tight[0]).set_params(rotation=rotation).fit(X)
    reference = clone(tight[1]).set_params(rotation=rotation).fit(X)
    got, want = ours.components_, reference.components_
    order = np.argsort(-np.abs(got @ want.T), axis=1)[:, 0]
    signs = np.sign(np.sum(got * want[order], axis=1))
    np.testing.assert_allclose(got * signs[:, None], want[order], atol=3e-3)
    gamma = 1.0 if rotation == "varimax" else 0.0
    criterion = lambda c: np.sum(c**4) - gamma / c.shape[1] * np.sum(np.sum(c**2, axis=1) ** 2)
    np.testing.assert_allclose(criterion(got), criterion(want), rtol=1e-5)
    np.testing.assert_allclose(ours.get_covariance(), tight[0].get_covariance(), atol=1e-12)
    np.testing.assert_allclose(ours.score(X), tight[0].score(X), rtol=1e-12)
    np.testing.assert_allclose(
        ours.transform(X) @ ours.components_,
        tight[0].transform(X) @ tight[0].components_,
        atol=1e-9,
    )


def test_default_convergence_and_warnings(tight):
    """Defaults: convergence when the total log-likelihood grew by less than
    tol = 1e-2, as scikit-learn's; too few iterations warn as scikit-learn
    does. Stopped where the gain per iteration fell below 1e-2, both
    linearly convergent algorithms are below the maximum by more than that:
    ours by 0.02 here (from the default start, or from noise_variance_init),
    scikit-learn's by 0.3 (in total log-likelihood)."""
    ours = FactorAnalysis(2).fit(X)
    changes = np.diff(ours.loglike_)
    assert changes[-1] < 1e-2 and np.all(changes[:-1] >= 1e-2)
    maximum = tight[1].score(X) * len(X)
    reference = SklearnFactorAnalysis(2).fit(X)
    assert maximum - 0.05 < ours.score(X) * len(X) <= maximum + 1e-9
    assert ours.score(X) >= reference.score(X)
    started = FactorAnalysis(2, noise_variance_init=np.full(6, 0.5)).fit(X)
    assert maximum - 0.05 < started.score(X) * len(X) <= maximum + 1e-9
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        FactorAnalysis(2, max_iter=1000, tol=0.0).fit(X)


def test_missing_values_float32_and_errors():
    """NaN is a missing value by default (scores, factors and imputations
    from the observed coordinates); allow_missing=False refuses it as
    scikit-learn does, and sets the allow_nan tag accordingly. float32 input
    fits in float32. Bad input and options raise scikit-learn's errors."""
    fitted = FactorAnalysis(2).fit(XM)
    assert np.all(np.isfinite(fitted.components_)) and np.all(fitted.noise_variance_ > 0)
    assert np.all(np.isfinite(fitted.score_samples(XM))) and np.all(
        np.isfinite(fitted.transform(XM))
    )
    filled = fitted.impute(XM)
    gone = np.isnan(XM)
    np.testing.assert_array_equal(filled[~gone], XM[~gone])
    column_means = np.where(gone, np.nanmean(XM, axis=0), XM)
    error = lambda guess: np.sqrt(np.mean((guess[gone] - X[gone]) ** 2))
    assert error(filled) < 0.7 * error(column_means)
    assert FactorAnalysis().__sklearn_tags__().input_tags.allow_nan
    assert not FactorAnalysis(allow_missing=False).__sklearn_tags__().input_tags.allow_nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        FactorAnalysis(2, allow_missing=False).fit(XM)
    bad = X.copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        FactorAnalysis(2).fit(bad)

    single = FactorAnalysis(2).fit(X.astype(np.float32))
    assert single.components_.dtype == np.float32 and single.transform(X).dtype == np.float32
    double = FactorAnalysis(2).fit(X)
    assert single.n_iter_ == double.n_iter_
    np.testing.assert_allclose(single.get_covariance(), double.get_covariance(), atol=1e-4)

    with pytest.raises(NotFittedError):
        FactorAnalysis().transform(X)
    with pytest.raises(ValueError, match="at most the number of features"):
        FactorAnalysis(7).fit(X)
    with pytest.raises(ValueError, match="noise_variance_init dimension"):
        FactorAnalysis(2, noise_variance_init=np.ones(5)).fit(X)
    with pytest.raises(ValueError, match="'rotation' parameter"):
        FactorAnalysis(2, rotation="promax").fit(X)
    with pytest.raises(ValueError, match="'svd_method' parameter"):
        FactorAnalysis(2, svd_method="arpack").fit(X)
    with pytest.raises(ValueError, match="6 features"):
        FactorAnalysis(2).fit(X).transform(X[:, :5])
    pipeline = make_pipeline(StandardScaler(), FactorAnalysis(2)).fit(factor_data(seed=3))
    assert pipeline.transform(factor_data(seed=4)).shape == (300, 2)
