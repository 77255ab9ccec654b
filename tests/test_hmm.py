"""Hidden Markov models: inference against brute-force enumeration of every
state path, parallel == sequential, the E-step as a gradient, float32 on a
long sequence, ragged batches == separate sequences, one Baum-Welch step
against plain numpy, and bad input (fits and hmmlearn: test_hmm_fit.py)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import jaxem
from jaxem import inference
from jaxem.models import HMMParams
from jaxem.models.components import GaussianParams

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
    filter_ = jax.jit(inference.hmm_filter, static_argnames="parallel")
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
        log_lik_filter, filtered = filter_(*chain, length, parallel=parallel)
        np.testing.assert_allclose(log_lik_filter, log_lik, rtol=1e-12)
        np.testing.assert_allclose(filtered[length - 1], marginals[length - 1], atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_gradient_e_step_equals_forward_backward():
    rng = np.random.default_rng(1)
    chain = random_chain(rng, k=4, num_steps=30, zeros=True)
    both = jax.jit(
        lambda *args: (inference.hmm_smoother(*args), inference.hmm_posterior_from_gradient(*args))
    )
    for length in (30, 17):
        expected, got = both(*chain, length)
        np.testing.assert_allclose(got.log_likelihood, expected.log_likelihood, rtol=1e-12)
        np.testing.assert_allclose(got.marginals, expected.marginals, atol=1e-12)
        np.testing.assert_allclose(got.transitions, expected.transitions, atol=1e-10)


def test_parallel_equals_sequential_on_a_long_float32_sequence():
    """float32 over 100,000 steps: finite, normalised, and the two
    algorithms agree (the log-likelihood to float32 rounding of its size,
    about 1e5; the posteriors to 1e-5: the parallel scan's common scale is
    kept apart from the messages, which without it were off by 4e-3)."""
    rng = np.random.default_rng(2)
    chain = [a.astype(np.float32) for a in random_chain(rng, k=4, num_steps=100_000)]
    run = jax.jit(inference.hmm_smoother, static_argnames="parallel")
    sequential, parallel = run(*chain, parallel=False), run(*chain, parallel=True)
    assert np.isfinite(float(sequential.log_likelihood))
    np.testing.assert_allclose(parallel.log_likelihood, sequential.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(parallel.marginals, sequential.marginals, atol=1e-5)
    np.testing.assert_allclose(np.sum(sequential.marginals, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(sequential.transitions), 100_000 - 1, rtol=1e-4)


def test_an_unreachable_state_with_the_best_emission_stays_exact_in_float32():
    """A step whose only reachable state explains it 200 nats worse than an
    unreachable one (a structural zero and an outlier): probability-space
    products of emissions scaled by their maximum would be 0/0 in float32
    (e^-200 underflows); the normalisation in log space keeps it exact."""
    log_initial = np.array([0.0, -np.inf], np.float32)
    log_transition = np.where(np.eye(2, dtype=bool), 0.0, -np.inf).astype(np.float32)
    log_emissions = np.zeros((6, 2), np.float32)
    log_emissions[:, 0] = -1.0
    log_emissions[3] = [-200.0, 0.0]
    expected = float(np.sum(log_emissions[:, 0]))  # the one possible path
    smooth = jax.jit(inference.hmm_smoother, static_argnames="parallel")
    for parallel in (False, True):
        posterior = smooth(log_initial, log_transition, log_emissions, parallel=parallel)
        np.testing.assert_allclose(posterior.log_likelihood, expected, rtol=1e-6)
        np.testing.assert_allclose(posterior.marginals[:, 0], 1.0)
        np.testing.assert_allclose(posterior.transitions, [[5.0, 0.0], [0.0, 0.0]], atol=1e-6)


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
    # (one compiled program: run eagerly, every operation compiles on its own)
    sample = jax.jit(jax.vmap(lambda k, p: model.sample(k, p, num_steps), (0, None)))
    x, z = sample(jax.random.split(key, num_sequences), params)
    return np.asarray(x), np.asarray(z)


@pytest.mark.usefixtures("x64")
def test_ragged_batch_equals_separate_sequences_and_padding_changes_nothing():
    rng = np.random.default_rng(3)
    model = jaxem.HMM(jaxem.Gaussian("diag"), K)
    params = gaussian_params(rng)
    log_prob, e_step = jax.jit(model.log_prob), jax.jit(model.e_step)
    x, _ = sample_batch(model, params, jax.random.key(0), 3, 12)
    lengths = np.array([12, 5, 9])
    ragged = (x, lengths)
    separate = [log_prob(params, x[b : b + 1, : lengths[b]])[0] for b in range(3)]
    np.testing.assert_allclose(log_prob(params, ragged), separate, rtol=1e-12)
    # Garbage (even NaN) in the padding changes nothing.
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = np.nan if b == 1 else 1e6
    stats, total = e_step(params, ragged)
    noisy_stats, noisy_total = e_step(params, (noisy, lengths))
    np.testing.assert_allclose(noisy_total, total, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), noisy_stats, stats)
    np.testing.assert_allclose(float(total), float(np.sum(separate)), rtol=1e-12)
    # The concatenated (X, lengths) form of hmmlearn, padded.
    concatenated = np.concatenate([x[b, :n] for b, n in enumerate(lengths)])
    padded, got_lengths = jaxem.pad_sequences(concatenated, lengths)
    np.testing.assert_array_equal(got_lengths, lengths)
    np.testing.assert_allclose(log_prob(params, (padded, got_lengths)), separate, rtol=1e-12)
    posterior = jax.jit(model.posterior)(params, ragged)
    assert posterior.shape == (3, 12, K)
    np.testing.assert_allclose(posterior.sum(axis=2), np.arange(12)[None] < lengths[:, None])
    path, _ = jax.jit(model.most_likely_states)(params, ragged)
    assert path.shape == (3, 12)
    # BIC's n is the number of valid steps (26), not of sequences.
    p = model.num_parameters(params)
    expected = -2.0 * np.sum(separate) + p * np.log(lengths.sum())
    np.testing.assert_allclose(jaxem.bic(model, params, ragged), expected, rtol=1e-12)


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
    bad[1, 3, 0] = np.inf
    with pytest.raises(ValueError, match=r"non-finite value\(s\).*x\[1, 3, 0\] = inf"):
        jaxem.fit(model, bad, key=key)
    bad[1, 3, 0] = np.nan  # (missing, for Gaussian emissions; refused on request)
    with pytest.raises(ValueError, match=r"non-finite value\(s\).*x\[1, 3, 0\] = nan"):
        jaxem.fit(jaxem.HMM(jaxem.Gaussian("diag", missing=False), 2), bad, key=key)
    # NaN in padding is padding.
    jaxem.fit(model, (bad, np.array([10, 3])), key=key, max_iter=2)
    start = jax.jit(model.init)(key, jnp.asarray(x))
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
