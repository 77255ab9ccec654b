"""Hidden Markov models fitted: monotone Baum-Welch that recovers the chain,
chunked and streamed fits, float32 with states never visited, weights, and
three Baum-Welch iterations against hmmlearn (float64). (Split from
test_hmm.py so that the two files run on different workers.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn

import jaxem
from jaxem import _driver
from jaxem.models import HMMParams
from jaxem.models.components import CategoricalParams, PoissonParams
from tests.test_hmm import K, gaussian_params, sample_batch


@pytest.mark.usefixtures("x64")
def test_fit_is_monotone_and_recovers_the_chain():
    rng = np.random.default_rng(5)
    truth = gaussian_params(rng)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K)
    x, states = sample_batch(model, truth, jax.random.key(2), 8, 200)
    result = jaxem.fit(model, x, key=jax.random.key(3), num_restarts=3, max_iter=100, tol=1e-8)
    history = np.asarray(result.history)
    for trace in history:
        trace = trace[np.isfinite(trace)]
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert not np.any(result.decreased) and not np.any(result.nonfinite)
    # The decoded states agree with the truth up to a relabelling.
    path, _ = jax.jit(model.most_likely_states)(result.params, x)
    confusion = np.zeros((K, K))
    np.add.at(confusion, (np.asarray(states).ravel(), np.asarray(path).ravel()), 1)
    assert confusion.max(axis=1).sum() / confusion.sum() > 0.95
    order = np.argmax(confusion, axis=1)
    np.testing.assert_allclose(
        np.asarray(result.params.transitions)[np.ix_(order, order)], truth.transitions, atol=0.08
    )


@pytest.mark.usefixtures("x64")
def test_parallel_model_equals_the_sequential_model():
    """``parallel=True``: the E-step (statistics and log-likelihood), the
    posteriors and the Viterbi paths of a ragged batch are the sequential
    model's, so its fits are the sequential fits above, up to rounding; one
    compiled program instead of a second fit. (The parallel algorithms
    against enumeration of every path: tests/test_hmm.py.)"""
    truth = gaussian_params(np.random.default_rng(5))
    sequential = jaxem.HMM(jaxem.Gaussian("diag"), K)
    parallel = jaxem.HMM(jaxem.Gaussian("diag"), K, parallel=True)
    x, _ = sample_batch(sequential, truth, jax.random.key(2), 8, 200)
    data = (x, np.array([200, 150, 200, 37, 200, 200, 1, 200]))
    evaluate = jax.jit(
        lambda params, data: [
            (m.e_step(params, data), m.posterior(params, data), m.most_likely_states(params, data))
            for m in (sequential, parallel)
        ]
    )
    expected, got = evaluate(truth, data)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10), got[:2], expected[:2]
    )
    np.testing.assert_array_equal(got[2][0], expected[2][0])  # the paths
    np.testing.assert_allclose(got[2][1], expected[2][1], rtol=1e-12)  # their scores


@pytest.mark.usefixtures("x64")
def test_chunked_and_streamed_fits_split_by_sequences():
    """Statistics add up over sequences: chunks on the device and chunks
    streamed from the host give the full-batch fit; new values and lengths
    compile nothing new."""
    rng = np.random.default_rng(10)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K)
    x, _ = sample_batch(model, gaussian_params(rng), jax.random.key(8), 10, 20)
    data = (x, np.array([20, 13, 20, 4, 20, 20, 9, 20, 20, 17]))
    device = jax.tree.map(jnp.asarray, data)
    keys = jaxem.restart_keys(jax.random.key(9), 2)
    starts = jax.jit(jax.vmap(model.init, (0, None)))(keys, device)
    options = dict(key=jax.random.key(9), num_restarts=2, max_iter=15, tol=0.0, init_params=starts)
    full = jaxem.fit(model, device, **options)
    # New values and new lengths of the same shapes reuse the compiled program.
    compiled = _driver._jitted_fit._cache_size()
    other = (device[0] * 2.0 + 1.0, jnp.asarray([5, 20, 20, 20, 1, 20, 20, 20, 20, 3]))
    jaxem.fit(model, other, **{**options, "key": jax.random.key(10)})
    assert _driver._jitted_fit._cache_size() == compiled
    chunked = jaxem.fit(model, device, chunk_size=4, **options)
    streamed = jaxem.fit(model, data, chunk_size=3, stream=True, **options)
    for got in (chunked, streamed):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
            got.restarts,
            full.restarts,
        )
        np.testing.assert_allclose(got.history, full.history, rtol=1e-10)


def test_float32_fit_with_a_state_never_visited_stays_finite():
    """Four states for data from two: finite parameters, the empty state
    flagged, in float32."""
    rng = np.random.default_rng(6)
    x = np.concatenate(
        [rng.normal(0, 1, size=(2, 100, 2)), rng.normal(8, 1, size=(2, 100, 2))], axis=1
    ).astype(np.float32)
    model = jaxem.HMM(jaxem.Gaussian("diag"), 4)
    start = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x))
    # Starting means far from the data: two states never get any weight.
    # (Not 1e4: diagonal moments are taken about the average of the means, and
    # with states 1e4 away a unit variance is below float32's resolution of
    # the squares there; the visited states' variances round to 0 or to
    # multiples of 2.56, depending on the CPU's summation order.)
    means = jnp.asarray(start.emissions.means).at[2:].set(100.0)
    start = start._replace(emissions=start.emissions._replace(means=means))
    result = jaxem.fit(model, x, key=jax.random.key(0), init_params=start, max_iter=30)
    leaves = jax.tree.leaves(result.params)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)
    np.testing.assert_array_equal(result.diagnostics["collapsed"][0], [False, False, True, True])
    np.testing.assert_allclose(np.asarray(result.params.transitions).sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.usefixtures("x64")
def test_poisson_emissions_and_weights_are_repeated_sequences():
    model = jaxem.HMM(jaxem.Poisson(), 2)
    params = HMMParams(
        np.array([0.6, 0.4]),
        np.array([[0.9, 0.1], [0.2, 0.8]]),
        PoissonParams(np.array([[1.0], [6.0]])),
    )
    x, _ = sample_batch(model, params, jax.random.key(4), 3, 40)
    counts = np.array([2, 0, 1])
    weighted, objective = jaxem.em_step(model, params, x, weights=counts.astype(float))
    repeated, repeated_objective = jaxem.em_step(model, params, np.repeat(x, counts, axis=0))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), weighted, repeated)
    np.testing.assert_allclose(objective, repeated_objective, rtol=1e-12)


# ---------------------------------------------------------------- hmmlearn


def concatenated(x, lengths):
    return np.concatenate([x[b, :n] for b, n in enumerate(lengths)])


def run_both(reference, model, params, x, lengths, symbols=False, num_steps=3):
    """``num_steps`` Baum-Welch iterations in hmmlearn and in jaxem from the
    same parameters (hmmlearn is given integer symbols for one-hot ``x``
    when ``symbols``): jaxem's parameters, after checking that both
    libraries' log-likelihoods along the way are equal."""
    data = np.argmax(x, axis=-1)[..., None] if symbols else x
    reference.fit(concatenated(data, lengths), lengths)
    step = jax.jit(lambda p: jaxem.em_step(model, p, (x, lengths)))
    totals = []
    for _ in range(num_steps):
        params, objective = step(params)
        totals.append(float(objective) * len(lengths))
    history = list(reference.monitor_.history)  # (hmmlearn keeps the latest few)
    np.testing.assert_allclose(totals[-len(history) :], history, rtol=1e-10)
    return params


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_baum_welch_matches_hmmlearn_gaussian(covariance_type):
    rng = np.random.default_rng(8)
    params = gaussian_params(rng, covariance_type=covariance_type)
    model = jaxem.HMM(jaxem.Gaussian(covariance_type, reg_covar=0.0), K)
    x, _ = sample_batch(model, params, jax.random.key(5), 3, 40)
    lengths = np.array([40, 25, 33])
    reference = hmmlearn.GaussianHMM(
        K, covariance_type, covars_prior=0.0, init_params="", n_iter=3, tol=-np.inf
    )
    reference.startprob_, reference.transmat_ = params.initial, params.transitions
    reference.means_, reference.covars_ = params.emissions.means, params.emissions.covariances
    fitted = run_both(reference, model, params, x, lengths)
    np.testing.assert_allclose(fitted.initial, reference.startprob_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fitted.transitions, reference.transmat_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fitted.emissions.means, reference.means_, rtol=1e-8)
    expected = reference._covars_  # (spherical: tiled to (K, D))
    expected = expected[:, 0] if covariance_type == "spherical" else expected
    np.testing.assert_allclose(fitted.emissions.covariances, expected, rtol=1e-8)
    # Posteriors, per-sequence log-likelihoods and Viterbi paths at the fit.
    data = concatenated(x, lengths)
    log_lik, posteriors = reference.score_samples(data, lengths)
    # (one compiled program: run eagerly, every operation compiles on its own)
    evaluate = jax.jit(
        lambda p, d: (model.log_prob(p, d), model.posterior(p, d), model.most_likely_states(p, d))
    )
    our_log_lik, ours, (our_path, our_best) = evaluate(fitted, (x, lengths))
    np.testing.assert_allclose(np.sum(our_log_lik), log_lik, rtol=1e-10)
    np.testing.assert_allclose(concatenated(ours, lengths), posteriors, atol=1e-9)
    best, path = reference.decode(data, lengths, algorithm="viterbi")
    np.testing.assert_array_equal(concatenated(our_path, lengths), path)
    np.testing.assert_allclose(np.sum(our_best), best, rtol=1e-10)


