"""Inference in a hidden Markov chain: forward-backward, Viterbi, sampling.

For one sequence of ``T`` steps over ``K`` states, everything is a function
of three log-potentials:

- ``log_initial (K,)``: ``log p(z_0 = k)``;
- ``log_transition (K, K)``: ``log p(z_t = j | z_{t-1} = i)`` at ``[i, j]``,
  or ``(T, K, K)`` for a chain whose transitions change over time (an
  input-driven HMM): ``[t, i, j]`` moves from step ``t − 1`` to step ``t``
  (``[0]`` is unused);
- ``log_emissions (T, K)``: ``log p(x_t | z_t = k)``;

and an optional ``length`` (``1 <= length <= T``): steps from ``length`` on
are padding and change no result (a batch of sequences of different lengths
is one padded array, vmapped).

Two algorithms compute each quantity, with the same results:

- **sequential** (``parallel=False``): a ``lax.scan`` over time, ``O(T K²)``
  work in ``T`` steps;
- **parallel in time** (``parallel=True``): ``lax.associative_scan`` over
  ``(K, K)`` matrices (Hassan, Särkkä and García-Fernández 2021, "Temporal
  parallelization of inference in hidden Markov models"): ``O(T K³)`` work in
  ``O(log T)`` steps, for long sequences on an accelerator. Its temporaries
  hold ``T`` matrices of ``K × K`` (``K × K × K`` for Viterbi).

Messages are normalised at every step, so neither long sequences nor
impossible transitions (``-inf`` entries) overflow or give NaN. The
sequential forward pass propagates the filtered distribution in probability
space (one vector-matrix product a step) and normalises the update with the
emissions in log space, and the backward pass is forward filtering,
backward smoothing (Rauch-Tung-Striebel for a discrete chain: ratios of
distributions, no logarithm or exponential): ``O(K)`` transcendental
functions a step instead of a log-space product's ``O(K²)``. The parallel
scans combine matrices stored with separate row and common log scales.
The posterior marginals are the gradient of the log-likelihood with respect
to the log-emissions, and the expected transition counts its gradient with
respect to the log-transitions (design fact 2):
:func:`hmm_posterior_from_gradient` computes them that way, and equals
:func:`hmm_smoother`. Pure functions for one sequence, unjitted; ``vmap``
them over a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

Array = jax.Array


class HMMPosterior(NamedTuple):
    """The posterior of one sequence's hidden states.

    Attributes:
      log_likelihood: ``log p(x_{0:L})``, a scalar.
      marginals: ``(T, K)``, ``p(z_t = k | x)``; zero at padded steps.
      transitions: the expected transitions, of ``log_transition``'s shape
        (the gradient of the log-likelihood with respect to it): ``(K, K)``,
        the expected number ``Σ_t p(z_{t−1} = i, z_t = j | x)`` over the
        sequence, or, for time-varying ``(T, K, K)`` transitions, each
        step's ``p(z_{t−1} = i, z_t = j | x)`` at ``[t, i, j]`` (zero at
        ``t = 0`` and at padded steps).
    """

    log_likelihood: Array
    marginals: Array
    transitions: Array


def _as_arrays(*arrays: Array) -> tuple[Array, ...]:
    return tuple(jnp.asarray(a) for a in arrays)


def _valid_steps(num_steps: int, length: Array | int | None) -> Array:
    if length is None:
        return jnp.ones((num_steps,), bool)
    return jnp.arange(num_steps) < length


def _normalize(log_values: Array, axis: int | tuple[int, ...] = -1) -> tuple[Array, Array]:
    """``(log_values − lse, lse)`` with ``lse = logsumexp`` over ``axis``;
    where every value is ``-inf`` (an impossible step), the values are kept
    and ``lse = -inf`` (no NaN)."""
    lse = logsumexp(log_values, axis=axis, keepdims=True)
    safe = jnp.where(jnp.isfinite(lse), lse, 0.0)
    return log_values - safe, jnp.squeeze(lse, axis=axis)


def _moves(log_transition: Array) -> Array | None:
    """The per-step matrices ``(T − 1, K, K)`` a scan over steps ``1 … T − 1``
    reads, for time-varying transitions; ``None`` (no scan input: the
    constant matrix is closed over, the program unchanged) for ``(K, K)``."""
    return log_transition[1:] if log_transition.ndim == 3 else None


def _chain(log_initial, log_transition, log_emissions, length):
    """The arguments of a public function as arrays, checked, and the
    ``(T,)`` mask of valid steps."""
    log_initial, log_transition, log_emissions = _as_arrays(
        log_initial, log_transition, log_emissions
    )
    _check_transition(log_transition, log_emissions)
    valid = _valid_steps(log_emissions.shape[0], length)
    return log_initial, log_transition, log_emissions, valid


def _check_transition(log_transition: Array, log_emissions: Array) -> None:
    num_steps, num_states = log_emissions.shape
    if log_transition.shape not in ((num_states, num_states), (num_steps, num_states, num_states)):
        raise ValueError(
            f"log_transition must have shape (K, K) or (T, K, K) = "
            f"{(num_steps, num_states, num_states)} for log_emissions of shape "
            f"{tuple(log_emissions.shape)}; got {tuple(log_transition.shape)}"
        )


# ------------------------------------------------------------- sequential


def _probabilities(log_transition: Array) -> tuple[Array | None, Array | None]:
    """The transition probabilities a scan over steps ``1 … T − 1`` uses:
    ``(constant (K, K), None)``, or ``(None, per-step (T − 1, K, K))`` as
    the scan's input (:func:`_moves`, exponentiated)."""
    moves = _moves(log_transition)
    if moves is None:
        return jnp.exp(log_transition), None
    return None, jnp.exp(moves)


