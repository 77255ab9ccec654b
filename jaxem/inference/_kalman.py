"""Inference in a linear-Gaussian state-space model: Kalman filtering,
Rauch-Tung-Striebel smoothing and posterior sampling.

For one sequence of ``T`` steps with states ``z_t`` (``S`` dimensions) and
emissions ``y_t`` (``D`` dimensions):

    ``z_0 ~ N(m_0, S_0)``,
    ``z_t = A z_{t−1} + c_t + N(0, Q)`` for ``t >= 1``,
    ``y_t = H z_t + e_t + N(0, R)``,

where the offsets ``c_t`` (``B u_t + b`` for inputs ``u_t``) and ``e_t``
(``D u_t + d``) may change with the step (``c_0`` is unused). Every function
takes the model as arrays: ``initial_mean (S,)``, ``initial_covariance (S,
S)``, ``dynamics_weights (S, S)`` (``A``), ``dynamics_covariance (S, S)``
(``Q``), ``emission_weights (D, S)`` (``H``), ``emission_covariance (D, D)``
(``R``), the ``emissions (T, D)``, and keyword-only ``dynamics_offsets``
(``(T, S)`` or ``(S,)``; default zero), ``emission_offsets`` (``(T, D)`` or
``(D,)``; default zero), ``length`` and ``parallel``.

**Missing values.** NaN in ``emissions`` means missing, coordinate by
coordinate. A step is conditioned on its observed coordinates only, exactly:
the rows of ``H`` of its missing coordinates are replaced by zero, their
block of ``R`` by the identity (uncorrelated with the observed ones) and
their residual by zero, so that they add nothing to any update, to the
quadratic form or to the log-determinant, and the log-likelihood's constant
counts the observed coordinates only. A step with no observed coordinate is
a pure prediction step.

**Padding.** ``length`` (``1 <= length <= T``; default ``T``) marks steps
from ``length`` on as padding (a batch of sequences of different lengths is
one padded array, vmapped): their values are never read, they change no
result, and the filtered and smoothed moments there repeat the last valid
step's.

**Two algorithms** compute each quantity, with the same results:

- sequential (``parallel=False``): ``lax.scan`` over time, ``O(T (S³ + D³))``
  work in ``T`` steps;
- parallel in time (``parallel=True``): ``lax.associative_scan`` over the
  conditional-Gaussian elements of Särkkä and García-Fernández (2021),
  about three times the work in ``O(log T)`` steps, for long sequences on an
  accelerator. On a CPU it is no faster (``T = 1e5``, ``S = D = 4``,
  float32, 2 cores: 2.4 s either way for the smoother) and its program,
  ``O(log T)`` unrolled combination steps, takes far longer to compile.

**Numerics.** Innovation covariances are factored by Cholesky and never
inverted; filtered covariances use Joseph's form ``(I − K H) P (I − K H)ᵀ +
K R Kᵀ`` and smoothed ones its analogue ``(I − G A) P (I − G A)ᵀ + G Q Gᵀ +
G P^s Gᵀ`` (sums of positive semi-definite terms, so rounding cannot make
them indefinite), and every covariance is symmetrised, so float32 stays
finite and accurate. Matrix products run at full float32 precision on
accelerators (no TF32). Pure functions for one sequence, unjitted; ``vmap``
them over a batch.

References:
  Rauch, H. E., Tung, F. and Striebel, C. T. (1965). Maximum likelihood
  estimates of linear dynamic systems. AIAA Journal 3(8), 1445-1450.

  Särkkä, S. and García-Fernández, Á. F. (2021). Temporal parallelization
  of Bayesian smoothers. IEEE Transactions on Automatic Control 66(1),
  299-306.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_solve, lu_factor, lu_solve, solve_triangular

from jaxem._numerics import cholesky_with_jitter, symmetrize

Array = jax.Array

_LOG_2PI = math.log(2.0 * math.pi)


class KalmanPosterior(NamedTuple):
    """The posterior of one sequence's states.

    Attributes:
      log_likelihood: ``log p(y_{0:L})`` of the observed values, a scalar.
      filtered_means: ``(T, S)``, ``E[z_t | y_{0:t}]``.
      filtered_covariances: ``(T, S, S)``, ``Cov[z_t | y_{0:t}]``.
      smoothed_means: ``(T, S)``, ``E[z_t | y_{0:L}]``.
      smoothed_covariances: ``(T, S, S)``, ``Cov[z_t | y_{0:L}]``.
      cross_covariances: ``(T, S, S)``, the lag-one cross-covariances
        ``Cov[z_t, z_{t−1} | y_{0:L}]`` at ``[t]`` (zero at ``t = 0`` and at
        padded steps): ``E[z_t z_{t−1}ᵀ | y] = cross_covariances[t] +
        smoothed_means[t] smoothed_means[t − 1]ᵀ``.

    At padded steps the moments repeat the last valid step's.
    """

    log_likelihood: Array
    filtered_means: Array
    filtered_covariances: Array
    smoothed_means: Array
    smoothed_covariances: Array
    cross_covariances: Array


class _System(NamedTuple):
    """A sequence and its model as arrays of one dtype (see :func:`_system`)."""

    initial_mean: Array  # (S,)
    initial_covariance: Array  # (S, S)
    dynamics_weights: Array  # (S, S)
    dynamics_covariance: Array  # (S, S)
    emission_weights: Array  # (D, S)
    emission_covariance: Array  # (D, D)
    emissions: Array  # (T, D), zero where missing
    observed: Array  # (T, D) bool, False at missing values and padded steps
    dynamics_offsets: Array  # (T, S)
    emission_offsets: Array  # (T, D)
    valid: Array  # (T,) bool


def highest_precision(function):
    """Trace ``function`` with full-precision matrix products (float32 on
    GPUs and TPUs would otherwise use TF32 or bfloat16 inputs)."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return function(*args, **kwargs)

    return wrapped


