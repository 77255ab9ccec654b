"""The EM driver: one pure iteration, and a compiled fit over restarts.

The driver knows nothing about any model: it calls the model contract
(``init``, ``e_step``, ``m_step``, ``log_prior`` and the optional
``check_data``, ``check_params``, ``diagnose``). Restarts are a batch axis,
advanced together or in groups inside one ``lax.while_loop``; each restart
stops updating when it converges (masked), so a batched fit returns what
separate fits with the same keys return.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxem._numerics import num_rows, sum_over_blocks, tree_all_finite, zeros_like_shapes
from jaxem._validation import (
    as_float_array,
    check_finite,
    check_int,
    check_key,
    check_nonnegative_float,
    check_weights,
)

Array = jax.Array
Params = Any

# Relative drop of the objective between iterations that counts as a
# decrease. Rounding in float64 is far below it; regularisation added after
# the M-step (``reg_covar``) makes EM only nearly monotone, by about
# reg_covar · tr(Σ⁻¹) / 2 per observation (1e-7 relative for standardised
# data and the default 1e-6), also below it. Float32 uses 1000 eps instead.
DECREASE_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the E-step is distributed (static: part of the compiled program).

    Attributes:
      chunk_size: rows per chunk of the E-step (``None``: all at once).
      mesh: a device mesh; observations are sharded over ``data_axes``.
      data_axes: the mesh axes the observation axis is split over.
      restart_axis: the mesh axis the restarts are split over (or ``None``).
    """

    chunk_size: int | None = None
    mesh: Mesh | None = None
    data_axes: tuple[str, ...] = ()
    restart_axis: str | None = None


class EMState(NamedTuple):
    """What the next EM iteration of one restart needs.

    Attributes:
      params: the current parameters.
      stats: expected sufficient statistics under ``params`` (valid once
        ``evaluated``), from which the next M-step starts.
      log_likelihood: the monitored objective (mean log-likelihood, plus
        ``log p(θ) / n`` with a prior) of ``params``; ``-inf`` before the
        first evaluation.
      previous: the objective of the parameters before ``params``.
      evaluated: whether ``params`` have been evaluated (an E-step ran).
      num_iter: M-steps taken (scikit-learn's ``n_iter_``), int32.
      converged: the change of the objective fell below ``tol``.
      nonfinite: a non-finite objective or parameter appeared; the restart
        stopped and kept its last finite parameters.
      decreased: the objective decreased at some iteration by more than
        ``DECREASE_TOLERANCE`` relative (EM is monotone, so this signals a
        numerical problem, or a regularisation such as a large ``reg_covar``
        that changes the objective).
      history: ``(max_iter,)`` objective of the parameters entering each
        iteration, NaN after the stop.
    """

    params: Params
    stats: Any
    log_likelihood: Array
    previous: Array
    evaluated: Array
    num_iter: Array
    converged: Array
    nonfinite: Array
    decreased: Array
    history: Array


class EMInfo(NamedTuple):
    """What a progress callback receives (host numpy arrays over restarts).

    Attributes:
      iteration: iterations run so far (the largest over restarts).
      log_likelihood: ``(R,)`` latest objective of each restart.
      num_iter: ``(R,)`` iterations run by each restart.
      converged: ``(R,)`` which restarts have converged.
    """

    iteration: Any
    log_likelihood: Any
    num_iter: Any
    converged: Any


class FitResult(NamedTuple):
    """The outcome of :func:`fit` (a pytree: usable under ``jax.vmap``).

    ``R`` is the number of restarts and ``T`` is ``max_iter``.

    Attributes:
      params: the best restart's parameters (highest final objective).
      log_likelihood: the best restart's final mean per-observation
        log-likelihood (plus ``log p(θ) / n`` with a prior), evaluated at
        ``params``.
      history: ``(R, T)`` objective per iteration, evaluated at the
        parameters entering that iteration (scikit-learn's
        ``lower_bounds_``); NaN after a restart stopped.
      num_iter: ``(R,)`` iterations run.
      converged: ``(R,)`` whether each restart met ``tol``.
      restarts: every restart's final parameters, leading axis ``R``.
      restart_log_likelihood: ``(R,)`` each restart's final objective.
      best_restart: index of the chosen restart.
      diagnostics: the model's value-dependent flags at the final parameters,
        each with leading axis ``R`` (e.g. ``"collapsed"``: ``(R, K)``).
      nonfinite: ``(R,)`` a non-finite objective or parameter appeared; that
        restart kept its last finite parameters.
      decreased: ``(R,)`` the objective decreased between iterations by more
        than ``max(1e-5, 1000 eps)`` relative: a numerical problem, or a
        regularisation that changes the objective (a large ``reg_covar``).
      invalid_input: the data or weights held NaN/inf or negative weights
        (only possible when ``fit`` runs under a user's ``jit``/``vmap``;
        eagerly such input raises ``ValueError``).
    """

    params: Params
    log_likelihood: Array
    history: Array
    num_iter: Array
    converged: Array
    restarts: Params
    restart_log_likelihood: Array
    best_restart: Array
    diagnostics: dict[str, Array]
    nonfinite: Array
    decreased: Array
    invalid_input: Array