def _safe_log(values: Array) -> Array:
    """``log`` of non-negative values, ``-inf`` at zero with a zero (not
    NaN) gradient there."""
    positive = values > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, values, 1.0)), -jnp.inf)


def _propagate(probabilities: Array, matrix: Array) -> Array:
    """``probabilities @ matrix`` in full precision (no TF32 on GPUs)."""
    return jnp.matmul(probabilities, matrix, precision=lax.Precision.HIGHEST)


def _forward(log_initial, log_transition, log_emissions, valid):
    """Normalised filtered log-probabilities ``(T, K)`` and the per-step log
    normalisers ``(T,)`` (zero at padded steps), by ``lax.scan``.

    The filtered distribution is carried both as probabilities and as
    log-probabilities: each step's prediction is one vector-matrix product
    in probability space (the filtered distribution sums to one, so it
    cannot overflow, and a state whose probability underflows is one the data
    have ruled out), and the update with the emissions is normalised in log
    space (so no emission, however small against another state's, makes
    0/0): ``K`` logarithms and ``K`` exponentials a step, where a log-space
    product takes ``K²`` exponentials.
    """
    first, first_norm = _normalize(log_initial + log_emissions[0])
    constant, moves = _probabilities(log_transition)

    def step(carry, inputs):
        previous, previous_log = carry
        log_emission, is_valid, move = inputs
        matrix = constant if move is None else move
        weights = _safe_log(_propagate(previous, matrix)) + log_emission
        top = jnp.max(weights)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        scaled = jnp.exp(weights - top)
        total = jnp.sum(scaled)
        norm = top + _safe_log(total)
        filtered = jnp.where(is_valid, scaled / jnp.where(total > 0, total, 1.0), previous)
        log_filtered = weights - jnp.where(jnp.isfinite(norm), norm, 0.0)
        log_filtered = jnp.where(is_valid, log_filtered, previous_log)
        return (filtered, log_filtered), (log_filtered, jnp.where(is_valid, norm, 0.0))

    carry = (jnp.exp(first), first)
    _, (rest, norms) = lax.scan(step, carry, (log_emissions[1:], valid[1:], moves))
    log_filtered = jnp.concatenate([first[None], rest])
    return log_filtered, jnp.concatenate([first_norm[None], norms])