def _system(
    initial_mean,
    initial_covariance,
    dynamics_weights,
    dynamics_covariance,
    emission_weights,
    emission_covariance,
    emissions,
    dynamics_offsets,
    emission_offsets,
    length,
) -> _System:
    """The arguments of a public function as arrays of one floating dtype,
    with their shapes checked, offsets broadcast to every step, and the
    masks of observed values and valid steps."""
    arrays = [
        jnp.asarray(a)
        for a in (
            initial_mean,
            initial_covariance,
            dynamics_weights,
            dynamics_covariance,
            emission_weights,
            emission_covariance,
            emissions,
        )
    ]
    dtype = jnp.result_type(*arrays, float)
    m0, s0, a, q, h, r, y = (x.astype(dtype) for x in arrays)
    if y.ndim != 2:
        raise ValueError(f"emissions must have shape (T, D); got {tuple(y.shape)}")
    num_steps, dim = y.shape
    if m0.ndim != 1 or m0.shape[0] < 1:
        raise ValueError(f"initial_mean must have shape (S,) with S >= 1; got {tuple(m0.shape)}")
    state_dim = m0.shape[0]
    expected = {
        "initial_mean": (m0, (state_dim,)),
        "initial_covariance": (s0, (state_dim, state_dim)),
        "dynamics_weights": (a, (state_dim, state_dim)),
        "dynamics_covariance": (q, (state_dim, state_dim)),
        "emission_weights": (h, (dim, state_dim)),
        "emission_covariance": (r, (dim, dim)),
    }
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape} for initial_mean of shape (S,) and emissions "
                f"of shape (T, D) = {(num_steps, dim)}; got {tuple(value.shape)}"
            )

    def offsets(value, width, name):
        if value is None:
            return jnp.zeros((num_steps, width), dtype)
        value = jnp.asarray(value).astype(dtype)
        if value.shape not in ((width,), (num_steps, width)):
            raise ValueError(
                f"{name} must have shape ({width},) or (T, {width}) = {(num_steps, width)}; "
                f"got {tuple(value.shape)}"
            )
        return jnp.broadcast_to(value, (num_steps, width))

    c = offsets(dynamics_offsets, state_dim, "dynamics_offsets")
    e = offsets(emission_offsets, dim, "emission_offsets")
    valid = jnp.ones((num_steps,), bool) if length is None else jnp.arange(num_steps) < length
    observed = ~jnp.isnan(y) & valid[:, None]
    return _System(m0, s0, a, q, h, r, jnp.where(observed, y, 0.0), observed, c, e, valid)


# ------------------------------------------------------------ building blocks


def masked_emission(
    emission_weights: Array, emission_covariance: Array, observed: Array
) -> tuple[Array, Array]:
    """``(H, R)`` of one step with its missing coordinates made inert: rows
    of ``H`` zero, and ``R``'s rows and columns of missing coordinates those
    of the identity (so the observed block is ``R``'s and the missing block,
    uncorrelated with it, has unit variance). Conditioning on a residual that
    is zero at the missing coordinates is then exactly conditioning on the
    observed ones."""
    observed_weights = observed.astype(emission_weights.dtype)
    pair = observed_weights[:, None] * observed_weights[None, :]
    eye = jnp.eye(observed.shape[0], dtype=emission_covariance.dtype)
    covariance = pair * emission_covariance + (1.0 - observed_weights)[:, None] * eye
    return emission_weights * observed_weights[:, None], covariance


