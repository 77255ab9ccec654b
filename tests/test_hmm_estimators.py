"""The hmmlearn drop-ins in ``jaxem.estimators``: whole fits from scratch
against hmmlearn (same ``random_state``, same priors, float64), the
attributes a user sets, sampling, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

hmmlearn = pytest.importorskip("hmmlearn.hmm")
from jaxem import estimators  # noqa: E402

LENGTHS = [45, 35, 40]


def gaussian_data(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
    states = np.repeat([0, 1, 2, 0, 2], 24)
    return centres[states] + rng.normal(size=(120, 2))


def assert_same_fit(ours, reference, X, lengths, emission_names):
    """The monitor, the parameters and every method's output agree."""
    assert ours.monitor_.iter == reference.monitor_.iter
    assert ours.monitor_.converged == reference.monitor_.converged
    np.testing.assert_allclose(
        list(ours.monitor_.history), list(reference.monitor_.history), rtol=1e-10
    )
    for name in ("startprob_", "transmat_", *emission_names):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(reference, name), rtol=1e-8, atol=1e-12, err_msg=name
        )
    log_prob, posteriors = ours.score_samples(X, lengths)
    expected_log_prob, expected_posteriors = reference.score_samples(X, lengths)
    np.testing.assert_allclose(log_prob, expected_log_prob, rtol=1e-10)
    np.testing.assert_allclose(posteriors, expected_posteriors, atol=1e-9)
    viterbi = ours.decode(X, lengths)
    expected = reference.decode(X, lengths)
    np.testing.assert_allclose(viterbi[0], expected[0], rtol=1e-10)
    np.testing.assert_array_equal(viterbi[1], expected[1])
    np.testing.assert_allclose(ours.bic(X, lengths), reference.bic(X, lengths), rtol=1e-10)
    np.testing.assert_allclose(ours.aic(X, lengths), reference.aic(X, lengths), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_hmm_reproduces_hmmlearn(covariance_type):
    """From scratch, with the same random_state and hmmlearn's priors (the
    non-default ones make its log-likelihood dip, which stops both fits)."""
    X = gaussian_data()
    settings = dict(
        n_components=3,
        covariance_type=covariance_type,
        random_state=1,
        n_iter=12,
        tol=1e-4,
        means_prior=0.3,
        means_weight=0.5,
        covars_prior=0.05,
        covars_weight=3,
        transmat_prior=1.2,
    )
    ours = estimators.GaussianHMM(**settings).fit(X, LENGTHS)
    reference = hmmlearn.GaussianHMM(**settings).fit(X, LENGTHS)
    emission = ["means_", "covars_"] if covariance_type != "spherical" else ["means_"]
    assert_same_fit(ours, reference, X, LENGTHS, emission)
    if covariance_type == "spherical":  # (hmmlearn's spherical covars_ getter is off)
        np.testing.assert_allclose(ours._covars_, reference._covars_[:, 0], rtol=1e-8)
        assert ours.covars_.shape == (3, 2, 2)
    assert ours.means_.dtype == np.float64


def test_categorical_hmm_reproduces_hmmlearn_with_user_set_attributes():
    """init_params leaves out the chain (the user's values are kept) and
    params leaves out the transitions (they stay as set)."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 4, size=(120, 1))
    settings = dict(n_components=3, random_state=2, n_iter=15, tol=1e-6, emissionprob_prior=1.5)
    settings.update(params="se", init_params="e")
    models = [estimators.CategoricalHMM(**settings), hmmlearn.CategoricalHMM(**settings)]
    transitions = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]])
    for model in models:
        model.startprob_ = np.array([0.5, 0.3, 0.2])
        model.transmat_ = transitions
    ours, reference = (model.fit(X, LENGTHS) for model in models)
    np.testing.assert_array_equal(ours.transmat_, transitions)
    assert ours.n_features == 4
    assert_same_fit(ours, reference, X, LENGTHS, ["emissionprob_"])
    map_ours, map_reference = ours.decode(X, LENGTHS, "map"), reference.decode(X, LENGTHS, "map")
    np.testing.assert_allclose(map_ours[0], map_reference[0], rtol=1e-10)
    np.testing.assert_array_equal(map_ours[1], map_reference[1])
    draws, states = ours.sample(9, random_state=0, currstate=2)
    assert draws.shape == (9, 1) and states[0] == 2 and draws.max() < 4
    np.testing.assert_array_equal(ours.sample(9, random_state=0, currstate=2)[0], draws)


def test_poisson_hmm_reproduces_hmmlearn():
    rng = np.random.default_rng(2)
    X = rng.poisson(np.repeat([[1.0, 6.0], [5.0, 2.0]], 60, axis=0))
    settings = dict(n_components=2, random_state=3, n_iter=20, tol=1e-6)
    settings.update(lambdas_prior=0.5, lambdas_weight=0.2)
    ours = estimators.PoissonHMM(**settings).fit(X, LENGTHS)
    reference = hmmlearn.PoissonHMM(**settings).fit(X, LENGTHS)
    assert_same_fit(ours, reference, X, LENGTHS, ["lambdas_"])
    draws, states = ours.sample(5, random_state=0)
    assert draws.shape == (5, 2) and draws.dtype.kind == "i" and states.shape == (5,)
    assert clone(ours).get_params() == ours.get_params()


def test_float32_input_fits_in_float32():
    X = gaussian_data().astype(np.float32)
    model = estimators.GaussianHMM(2, random_state=0, n_iter=3).fit(X)
    assert model.means_.dtype == np.float32 and model.transmat_.dtype == np.float32
    assert np.all(np.isfinite(model.means_)) and np.isfinite(model.score(X))


@pytest.mark.parametrize(
    "make, X, lengths, message",
    [
        (estimators.GaussianHMM, np.zeros((10, 2)), [4, 5], "sum to 9 but x has 10 rows"),
        (estimators.GaussianHMM, np.zeros((10, 2)), [10, 0], "lengths must be positive"),
        (estimators.GaussianHMM, np.full((4, 2), np.nan), None, "NaN"),
        (estimators.CategoricalHMM, np.array([[0], [1], [2.5]]), None, "must be integers"),
        (estimators.CategoricalHMM, np.array([[0], [-1]]), None, "non-negative"),
        (estimators.PoissonHMM, np.array([[0.5], [1.0]]), None, "must be integers"),
    ],
)
def test_bad_input_is_a_clear_error(make, X, lengths, message):
    with pytest.raises(ValueError, match=message):
        make(2).fit(X, lengths)


def test_bad_user_parameters_are_clear_errors():
    X = np.array([[0], [1], [2], [1]])
    model = estimators.CategoricalHMM(2, n_features=3, init_params="")
    model.startprob_, model.emissionprob_ = np.array([0.5, 0.5]), np.full((2, 3), 1 / 3)
    model.transmat_ = np.array([[1.2, -0.2], [0.5, 0.5]])
    with pytest.raises(ValueError, match="transmat_ must be non-negative"):
        model.fit(X)
    model.transmat_ = np.array([[0.6, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="transmat_ rows must sum to 1"):
        model.fit(X)
    with pytest.raises(ValueError, match="Largest symbol is 5"):
        estimators.CategoricalHMM(2, n_features=3).fit(np.array([[0], [5]]))


@pytest.mark.parametrize("covariance_type", ["diag", "tied"])
def test_gmm_hmm_reproduces_hmmlearn(covariance_type):
    """hmmlearn's initialisation, its prior defaults per covariance type and
    its M-step (covariances about the previous means). (The four covariance
    types all agree; the suite runs two.)"""
    X = gaussian_data(3)
    settings = dict(n_components=2, n_mix=2, covariance_type=covariance_type, random_state=1)
    settings.update(n_iter=8, tol=1e-4)
    ours = estimators.GMMHMM(**settings).fit(X, LENGTHS)
    reference = hmmlearn.GMMHMM(**settings).fit(X, LENGTHS)
    emission = ["weights_", "means_", "covars_"]
    # hmmlearn counts n_mix - 1 free mixture weights in all, not one set per
    # state: its BIC and AIC are lower by (K - 1)(n_mix - 1) parameters' worth.
    missing = (2 - 1) * (2 - 1)
    reference.bic = lambda X, lengths: (
        hmmlearn.GMMHMM.bic(reference, X, lengths) + missing * np.log(len(X))
    )
    reference.aic = lambda X, lengths: hmmlearn.GMMHMM.aic(reference, X, lengths) + 2 * missing
    assert_same_fit(ours, reference, X, LENGTHS, emission)