def _smooth(log_transition, filtered, valid):
    """The posterior marginals ``(T, K)`` (zero at padded steps) and the
    expected transitions from the filtered probabilities, by the
    forward-filtering backward-smoothing recursion (Rauch-Tung-Striebel for
    a discrete chain), ``lax.scan`` in reverse:

        p(z_t = i, z_{t+1} = j | x) = f_t(i) A_ij γ_{t+1}(j) / (f_t A)_j,
        γ_t(i) = Σ_j p(z_t = i, z_{t+1} = j | x),

    with ``f_t`` the filtered and ``γ_t`` the smoothed distribution. Every
    quantity is a distribution or a ratio of two, so the pass needs no
    logarithm or exponential, cannot overflow, and where the forward pass
    ruled a state out (``(f_t A)_j = 0``) it stays out (no 0/0). The
    expected transitions ``(K, K)`` summed over the steps are one matrix
    product after the scan; for time-varying matrices ``(T, K, K)`` per
    step.
    """
    constant, moves = _probabilities(log_transition)
    if moves is None:
        predicted = _propagate(filtered[:-1], constant)  # (f_t A), (T − 1, K)
    else:
        predicted = jnp.einsum("tk,tkj->tj", filtered[:-1], moves, precision=lax.Precision.HIGHEST)

    def step(after, inputs):  # after: γ_{t+1}
        filtered_now, predicted_next, next_valid, move = inputs
        matrix = constant if move is None else move
        possible = predicted_next > 0
        ratio = jnp.where(possible, after / jnp.where(possible, predicted_next, 1.0), 0.0)
        smoothed = filtered_now * _propagate(matrix, ratio)
        total = jnp.sum(smoothed)
        smoothed = smoothed / jnp.where(total > 0, total, 1.0)
        smoothed = jnp.where(next_valid, smoothed, filtered_now)
        return smoothed, (smoothed, jnp.where(next_valid, ratio, 0.0))

    inputs = (filtered[:-1], predicted, valid[1:], moves)
    _, (smoothed, ratios) = lax.scan(step, filtered[-1], inputs, reverse=True)
    marginals = jnp.concatenate([smoothed, filtered[-1:]])
    marginals = jnp.where(valid[:, None], marginals, 0.0)
    if moves is None:
        flows = jnp.matmul(filtered[:-1].T, ratios, precision=lax.Precision.HIGHEST)
        return marginals, constant * flows
    pairs = filtered[:-1, :, None] * moves * ratios[:, None, :]
    return marginals, jnp.concatenate([jnp.zeros_like(pairs[:1]), pairs])


def _marginals(filtered: Array, backward: Array, valid: Array) -> Array:
    log_marginals, _ = _normalize(filtered + backward)
    return jnp.where(valid[:, None], jnp.exp(log_marginals), 0.0)


# --------------------------------------------------------- parallel in time
#
# An element is a (K, K) matrix of probabilities Q, stored as (P, r, c) with
# Q[i, j] = P[i, j] · exp(r[i] + c): every row of P has maximum 1, the row
# scales r are relative (their maximum is 0), and c is one common log scale.
# Rows are scaled separately, so a row that is improbable as a whole keeps
# its precision; the common scale, which grows like the log-likelihood (to
# 1e5 and beyond on long sequences), is kept apart, so that normalising a
# message never subtracts two such large numbers (in float32 that would
# leave errors of 1e-2 in the posteriors). Composition is the matrix
# product, in that representation.


def _to_element(log_matrices: Array) -> tuple[Array, Array, Array]:
    rows = jnp.max(log_matrices, axis=-1)
    safe_rows = jnp.where(jnp.isfinite(rows), rows, 0.0)
    common = jnp.max(rows, axis=-1)
    safe = jnp.where(jnp.isfinite(common), common, 0.0)
    matrices = jnp.exp(log_matrices - safe_rows[..., None])
    return matrices, rows - safe[..., None], jnp.where(jnp.isfinite(common), common, -jnp.inf)


def _compose(earlier, later):
    """``earlier @ later`` for (batches of) elements."""
    first, first_rows, first_common = earlier
    second, second_rows, second_common = later
    # Shift each row i by max_k (log first[i, k] + second_rows[k]), so that
    # the product's row maximum is at least 1 (no row underflows).
    shifted = jnp.log(first) + second_rows[..., None, :]
    shift = jnp.max(shifted, axis=-1)
    safe = jnp.where(jnp.isfinite(shift), shift, 0.0)
    product = jnp.matmul(
        jnp.exp(shifted - safe[..., None]), second, precision=lax.Precision.HIGHEST
    )
    peak = jnp.max(product, axis=-1)
    product = product / jnp.where(peak > 0, peak, 1.0)[..., None]
    rows = first_rows + safe + jnp.log(peak)
    top = jnp.max(rows, axis=-1)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return product, rows - top[..., None], first_common + second_common + top