# ----------------------------------------------------------------- one step


def _data_dtype(x: Any) -> Any:
    """The floating dtype of the data (every leaf has it after the checks)."""
    return jax.tree.leaves(x)[0].dtype


def _m_step(model, stats, params, x, weights):
    """The model's M-step; models whose M-step needs the data (GEM models,
    whose ``Q`` is a sum over observations) declare ``m_step_uses_data``."""
    if getattr(model, "m_step_uses_data", False):
        return model.m_step(stats, params, x, weights)
    return model.m_step(stats, params)


def _params_finite(model, params) -> Array:
    """Whether the fitted parameters are finite (``model.is_finite`` when the
    params carry auxiliary state, such as a GEM optimizer's, that may hold inf)."""
    is_finite = getattr(model, "is_finite", None)
    return tree_all_finite(params) if is_finite is None else is_finite(params)


def _model_e_step(model, params, x, weights):
    return model.e_step(params, x) if weights is None else model.e_step(params, x, weights)


def stats_per_observation(model) -> bool:
    """Whether ``model``'s statistics have one row per observation (leading
    axis ``n``) and concatenate across pieces of the data instead of adding
    (GEM models whose statistics are the responsibilities)."""
    return bool(getattr(model, "stats_per_observation", False))


def _chunked_e_step(model, params, x, weights, chunk_size: int | None):
    """``model.e_step`` over chunks of ``chunk_size`` rows (``lax.scan``, plus
    one statically-shaped remainder): additive statistics and log-likelihoods
    are summed, per-observation statistics concatenated. Temporaries are
    bounded by the chunk."""
    rows = num_rows(x)
    one = lambda x, w: _model_e_step(model, params, x, w)
    if chunk_size is None or chunk_size >= rows:
        return one(x, weights)
    if not stats_per_observation(model):
        return sum_over_blocks(one, (x, weights), chunk_size)
    num_full = rows // chunk_size
    split = num_full * chunk_size
    heads = jax.tree.map(
        lambda a: a[:split].reshape((num_full, chunk_size, *a.shape[1:])), (x, weights)
    )
    stats, log_lik = lax.map(lambda pair: one(*pair), heads)
    stats = jax.tree.map(lambda a: a.reshape((split, *a.shape[2:])), stats)
    log_lik = jnp.sum(log_lik)
    if split < rows:
        tail_stats, tail_log_lik = one(*jax.tree.map(lambda a: a[split:], (x, weights)))
        stats = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), stats, tail_stats)
        log_lik = log_lik + tail_log_lik
    return stats, log_lik


def _e_step(model, params, x, weights, plan: Plan):
    """The E-step as ``plan`` distributes it: in chunks, and with a mesh,
    each device on its own rows with the statistics summed across devices
    (``shard_map`` + ``psum``; per-observation statistics stay sharded)."""
    if plan.mesh is None:
        return _chunked_e_step(model, params, x, weights, plan.chunk_size)
    axes = plan.data_axes
    per_observation = stats_per_observation(model)

    def local(params, x, weights):
        stats, log_lik = _chunked_e_step(model, params, x, weights, plan.chunk_size)
        if not per_observation:
            stats = lax.psum(stats, axes)
        return stats, lax.psum(log_lik, axes)

    rows = PartitionSpec(axes)
    return jax.shard_map(
        local,
        mesh=plan.mesh,
        in_specs=(PartitionSpec(), rows, rows),
        out_specs=(rows if per_observation else PartitionSpec(), PartitionSpec()),
        # (the replication checker rejects restarts batched over a mesh axis
        # around this map; the psums above make the outputs replicated)
        check_vma=False,
    )(params, x, weights)


def _objective(model, params, x, weights, total_weight, plan: Plan = None):
    """E-step, and the monitored objective (mean log-lik + log prior / n)."""
    stats, log_lik = _e_step(model, params, x, weights, plan or Plan())
    return stats, (log_lik + model.log_prior(params)) / total_weight