def _condition(mean, covariance, weights, noise, residual, observed):
    """Condition ``z ~ N(mean, covariance)`` on ``y = weights z + noise``
    having residual ``y − weights mean = residual`` (masked arguments, see
    :func:`masked_emission`): ``(mean, covariance, log N(residual; 0,
    weights covariance weightsᵀ + noise))`` with the constant counted over
    the observed coordinates. Joseph's form for the covariance."""
    innovation = symmetrize(weights @ covariance @ weights.T + noise)
    factor = jnp.linalg.cholesky(innovation)
    gain = cho_solve((factor, True), weights @ covariance).T  # P Hᵀ S⁻¹, (S, D)
    new_mean = mean + gain @ residual
    keep = jnp.eye(mean.shape[0], dtype=mean.dtype) - gain @ weights
    new_covariance = symmetrize(keep @ covariance @ keep.T + gain @ noise @ gain.T)
    whitened = solve_triangular(factor, residual, lower=True)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factor)))
    count = jnp.sum(observed).astype(mean.dtype)
    log_likelihood = -0.5 * (whitened @ whitened + log_det + count * _LOG_2PI)
    return new_mean, new_covariance, log_likelihood


def _update(system: _System, mean, covariance, t):
    """Condition the predicted ``N(mean, covariance)`` of step ``t`` on its
    observed values."""
    weights, noise = masked_emission(
        system.emission_weights, system.emission_covariance, system.observed[t]
    )
    residual = jnp.where(
        system.observed[t], system.emissions[t] - system.emission_offsets[t] - weights @ mean, 0.0
    )
    return _condition(mean, covariance, weights, noise, residual, system.observed[t])


def _predict(system: _System, mean, covariance, t):
    """The prediction of step ``t`` from the filtered moments of ``t − 1``."""
    a = system.dynamics_weights
    return (
        a @ mean + system.dynamics_offsets[t],
        symmetrize(a @ covariance @ a.T + system.dynamics_covariance),
    )


# -------------------------------------------------------------- filtering


def _sequential_filter(system: _System) -> tuple[Array, Array, Array]:
    """``(filtered means (T, S), covariances (T, S, S), log-likelihood
    terms (T,))`` by ``lax.scan``."""
    first_mean, first_cov, first_ll = _update(
        system, system.initial_mean, system.initial_covariance, 0
    )

    def step(carry, t):
        mean, covariance = carry
        predicted = _predict(system, mean, covariance, t)
        new_mean, new_cov, log_lik = _update(system, *predicted, t)
        is_valid = system.valid[t]
        new_mean = jnp.where(is_valid, new_mean, mean)
        new_cov = jnp.where(is_valid, new_cov, covariance)
        return (new_mean, new_cov), (new_mean, new_cov, jnp.where(is_valid, log_lik, 0.0))

    num_steps = system.emissions.shape[0]
    _, (means, covs, terms) = lax.scan(step, (first_mean, first_cov), jnp.arange(1, num_steps))
    return (
        jnp.concatenate([first_mean[None], means]),
        jnp.concatenate([first_cov[None], covs]),
        jnp.concatenate([first_ll[None], terms]),
    )