def _identity_logs(num_steps: int, num_states: int, dtype) -> Array:
    eye = jnp.eye(num_states, dtype=bool)
    return jnp.broadcast_to(
        jnp.where(eye, 0.0, -jnp.inf).astype(dtype), (num_steps, num_states, num_states)
    )


def _next_valid(valid: Array) -> Array:
    """``(T,)``: whether step ``t + 1`` is a valid step."""
    return jnp.roll(valid, -1).at[-1].set(False)


def _chain_elements(log_initial, log_transition, log_emissions, valid):
    """The log-matrices the parallel scans combine, ``(T, K, K)`` each:
    ``steps[t][i, j] = log A_t[i, j] + log e_t[j]`` (row-independent
    ``log π_j + log e_0[j]`` at ``t = 0``), which carry messages forward, and
    ``ahead[t] = steps[t + 1]``, which carry them backward; the identity
    where the step (for ``ahead``, the next step) is padding."""
    num_steps, num_states = log_emissions.shape
    identity = _identity_logs(num_steps, num_states, log_emissions.dtype)
    if log_transition.ndim == 2:
        log_transition = log_transition[None]
    steps = log_transition + log_emissions[:, None, :]
    ahead = jnp.where(_next_valid(valid)[:, None, None], jnp.roll(steps, -1, axis=0), identity)
    steps = steps.at[0].set(jnp.broadcast_to(log_initial + log_emissions[0], steps.shape[1:]))
    return jnp.where(valid[:, None, None], steps, identity), ahead


def _parallel_forward(steps):
    products, rows, common = lax.associative_scan(_compose, _to_element(steps))
    # Every row of a prefix that starts at step 0 is the same: take row 0
    # (normalised without its scales; they enter the log-likelihood alone).
    filtered, totals = _normalize(jnp.log(products[:, 0, :]))
    return filtered, totals + rows[:, 0] + common


def _parallel_backward(ahead, valid):
    # (reverse=True hands the combination (later, earlier))
    products, rows, _ = lax.associative_scan(
        lambda later, earlier: _compose(earlier, later), _to_element(ahead), reverse=True
    )
    # (the common scale is the same for every state: normalising drops it)
    backward, _ = _normalize(jnp.log(jnp.sum(products, axis=-1)) + rows)
    return jnp.where(_next_valid(valid)[:, None], backward, 0.0)


def _pair_counts(log_transition, log_emissions, filtered, backward, valid):
    """``Σ_t p(z_t, z_{t+1} | x)`` from all steps at once, ``(T − 1, K, K)``
    temporaries (the parallel path's memory is already of that order); for
    time-varying transitions, the pairs of each step, ``(T, K, K)``."""
    moves = log_transition[None] if log_transition.ndim == 2 else log_transition[1:]
    ahead = moves + (log_emissions[1:] + backward[1:])[:, None, :]
    pair, _ = _normalize(filtered[:-1, :, None] + ahead, axis=(1, 2))
    pairs = jnp.where(valid[1:, None, None], jnp.exp(pair), 0.0)
    if log_transition.ndim == 2:
        return jnp.sum(pairs, axis=0)
    return jnp.concatenate([jnp.zeros_like(pairs[:1]), pairs])


# ------------------------------------------------------------------ public


def hmm_filter(
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
    parallel: bool = False,
) -> tuple[Array, Array]:
    """The forward pass: the log-likelihood and the filtered distributions.

    Args:
      log_initial: ``(K,)`` log initial-state probabilities.
      log_transition: ``(K, K)`` log transition probabilities, ``[from, to]``,
        or ``(T, K, K)``: at ``[t]``, those from step ``t − 1`` to step ``t``
        (``[0]`` unused).
      log_emissions: ``(T, K)``, ``log p(x_t | z_t = k)``.
      length: the number of valid steps (``1 … T``; default ``T``): later
        steps are padding.
      parallel: parallel-in-time (``lax.associative_scan``) instead of
        ``lax.scan``.

    Returns:
      ``(log_likelihood, filtered)``: ``log p(x_{0:L})`` and ``(T, K)``
      probabilities ``p(z_t = k | x_{0:t})`` (at padded steps, the last valid
      step's).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxem import inference
      >>> log_a = jnp.log(jnp.array([[0.9, 0.1], [0.2, 0.8]]))
      >>> log_e = jnp.log(jnp.array([[0.5, 0.1], [0.5, 0.1]]))
      >>> log_lik, filtered = inference.hmm_filter(jnp.log(jnp.array([0.5, 0.5])), log_a, log_e)
      >>> round(float(jnp.exp(log_lik)), 6)  # Σ over the 4 paths of π_i e_0i A_ij e_1j
      0.124
    """
    log_initial, log_transition, log_emissions, valid = _chain(
        log_initial, log_transition, log_emissions, length
    )
    if parallel:
        steps, _ = _chain_elements(log_initial, log_transition, log_emissions, valid)
        log_filtered, totals = _parallel_forward(steps)
        return totals[-1], jnp.exp(log_filtered)
    log_filtered, norms = _forward(log_initial, log_transition, log_emissions, valid)
    return jnp.sum(norms), jnp.exp(log_filtered)