def _total_weight(x: Array, weights: Array | None) -> Array:
    if weights is None:
        return jnp.asarray(num_rows(x), _data_dtype(x))
    return jnp.sum(weights)


def _em_step(model, params, x, weights=None, chunk_size=None):
    total_weight = _total_weight(x, weights)
    stats, objective = _objective(model, params, x, weights, total_weight, Plan(chunk_size))
    return _m_step(model, stats, params, x, weights), objective


def em_step(
    model, params: Params, x: Any, weights: Any = None, *, chunk_size: int | None = None
) -> tuple[Params, Array]:
    """One pure EM iteration: an E-step under ``params``, then the M-step.

    Jitted with ``model`` static: compiles once per model and shapes.

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract.
      params: current parameters.
      x: data, e.g. ``(n, D)``.
      weights: optional per-observation weights, ``(n,)``.
      chunk_size: run the E-step over chunks of this many rows and add their
        statistics (the same step; memory bounded by the chunk).

    Returns:
      ``(new_params, log_likelihood)``: the updated parameters, and the mean
      per-observation log-likelihood (plus ``log p(θ) / n`` with a prior) of
      the *input* ``params``, which EM guarantees the new parameters do not
      lower.

    Raises:
      ValueError, TypeError: for bad data, weights or parameters.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (200, 2))
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(1), x)
      >>> params, before = jaxem.em_step(model, params, x)
      >>> _, after = jaxem.em_step(model, params, x)
      >>> bool(after >= before - 1e-6)
      True
    """
    x, weights = _check_data(model, x, weights)
    chunk_size = _check_chunk_size(chunk_size)
    _check_params_shape(model, params, x, num_restarts=1, key=None)
    params = _cast_floats(params, _data_dtype(x))
    return _jitted_em_step(model, params, x, weights, chunk_size)


_jitted_em_step = jax.jit(_em_step, static_argnums=(0, 4))


def _propose(model, state: EMState, x, weights) -> Params:
    """The M-step from the carried statistics (none before the first E-step)."""
    return lax.cond(
        state.evaluated,
        lambda: _m_step(model, state.stats, state.params, x, weights),
        lambda: state.params,
    )


def _accept(
    model, state: EMState, params, stats, objective, tol, decrease_tol, max_iter
) -> EMState:
    """Book-keeping after the E-step under the proposed ``params``: keep them
    if finite, record the history, test convergence (scikit-learn's rule)."""
    started = state.evaluated
    finite = jnp.isfinite(objective) & _params_finite(model, params)
    keep = lambda new, old: jnp.where(finite, new, old)
    change = objective - state.log_likelihood
    scale = jnp.maximum(1.0, jnp.abs(objective))
    # The objective of the parameters entering this iteration (sklearn's
    # lower bound of iteration num_iter + 1); nothing before the first.
    index = jnp.where(started, state.num_iter, max_iter)
    history = state.history
    if max_iter > 0:  # (an empty history has nothing to index)
        history = history.at[index].set(state.log_likelihood, mode="drop")
    return EMState(
        params=jax.tree.map(keep, params, state.params),
        stats=jax.tree.map(keep, stats, state.stats),
        log_likelihood=jnp.where(finite | ~started, objective, state.log_likelihood),
        previous=jnp.where(finite, state.log_likelihood, state.previous),
        evaluated=jnp.ones_like(started),
        num_iter=state.num_iter + started.astype(state.num_iter.dtype),
        converged=finite & started & (jnp.abs(state.log_likelihood - state.previous) < tol),
        nonfinite=~finite,
        decreased=state.decreased | (finite & started & (change < -decrease_tol * scale)),
        history=history,
    )


def _iterate(
    model, state: EMState, x, weights, total_weight, tol, decrease_tol, max_iter, plan
) -> EMState:
    """One masked EM iteration of one restart (a no-op once it has stopped).

    An iteration is an M-step from the carried statistics (skipped the first
    time), then the E-step under the new parameters, which yields both the
    statistics for the next M-step and the objective of the new parameters.
    So each iteration runs one E-step, and the objective of the returned
    parameters comes for free. Convergence follows scikit-learn exactly: the
    fit stops after the M-step of iteration ``n`` when the objective changed
    by less than ``tol`` between the parameters entering iterations ``n − 1``
    and ``n``.
    """

    def advance(state: EMState) -> EMState:
        params = _propose(model, state, x, weights)
        stats, objective = _objective(model, params, x, weights, total_weight, plan)
        return _accept(model, state, params, stats, objective, tol, decrease_tol, max_iter)

    stopped = _stopped(state, max_iter)
    return lax.cond(stopped, lambda s: s, advance, state)


