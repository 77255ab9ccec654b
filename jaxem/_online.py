"""Stochastic (online) EM: a step per minibatch, as an ``init`` + ``step`` pair.

Online EM (Cappé & Moulines 2009) replaces the E-step's sum over all
observations by a running average of minibatch statistics. With the
statistics ``ŝ_t`` of minibatch ``t`` scaled to the size ``N`` of the data
set, the running statistics follow

    ``s_t = (1 − ρ_t) s_{t−1} + ρ_t ŝ_t``,   ``θ_t = M(s_t)``,

a stochastic approximation of the batch E-step that converges to a
stationary point of the log-likelihood when ``Σ ρ_t = ∞`` and
``Σ ρ_t² < ∞`` (e.g. ``ρ_t = (t + t₀)^−α`` with ``½ < α ≤ 1``). Statistics
kept per observation (:class:`~jaxem.PerObservation`, what a gradient M-step
needs) describe the minibatch's own rows and cannot be averaged with other
rows: they are the newest minibatch's, scaled to ``N``, so a gradient M-step
is stochastic gradient ascent on the minibatch ``Q`` whose step size is the
model's optimizer (its state carried beside the parameters).

:func:`online_em` returns the pure ``(init, step)`` pair, like an
``optax.GradientTransformation``, for users who stream data themselves;
:func:`fit_online` runs epochs over shuffled minibatches of data held on the
device, with restarts, in one compiled program.

References:
  Cappé, O. and Moulines, E. (2009). On-line expectation-maximization
  algorithm for latent data models. Journal of the Royal Statistical
  Society B 71(3), 593-613.
  Polyak, B. T. and Juditsky, A. B. (1992). Acceleration of stochastic
  approximation by averaging. SIAM Journal on Control and Optimization
  30(4), 838-855.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxem import _engine, _stats
from jaxem._model import as_model
from jaxem._numerics import num_rows, tree_all_finite
from jaxem._validation import check_int, check_key, is_concrete

Array = jax.Array
Params = Any
Schedule = Callable[[Array], Array]

DEFAULT_EXPONENT = 0.6
DEFAULT_OFFSET = 2.0


# ---------------------------------------------------------------- pytrees


class OnlineEMState(NamedTuple):
    """What the next online-EM step needs (a pytree).

    Attributes:
      params: the current parameters.
      m_step_state: the M-step's state (a gradient M-step's optimizer
        state; ``()`` for closed forms), carried beside the parameters.
      stats: the running statistics (the model's statistics pytree, on the
        scale of ``num_observations`` observations, or of the minibatch's rows
        without it, taken about ``params``;
        per-observation parts are the newest minibatch's, detached); ``None``
        until the first step when :func:`online_em`'s ``init`` was given no
        example batch.
      count: steps accepted so far, int32 (a skipped step does not count).
      averaged: the Polyak–Ruppert average of the parameters after each step
        (every floating leaf); ``params`` itself without ``average``.
      nonfinite: some step gave a non-finite log-likelihood, statistic or
        parameter; that step was skipped (the parameters before it kept).
    """

    params: Params
    m_step_state: Any
    stats: Any
    count: Array
    averaged: Params
    nonfinite: Array


class OnlineEM(NamedTuple):
    """Online EM as a pair of pure functions (compare
    ``optax.GradientTransformation``).

    Attributes:
      init: ``init(params, x_batch=None) -> OnlineEMState`` (with the
        model's fresh M-step state at ``params``). ``x_batch`` is
        an example minibatch (only its shapes and dtypes are read) that fixes
        the running statistics' shapes in the state, so ``step`` sees one
        state structure from the first call on (one compilation under
        ``jax.jit``, usable as a ``lax.scan`` carry); without it the state's
        statistics are ``None`` until the first step.
      step: ``step(state, x_batch, weights=None) -> (state, log_likelihood)``
        for one minibatch (``x_batch``: ``(b, D)`` or a tuple of arrays with
        ``b`` rows; ``weights``: ``(b,)``). ``log_likelihood`` is the batch's
        mean (weighted) per-observation log-likelihood under the parameters
        *before* the update (progressive validation; no prior term), NaN for a
        batch of zero total weight, which leaves the state unchanged.
    """

    init: Callable[..., OnlineEMState]
    step: Callable[..., tuple[OnlineEMState, Array]]


class OnlineFitResult(NamedTuple):
    """The outcome of :func:`fit_online`.

    ``R`` is the number of restarts and ``E`` is ``num_epochs``.

    Attributes:
      params: the best restart's parameters (the Polyak–Ruppert averaged ones
        with ``average=True``).
      log_likelihood: their exact objective on the whole data: the mean
        per-observation log-likelihood plus ``log p(θ) / n`` (as
        :func:`jaxem.fit` reports it; with weights, both divided by the
        total weight instead of ``n``).
      history: ``(R, E)`` each epoch's mean minibatch log-likelihood, each
        minibatch scored under the parameters before its update (progressive
        validation; no prior term).
      restarts: every restart's final parameters, leading axis ``R``.
      restart_log_likelihood: ``(R,)`` each restart's final objective.
      best_restart: index of the chosen restart (highest finite objective).
      nonfinite: ``(R,)`` a step of that restart gave non-finite values and
        was skipped.
      num_steps: minibatch steps per restart, ``E · ⌊n / batch_size⌋``.
    """

    params: Params
    log_likelihood: Array
    history: Array
    restarts: Params
    restart_log_likelihood: Array
    best_restart: Array
    nonfinite: Array
    num_steps: int


# ------------------------------------------------------------ step sizes


@dataclasses.dataclass(frozen=True)
class _PolynomialStepSize:
    """``count -> (count + offset) ** −exponent`` (hashable: equal schedules
    share compiled programs)."""

    exponent: float
    offset: float

    def __call__(self, count: Any) -> Array:
        return (jnp.asarray(count) + self.offset) ** (-self.exponent)


def polynomial_step_size(exponent: float = DEFAULT_EXPONENT, offset: float = DEFAULT_OFFSET):
    """The polynomial step-size schedule ``ρ_t = (t + offset)^−exponent``.

    With ``½ < exponent ≤ 1`` the steps satisfy Robbins–Monro's conditions
    (``Σ ρ_t = ∞``, ``Σ ρ_t² < ∞``) under which online EM converges (Cappé &
    Moulines 2009). Smaller exponents forget the early, poor statistics
    faster; an ``offset`` damps the first steps. The default
    ``(0.6, 2.0)`` is :func:`online_em`'s default.

    Args:
      exponent: ``α`` with ``0.5 < α <= 1``.
      offset: ``t₀ >= 0``.

    Returns:
      An optax-style schedule: a hashable callable ``count -> ρ`` (``count``
      an integer, or an int array).

    Raises:
      TypeError: for non-numbers.
      ValueError: for an exponent outside ``(0.5, 1]`` or a negative or
        non-finite offset.

    Examples:
      >>> import jaxem
      >>> schedule = jaxem.polynomial_step_size(exponent=1.0, offset=1.0)
      >>> [round(float(schedule(t)), 3) for t in (1, 2, 3)]
      [0.5, 0.333, 0.25]
    """
    for name, value in (("exponent", exponent), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number; got {value!r}")
    if not (0.5 < exponent <= 1.0):
        raise ValueError(
            "exponent must lie in (0.5, 1] (so that the steps sum to infinity and their "
            f"squares do not; online EM need not converge otherwise); got {exponent}"
        )
    if not (math.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be a finite number >= 0; got {offset}")
    return _PolynomialStepSize(float(exponent), float(offset))


class _Identified:
    """An unhashable schedule, hashed by identity (a static ``jit`` argument)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, count: Any) -> Any:
        return self.fn(count)

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Identified) and other.fn is self.fn