def hmm_log_likelihood(
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
    parallel: bool = False,
) -> Array:
    """``log p(x_{0:L})`` by the forward pass (arguments as :func:`hmm_filter`)."""
    return hmm_filter(log_initial, log_transition, log_emissions, length, parallel)[0]


def hmm_smoother(
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
    parallel: bool = False,
) -> HMMPosterior:
    """Forward-backward: the log-likelihood, the posterior marginals and the
    expected transition counts (arguments as :func:`hmm_filter`).

    Returns:
      An :class:`HMMPosterior`.
    """
    log_initial, log_transition, log_emissions, valid = _chain(
        log_initial, log_transition, log_emissions, length
    )
    if parallel:
        steps, ahead = _chain_elements(log_initial, log_transition, log_emissions, valid)
        filtered, totals = _parallel_forward(steps)
        backward = _parallel_backward(ahead, valid)
        counts = _pair_counts(log_transition, log_emissions, filtered, backward, valid)
        return HMMPosterior(totals[-1], _marginals(filtered, backward, valid), counts)
    log_filtered, norms = _forward(log_initial, log_transition, log_emissions, valid)
    marginals, counts = _smooth(log_transition, jnp.exp(log_filtered), valid)
    return HMMPosterior(jnp.sum(norms), marginals, counts)


def hmm_posterior_from_gradient(
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
) -> HMMPosterior:
    """The posterior as the gradient of the forward pass's log-likelihood:
    ``∂ log p(x) / ∂ log_emissions[t, k] = p(z_t = k | x)`` and
    ``∂ log p(x) / ∂ log_transition[i, j] = Σ_t p(z_t = i, z_{t+1} = j | x)``
    (for time-varying transitions, ``∂ / ∂ log_transition[t, i, j] =
    p(z_{t−1} = i, z_t = j | x)``).
    Equal to :func:`hmm_smoother`; the way a model given only by its
    log-potentials gets its E-step (arguments as :func:`hmm_filter`)."""
    log_initial, log_transition, log_emissions, valid = _chain(
        log_initial, log_transition, log_emissions, length
    )

    def log_likelihood(log_transition, log_emissions):
        return jnp.sum(_forward(log_initial, log_transition, log_emissions, valid)[1])

    value, (transitions, marginals) = jax.value_and_grad(log_likelihood, argnums=(0, 1))(
        log_transition, log_emissions
    )
    return HMMPosterior(value, marginals, transitions)


def viterbi(
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
    parallel: bool = False,
) -> tuple[Array, Array]:
    """The most probable state path (arguments as :func:`hmm_filter`).

    The parallel version combines max-product messages from both ends in
    ``O(log T)`` steps and takes ``argmax_k`` of their sum at each step: the
    same path whenever the most probable path is unique (with exact ties it
    may mix two optimal paths).

    Returns:
      ``(path, log_joint)``: ``(T,)`` int32 states (at padded steps, the last
      valid state) and ``max_z log p(x_{0:L}, z)``.
    """
    log_initial, log_transition, log_emissions, valid = _chain(
        log_initial, log_transition, log_emissions, length
    )
    num_states = log_emissions.shape[1]
    if parallel:
        return _parallel_viterbi(log_initial, log_transition, log_emissions, valid)
    states = jnp.arange(num_states, dtype=jnp.int32)

    def step(best, inputs):
        log_emission, is_valid, move = inputs
        log_a = log_transition if move is None else move
        scores = best[:, None] + log_a
        pointer = jnp.argmax(scores, axis=0).astype(jnp.int32)
        new = jnp.max(scores, axis=0) + log_emission
        return jnp.where(is_valid, new, best), jnp.where(is_valid, pointer, states)

    final, pointers = lax.scan(
        step,
        log_initial + log_emissions[0],
        (log_emissions[1:], valid[1:], _moves(log_transition)),
    )
    last = jnp.argmax(final).astype(jnp.int32)

    def back(state, pointer):
        previous = pointer[state]
        return previous, previous

    _, earlier = lax.scan(back, last, pointers, reverse=True)
    return jnp.concatenate([earlier, last[None]]), jnp.max(final)