def _stopped(state: EMState, max_iter: int) -> Array:
    return state.converged | state.nonfinite | (state.evaluated & (state.num_iter >= max_iter))


# ---------------------------------------------------------------- the fit


def _map_restarts(
    fn: Callable, tree: Any, batch_size: int, spmd_axis_name: str | None = None
) -> Any:
    """``fn`` over the leading (restart) axis: vmapped in groups of ``batch_size``
    (all at once, split over the mesh axis ``spmd_axis_name`` when given)."""
    num = jax.tree.leaves(tree)[0].shape[0]
    if spmd_axis_name is not None:
        return jax.vmap(fn, spmd_axis_name=spmd_axis_name)(tree)
    if num == 1:  # no batch dimension in the program at all (layouts stay simple)
        out = fn(jax.tree.map(lambda leaf: leaf[0], tree))
        return jax.tree.map(lambda leaf: leaf[None], out)
    if batch_size >= num:
        return jax.vmap(fn)(tree)
    return lax.map(fn, tree, batch_size=None if batch_size == 1 else batch_size)


def _init_restarts(model, x, weights, key, num_restarts: int, batch: int):
    """``model.init`` for each restart's key, batched over a leading axis."""
    keys = key[None] if num_restarts == 1 else jax.random.split(key, num_restarts)
    if weights is None:
        init = lambda k: model.init(k, x)
    else:
        init = lambda k: model.init(k, x, weights=weights)
    return _map_restarts(init, keys, batch)


_jitted_init_restarts = jax.jit(_init_restarts, static_argnums=(0, 4, 5))


def _initial_states(params, stats, dtype, num_restarts: int, max_iter: int) -> EMState:
    """Restart states before the first E-step (``stats`` for one restart)."""
    stats = jax.tree.map(lambda z: jnp.broadcast_to(z, (num_restarts, *z.shape)), stats)
    return EMState(
        params=params,
        stats=stats,
        log_likelihood=jnp.full((num_restarts,), -jnp.inf, dtype),
        previous=jnp.full((num_restarts,), -jnp.inf, dtype),
        evaluated=jnp.zeros((num_restarts,), bool),
        num_iter=jnp.zeros((num_restarts,), jnp.int32),
        converged=jnp.zeros((num_restarts,), bool),
        nonfinite=jnp.zeros((num_restarts,), bool),
        decreased=jnp.zeros((num_restarts,), bool),
        history=jnp.full((num_restarts, max_iter), jnp.nan, dtype),
    )


def _decrease_tolerance(dtype) -> float:
    return max(DECREASE_TOLERANCE, 1e3 * float(jnp.finfo(dtype).eps))


def _result(model, states: EMState, invalid_input: Array) -> FitResult:
    """The fit's outcome from the final restart states: the best restart."""
    final = states.log_likelihood
    diagnose = getattr(model, "diagnose", None)
    diagnostics = {} if diagnose is None else dict(jax.vmap(diagnose)(states.stats, states.params))
    ranked = jnp.where(jnp.isfinite(final), final, -jnp.inf)
    best = jnp.argmax(ranked)
    return FitResult(
        params=jax.tree.map(lambda leaf: leaf[best], states.params),
        log_likelihood=final[best],
        history=states.history,
        num_iter=states.num_iter,
        converged=states.converged,
        restarts=states.params,
        restart_log_likelihood=final,
        best_restart=best.astype(jnp.int32),
        diagnostics=diagnostics,
        nonfinite=states.nonfinite,
        decreased=states.decreased,
        invalid_input=invalid_input,
    )