def _filter_element(system: _System, t):
    """Step ``t``'s element ``(A, b, C, η, J)`` of the parallel filter:
    ``p(z_t | z_{t−1}, y_t) = N(z_t; A z_{t−1} + b, C)`` and ``p(y_t |
    z_{t−1}) ∝ exp(η·z_{t−1} − z_{t−1}ᵀ J z_{t−1} / 2)``; at ``t = 0`` the
    filtered distribution itself (``A = 0``, ``η = 0``, ``J = 0``); the
    identity at padded steps."""
    state_dim = system.initial_mean.shape[0]
    dtype = system.initial_mean.dtype
    eye = jnp.eye(state_dim, dtype=dtype)
    first = t == 0
    a = jnp.where(first, jnp.zeros_like(eye), system.dynamics_weights)
    prior_mean = jnp.where(first, system.initial_mean, system.dynamics_offsets[t])
    prior_cov = jnp.where(first, system.initial_covariance, system.dynamics_covariance)
    weights, noise = masked_emission(
        system.emission_weights, system.emission_covariance, system.observed[t]
    )
    residual = jnp.where(
        system.observed[t],
        system.emissions[t] - system.emission_offsets[t] - weights @ prior_mean,
        0.0,
    )
    innovation = symmetrize(weights @ prior_cov @ weights.T + noise)
    factor = jnp.linalg.cholesky(innovation)
    gain = cho_solve((factor, True), weights @ prior_cov).T
    keep = eye - gain @ weights
    element = (
        keep @ a,
        prior_mean + gain @ residual,
        symmetrize(keep @ prior_cov @ keep.T + gain @ noise @ gain.T),
        a.T @ (weights.T @ cho_solve((factor, True), residual)),
        symmetrize(a.T @ weights.T @ cho_solve((factor, True), weights) @ a),
    )
    identity = (eye, jnp.zeros_like(prior_mean), jnp.zeros_like(eye))
    identity += (jnp.zeros_like(prior_mean), jnp.zeros_like(eye))
    return tuple(jnp.where(system.valid[t], e, i) for e, i in zip(element, identity, strict=True))


def _filter_compose(earlier, later):
    """The element of two consecutive stretches (Särkkä and
    García-Fernández 2021, Lemma 8), for one pair of elements. ``I + C1 J2``
    is never singular (``C1 J2``, a product of positive semi-definite
    matrices, has no negative eigenvalue)."""
    a1, b1, c1, eta1, j1 = earlier
    a2, b2, c2, eta2, j2 = later
    state_dim = a1.shape[0]
    eye = jnp.eye(state_dim, dtype=a1.dtype)
    lu = lu_factor(eye + c1 @ j2)
    # (I + C1 J2)⁻¹ [A1, b1 + C1 η2, C1] and (I + J2 C1)⁻¹ = (I + C1 J2)⁻ᵀ [η2 − J2 b1, J2 A1]
    right = lu_solve(lu, jnp.concatenate([a1, (b1 + c1 @ eta2)[:, None], c1], axis=1))
    left = lu_solve(lu, jnp.concatenate([(eta2 - j2 @ b1)[:, None], j2 @ a1], axis=1), trans=1)
    solved_a, solved_b, solved_c = right[:, :state_dim], right[:, state_dim], right[:, -state_dim:]
    return (
        a2 @ solved_a,
        a2 @ solved_b + b2,
        symmetrize(a2 @ solved_c @ a2.T + c2),
        a1.T @ left[:, 0] + eta1,
        symmetrize(a1.T @ left[:, 1:] + j1),
    )


def _parallel_filter(system: _System) -> tuple[Array, Array, Array]:
    """As :func:`_sequential_filter`, by ``lax.associative_scan``; the
    log-likelihood terms from each step's prediction, all steps at once."""
    num_steps = system.emissions.shape[0]
    steps = jnp.arange(num_steps)
    elements = jax.vmap(lambda t: _filter_element(system, t))(steps)
    _, means, covs, _, _ = lax.associative_scan(jax.vmap(_filter_compose), elements)

    def term(t):
        previous = jnp.maximum(t - 1, 0)
        mean, cov = _predict(system, means[previous], covs[previous], t)
        mean = jnp.where(t == 0, system.initial_mean, mean)
        cov = jnp.where(t == 0, system.initial_covariance, cov)
        return jnp.where(system.valid[t], _update(system, mean, cov, t)[2], 0.0)

    return means, covs, jax.vmap(term)(steps)


def _filter(system: _System, parallel: bool):
    return _parallel_filter(system) if parallel else _sequential_filter(system)


# -------------------------------------------------------------- smoothing


def _smoothing_elements(system: _System, means: Array, covs: Array):
    """The backward elements ``(E (T, S, S), g (T, S), L (T, S, S))`` with
    ``p(z_t | z_{t+1}, y_{0:t}) = N(z_t; E_t z_{t+1} + g_t, L_t)``: ``E_t =
    P_t Aᵀ (A P_t Aᵀ + Q)⁻¹`` (the RTS gain, by a Cholesky solve), and
    ``(0, m_t, P_t)`` where step ``t + 1`` is padding or past the end."""
    a, q = system.dynamics_weights, system.dynamics_covariance
    next_valid = jnp.roll(system.valid, -1).at[-1].set(False)
    next_offsets = jnp.roll(system.dynamics_offsets, -1, axis=0)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)

    def element(mean, cov, offset, keep):
        predicted = symmetrize(a @ cov @ a.T + q)
        factor = jnp.linalg.cholesky(predicted)
        gain = cho_solve((factor, True), a @ cov).T
        residual = eye - gain @ a
        gain_mean = mean - gain @ (a @ mean + offset)
        gain_cov = symmetrize(residual @ cov @ residual.T + gain @ q @ gain.T)
        return (
            jnp.where(keep, gain, jnp.zeros_like(gain)),
            jnp.where(keep, gain_mean, mean),
            jnp.where(keep, gain_cov, cov),
        )

    return jax.vmap(element)(means, covs, next_offsets, next_valid)


