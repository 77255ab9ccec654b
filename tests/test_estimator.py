"""jaxem.estimators.GaussianMixture as a drop-in for scikit-learn's."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jaxem.estimators import ComponentCollapseWarning, GaussianMixture
from jaxem.estimators._gaussian_mixture import _sample
from tests.conftest import make_blobs

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
X = make_blobs(seed=1, n=300, dim=3, num_components=3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_reproduces_sklearn_from_the_same_start(covariance_type):
    start = SklearnGaussianMixture(
        3, covariance_type=covariance_type, max_iter=0, random_state=0
    ).fit(X)
    options = dict(
        covariance_type=covariance_type,
        tol=1e-6,
        max_iter=500,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    reference = SklearnGaussianMixture(3, **options).fit(X)
    ours = GaussianMixture(3, **options).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(reference, name), rtol=1e-8, atol=1e-10, err_msg=name
        )
        assert getattr(ours, name).dtype == np.float64
    assert ours.n_iter_ == reference.n_iter_
    assert ours.converged_ is True and reference.converged_
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-12)
    np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(
        ours.score_samples(X), reference.score_samples(X), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    np.testing.assert_allclose(ours.score(X), reference.score(X), rtol=1e-12)
    np.testing.assert_allclose(ours.bic(X), reference.bic(X), rtol=1e-12)
    np.testing.assert_allclose(ours.aic(X), reference.aic(X), rtol=1e-12)
    assert ours.n_features_in_ == 3


def test_partial_initial_parameters_and_restarts():
    means = X[:3]  # one point of each blob
    gm = GaussianMixture(3, means_init=means, n_init=3, random_state=0).fit(X)
    assert gm.converged_
    assert gm.weights_.shape == (3,) and gm.covariances_.shape == (3, 3, 3)


def test_float32_input_fits_in_float32():
    gm = GaussianMixture(3, covariance_type="diag", n_init=2, random_state=0).fit(
        X.astype(np.float32)
    )
    assert gm.means_.dtype == np.float32
    assert np.all(np.isfinite(gm.covariances_))
    assert gm.score_samples(X.astype(np.float32)).dtype == np.float32


def test_fit_predict_equals_fit_then_predict():
    gm = GaussianMixture(3, random_state=2)
    labels = gm.fit_predict(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    np.testing.assert_array_equal(labels, clone(gm).fit(X).predict(X))  # seeded: repeatable


def test_clone_pipeline_and_grid_search():
    gm = GaussianMixture(2, covariance_type="diag", random_state=0)
    copy = clone(gm)
    assert copy.get_params() == gm.get_params() and copy is not gm
    pipeline = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(X)
    assert pipeline.predict(X).shape == (300,)
    search = GridSearchCV(
        GaussianMixture(random_state=0, covariance_type="spherical"),
        {"n_components": [1, 3]},
        cv=2,
    ).fit(X)
    assert search.best_params_ == {"n_components": 3}
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    np.testing.assert_allclose(restored.score_samples(X), search.best_estimator_.score_samples(X))


def test_not_fitted():
    gm = GaussianMixture(2)
    for method in (gm.predict, gm.predict_proba, gm.score_samples, gm.score, gm.bic):
        with pytest.raises(NotFittedError):
            method(X)
    with pytest.raises(NotFittedError):
        gm.sample(3)


def test_convergence_warning():
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm = GaussianMixture(3, max_iter=0, random_state=0).fit(X)  # no warning, as sklearn
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and gm.lower_bounds_ == []


def test_warm_start_continues_from_the_last_fit():
    gm = GaussianMixture(3, max_iter=2, warm_start=True, random_state=0, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        gm.fit(X)
    first = gm.lower_bounds_
    with pytest.warns(ConvergenceWarning):
        gm.fit(X)
    second = gm.lower_bounds_
    assert second[0] >= first[-1]  # picks up where it stopped
    assert len(first) == len(second) == 2


def test_collapsed_component_warns():
    x = np.concatenate([make_blobs(n=100, dim=2, num_components=1), [[1e3, 1e3]]])
    means = np.array([[0.0, 0.0], [2e3, 2e3]])
    with pytest.warns(ComponentCollapseWarning, match=r"Component\(s\) \[1\]"):
        GaussianMixture(2, means_init=means, max_iter=20).fit(x)


def test_sample():
    gm = GaussianMixture(3, random_state=0).fit(X)
    draws, labels = gm.sample(500)
    assert draws.shape == (500, 3) and labels.shape == (500,)
    assert np.all(np.diff(labels) >= 0)  # sorted by component, as scikit-learn
    again, _ = gm.sample(500)
    np.testing.assert_array_equal(draws, again)
    # Sizes in one power-of-two class share one compiled program.
    compiled = _sample._cache_size()
    for n in (257, 300, 511):
        assert gm.sample(n)[0].shape == (n, 3)
    assert _sample._cache_size() == compiled
    with pytest.raises(ValueError, match="at least one sample"):
        gm.sample(0)


def test_verbose_progress(capsys):
    gm = GaussianMixture(3, verbose=2, verbose_interval=5, random_state=0, max_iter=11, tol=0)
    with pytest.warns(ConvergenceWarning):
        gm.fit(X)
    out = capsys.readouterr().out
    assert "Iteration 5" in out and "Iteration 10" in out and "time lapse" in out
    assert "did not converge" in out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_components": 0}, r"'n_components' parameter must be >= 1"),
        ({"covariance_type": "block"}, r"'covariance_type' parameter must be one of"),
        ({"tol": -1.0}, r"'tol' parameter must be >= 0"),
        ({"reg_covar": -1.0}, r"'reg_covar' parameter must be >= 0"),
        ({"max_iter": -1}, r"'max_iter' parameter must be >= 0"),
        ({"n_init": 0}, r"'n_init' parameter must be >= 1"),
        ({"init_params": "best"}, r"'init_params' parameter must be one of"),
        ({"weights_init": [0.5, 0.6, 0.1]}, r"should be normalized"),
        ({"weights_init": [0.5, 0.5]}, r"'weights' should have the shape of \(3,\)"),
        ({"means_init": np.zeros((3, 2))}, r"'means' should have the shape of \(3, 3\)"),
        ({"precisions_init": -np.ones((3, 3, 3))}, r"symmetric, positive-definite"),
        ({"covariance_type": "diag", "precisions_init": -np.ones((3, 3))}, r"should be positive"),
    ],
)
def test_bad_hyperparameters(options, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 3, **options}).fit(X)


def test_scikit_learn_estimator_checks():
    """scikit-learn's own checks of an estimator (clone, fit/predict
    contracts, dtypes, pickling, ...), in full."""
    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkipTestWarning)  # (array-API checks need scipy's flag)
        check_estimator(GaussianMixture())


def test_missing_values_are_fitted_and_imputed():
    """NaN is a missing value (allow_missing=True, the default); scores and
    predictions read the observed coordinates; impute fills the rest."""
    gm = GaussianMixture(3, random_state=0).fit(X)
    gaps = X.copy()
    gaps[::7, 1] = np.nan
    fitted = GaussianMixture(3, random_state=0).fit(gaps)
    assert fitted.converged_ and np.all(np.isfinite(fitted.covariances_))
    assert np.all(np.isfinite(fitted.score_samples(gaps)))
    filled = fitted.impute(gaps)
    gone = np.isnan(gaps)
    assert np.array_equal(filled[~gone], gaps[~gone])
    assert np.sqrt(np.mean((filled[gone] - X[gone]) ** 2)) < np.std(X[:, 1])
    drawn = fitted.impute(gaps, random_state=0)
    assert np.all(np.isfinite(drawn)) and not np.allclose(drawn[gone], filled[gone])
    assert gm.__sklearn_tags__().input_tags.allow_nan
    assert not GaussianMixture(allow_missing=False).__sklearn_tags__().input_tags.allow_nan


def test_bad_data():
    with pytest.raises(ValueError, match=r"n_samples >= n_components"):
        GaussianMixture(5).fit(X[:4])
    bad = X.copy()
    bad[4, 2] = -np.inf
    with pytest.raises(ValueError, match=r"x contains 1 infinite.*x\[4, 2\]"):
        GaussianMixture(2).fit(bad)
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(2, allow_missing=False).fit(bad)
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="3 features"):
        gm.predict(X[:, :2])