def _fit(
    model,
    x,
    key,
    weights,
    init_params,
    tol,
    *,
    max_iter: int,
    num_restarts: int,
    restart_batch_size: int,
    callback: Callable | None,
    callback_every: int,
    plan: Plan,
) -> FitResult:
    dtype = _data_dtype(x)
    total_weight = _total_weight(x, weights)
    tol = jnp.asarray(tol, dtype)
    batch = restart_batch_size
    if init_params is None:
        params = _init_restarts(model, x, weights, key, num_restarts, batch)
    else:
        params = init_params

    single = jax.tree.map(lambda leaf: leaf[0], params)
    shapes = jax.eval_shape(
        lambda p: _objective(model, p, x, weights, total_weight, plan)[0], single
    )
    states = _initial_states(params, zeros_like_shapes(shapes), dtype, num_restarts, max_iter)
    step = functools.partial(
        _iterate,
        model,
        x=x,
        weights=weights,
        total_weight=total_weight,
        tol=tol,
        decrease_tol=_decrease_tolerance(dtype),
        max_iter=max_iter,
        plan=plan,
    )

    def running(carry):
        _, states = carry
        return jnp.any(~_stopped(states, max_iter))

    def body(carry):
        iteration, states = carry
        states = _map_restarts(step, states, batch, plan.restart_axis)
        if callback is not None:
            info = EMInfo(iteration, states.log_likelihood, states.num_iter, states.converged)
            lax.cond(
                (iteration % callback_every == 0) | ~running((iteration, states)),
                lambda: jax.debug.callback(callback, info),
                lambda: None,
            )
        return iteration + 1, states

    # Iteration t takes M-step t (none for t = 0) and evaluates the result:
    # at most max_iter + 1 E-steps, the last one scoring the final parameters.
    _, states = lax.while_loop(running, body, (jnp.asarray(0, jnp.int32), states))
    finite_x = tree_all_finite(x)
    if weights is None:
        invalid = ~finite_x
    else:
        invalid = (
            ~finite_x | ~jnp.all(jnp.isfinite(weights) & (weights >= 0)) | ~jnp.any(weights > 0)
        )
    return _result(model, states, invalid)


_jitted_fit = jax.jit(
    _fit,
    static_argnames=(
        "model",
        "max_iter",
        "num_restarts",
        "restart_batch_size",
        "callback",
        "callback_every",
        "plan",
    ),
)