def _smoothing_compose(earlier, later):
    """``p(z_i | z_{k+1})`` from ``p(z_i | z_{j+1})`` (earlier) and
    ``p(z_{j+1} | z_{k+1})`` (later), for one pair of elements."""
    e1, g1, l1 = earlier
    e2, g2, l2 = later
    return e1 @ e2, e1 @ g2 + g1, symmetrize(e1 @ l2 @ e1.T + l1)


def _backward(elements, parallel: bool) -> tuple[Array, Array]:
    """``(means (T, S), covariances (T, S, S))`` of the backward recursion
    ``x_t = E_t x_{t+1} + g_t`` with covariances ``E_t P_{t+1} E_tᵀ + L_t``,
    from the last element."""
    if parallel:
        _, means, covs = lax.associative_scan(
            jax.vmap(lambda later, earlier: _smoothing_compose(earlier, later)),
            elements,
            reverse=True,
        )
        return means, covs

    gains, offsets, covs = elements
    last = (offsets[-1], covs[-1])
    rest = (gains[:-1], offsets[:-1], covs[:-1])
    _, (means, smoothed) = lax.scan(_backward_step, last, rest, reverse=True)
    return (
        jnp.concatenate([means, offsets[-1:]]),
        jnp.concatenate([smoothed, covs[-1:]]),
    )


def _backward_step(carry, element):
    later_mean, later_cov = carry
    gain, offset, cov = element
    mean = gain @ later_mean + offset
    cov = symmetrize(gain @ later_cov @ gain.T + cov)
    return (mean, cov), (mean, cov)


# ------------------------------------------------------------------ public


@highest_precision
def kalman_filter(
    initial_mean: Array,
    initial_covariance: Array,
    dynamics_weights: Array,
    dynamics_covariance: Array,
    emission_weights: Array,
    emission_covariance: Array,
    emissions: Array,
    *,
    dynamics_offsets: Array | None = None,
    emission_offsets: Array | None = None,
    length: Array | int | None = None,
    parallel: bool = False,
) -> tuple[Array, Array, Array]:
    """The Kalman filter: the log-likelihood and the filtered moments.

    Args:
      initial_mean: ``(S,)``, ``m_0``.
      initial_covariance: ``(S, S)``, ``S_0``.
      dynamics_weights: ``(S, S)``, ``A``.
      dynamics_covariance: ``(S, S)``, ``Q``.
      emission_weights: ``(D, S)``, ``H``.
      emission_covariance: ``(D, D)``, ``R``.
      emissions: ``(T, D)``; NaN marks a missing value.
      dynamics_offsets: ``(T, S)`` or ``(S,)``: ``c_t`` in ``z_t = A z_{t−1} +
        c_t + noise`` (``[0]`` unused); default zero.
      emission_offsets: ``(T, D)`` or ``(D,)``: ``e_t`` in ``y_t = H z_t +
        e_t + noise``; default zero.
      length: the number of valid steps (``1 … T``; default ``T``): later
        steps are padding.
      parallel: parallel in time (``lax.associative_scan``) instead of
        ``lax.scan``.

    Returns:
      ``(log_likelihood, filtered_means (T, S), filtered_covariances (T, S,
      S))``: ``log p(y_{0:L})`` of the observed values and the moments of
      ``p(z_t | y_{0:t})`` (at padded steps, the last valid step's).

    Examples:
      A random walk observed with unit noise; the second value is missing:

      >>> import jax.numpy as jnp
      >>> from jaxem import inference
      >>> eye = jnp.eye(1)
      >>> y = jnp.array([[1.0], [jnp.nan], [3.0]])
      >>> log_lik, means, covs = inference.kalman_filter(
      ...     jnp.zeros(1), eye, eye, eye, eye, eye, y)
      >>> [round(float(v), 4) for v in covs[:, 0, 0]]  # 1/2, then 1/2 + 1, then 1/(1/2.5 + 1)
      [0.5, 1.5, 0.7143]
    """
    system = _system(
        initial_mean,
        initial_covariance,
        dynamics_weights,
        dynamics_covariance,
        emission_weights,
        emission_covariance,
        emissions,
        dynamics_offsets,
        emission_offsets,
        length,
    )
    means, covs, terms = _filter(system, parallel)
    return jnp.sum(terms), means, covs