def _check_step_size(step_size: Any) -> tuple[Schedule | None, Any]:
    """``(schedule, None)`` for a callable or ``None`` (the default), or
    ``(None, value)`` for a constant step in ``(0, 1]``."""
    if step_size is None:
        return polynomial_step_size(), None
    if isinstance(step_size, bool):
        raise TypeError(
            f"step_size must be a number in (0, 1], a schedule or None; got {step_size}"
        )
    if isinstance(step_size, numbers.Real) or (
        isinstance(step_size, (jax.Array, np.ndarray))
        and step_size.ndim == 0
        and jnp.issubdtype(step_size.dtype, jnp.floating)
    ):
        if is_concrete(step_size):
            value = float(step_size)
            if not (0.0 < value <= 1.0):
                raise ValueError(
                    "step_size must lie in (0, 1] (a constant ρ: the weight of each new "
                    f"minibatch's statistics); got {value}"
                )
            return None, value
        return None, step_size
    if callable(step_size):
        try:
            hash(step_size)
        except TypeError:
            return _Identified(step_size), None
        return step_size, None
    raise TypeError(
        "step_size must be a number in (0, 1], a schedule count -> ρ (e.g. an optax schedule "
        f"or jaxem's polynomial_step_size) or None; got {type(step_size).__name__}"
    )