def fit(
    model,
    x: Any,
    *,
    key: Any,
    weights: Any = None,
    num_restarts: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    init_params: Params | None = None,
    restart_batch_size: int | None = None,
    callback: Callable[[EMInfo], Any] | None = None,
    callback_every: int = 1,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    data_axes: str | tuple[str, ...] | None = None,
    restart_axis: str | None = None,
) -> FitResult:
    """Fit ``model`` to ``x`` by EM, with restarts, in one compiled program.

    Every restart is initialised with ``model.init`` from its own key
    (``jax.random.split(key, num_restarts)``; the key itself when there is
    one restart), iterated until the change of the objective is below ``tol``
    (or ``max_iter``), and the restart with the highest final objective is
    returned. The loop runs on the device (``lax.while_loop``), with no host
    round-trip per iteration unless ``callback`` is given. The compiled
    program is cached per (model, shapes, dtypes, static options): a second
    call with new data, key or ``tol`` does not recompile. ``fit`` can be
    called under ``jax.vmap`` to fit many equally-shaped datasets at once.

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract (its
        configuration is static).
      x: data, e.g. ``(n, D)``; integer data is converted to floats, and the
        fit runs in ``x``'s floating dtype. (As everywhere in JAX, float64
        needs ``jax.config.update("jax_enable_x64", True)`` or the
        ``jax.enable_x64()`` context; otherwise float64 input runs in float32.)
      key: a PRNG key, ``jax.random.key(seed)``.
      weights: optional per-observation weights, ``(n,)``, non-negative.
      num_restarts: ``R >= 1`` restarts.
      max_iter: EM iterations at most per restart (``0`` returns the
        initialisation).
      tol: convergence threshold on the change of the mean log-likelihood
        (plus ``log p(θ) / n``), as in scikit-learn; ``0`` runs ``max_iter``
        iterations unless the change is exactly zero. A loose ``tol`` can stop
        a restart on a plateau (e.g. near the saddle that ``"random"``
        initialisation starts from), as it does in scikit-learn: use more
        restarts or a smaller ``tol``.
      init_params: parameters to start from instead of ``model.init``: one set
        (every restart starts there) or a batch with leading axis ``R``.
      restart_batch_size: how many restarts advance together in one
        vectorised step (``1``: one after the other; ``R``: all at once, as
        ``vmap``). ``None`` chooses by backend and problem size: all at once
        on accelerators; on a CPU, one after the other except for mid-sized
        float32 problems, where vectorising was measured faster.
      callback: called on the host as ``callback(info: EMInfo)`` every
        ``callback_every`` iterations and when the loop ends; it must be
        hashable (a function), and changing it recompiles.
      callback_every: iterations between callbacks.
      chunk_size: exact EM with the E-step run over chunks of this many rows,
        their statistics added (or, for models whose statistics are
        per-observation, concatenated): the same fit as without chunks, with
        the E-step's temporaries bounded by the chunk. Where the data lives
        decides the rest. A JAX array stays on its device and the chunks are
        visited inside the compiled loop. A numpy array (including a
        memory-mapped ``.npy`` file from ``np.load(path, mmap_mode="r")``) or
        a tuple of them stays on the host and streams to the device chunk by
        chunk every iteration, so the device holds only a chunk or two at a
        time (see "Streaming" below).
      mesh: a :class:`jax.sharding.Mesh`: observations are split over the
        mesh's ``data_axes`` (padded with zero-weight rows to a multiple of
        the number of shards; numpy data goes to the devices, split, rather
        than streaming), each device runs the E-step on its rows, and
        the statistics are summed across devices (``shard_map`` + ``psum``);
        the M-step runs replicated. Initialisation (``model.init``) runs on
        the unsharded data. The same call runs on many hosts after
        ``jax.distributed.initialize()``, with ``x`` a global array (see the
        README).
      data_axes: the mesh axis name(s) that split the observations (default:
        every axis of ``mesh`` except ``restart_axis``).
      restart_axis: a mesh axis that splits the restarts (``num_restarts``
        must be a multiple of its size): each group of devices along it fits
        its own restarts on all the data.

    Streaming (``x`` a numpy array with ``chunk_size``, or a stream of
    chunks): ``x`` may also be a function that returns a fresh iterable of
    chunks (arrays, or tuples of arrays, of equal trailing shapes) on every
    call, or a re-iterable object (not a one-shot iterator), since EM reads
    the data once per iteration. The loop then runs on the host: each
    iteration is a compiled M-step, one compiled chunk E-step per chunk (all
    restarts at once; chunks of equal size compile once), and a compiled
    book-keeping step, with the next chunk read and transferred while the
    device works on the current one. Without ``init_params``, restarts are
    initialised from the first chunk. Chunks are checked as they arrive
    (every pass for streams, the first pass for arrays), and bad ones raise
    an error naming the chunk. Models whose M-step needs the data (GEM
    models) cannot stream, and ``callback``, ``mesh`` and
    ``restart_batch_size`` do not apply.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError, TypeError: before anything is traced, for data of the wrong
        rank or feature count, NaN/inf in data (how many, and where the first
        is), fewer observations than the model needs, bad weights, options out
        of range, a missing or malformed key, or parameters of the wrong shape.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=4)
      >>> result.history.shape, result.params.means.shape
      ((4, 100), (2, 2))
      >>> bool(result.converged[result.best_restart])
      True
    """
    key = check_key(key)
    max_iter = check_int(max_iter, "max_iter", 0)
    num_restarts = check_int(num_restarts, "num_restarts", 1)
    callback_every = check_int(callback_every, "callback_every", 1)
    tol = check_nonnegative_float(tol, "tol")
    chunk_size = _check_chunk_size(chunk_size)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {callback!r}")
    if _streams(x, None if mesh is not None else chunk_size):
        if mesh is not None:
            raise ValueError(
                "mesh does not apply to a stream of chunks; pass an array (placed on the mesh)"
            )
        from jaxem._streaming import fit_stream  # (the host loop; imports the driver)

        return fit_stream(
            model,
            x,
            key=key,
            weights=weights,
            num_restarts=num_restarts,
            max_iter=max_iter,
            tol=tol,
            init_params=init_params,
            chunk_size=chunk_size,
        )
    x, weights = _check_data(model, x, weights)
    plan = _check_mesh(Plan(chunk_size), mesh, data_axes, restart_axis, num_restarts)
    if init_params is not None:
        init_params = _check_params_shape(model, init_params, x, num_restarts, key)
    if plan.mesh is not None:
        restart_batch_size = num_restarts
    elif restart_batch_size is None:
        restart_batch_size = _auto_restart_batch_size(model, x, num_restarts)
    else:
        restart_batch_size = min(
            check_int(restart_batch_size, "restart_batch_size", 1), num_restarts
        )
    if plan.mesh is not None:
        x, weights = _on_auto_mesh((x, weights), plan)
        if init_params is None:  # on the unsplit data, exactly as without a mesh
            init_params = _jitted_init_restarts(
                model, x, weights, key, num_restarts, restart_batch_size
            )
        restarts = PartitionSpec(plan.restart_axis)
        init_params = jax.device_put(init_params, NamedSharding(plan.mesh, restarts))
        x, weights = _shard_rows(x, weights, plan)
    return _jitted_fit(
        model,
        x,
        key,
        weights,
        init_params,
        tol,
        max_iter=max_iter,
        num_restarts=num_restarts,
        restart_batch_size=restart_batch_size,
        callback=callback,
        callback_every=callback_every,
        plan=plan,
    )


# ----------------------------------------------------------- input checks


def _check_chunk_size(chunk_size: Any) -> int | None:
    return None if chunk_size is None else check_int(chunk_size, "chunk_size", 1)