def kalman_log_likelihood(*args: Any, **kwargs: Any) -> Array:
    """``log p(y_{0:L})`` of the observed values, by the Kalman filter
    (arguments as :func:`kalman_filter`)."""
    return kalman_filter(*args, **kwargs)[0]


@highest_precision
def kalman_smoother(
    initial_mean: Array,
    initial_covariance: Array,
    dynamics_weights: Array,
    dynamics_covariance: Array,
    emission_weights: Array,
    emission_covariance: Array,
    emissions: Array,
    *,
    dynamics_offsets: Array | None = None,
    emission_offsets: Array | None = None,
    length: Array | int | None = None,
    parallel: bool = False,
) -> KalmanPosterior:
    """The Kalman filter and the Rauch-Tung-Striebel smoother: the
    log-likelihood, the filtered and smoothed moments of every state, and
    the lag-one cross-covariances that EM needs (arguments as
    :func:`kalman_filter`).

    Returns:
      A :class:`KalmanPosterior`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxem import inference
      >>> eye = jnp.eye(1)
      >>> y = jnp.array([[1.0], [jnp.nan], [3.0]])
      >>> posterior = inference.kalman_smoother(jnp.zeros(1), eye, eye, eye, eye, eye, y)
      >>> [round(float(v), 4) for v in posterior.smoothed_means[:, 0]]  # the gap filled in
      [0.8571, 1.5714, 2.2857]
    """
    system = _system(
        initial_mean,
        initial_covariance,
        dynamics_weights,
        dynamics_covariance,
        emission_weights,
        emission_covariance,
        emissions,
        dynamics_offsets,
        emission_offsets,
        length,
    )
    means, covs, terms = _filter(system, parallel)
    elements = _smoothing_elements(system, means, covs)
    smoothed_means, smoothed_covs = _backward(elements, parallel)
    gains = elements[0]
    cross = jnp.einsum("tij,tkj->tik", smoothed_covs[1:], gains[:-1])  # P^s_{t+1} E_tᵀ
    cross = jnp.concatenate([jnp.zeros_like(cross[:1]), cross])
    return KalmanPosterior(jnp.sum(terms), means, covs, smoothed_means, smoothed_covs, cross)


@highest_precision
def kalman_posterior_sample(
    key: Array,
    initial_mean: Array,
    initial_covariance: Array,
    dynamics_weights: Array,
    dynamics_covariance: Array,
    emission_weights: Array,
    emission_covariance: Array,
    emissions: Array,
    *,
    dynamics_offsets: Array | None = None,
    emission_offsets: Array | None = None,
    length: Array | int | None = None,
    parallel: bool = False,
) -> Array:
    """A draw of the states from their posterior ``p(z_{0:L} | y_{0:L})``,
    by forward filtering, backward sampling (arguments as
    :func:`kalman_filter`, after a PRNG ``key``).

    Each backward step draws ``z_t = E_t z_{t+1} + g_t + ε_t``, ``ε_t ~ N(0,
    L_t)``, with the smoother's elements: the noise is drawn for every step
    at once, and the recursion is the smoother's mean recursion (a
    ``lax.scan``, or a ``lax.associative_scan`` with ``parallel``; both give
    the same draw for the same key).

    Returns:
      ``(T, S)`` states (at padded steps, the last valid step's).
    """
    system = _system(
        initial_mean,
        initial_covariance,
        dynamics_weights,
        dynamics_covariance,
        emission_weights,
        emission_covariance,
        emissions,
        dynamics_offsets,
        emission_offsets,
        length,
    )
    means, covs, _ = _filter(system, parallel)
    gains, offsets, covariances = _smoothing_elements(system, means, covs)
    factors, _ = cholesky_with_jitter(covariances)
    noise = jax.random.normal(key, offsets.shape, offsets.dtype)
    draws = offsets + jnp.einsum("tij,tj->ti", factors, noise)
    states, _ = _backward((gains, draws, jnp.zeros_like(covariances)), parallel)
    last = jnp.sum(system.valid) - 1
    return jnp.where(system.valid[:, None], states, states[last])
