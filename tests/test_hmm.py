"""Hidden Markov models: inference against brute-force enumeration of every
state path, parallel == sequential, the E-step as a gradient, ragged batches
== separate sequences, Baum-Welch against a plain-numpy reference and
hmmlearn, monotone fits, float32 on long sequences, and bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn
from scipy.special import logsumexp

import jaxem
from jaxem import inference
from jaxem.models import HMMParams
from jaxem.models.components import CategoricalParams, GaussianParams, PoissonParams

K = 3


def random_chain(rng, k=K, num_steps=5, zeros=False):
    """Log-potentials of a random chain (with some impossible transitions
    when ``zeros``)."""
    initial = rng.dirichlet(np.ones(k))
    transition = rng.dirichlet(np.ones(k), size=k)
    if zeros:
        transition[0, 1] = 0.0
        transition[2, 0] = 0.0
        transition /= transition.sum(axis=1, keepdims=True)
    log_emissions = rng.normal(size=(num_steps, k)) * 2.0
    with np.errstate(divide="ignore"):
        return np.log(initial), np.log(transition), log_emissions


def enumerate_paths(log_initial, log_transition, log_emissions, length):
    """Every state path of the first ``length`` steps: the log-likelihood,
    marginals, transition counts, and the best path."""
    k = log_initial.shape[0]
    paths = np.array(list(itertools.product(range(k), repeat=length)))
    scores = log_initial[paths[:, 0]] + log_emissions[np.arange(length), paths].sum(axis=1)
    for t in range(1, length):
        scores = scores + log_transition[paths[:, t - 1], paths[:, t]]
    log_likelihood = logsumexp(scores)
    probs = np.exp(scores - log_likelihood)
    marginals = np.zeros((log_emissions.shape[0], k))
    counts = np.zeros((k, k))
    for path, p in zip(paths, probs, strict=True):
        marginals[np.arange(length), path] += p
        for t in range(1, length):
            counts[path[t - 1], path[t]] += p
    return log_likelihood, marginals, counts, paths[np.argmax(scores)], scores.max()


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("zeros", [False, True])
def test_inference_equals_enumeration_of_every_path(parallel, zeros):
    rng = np.random.default_rng(0)
    smooth = jax.jit(inference.hmm_smoother, static_argnames="parallel")
    decode = jax.jit(inference.viterbi, static_argnames="parallel")
    for length in (1, 2, 5, 6):
        chain = random_chain(rng, num_steps=6, zeros=zeros)
        log_lik, marginals, counts, best, best_score = enumerate_paths(*chain, length)
        posterior = smooth(*chain, length, parallel=parallel)
        np.testing.assert_allclose(posterior.log_likelihood, log_lik, rtol=1e-12)
        np.testing.assert_allclose(posterior.marginals, marginals, atol=1e-12)
        np.testing.assert_allclose(posterior.transitions, counts, atol=1e-12)
        path, score = decode(*chain, length, parallel=parallel)
        np.testing.assert_array_equal(path[:length], best)
        np.testing.assert_array_equal(path[length:], best[-1])  # padding repeats the last state
        np.testing.assert_allclose(score, best_score, rtol=1e-12)
        log_lik_filter, filtered = inference.hmm_filter(*chain, length, parallel=parallel)
        np.testing.assert_allclose(log_lik_filter, log_lik, rtol=1e-12)
        np.testing.assert_allclose(filtered[length - 1], marginals[length - 1], atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_gradient_e_step_equals_forward_backward():
    rng = np.random.default_rng(1)
    chain = random_chain(rng, k=4, num_steps=30, zeros=True)
    for length in (30, 17):
        expected = inference.hmm_smoother(*chain, length)
        got = inference.hmm_posterior_from_gradient(*chain, length)
        np.testing.assert_allclose(got.log_likelihood, expected.log_likelihood, rtol=1e-12)
        np.testing.assert_allclose(got.marginals, expected.marginals, atol=1e-12)
        np.testing.assert_allclose(got.transitions, expected.transitions, atol=1e-10)


def test_parallel_equals_sequential_on_a_long_float32_sequence():
    """float32 over 20,000 steps: finite, normalised, and the two
    algorithms agree (the log-likelihood to float32 rounding of its size)."""
    rng = np.random.default_rng(2)
    chain = [a.astype(np.float32) for a in random_chain(rng, k=4, num_steps=20_000)]
    run = jax.jit(inference.hmm_smoother, static_argnames="parallel")
    sequential, parallel = run(*chain, parallel=False), run(*chain, parallel=True)
    assert np.isfinite(float(sequential.log_likelihood))
    np.testing.assert_allclose(parallel.log_likelihood, sequential.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(parallel.marginals, sequential.marginals, atol=2e-3)
    np.testing.assert_allclose(np.sum(sequential.marginals, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(sequential.transitions), 20_000 - 1, rtol=1e-4)


# ------------------------------------------------------------------ the model


def gaussian_params(rng, d=2, covariance_type="diag"):
    means = rng.normal(size=(K, d)) * 3.0
    shapes = {"full": (K, d, d), "diag": (K, d), "spherical": (K,), "tied": (d, d)}
    if covariance_type in ("full", "tied"):
        a = rng.normal(size=shapes[covariance_type])
        cov = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    else:
        cov = rng.uniform(0.5, 2.0, size=shapes[covariance_type])
    initial = rng.dirichlet(np.ones(K) * 5)
    transitions = rng.dirichlet(np.ones(K) * 2, size=K) + np.eye(K) * 2
    transitions /= transitions.sum(axis=1, keepdims=True)
    return HMMParams(initial, transitions, GaussianParams(means, cov))


def sample_batch(model, params, key, num_sequences, num_steps):
    keys = jax.random.split(key, num_sequences)
    x, z = jax.vmap(lambda k: model.sample(k, params, num_steps))(keys)
    return np.asarray(x), np.asarray(z)


@pytest.mark.usefixtures("x64")
def test_ragged_batch_equals_separate_sequences_and_padding_changes_nothing():
    rng = np.random.default_rng(3)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K)
    params = gaussian_params(rng)
    x, _ = sample_batch(model, params, jax.random.key(0), 3, 12)
    lengths = np.array([12, 5, 9])
    ragged = (x, lengths)
    separate = [model.log_prob(params, x[b : b + 1, : lengths[b]])[0] for b in range(3)]
    np.testing.assert_allclose(model.log_prob(params, ragged), separate, rtol=1e-12)
    # Garbage (even NaN) in the padding changes nothing.
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = np.nan if b == 1 else 1e6
    stats, total = model.e_step(params, ragged)
    noisy_stats, noisy_total = model.e_step(params, (noisy, lengths))
    np.testing.assert_allclose(noisy_total, total, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), noisy_stats, stats)
    np.testing.assert_allclose(float(total), float(np.sum(separate)), rtol=1e-12)
    # The concatenated (X, lengths) form of hmmlearn, padded.
    concatenated = np.concatenate([x[b, :n] for b, n in enumerate(lengths)])
    padded, got_lengths = jaxem.pad_sequences(concatenated, lengths)
    np.testing.assert_array_equal(got_lengths, lengths)
    np.testing.assert_allclose(model.log_prob(params, (padded, got_lengths)), separate, rtol=1e-12)
    posterior = model.posterior(params, ragged)
    assert posterior.shape == (3, 12, K)
    np.testing.assert_allclose(posterior.sum(axis=2), np.arange(12)[None] < lengths[:, None])
    path, _ = model.most_likely_states(params, ragged)
    assert path.shape == (3, 12)


def numpy_baum_welch(x, lengths, params):
    """One Baum-Welch step for diagonal Gaussian emissions, in plain numpy
    (scaled forward-backward), and the log-likelihood at ``params``."""
    initial, transitions = np.asarray(params.initial), np.asarray(params.transitions)
    means, variances = np.asarray(params.emissions.means), np.asarray(params.emissions.covariances)
    k = initial.shape[0]
    start = np.zeros(k)
    pairs = np.zeros((k, k))
    resp_all, x_all = [], []
    total = 0.0
    for b, n in enumerate(lengths):
        seq = x[b, :n]
        e = np.exp(
            -0.5 * (((seq[:, None, :] - means[None]) ** 2) / variances[None]).sum(-1)
            - 0.5 * np.log(2 * np.pi * variances).sum(-1)[None]
        )
        alpha = np.zeros((n, k))
        scale = np.zeros(n)
        alpha[0] = initial * e[0]
        scale[0] = alpha[0].sum()
        alpha[0] /= scale[0]
        for t in range(1, n):
            alpha[t] = (alpha[t - 1] @ transitions) * e[t]
            scale[t] = alpha[t].sum()
            alpha[t] /= scale[t]
        beta = np.ones((n, k))
        for t in range(n - 2, -1, -1):
            beta[t] = transitions @ (e[t + 1] * beta[t + 1]) / scale[t + 1]
        gamma = alpha * beta
        for t in range(n - 1):
            pairs += alpha[t][:, None] * transitions * (e[t + 1] * beta[t + 1])[None] / scale[t + 1]
        start += gamma[0]
        resp_all.append(gamma)
        x_all.append(seq)
        total += np.log(scale).sum()
    resp, data = np.concatenate(resp_all), np.concatenate(x_all)
    counts = resp.sum(0)
    new_means = resp.T @ data / counts[:, None]
    new_var = resp.T @ data**2 / counts[:, None] - new_means**2
    return (start / start.sum(), pairs / pairs.sum(1, keepdims=True), new_means, new_var), total


@pytest.mark.usefixtures("x64")
def test_baum_welch_step_matches_numpy():
    rng = np.random.default_rng(4)
    model = jaxem.HMM(jaxem.Gaussian("diag", reg_covar=0.0), K)
    params = gaussian_params(rng)
    x, _ = sample_batch(model, params, jax.random.key(1), 4, 30)
    lengths = np.array([30, 22, 30, 7])
    (start, trans, means, var), expected_total = numpy_baum_welch(x, lengths, params)
    new, objective = jaxem.em_step(model, params, (x, lengths))
    np.testing.assert_allclose(new.initial, start, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.transitions, trans, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.emissions.means, means, rtol=1e-10)
    np.testing.assert_allclose(new.emissions.covariances, var, rtol=1e-8)
    np.testing.assert_allclose(float(objective) * 4, expected_total, rtol=1e-12)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("parallel", [False, True])
def test_fit_is_monotone_and_recovers_the_chain(parallel):
    rng = np.random.default_rng(5)
    truth = gaussian_params(rng)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K, parallel=parallel)
    x, states = sample_batch(model, truth, jax.random.key(2), 8, 200)
    result = jaxem.fit(model, x, key=jax.random.key(3), num_restarts=3, max_iter=100, tol=1e-8)
    history = np.asarray(result.history)
    for trace in history:
        trace = trace[np.isfinite(trace)]
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert not np.any(result.decreased) and not np.any(result.nonfinite)
    # The decoded states agree with the truth up to a relabelling.
    path, _ = model.most_likely_states(result.params, x)
    confusion = np.zeros((K, K))
    np.add.at(confusion, (np.asarray(states).ravel(), np.asarray(path).ravel()), 1)
    assert confusion.max(axis=1).sum() / confusion.sum() > 0.95
    order = np.argmax(confusion, axis=1)
    np.testing.assert_allclose(
        np.asarray(result.params.transitions)[np.ix_(order, order)], truth.transitions, atol=0.08
    )


@pytest.mark.usefixtures("x64")
def test_chunked_and_streamed_fits_split_by_sequences():
    """Statistics add up over sequences: chunks on the device and chunks
    streamed from the host give the full-batch fit."""
    rng = np.random.default_rng(10)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K)
    x, _ = sample_batch(model, gaussian_params(rng), jax.random.key(8), 10, 20)
    data = (x, np.array([20, 13, 20, 4, 20, 20, 9, 20, 20, 17]))
    device = jax.tree.map(jnp.asarray, data)
    keys = jaxem.restart_keys(jax.random.key(9), 2)
    starts = jax.jit(jax.vmap(model.init, (0, None)))(keys, device)
    options = dict(key=jax.random.key(9), num_restarts=2, max_iter=15, tol=0.0, init_params=starts)
    full = jaxem.fit(model, device, **options)
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
    start = model.init(jax.random.key(0), jnp.asarray(x))
    # Starting means far from the data: two states never get any weight.
    means = jnp.asarray(start.emissions.means).at[2:].set(1e4)
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
    np.testing.assert_allclose(np.sum(model.log_prob(fitted, (x, lengths))), log_lik, rtol=1e-10)
    ours = model.posterior(fitted, (x, lengths))
    np.testing.assert_allclose(concatenated(ours, lengths), posteriors, atol=1e-9)
    best, path = reference.decode(data, lengths, algorithm="viterbi")
    our_path, our_best = model.most_likely_states(fitted, (x, lengths))
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


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "lengths, message",
    [
        (np.array([3, 3]), "sum to 6 but x has 7 rows"),
        (np.array([7, 0]), "must be positive"),
        (np.array([8, -1]), "must be positive"),
        (np.array([3.5, 3.5]), "must be integers"),
    ],
)
def test_bad_lengths_are_named(lengths, message):
    with pytest.raises(ValueError, match=message):
        jaxem.pad_sequences(np.zeros((7, 2)), lengths)


def test_bad_input_is_named():
    model = jaxem.HMM(jaxem.Gaussian("diag"), 2)
    x = np.random.default_rng(0).normal(size=(2, 10, 2))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"\(B, T, \.\.\.\)"):
        jaxem.fit(model, x[0], key=key)
    with pytest.raises(ValueError, match="exceeds the padded length 10"):
        jaxem.fit(model, (x, np.array([10, 11])), key=key)
    with pytest.raises(ValueError, match="must be positive"):
        jaxem.fit(model, (x, np.array([10, 0])), key=key)
    bad = x.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        jaxem.fit(model, bad, key=key)
    # NaN in padding is padding.
    jaxem.fit(model, (bad, np.array([10, 3])), key=key, max_iter=2)
    start = model.init(key, jnp.asarray(x))
    with pytest.raises(ValueError, match=r"params\.transitions must sum to 1"):
        jaxem.fit(model, x, key=key, init_params=start._replace(transitions=np.full((2, 2), 0.3)))
    with pytest.raises(ValueError, match=r"params\.initial must be non-negative"):
        jaxem.fit(model, x, key=key, init_params=start._replace(initial=np.array([1.5, -0.5])))
    symbols = jaxem.HMM(jaxem.Categorical(), 2)
    with pytest.raises(ValueError, match=r"integer|non-negative"):
        jaxem.fit(symbols, np.full((2, 5, 3), 0.5), key=key)
    with pytest.raises(ValueError, match="num_states"):
        jaxem.HMM(jaxem.Gaussian(), 0)
    with pytest.raises(ValueError, match="transition_concentration"):
        jaxem.HMM(jaxem.Gaussian(), 2, transition_concentration=0.5)