def _max_plus(earlier: Array, later: Array) -> Array:
    return jnp.max(earlier[..., :, :, None] + later[..., None, :, :], axis=-2)


def _parallel_viterbi(log_initial, log_transition, log_emissions, valid):
    steps, ahead = _chain_elements(log_initial, log_transition, log_emissions, valid)
    forward = lax.associative_scan(_max_plus, steps)
    backward = lax.associative_scan(
        lambda later, earlier: _max_plus(earlier, later), ahead, reverse=True
    )
    # max over paths through z_t = k: best prefix ending in k + best suffix from k
    scores = forward[:, 0, :] + jnp.max(backward, axis=-1)
    path = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return path, jnp.max(forward[-1, 0, :])


def hmm_sample_states(
    key: Array, log_initial: Array, log_transition: Array, num_steps: int
) -> Array:
    """A state path ``(num_steps,)`` int32 drawn from the Markov chain.

    ``log_transition`` is ``(K, K)``, or ``(num_steps, K, K)`` for
    time-varying transitions (``[t]`` moves from step ``t − 1`` to ``t``).
    """
    log_initial, log_transition = _as_arrays(log_initial, log_transition)
    num_states = log_initial.shape[0]
    if log_transition.shape not in (
        (num_states, num_states),
        (num_steps, num_states, num_states),
    ):
        raise ValueError(
            f"log_transition must have shape (K, K) or (num_steps, K, K) = "
            f"{(num_steps, num_states, num_states)}; got {tuple(log_transition.shape)}"
        )
    first_key, key = jax.random.split(key)
    first = jax.random.categorical(first_key, log_initial).astype(jnp.int32)

    def step(state, inputs):
        step_key, move = inputs
        log_a = log_transition if move is None else move
        following = jax.random.categorical(step_key, log_a[state]).astype(jnp.int32)
        return following, following

    _, rest = lax.scan(step, first, (jax.random.split(key, num_steps - 1), _moves(log_transition)))
    return jnp.concatenate([first[None], rest])


def hmm_posterior_sample(
    key: Array,
    log_initial: Array,
    log_transition: Array,
    log_emissions: Array,
    length: Array | int | None = None,
    parallel: bool = False,
) -> Array:
    """A state path ``(T,)`` int32 drawn from the posterior ``p(z | x)``, by
    forward filtering, backward sampling: ``z_{L−1}`` from the last filtered
    distribution, then ``p(z_t = i | z_{t+1} = j, x_{0:t}) ∝ α_t(i) A_ij``.

    Args:
      key: PRNG key.
      log_initial, log_transition, log_emissions, length, parallel: as for
        :func:`hmm_filter`.

    Returns:
      The path; at padded steps (beyond ``length``), the last valid step's
      state.
    """
    log_initial, log_transition, log_emissions, valid = _chain(
        log_initial, log_transition, log_emissions, length
    )
    _, filtered = hmm_filter(log_initial, log_transition, log_emissions, length, parallel)
    num_steps = log_emissions.shape[0]
    keys = jax.random.split(key, num_steps)
    log_filtered = _safe_log(filtered)
    last = jnp.sum(valid) - 1
    final = jax.random.categorical(keys[-1], log_filtered[last]).astype(jnp.int32)
    if log_transition.ndim == 3:
        ahead = log_transition  # [t + 1] moves from t to t + 1
    else:
        ahead = jnp.broadcast_to(log_transition, (num_steps, *log_transition.shape))

    def back(following, t):
        move = ahead[jnp.minimum(t + 1, num_steps - 1)][:, following]
        state = jax.random.categorical(keys[t], log_filtered[t] + move).astype(jnp.int32)
        state = jnp.where(t < last, state, following)
        return state, state

    _, path = lax.scan(back, final, jnp.arange(num_steps - 1), reverse=True)
    return jnp.concatenate([path, final[None]])