def _is_host_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, list)) and not isinstance(x, jax.Array)


def _streams(x: Any, chunk_size: int | None) -> bool:
    """Whether ``fit`` streams ``x`` from the host: a numpy array (or a tuple
    of them) with ``chunk_size``, or a stream of chunks (a function returning
    an iterable, or an iterable that is not an array or a tuple)."""
    if isinstance(x, tuple):
        return chunk_size is not None and bool(x) and all(_is_host_array(a) for a in x)
    if isinstance(x, (jax.Array, np.ndarray, list, np.generic)) or hasattr(x, "__array__"):
        return chunk_size is not None and _is_host_array(x)
    return callable(x) or hasattr(x, "__iter__")


def _check_mesh(plan: Plan, mesh, data_axes, restart_axis, num_restarts: int) -> Plan:
    """The mesh options as a :class:`Plan` (unchanged without a mesh)."""
    if mesh is None:
        if data_axes is not None or restart_axis is not None:
            raise ValueError("data_axes and restart_axis need a mesh")
        return plan
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    names = tuple(mesh.axis_names)
    if restart_axis is not None and restart_axis not in names:
        raise ValueError(f"restart_axis {restart_axis!r} is not an axis of the mesh {names}")
    if data_axes is None:
        data_axes = tuple(name for name in names if name != restart_axis)
    elif isinstance(data_axes, str):
        data_axes = (data_axes,)
    else:
        data_axes = tuple(data_axes)
    for name in data_axes:
        if name not in names:
            raise ValueError(f"data axis {name!r} is not an axis of the mesh {names}")
        if name == restart_axis:
            raise ValueError(f"axis {name!r} cannot split both the data and the restarts")
    if restart_axis is not None and num_restarts % mesh.shape[restart_axis]:
        raise ValueError(
            f"num_restarts={num_restarts} must be a multiple of the size of the restart "
            f"axis {restart_axis!r} ({mesh.shape[restart_axis]})"
        )
    # The fit places its arrays itself and lets the compiler partition the
    # M-step and the book-keeping: axes typed Explicit (jax.make_mesh's
    # default) would demand explicit shardings at every slice of the restarts.
    auto = Mesh(mesh.devices, names, axis_types=(AxisType.Auto,) * len(names))
    return dataclasses.replace(plan, mesh=auto, data_axes=data_axes, restart_axis=restart_axis)


def _on_auto_mesh(tree: Any, plan: Plan) -> Any:
    """Arrays already split over the user's mesh (e.g. a global array built
    with ``jax.make_array_from_process_local_data``), moved to the same
    layout on the fit's Auto-typed copy of that mesh (no data moves)."""

    def move(leaf):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and (
            sharding.mesh.devices.shape == plan.mesh.devices.shape
            and (sharding.mesh.devices == plan.mesh.devices).all()
        ):
            return jax.device_put(leaf, NamedSharding(plan.mesh, sharding.spec))
        return leaf

    return jax.tree.map(move, tree)


def _shard_rows(x, weights, plan: Plan):
    """Data and weights split over the mesh's data axes. Rows are padded to a
    multiple of the number of shards by repeating the first rows with weight
    zero (valid data, so every log-density stays finite, and no effect on
    the statistics)."""
    shards = math.prod(plan.mesh.shape[name] for name in plan.data_axes)
    rows = num_rows(x)
    pad = -rows % shards
    if pad:
        extra = jnp.arange(pad) % rows
        x = jax.tree.map(lambda a: jnp.concatenate([a, a[extra]]), x)
        if weights is None:
            weights = jnp.ones(rows, _data_dtype(x))
        weights = jnp.concatenate([weights, jnp.zeros(pad, weights.dtype)])
    sharding = NamedSharding(plan.mesh, PartitionSpec(plan.data_axes))
    return jax.device_put(x, sharding), jax.device_put(weights, sharding)


def _check_data(model, x, weights):
    """Data as floating arrays (an array, or a *tuple* of arrays with a common
    leading axis, such as ``(inputs, targets)``), checked by the model, free of
    NaN/inf; weights checked against the number of rows."""
    if isinstance(x, tuple):  # (a list is one array: rows of numbers, as numpy reads it)
        if not x:
            raise ValueError("x is an empty tuple; pass an array or a tuple of arrays")
        leaves = [as_float_array(leaf, f"x[{i}]") for i, leaf in enumerate(x)]
        dtype = jnp.result_type(*leaves)
        leaves = [leaf.astype(dtype) for leaf in leaves]
        names = [f"x[{i}]" for i in range(len(leaves))]
        check_common_rows(leaves, names)
        x = tuple(leaves)
    else:
        x = as_float_array(x, "x")
        leaves, names = [x], ["x"]
    check_data = getattr(model, "check_data", None)
    if check_data is not None:
        check_data(x)
    for leaf, name in zip(leaves, names, strict=True):
        check_finite(leaf, name)
    if weights is not None:
        weights = check_weights(weights, num_rows(x), _data_dtype(x))
    return x, weights