def _check_average(average: Any) -> bool:
    if not isinstance(average, (bool, np.bool_)):
        raise TypeError(f"average must be True or False; got {average!r}")
    return bool(average)


def _check_num_observations(value: Any) -> Any:
    """``None``, or a positive finite number (a concrete scalar is checked)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"num_observations must be a positive number; got {value!r}")
    if isinstance(value, numbers.Real):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"num_observations must be a finite number > 0; got {value}")
        return float(value)
    array = jnp.asarray(value)
    if array.ndim != 0:
        raise ValueError(f"num_observations must be a scalar; got shape {tuple(array.shape)}")
    if is_concrete(array):
        scalar = float(array)
        if not (math.isfinite(scalar) and scalar > 0):
            raise ValueError(f"num_observations must be a finite number > 0; got {scalar}")
    return array


# --------------------------------------------------------------- one step


def _is_float(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _select(condition: Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def _polyak(average: Params, params: Params, weight: Array, first: Array) -> Params:
    """``average + (params − average) · weight`` over floating leaves
    (``params`` itself when ``first``; integer leaves take ``params``')."""

    def leaf(old: Any, new: Any) -> Any:
        if not _is_float(new):
            return new
        moved = old + (new - old) * weight.astype(new.dtype)
        return jnp.where(first, new, moved)

    return jax.tree.map(leaf, average, params)


def _as_float_data(x: Any) -> Any:
    """Data leaves as arrays, integers and booleans as the default float type
    (as :func:`jaxem.fit` converts them)."""

    def convert(leaf: Any) -> Array:
        leaf = jnp.asarray(leaf)
        return leaf if _is_float(leaf) else leaf.astype(jnp.result_type(float))

    return jax.tree.map(convert, x)


def _zero_stats(model, params: Params, x_batch: Any) -> Any:
    shapes = jax.eval_shape(lambda p, x: model.e_step(p, x)[0], params, x_batch)
    return _engine.zero_stats(shapes)


@dataclasses.dataclass(frozen=True)
class _Online:
    """Online EM for one model, schedule, data-set size and averaging flag."""

    model: Any
    schedule: Schedule
    num_observations: Any  # None: each minibatch's number of rows
    average: bool
    average_start: int = 0

    def init(self, params: Params, x_batch: Any = None) -> OnlineEMState:
        stats = (
            None if x_batch is None else _zero_stats(self.model, params, _as_float_data(x_batch))
        )
        return OnlineEMState(
            params=params,
            m_step_state=self.model.init_m_step_state(params),
            stats=stats,
            count=jnp.zeros((), jnp.int32),
            averaged=params,
            nonfinite=jnp.zeros((), bool),
        )

    def advance(
        self, state: OnlineEMState, x: Any, weights: Array | None
    ) -> tuple[OnlineEMState, Array, Array]:
        """One step: ``(state, mean batch log-likelihood, batch weight)``."""
        model, params = self.model, state.params
        x = _as_float_data(x)
        dtype = _engine.data_dtype(x)
        if weights is None:
            batch_weight = jnp.asarray(num_rows(x), dtype)
        else:
            weights = jnp.asarray(weights, dtype)
            batch_weight = jnp.sum(weights)
        nonempty = batch_weight > 0
        first = state.count == 0

        batch_stats, total = model.e_step(params, x, weights)
        mean = total / batch_weight
        # The minibatch's statistics on the data set's scale (against the
        # prior), additive sums and per-observation weighted values alike;
        # without a data-set size, on the minibatch's own number of rows, so
        # the scale of the weights never matters.
        size = jnp.asarray(
            num_rows(x) if self.num_observations is None else self.num_observations, dtype
        )
        scale = jnp.where(nonempty, size / jnp.where(nonempty, batch_weight, 1.0), 0.0)
        batch_stats = _stats.scale(batch_stats, scale)
        if state.stats is None:  # init without an example batch: the first step
            running = _stats.detach(batch_stats)
        else:
            rho = jnp.clip(
                jnp.asarray(self.schedule(state.count), dtype), jnp.finfo(dtype).tiny, 1.0
            )
            running = _select(
                first,
                _stats.detach(batch_stats),
                _stats.running_average(state.stats, batch_stats, rho),
            )
        new_params, m_step_state = model.m_step(
            _stats.attach(running, x), params, state.m_step_state
        )
        # Statistics taken about the parameters (moments about the means)
        # move with them, so that the next minibatch's add up with them.
        new_stats = model.shift_stats(running, params, new_params)

        finite = jnp.isfinite(mean) & tree_all_finite(new_params) & tree_all_finite(new_stats)
        accept = finite & nonempty
        old_stats = state.stats
        if old_stats is None:
            old_stats = jax.tree.map(jnp.zeros_like, new_stats)
        params_out = _select(accept, new_params, params)
        if self.average:
            # The running mean of the parameters after steps average_start,
            # average_start + 1, ...; before that it follows the parameters.
            averaged_steps = jnp.maximum(state.count - self.average_start, 0)
            weight = 1.0 / (averaged_steps + 1).astype(dtype)
            averaged = _select(
                accept, _polyak(state.averaged, params_out, weight, first), state.averaged
            )
        else:
            averaged = params_out
        new_state = OnlineEMState(
            params=params_out,
            m_step_state=_select(accept, m_step_state, state.m_step_state),
            stats=_select(accept, new_stats, old_stats),
            count=state.count + accept.astype(jnp.int32),
            averaged=averaged,
            nonfinite=state.nonfinite | (nonempty & ~finite),
        )
        return new_state, mean, batch_weight

    def step(
        self, state: OnlineEMState, x_batch: Any, weights: Array | None = None
    ) -> tuple[OnlineEMState, Array]:
        state, mean, _ = self.advance(state, x_batch, weights)
        return state, mean


def online_em(
    model,
    *,
    step_size: Any = None,
    num_observations: Any = None,
    average: bool = False,
    average_start: int = 0,
) -> OnlineEM:
    """Stochastic (online) EM for ``model``: pure ``init`` and ``step``
    functions for data that arrive in minibatches.

    A step computes the minibatch's statistics ``ŝ`` under the current
    parameters, scales them to a data set of ``num_observations``
    (``ŝ · N / w``, ``w`` the batch's total weight), updates the running
    statistics ``s ← (1 − ρ) s + ρ ŝ`` (``ρ = 1`` on the first step, so ``s``
    starts as the first batch's statistics) and takes the model's M-step from
    them. Statistics kept per observation (what a gradient M-step needs, as
    in :class:`jaxem.MixtureOfExperts`' gate or
    :class:`jaxem.LogisticRegression` components) cannot be averaged across
    minibatches: they are the newest minibatch's, scaled by ``N / w`` so its
    ``Q`` weighs against the prior as the whole data set's does, and the
    gradient M-step is a stochastic gradient step whose size the model's
    optimizer sets (its state carried in the online state).

    Running statistics computed under earlier parameters are added to new
    ones only after the model's ``shift_stats(stats, from_params, to_params)``
    has moved them (after every M-step): models whose statistics are taken
    about their parameters (moments about the current means, as jaxem's
    Gaussian, Student-t and linear-regression mixtures take them) must define
    it; statistics that depend on the parameters only through the posterior
    (Poisson, Bernoulli, ... mixtures) need none.

    A step whose log-likelihood, statistics or parameters are not finite is
    skipped (the state keeps the parameters before it) and the state's
    ``nonfinite`` flag is set. ``init`` and ``step`` are unjitted and pure:
    jit them (the model and options are fixed in them), ``vmap`` them, or
    ``lax.scan`` ``step`` over stacked batches. ``step`` does not validate
    its input (see :func:`fit_online` for data checked eagerly).

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract.
      step_size: ``None`` for :func:`polynomial_step_size`'s default
        ``ρ_t = (t + 2)^−0.6``; a number in ``(0, 1]`` for a constant step;
        or a schedule ``count -> ρ`` (any optax schedule, e.g.
        ``optax.polynomial_schedule``), called with the number of steps taken
        (``1, 2, ...``; the first step always uses ``ρ = 1``). Values are
        clipped into ``(0, 1]``.
      num_observations: ``N``, the number of observations in the data set
        the minibatches are drawn from (weights are relative: each
        minibatch's statistics are rescaled to ``N`` observations, whatever
        the scale of its weights). ``None`` counts each minibatch as a data
        set of its own number of rows: fine without priors, where the M-step
        depends on the statistics' ratios only; with a prior, give ``N``,
        since a prior weighs against ``N`` observations.
      average: also keep the Polyak–Ruppert average of the parameters after
        each step in ``state.averaged`` (convex combinations keep weights on
        the simplex and covariances positive definite).
      average_start: steps (``count``) before the average starts; until then
        ``state.averaged`` follows the parameters. Early parameters are far
        from the optimum, and averaging them in slows the average down
        (:func:`fit_online` starts halfway by default).

    Returns:
      An :class:`OnlineEM` ``(init, step)``.

    Raises:
      TypeError, ValueError: for a step size, ``num_observations`` or
        ``average`` of the wrong type or out of range.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = jax.jit(model.init)(jax.random.key(0), x)
      >>> method = jaxem.online_em(model, num_observations=x.shape[0])
      >>> state = method.init(params, x[:68])  # (an example batch fixes the state's shapes)
      >>> step = jax.jit(method.step)
      >>> for epoch in range(3):
      ...     for batch in x.reshape(4, 68, 2):  # (data of one's own, streamed)
      ...         state, log_lik = step(state, batch)
      >>> int(state.count), state.params.means.shape
      (12, (2, 2))

    References:
      Cappé, O. and Moulines, E. (2009). On-line expectation-maximization
      algorithm for latent data models. JRSS B 71(3), 593-613.
    """
    schedule, value = _check_step_size(step_size)
    if schedule is None:
        schedule = _Constant(value)
    online = _Online(
        as_model(model),
        schedule,
        _check_num_observations(num_observations),
        _check_average(average),
        check_int(average_start, "average_start", 0),
    )
    return OnlineEM(online.init, online.step)


@dataclasses.dataclass(frozen=True)
class _Constant:
    """The constant schedule ``count -> value``."""

    value: Any

    def __call__(self, count: Any) -> Any:
        return self.value


# ----------------------------------------------------------------- the fit


def _fit_online(
    model,
    x,
    key,
    weights,
    init_params,
    step_value,
    num_observations,
    *,
    schedule: Schedule | None,
    batch_size: int,
    num_epochs: int,
    num_restarts: int,
    restart_batch_size: int,
    average: bool,
    average_start: int,
) -> OnlineFitResult:
    dtype = _engine.data_dtype(x)
    n = num_rows(x)
    total_weight = jnp.asarray(n, dtype) if weights is None else jnp.sum(weights)
    size = total_weight if num_observations is None else jnp.asarray(num_observations, dtype)
    online = _Online(
        model,
        _Constant(step_value) if schedule is None else schedule,
        size,
        average,
        average_start,
    )
    keys = _engine.restart_keys(key, num_restarts)
    batch = restart_batch_size
    if init_params is None:  # (as jaxem.fit initialises its restarts)
        params = _engine.init_restarts(model, x, weights, key, num_restarts, batch)
    else:
        params = init_params
    num_batches = n // batch_size
    example = jax.tree.map(lambda a: a[:batch_size], x)
    zero = jnp.zeros((), dtype)

    def run(restart):
        restart_key, params = restart
        state = online.init(params, example)
        # Shuffling keys of their own (model.init used the restart key).
        epoch_keys = jax.random.split(jax.random.fold_in(restart_key, 1), num_epochs)

        def epoch(state, epoch_key):
            order = jax.random.permutation(epoch_key, n)[: num_batches * batch_size]
            order = order.reshape(num_batches, batch_size)

            def visit(carry, rows):
                state, total, seen = carry
                x_batch = jax.tree.map(lambda a: jnp.take(a, rows, axis=0), x)
                w_batch = None if weights is None else jnp.take(weights, rows)
                state, mean, batch_weight = online.advance(state, x_batch, w_batch)
                total = total + jnp.where(batch_weight > 0, mean * batch_weight, 0.0)
                return (state, total, seen + batch_weight), None

            (state, total, seen), _ = lax.scan(visit, (state, zero, zero), order)
            return state, total / seen

        state, history = lax.scan(epoch, state, epoch_keys)
        final = state.averaged if average else state.params
        _, log_lik = model.e_step(final, x, weights)
        objective = (log_lik + model.log_prior(final)) / total_weight
        return final, objective, history, state.nonfinite

    finals, objectives, history, nonfinite = _engine.map_restarts(run, (keys, params), batch)
    ranked = jnp.where(jnp.isfinite(objectives), objectives, -jnp.inf)
    best = jnp.argmax(ranked)
    return OnlineFitResult(
        params=jax.tree.map(lambda leaf: leaf[best], finals),
        log_likelihood=objectives[best],
        history=history,
        restarts=finals,
        restart_log_likelihood=objectives,
        best_restart=best.astype(jnp.int32),
        nonfinite=nonfinite,
        num_steps=None,  # (a Python int, set outside the compiled program)
    )


_jitted_fit_online = jax.jit(
    _fit_online,
    static_argnames=(
        "model",
        "schedule",
        "batch_size",
        "num_epochs",
        "num_restarts",
        "restart_batch_size",
        "average",
        "average_start",
    ),
)


def fit_online(
    model,
    x: Any,
    *,
    key: Any,
    batch_size: int,
    num_epochs: int = 10,
    step_size: Any = None,
    average: bool = False,
    average_start: int | None = None,
    num_restarts: int = 1,
    weights: Any = None,
    init_params: Params | None = None,
    restart_batch_size: int | None = None,
    num_observations: Any = None,
) -> OnlineFitResult:
    """Fit ``model`` to ``x`` by online EM over shuffled minibatches, with
    restarts, in one compiled program.

    Each restart starts from ``model.init`` with its own key (as in
    :func:`jaxem.fit`: :func:`jaxem.restart_keys`) or from ``init_params``, then runs
    ``num_epochs`` epochs of :func:`online_em` steps. Each epoch draws a
    fresh random permutation of the rows (from a key of its own per restart
    and epoch) and visits ``⌊n / batch_size⌋`` minibatches of
    ``batch_size`` rows; the ``n mod batch_size`` rows left over at the end
    of that permutation are skipped in that epoch (different rows each
    epoch). Epochs and minibatches are ``lax.scan`` loops over the data on
    the device: nothing returns to the host between steps. At the end every
    restart's parameters (averaged ones with ``average``) are scored exactly
    on the whole data, and the best is returned.

    The compiled program is cached per (model, shapes, dtypes, batch size,
    epochs, restarts, averaging, and the schedule when ``step_size`` is a
    callable); new data, keys, a new constant ``step_size`` or
    ``num_observations`` do not recompile.

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract.
      x: data, ``(n, D)`` or a tuple of arrays with ``n`` rows (as
        :func:`jaxem.fit` takes it).
      key: a PRNG key, ``jax.random.key(seed)``.
      batch_size: rows per minibatch, ``1 <= batch_size <= n``.
      num_epochs: passes over the data, ``>= 1``.
      step_size: ``None`` (``ρ_t = (t + 2)^−0.6``), a constant in ``(0, 1]``,
        or a schedule ``count -> ρ``, e.g. an optax schedule (see
        :func:`online_em`).
      average: return the Polyak–Ruppert average of each restart's
        parameters over its steps instead of the last ones.
      average_start: the step from which the average runs (default: half of
        the steps, ``⌊num_epochs · ⌊n / batch_size⌋ / 2⌋``, so the average
        covers the second half of the run).
      num_restarts: ``R >= 1`` restarts.
      weights: optional per-observation weights, ``(n,)``, non-negative and
        relative (as :func:`jaxem.fit`'s).
      init_params: parameters to start from instead of ``model.init``: one set
        (every restart starts there) or a batch with leading axis ``R``.
      restart_batch_size: restarts advanced together in one vectorised step,
        as in :func:`jaxem.fit` (``None`` chooses by backend and size).
      num_observations: the data-set size the minibatch statistics are
        scaled to (default: ``n``, the rows of ``x``).

    Returns:
      An :class:`OnlineFitResult`.

    Raises:
      ValueError, TypeError: before anything is traced, for bad data or
        weights (as :func:`jaxem.fit`), a ``batch_size`` below 1 or above
        ``n``, ``num_epochs`` or ``num_restarts`` below 1, a step size or
        ``num_observations`` out of range or of the wrong type, a
        non-boolean ``average``, a missing or malformed key, or parameters of
        the wrong shape.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> result = jaxem.fit_online(model, x, key=jax.random.key(0), batch_size=32, num_epochs=5)
      >>> result.history.shape, result.num_steps
      ((1, 5), 40)
      >>> round(float(result.log_likelihood), 1)  # (batch EM: -4.16)
      -4.2
    """
    key = check_key(key)
    model = as_model(model)
    x, weights, _ = _engine.check_data(model, x, weights)
    n = num_rows(x)
    batch_size = check_int(batch_size, "batch_size", 1)
    if batch_size > n:
        raise ValueError(
            f"batch_size must be at most the number of observations n = {n}; got {batch_size}"
        )
    num_epochs = check_int(num_epochs, "num_epochs", 1)
    num_restarts = check_int(num_restarts, "num_restarts", 1)
    average = _check_average(average)
    num_steps = num_epochs * (n // batch_size)
    if average_start is None:
        average_start = num_steps // 2
    average_start = check_int(average_start, "average_start", 0)
    schedule, step_value = _check_step_size(step_size)
    num_observations = _check_num_observations(num_observations)
    if init_params is not None:
        init_params = _engine.check_params(model, init_params, x, num_restarts, key)
    if restart_batch_size is None:
        restart_batch_size = _engine.auto_restart_batch_size(model, x, num_restarts)
    else:
        restart_batch_size = min(
            check_int(restart_batch_size, "restart_batch_size", 1), num_restarts
        )
    model = _engine.for_data(model, x)  # (after every check: it may compile)
    result = _jitted_fit_online(
        model,
        x,
        key,
        weights,
        init_params,
        step_value,
        num_observations,
        schedule=schedule,
        batch_size=batch_size,
        num_epochs=num_epochs,
        num_restarts=num_restarts,
        restart_batch_size=restart_batch_size,
        average=average,
        average_start=average_start,
    )
    return result._replace(num_steps=num_steps)