@pytest.mark.usefixtures("x64")
def test_baum_welch_matches_hmmlearn_categorical_and_poisson():
    rng = np.random.default_rng(9)
    initial = rng.dirichlet(np.ones(K) * 3)
    transitions = rng.dirichlet(np.ones(K), size=K) + np.eye(K)
    transitions /= transitions.sum(1, keepdims=True)
    lengths = np.array([30, 18])
    # Categorical: one-hot symbols for jaxem, integer symbols for hmmlearn.
    probs = rng.dirichlet(np.ones(4), size=K)
    params = HMMParams(initial, transitions, CategoricalParams(probs))
    model = jaxem.HMM(jaxem.Categorical(), K)
    x, _ = sample_batch(model, params, jax.random.key(6), 2, 30)
    reference = hmmlearn.CategoricalHMM(K, n_features=4, init_params="", n_iter=3, tol=-np.inf)
    reference.startprob_, reference.transmat_, reference.emissionprob_ = initial, transitions, probs
    fitted = run_both(reference, model, params, x, lengths, symbols=True)
    np.testing.assert_allclose(fitted.transitions, reference.transmat_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fitted.emissions.probs, reference.emissionprob_, rtol=1e-8)
    # Poisson counts.
    rates = np.array([[1.0, 5.0], [4.0, 0.5], [9.0, 2.0]])
    params = HMMParams(initial, transitions, PoissonParams(rates))
    model = jaxem.HMM(jaxem.Poisson(), K)
    x, _ = sample_batch(model, params, jax.random.key(7), 2, 30)
    reference = hmmlearn.PoissonHMM(K, init_params="", n_iter=3, tol=-np.inf)
    reference.startprob_, reference.transmat_, reference.lambdas_ = initial, transitions, rates
    fitted = run_both(reference, model, params, x, lengths)
    np.testing.assert_allclose(fitted.initial, reference.startprob_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fitted.emissions.rates, reference.lambdas_, rtol=1e-8)
