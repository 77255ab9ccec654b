"""Input-driven hidden Markov models: time-varying transitions in every
inference function against brute-force enumeration of every state path
(float64), parallel == sequential, the E-step as a gradient; the model's
generalized-EM fit (float32) is monotone, recovers input-dependent switching
from simulated data, and with all-zero inputs finds what jaxem.HMM finds;
bad input is named before anything compiles.

Cheap by design: tiny shapes, and every fit of the model shares one compiled
program (one model, one data shape, one dtype), built once per module.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

import jaxem
from jaxem import inference
from jaxem.models import InputDrivenHMMParams
from jaxem.models.components import GaussianParams

# ------------------------------------------------------------------ inference


def random_varying_chain(rng, k, num_steps):
    """Log-potentials with a different transition matrix at every step (and
    an impossible transition at one of them)."""
    initial = rng.dirichlet(np.ones(k))
    transitions = rng.dirichlet(np.ones(k), size=(num_steps, k))
    transitions[2, 0, 1] = 0.0
    transitions /= transitions.sum(axis=-1, keepdims=True)
    log_emissions = rng.normal(size=(num_steps, k)) * 2.0
    with np.errstate(divide="ignore"):
        return np.log(initial), np.log(transitions), log_emissions


def enumerate_varying(log_initial, log_transition, log_emissions, length):
    """Every state path of the first ``length`` steps: the log-likelihood,
    marginals ``(T, K)``, per-step pair probabilities ``(T, K, K)`` and the
    best path with its score."""
    num_steps, k = log_emissions.shape
    paths = np.array(list(itertools.product(range(k), repeat=length)))
    scores = log_initial[paths[:, 0]] + log_emissions[np.arange(length), paths].sum(axis=1)
    for t in range(1, length):
        scores = scores + log_transition[t, paths[:, t - 1], paths[:, t]]
    log_likelihood = logsumexp(scores)
    probs = np.exp(scores - log_likelihood)
    marginals = np.zeros((num_steps, k))
    pairs = np.zeros((num_steps, k, k))
    for path, p in zip(paths, probs, strict=True):
        marginals[np.arange(length), path] += p
        pairs[np.arange(1, length), path[:-1], path[1:]] += p
    return log_likelihood, marginals, pairs, paths[np.argmax(scores)], scores.max()


@jax.jit
def every_algorithm(log_initial, log_transition, log_emissions, length):
    """Each inference function, sequential and parallel, in one program
    (one compilation)."""
    out = {}
    for parallel in (False, True):
        out[parallel] = (
            inference.hmm_smoother(log_initial, log_transition, log_emissions, length, parallel),
            inference.viterbi(log_initial, log_transition, log_emissions, length, parallel),
            inference.hmm_filter(log_initial, log_transition, log_emissions, length, parallel),
        )
    gradient = inference.hmm_posterior_from_gradient(
        log_initial, log_transition, log_emissions, length
    )
    return out, gradient


@pytest.mark.usefixtures("x64")
def test_time_varying_inference_equals_enumeration_of_every_path():
    """Smoother, filter, Viterbi (sequential and parallel) and the gradient
    E-step on (T, K, K) transitions, with and without padding, to 1e-12."""
    rng = np.random.default_rng(0)
    for length in (5, 3, 1):
        chain = random_varying_chain(rng, 3, 5)
        log_lik, marginals, pairs, best, best_score = enumerate_varying(*chain, length)
        results, by_gradient = every_algorithm(*chain, length)
        for posterior, (path, score), (filter_log_lik, filtered) in results.values():
            np.testing.assert_allclose(posterior.log_likelihood, log_lik, rtol=1e-12)
            np.testing.assert_allclose(posterior.marginals, marginals, atol=1e-12)
            np.testing.assert_allclose(posterior.transitions, pairs, atol=1e-12)
            np.testing.assert_array_equal(path[:length], best)
            np.testing.assert_array_equal(path[length:], best[-1])
            np.testing.assert_allclose(score, best_score, rtol=1e-12)
            np.testing.assert_allclose(filter_log_lik, log_lik, rtol=1e-12)
            np.testing.assert_allclose(filtered[length - 1], marginals[length - 1], atol=1e-12)
        np.testing.assert_allclose(by_gradient.log_likelihood, log_lik, rtol=1e-12)
        np.testing.assert_allclose(by_gradient.marginals, marginals, atol=1e-12)
        np.testing.assert_allclose(by_gradient.transitions, pairs, atol=1e-12)


def test_time_varying_sampling_follows_each_step_matrix():
    """Deterministic per-step matrices give exactly the path they force."""
    k, num_steps = 3, 6
    forced = np.array([0, 2, 1, 1, 0, 2])
    log_transition = np.full((num_steps, k, k), -np.inf, np.float32)
    log_transition[np.arange(1, num_steps)[:, None], np.arange(k)[None], forced[1:, None]] = 0.0
    log_initial = np.array([0.0, -np.inf, -np.inf], np.float32)
    path = inference.hmm_sample_states(jax.random.key(0), log_initial, log_transition, num_steps)
    np.testing.assert_array_equal(path, forced)
    with pytest.raises(ValueError, match=r"\(K, K\) or \(num_steps, K, K\)"):
        inference.hmm_sample_states(jax.random.key(0), log_initial, log_transition, 5)
    with pytest.raises(ValueError, match=r"\(K, K\) or \(T, K, K\)"):
        inference.hmm_smoother(log_initial, log_transition[:4], np.zeros((6, k), np.float32))


# ------------------------------------------------------------------ the model

B, T, P = 12, 60, 1
SLOPE, OFFSET = 3.0, -2.0  # logit of leaving a state = OFFSET + SLOPE * u

MODEL = jaxem.InputDrivenHMM(jaxem.Gaussian("spherical"), num_states=2)
TRUTH = InputDrivenHMMParams(
    initial=np.array([0.5, 0.5], np.float32),
    # [from, input, to]: the input raises the logit of the other state
    transition_weights=np.array([[[0.0, SLOPE]], [[SLOPE, 0.0]]], np.float32),
    transition_bias=np.array([[0.0, OFFSET], [OFFSET, 0.0]], np.float32),
    emissions=GaussianParams(np.array([[-1.5], [1.5]], np.float32), np.array([0.5, 0.5])),
)
FIT = dict(max_iter=60, tol=1e-6)
LENGTHS = np.r_[10.0, 1.0, 37.0, np.full(B - 3, T)].astype(np.float32)


@pytest.fixture(scope="module")
def simulated():
    """``(values (B, T, 1), inputs (B, T, 1), states (B, T))`` from ``TRUTH``."""
    inputs = np.asarray(jax.random.normal(jax.random.key(0), (B, T, P)), np.float32)
    keys = jax.random.split(jax.random.key(1), B)
    values, states = jax.jit(jax.vmap(MODEL.sample, (0, None, 0)))(keys, TRUTH, inputs)
    return np.asarray(values), inputs, np.asarray(states)


@pytest.fixture(scope="module")
def fitted(simulated):
    values, inputs, _ = simulated
    return jax.device_get(jaxem.fit(MODEL, (values, inputs), key=jax.random.key(2), **FIT))


@jax.jit
def evaluate(params, x):
    """Log-likelihoods, posteriors and Viterbi paths, in one program."""
    return (
        MODEL.log_prob(params, x),
        MODEL.posterior(params, x),
        MODEL.most_likely_states(params, x),
    )


def numpy_log_likelihood(params, values, inputs):
    """The forward algorithm in numpy for one sequence (spherical Gaussian
    emissions, a softmax transition matrix per step)."""
    means, variances = (np.asarray(a, np.float64) for a in params.emissions[:2])
    dim = values.shape[1]
    log_e = -0.5 * (
        np.sum((values[:, None, :] - means[None]) ** 2, axis=2) / variances
        + dim * np.log(2 * np.pi * variances)
    )
    logits = np.einsum("tp,ipj->tij", inputs, params.transition_weights) + params.transition_bias
    log_a = logits - logsumexp(logits, axis=2, keepdims=True)
    alpha = np.log(params.initial) + log_e[0]
    for t in range(1, len(values)):
        alpha = logsumexp(alpha[:, None] + log_a[t], axis=0) + log_e[t]
    return logsumexp(alpha)


def test_fit_is_monotone_finite_in_float32_and_recovers_input_driven_switching(simulated, fitted):
    """The log-likelihood never decreases (generalized EM: the transition
    step never lowers its part of Q); the fit is float32 and finite; the
    decoded states match the truth and the switching logits
    ``OFFSET + SLOPE u`` are recovered (720 steps, about 150 switches: the
    slope to 0.8 and the offset to 0.6, several standard errors)."""
    values, inputs, states = simulated
    result = fitted
    assert result.params.transition_weights.dtype == np.float32
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(leaf))
    trace = np.asarray(result.history[0])
    trace = trace[np.isfinite(trace)]
    assert len(trace) > 3
    assert np.all(np.diff(trace) >= -1e-6 * np.abs(trace[1:])), np.diff(trace).min()
    assert not np.any(result.decreased) and not np.any(result.nonfinite)

    _, _, (path, _) = evaluate(result.params, (values, inputs, np.full(B, T, np.float32)))
    order = np.argsort(result.params.emissions.means[:, 0])  # fitted state of truth's 0, 1
    relabelled = np.argsort(order)[np.asarray(path)]
    assert np.mean(relabelled == states) > 0.95
    weights = result.params.transition_weights[np.ix_(order, [0], order)][:, 0]  # (K, K)
    bias = result.params.transition_bias[np.ix_(order, order)]
    for i in range(2):  # the switching logit relative to staying
        slope = weights[i, 1 - i] - weights[i, i]
        offset = bias[i, 1 - i] - bias[i, i]
        assert abs(slope - SLOPE) < 0.8, (i, slope)
        assert abs(offset - OFFSET) < 0.6, (i, offset)
    # The inputs matter: the fitted weights beat transitions that ignore them.
    ignoring = result.params._replace(transition_weights=np.zeros_like(weights)[:, None])
    gain = numpy_log_likelihood(result.params, values[0], inputs[0]) - numpy_log_likelihood(
        ignoring, values[0], inputs[0]
    )
    assert gain > 1.0, gain


def test_ragged_batches_against_a_numpy_forward_pass(simulated, fitted):
    """Per-sequence log-likelihoods of a ragged batch equal a numpy forward
    pass over each sequence's own steps; what the padded steps hold (huge
    or NaN inputs, other values) changes nothing."""
    values, inputs, _ = simulated
    params = fitted.params
    log_prob, posterior, (path, _) = evaluate(params, (values, inputs, LENGTHS))
    for b in (0, 1, 2, 5):
        n = int(LENGTHS[b])
        expected = numpy_log_likelihood(params, values[b, :n], inputs[b, :n])
        np.testing.assert_allclose(log_prob[b], expected, rtol=2e-5)
    assert not np.any(np.asarray(posterior)[1, 1:])  # (zero at padded steps)
    padded = np.arange(T)[None, :] >= LENGTHS[:, None]
    other_inputs = np.where(padded[..., None], np.float32(1e30), inputs)
    other_inputs[0, -1] = np.nan
    other_values = np.where(padded[..., None], np.float32(-7.0), values)
    again = evaluate(params, (other_values, other_inputs, LENGTHS))
    np.testing.assert_allclose(again[0], log_prob, rtol=1e-6)
    np.testing.assert_allclose(again[1], posterior, atol=1e-6)
    np.testing.assert_array_equal(again[2][0], path)
    # K - 1 initial, K (K - 1)(P + 1) transition, K (D + 1) spherical Gaussian
    assert MODEL.num_parameters(params) == 1 + 2 * 1 * 2 + 2 * 2
    rows = MODEL.transition_probabilities(params, inputs[0])
    assert rows.shape == (T, 2, 2)
    np.testing.assert_allclose(np.sum(rows, axis=-1), 1.0, atol=1e-6)


def test_all_zero_inputs_reduce_to_an_hmm(simulated):
    """With inputs that are all zero the transitions are ``softmax(b[i])``:
    the fit (the same compiled program) reaches jaxem.HMM's Baum-Welch
    log-likelihood and transitions from the same initialisation."""
    values, inputs, _ = simulated
    zeros = np.zeros_like(inputs)
    key = jax.random.key(2)
    driven = jax.device_get(jaxem.fit(MODEL, (values, zeros), key=key, **FIT))
    hmm = jaxem.fit(jaxem.HMM(jaxem.Gaussian("spherical"), 2), values, key=key, **FIT)
    np.testing.assert_allclose(driven.log_likelihood, hmm.log_likelihood, rtol=1e-4)
    np.testing.assert_allclose(
        jax.nn.softmax(driven.params.transition_bias, axis=1), hmm.params.transitions, atol=5e-3
    )
    np.testing.assert_allclose(driven.params.emissions.means, hmm.params.emissions.means, atol=5e-3)


# ------------------------------------------------------------------ bad input


def with_entry(array, index, value):
    array = array.copy()
    array[index] = value
    return array


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(4, 6, 1)), rng.normal(size=(4, 6, 2))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda v, u: (v, np.where(np.arange(6)[None, :, None] == 2, np.nan, u)), ValueError,
         r"inputs \(x\[1\]\) contain 8 non-finite value\(s\).*x\[1\]\[0, 2, 0\] = nan"),
        (lambda v, u: (v, with_entry(u, (3, 5, 1), np.inf)), ValueError,
         r"x\[1\]\[3, 5, 1\] = inf"),
        (lambda v, u: (v, u[..., 0]), ValueError, r"inputs\[\.\.\., None\]"),
        (lambda v, u: (v, u[:, :5]), ValueError, r"shape \(B, T, P\) = \(4, 6\) \+ \(P,\)"),
        (lambda v, u: (v, u[..., :0]), ValueError, "P >= 1"),
        (lambda v, u: (v, u, np.ones(4), np.ones(4)), ValueError, "tuple of 4 arrays"),
        (lambda v, u: v, TypeError, r"tuple \(values \(B, T, \.\.\.\), inputs"),
        (lambda v, u: (np.where(np.arange(6)[None, :, None] == 4, np.nan, v), u), ValueError,
         r"values \(x\[0\]\) contain 4 non-finite.*x\[0\]\[0, 4, 0\] = nan"),
        (lambda v, u: (v[:, :, 0], u), ValueError, r"\(B, T, \.\.\.\)"),
        (lambda v, u: (v, u, np.array([6, 7, 1, 1])), ValueError, "exceeds the padded"),
    ],
    ids=["nan inputs", "inf inputs", "2-D inputs", "steps", "no inputs", "four arrays",
         "no tuple", "nan values", "rank", "lengths"],
)  # fmt: skip
def test_bad_input_is_named(change, error, message):
    with pytest.raises(error, match=message):
        jaxem.fit(MODEL, change(*_data()), key=jax.random.key(0))


def test_padding_may_hold_anything_and_bad_options_and_params_are_named():
    values, inputs = _data()
    padded = inputs.copy()
    padded[1, 3:] = np.nan  # (padding)
    assert MODEL.check_data((values, padded, np.array([6, 3, 6, 6])))
    with pytest.raises(ValueError, match="transition_l2"):
        jaxem.InputDrivenHMM(jaxem.Gaussian(), 2, transition_concentration=2.0)
    with pytest.raises(ValueError, match="transition_l2 must be"):
        jaxem.InputDrivenHMM(jaxem.Gaussian(), 2, transition_l2=-1.0)
    with pytest.raises(TypeError, match="GradientMStep"):
        jaxem.InputDrivenHMM(jaxem.Gaussian(), 2, transition_step="adam")
    with pytest.raises(TypeError, match="given their inputs"):
        MODEL.sample(jax.random.key(0), TRUTH, 10)
    bad = TRUTH._replace(transition_weights=np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"transition_weights must have shape \(2, 1, 2\)"):
        jaxem.fit(MODEL, (values, inputs[..., :1]), key=jax.random.key(0), init_params=bad)