def check_common_rows(leaves: list[Any], names: list[str]) -> None:
    """Raise ``ValueError`` unless every array has a leading (observation)
    axis of the same length as the first."""
    for leaf, name in zip(leaves, names, strict=True):
        if leaf.ndim == 0:
            raise ValueError(f"{name} must have a leading observation axis; got a scalar")
        if leaf.shape[0] != leaves[0].shape[0]:
            raise ValueError(
                f"{name} has {leaf.shape[0]} rows but x[0] has {leaves[0].shape[0]}: every "
                "array in x needs one row per observation"
            )


def _shape_of(x: Any) -> Any:
    """Hashable shapes and dtypes of the data (an array or a tuple of arrays)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), x)


def _cast_floats(tree, dtype):
    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


@functools.lru_cache(maxsize=256)
def _init_shapes(model, x: Any):
    """Shapes and dtypes of ``model.init``'s parameters for data like ``x``
    (traced once per model and data shape, not per call)."""
    return jax.eval_shape(model.init, jax.random.key(0), x)


def _check_params_shape(model, params, x, num_restarts, key):
    """Check ``params`` against what ``model.init`` would return; broadcast or
    validate a leading restart axis. Returns params of ``x``'s dtype (batched
    over restarts when ``key`` is given, as ``fit`` needs)."""
    expected = _init_shapes(model, _shape_of(x))
    expected_leaves, expected_tree = jax.tree.flatten(expected)
    leaves, tree = jax.tree.flatten(params)
    check_params = getattr(model, "check_params", None)
    if tree != expected_tree:
        if check_params is not None:
            check_params(params, x)
        raise TypeError(f"params must have the structure {expected_tree}; got {tree}")
    shapes = [tuple(np.shape(leaf)) for leaf in leaves]
    single = all(s == e.shape for s, e in zip(shapes, expected_leaves, strict=False))
    batched = key is not None and all(
        s == (num_restarts, *e.shape) for s, e in zip(shapes, expected_leaves, strict=False)
    )
    if not (single or batched):
        if check_params is not None:
            check_params(params, x)  # names the offending field
        mismatch = next(
            (s, e.shape) for s, e in zip(shapes, expected_leaves, strict=False) if s != e.shape
        )
        raise ValueError(
            f"params leaf has shape {mismatch[0]}, expected {mismatch[1]} "
            f"(or ({num_restarts}, ...) for one set per restart)"
        )
    params = _cast_floats(params, _data_dtype(x))
    if check_params is not None:
        if single:
            check_params(params, x)
        else:
            for r in range(num_restarts):
                check_params(jax.tree.map(lambda leaf, r=r: leaf[r], params), x)
    if key is None or batched:
        return params
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_restarts, *leaf.shape)), params)


def _auto_restart_batch_size(model, x, num_restarts) -> int:
    """Restarts per vectorised step, by backend, dtype and problem size.

    On accelerators all restarts advance together (``vmap``). On a CPU there
    is no parallel hardware for a batch axis to use, and running restarts in
    turn (``1``) costs what separate fits cost. Measured on a 2-core x86
    machine (8 restarts, full and diag Gaussian mixtures, n·params from 1e4
    to 2e7), ``vmap`` was 1.1-1.5x faster only for float32 problems with
    1e5 <= n·params <= 1.5e6; elsewhere (all of float64, tiny and large
    problems) it was up to 2x slower. So that window vectorises and the rest
    runs in turn.
    """
    if num_restarts == 1:
        return 1
    if jax.default_backend() != "cpu":
        return num_restarts
    if getattr(model, "m_step_uses_data", False):
        # GEM M-steps hold while-loops (line searches) that vmap turns into
        # lock-step loops: a 4-restart float32 mixture of experts took 43 ms
        # per iteration vmapped against 5 ms in turn (n = 1e3, 2-core x86).
        return 1
    expected = _init_shapes(model, _shape_of(x))
    param_size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(expected))
    work = num_rows(x) * param_size
    if _data_dtype(x) == jnp.float32 and 1e5 <= work <= 1.5e6:
        return num_restarts
    return 1
