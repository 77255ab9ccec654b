"""The EM engine: the small internal API the drivers share.

``jaxem.fit`` and ``jaxem.em_step`` (:mod:`jaxem._driver`), host streaming
(:mod:`jaxem._streaming`) and online EM (:mod:`jaxem._online`) are built from
the pieces here: input checks at the boundary, one EM iteration of one
restart as a state transition (an M-step from the carried statistics, then an
E-step under the new parameters), restarts as a batch axis, and the fit's
result. Nothing here knows any model, by import or by behaviour: models are
called through the contract of :mod:`jaxem._model`, completed once at the
boundary (:func:`jaxem._model.as_model`), and statistics are split and
combined by their types (:mod:`jaxem._stats`).
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
from jax.sharding import Mesh, PartitionSpec

from jaxem import _stats
from jaxem._numerics import num_rows, tree_all_finite, zeros_like_shapes
from jaxem._validation import as_float_array, check_weights, is_concrete, to_device

Array = jax.Array
Params = Any

# Relative drop of the objective between iterations that counts as a
# decrease. Rounding in float64 is far below it; regularisation added after
# the M-step (``reg_covar``) makes EM only nearly monotone, by about
# reg_covar · tr(Σ⁻¹) / 2 per observation (1e-7 relative for standardised
# data and the default 1e-6), also below it. Float32 uses 1000 eps instead.
DECREASE_TOLERANCE = 1e-5


def decrease_tolerance(dtype: Any) -> float:
    return max(DECREASE_TOLERANCE, 1e3 * float(jnp.finfo(dtype).eps))


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the E-step is distributed (static: part of the compiled program).

    Attributes:
      chunk_size: rows per chunk of the E-step on the device (``None``: all
        at once).
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
      m_step_state: the M-step's state (an optimizer's, for gradient
        M-steps; ``()`` for closed forms), carried beside the parameters.
      stats: expected sufficient statistics under ``params`` (valid once
        ``evaluated``; per-observation parts detached from the data), from
        which the next M-step starts.
      log_likelihood: the monitored objective (mean log-likelihood, plus
        ``log p(θ)`` over the total weight with a prior) of ``params``;
        ``-inf`` before the first evaluation.
      previous: the objective of the parameters before ``params``.
      evaluated: whether ``params`` have been evaluated (an E-step ran).
      num_iter: M-steps taken (scikit-learn's ``n_iter_``), int32.
      converged: the change of the objective fell below ``tol``.
      nonfinite: a non-finite objective or parameter appeared; the restart
        stopped and kept its last finite parameters.
      decreased: the objective decreased at some iteration by more than
        ``DECREASE_TOLERANCE`` relative.
      history: ``(max_iter,)`` objective of the parameters entering each
        iteration, NaN after the stop.
      num_m_steps: M-steps taken (EM-map evaluations): ``num_iter`` for
        plain EM, up to three per iteration with SQUAREM.
      step_max: SQUAREM's largest allowed step length (1 for plain EM).
    """

    params: Params
    m_step_state: Any
    stats: Any
    log_likelihood: Array
    previous: Array
    evaluated: Array
    num_iter: Array
    converged: Array
    nonfinite: Array
    decreased: Array
    history: Array
    num_m_steps: Array
    step_max: Array


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
    """The outcome of :func:`jaxem.fit` (a pytree: usable under ``jax.vmap``).

    ``R`` is the number of restarts and ``T`` is ``max_iter``.

    Attributes:
      params: the best restart's parameters (highest final objective).
      m_step_state: the best restart's M-step state (``()`` for closed-form
        M-steps), to continue the fit with :func:`jaxem.em_step`.
      log_likelihood: the best restart's final mean per-observation
        log-likelihood (plus ``log p(θ)`` over the total weight, with a
        prior), evaluated at ``params``.
      history: ``(R, T)`` objective per iteration, evaluated at the
        parameters entering that iteration (scikit-learn's
        ``lower_bounds_``); NaN after a restart stopped.
      num_iter: ``(R,)`` iterations run.
      num_m_steps: ``(R,)`` M-steps taken (evaluations of the EM map):
        ``num_iter`` for plain EM, up to three per iteration with
        ``accelerate="squarem"``.
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
      invalid_input: the data or weights held values the model does not take
        (NaN, inf, negative weights, values outside the model's domain).
        Only possible when ``fit`` runs under a user's ``jit``/``vmap``;
        eagerly such input raises ``ValueError``.
    """

    params: Params
    m_step_state: Any
    log_likelihood: Array
    history: Array
    num_iter: Array
    num_m_steps: Array
    converged: Array
    restarts: Params
    restart_log_likelihood: Array
    best_restart: Array
    diagnostics: dict[str, Array]
    nonfinite: Array
    decreased: Array
    invalid_input: Array


# ------------------------------------------------------------ input checks


def data_dtype(x: Any) -> Any:
    """The floating dtype of the data (every leaf has it after the checks)."""
    return jax.tree.leaves(x)[0].dtype


def as_data(x: Any) -> Any:
    """Data as floating arrays: an array, or a *tuple* of arrays with a
    common leading axis such as ``(inputs, targets)``, with at least one row.
    Host data stay numpy arrays (checked on the host), JAX arrays stay on
    their device.

    Raises:
      TypeError, ValueError: for non-numeric data, arrays of different
        lengths, or no rows.
    """
    if isinstance(x, tuple):  # (a list is one array: rows of numbers, as numpy reads it)
        if not x:
            raise ValueError("x is an empty tuple; pass an array or a tuple of arrays")
        leaves = [as_float_array(leaf, f"x[{i}]") for i, leaf in enumerate(x)]
        dtype = jnp.result_type(*leaves)
        leaves = [leaf.astype(dtype) for leaf in leaves]
        check_common_rows(leaves, [f"x[{i}]" for i in range(len(leaves))])
        x = tuple(leaves)
    else:
        x = as_float_array(x, "x")
        if x.ndim == 0:
            raise ValueError("x must have a leading observation axis; got a scalar")
    if num_rows(x) == 0:
        raise ValueError(f"x has no observations (shape {_shapes(x)}); EM needs at least one")
    return x


def _shapes(x: Any) -> Any:
    return tuple(tuple(leaf.shape) for leaf in x) if isinstance(x, tuple) else tuple(x.shape)


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


def check_data(model: Any, x: Any, weights: Any) -> tuple[Any, Array | None, Array]:
    """The data and weights, checked: the container here, everything about
    values and shapes by the model's own ``check_data`` (NaN included, so a
    model that handles missing values can accept it).

    Returns:
      ``(x, weights, valid)``: floating arrays, weights of the data's dtype
      (or ``None``), and a scalar boolean, whether the values are valid
      (``True`` when concrete, since invalid concrete values raise; traced
      under a user's ``jit``).
    """
    x = as_data(x)
    valid = model.check_data(x)
    valid = to_device(True if valid is None else valid)
    if weights is not None:
        weights = check_weights(weights, num_rows(x), data_dtype(x))
        if not is_concrete(weights):
            valid = valid & jnp.all(jnp.isfinite(weights) & (weights >= 0)) & jnp.any(weights > 0)
        weights = to_device(weights)
    return jax.tree.map(to_device, x), weights, valid


def for_data(model: Any, x: Any) -> Any:
    """``model.for_data(x)`` for concrete data (resolved once, before
    compiling); the model itself for traced data."""
    if all(is_concrete(leaf) for leaf in jax.tree.leaves(x)):
        return model.for_data(x)
    return model


def shape_of(x: Any) -> Any:
    """Hashable shapes and dtypes of the data (an array or a tuple of arrays)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), x)


def cast_floats(tree: Any, dtype: Any) -> Any:
    """Floating leaves in ``dtype`` (concrete ones converted on the host, so
    nothing compiles)."""

    def cast(leaf):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return to_device(leaf) if is_concrete(leaf) else leaf
        if isinstance(leaf, jax.Array) and leaf.dtype == dtype:
            return leaf
        if is_concrete(leaf):
            return to_device(np.asarray(leaf, dtype=dtype))
        return leaf.astype(dtype)

    return jax.tree.map(cast, tree)


@functools.lru_cache(maxsize=256)
def param_shapes(model: Any, x: Any) -> Any:
    """Shapes and dtypes of ``model.init``'s parameters for data shaped like
    ``x`` (``shape_of(x)``; traced once per model and data shape)."""
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


@functools.lru_cache(maxsize=256)
def stats_shapes(model: Any, x: Any) -> Any:
    """Shapes of ``model.e_step``'s statistics for data shaped like ``x``."""
    params = param_shapes(model, x)
    return jax.eval_shape(lambda p, x: model.e_step(p, x)[0], params, x)


def check_params(model: Any, params: Any, x: Any, num_restarts: int, key: Any) -> Any:
    """Check ``params`` against what ``model.init`` returns; broadcast or
    validate a leading restart axis. Returns params of ``x``'s dtype (batched
    over restarts when ``key`` is given, as ``fit`` needs)."""
    expected = param_shapes(model, shape_of(x))
    expected_leaves, expected_tree = jax.tree.flatten(expected)
    leaves, tree = jax.tree.flatten(params)
    if tree != expected_tree:
        model.check_params(params, x)  # names the problem, where the model can
        raise TypeError(f"params must have the structure {expected_tree}; got {tree}")
    shapes = [tuple(np.shape(leaf)) for leaf in leaves]
    single = all(s == e.shape for s, e in zip(shapes, expected_leaves, strict=True))
    batched = key is not None and all(
        s == (num_restarts, *e.shape) for s, e in zip(shapes, expected_leaves, strict=True)
    )
    if not (single or batched):
        model.check_params(params, x)  # names the offending field
        mismatch = next(
            (s, e.shape) for s, e in zip(shapes, expected_leaves, strict=True) if s != e.shape
        )
        raise ValueError(
            f"params leaf has shape {mismatch[0]}, expected {mismatch[1]} "
            f"(or ({num_restarts}, ...) for one set per restart)"
        )
    params = cast_floats(params, data_dtype(x))
    if single:
        model.check_params(params, x)
    else:
        for r in range(num_restarts):
            model.check_params(jax.tree.map(lambda leaf, r=r: _row(leaf, r), params), x)
    if key is None or batched:
        return params
    return jax.tree.map(lambda leaf: _repeat(leaf, num_restarts), params)


def _row(leaf: Array, index: int) -> Any:
    """``leaf[index]`` (on the host when concrete: nothing compiles)."""
    return np.asarray(leaf)[index] if is_concrete(leaf) else leaf[index]


def _repeat(leaf: Array, times: int) -> Array:
    """``leaf`` repeated along a new leading axis (built on the host when
    concrete: nothing compiles)."""
    shape = (times, *jnp.shape(leaf))
    if is_concrete(leaf):
        return to_device(np.broadcast_to(np.asarray(leaf), shape))
    return jnp.broadcast_to(leaf, shape)


def check_m_step_state(model: Any, m_step_state: Any, params: Any) -> Any:
    """An M-step state given by the user, checked against the model's fresh
    one for ``params`` (structure and shapes)."""
    expected = jax.eval_shape(model.init_m_step_state, params)
    expected_leaves, expected_tree = jax.tree.flatten(expected)
    leaves, tree = jax.tree.flatten(m_step_state)
    if tree != expected_tree or [np.shape(a) for a in leaves] != [e.shape for e in expected_leaves]:
        raise TypeError(
            "m_step_state does not match the model's M-step state for these parameters "
            f"(expected the structure of model.init_m_step_state(params): {expected_tree}); "
            f"got {tree}"
        )
    return m_step_state


def total_weight(x: Any, weights: Array | None) -> Array:
    """The number of rows, or the total observation weight."""
    if weights is None:
        return jnp.asarray(num_rows(x), data_dtype(x))
    return jnp.sum(weights)


# ----------------------------------------------------------------- one step


def _chunked_e_step(model, params, x, weights, chunk_size: int | None):
    """``model.e_step`` over chunks of ``chunk_size`` rows, combined by the
    statistics' types (added, or concatenated per observation)."""
    if chunk_size is None or chunk_size >= num_rows(x):
        return model.e_step(params, x, weights)
    stats, log_lik = _stats.reduce_over_rows(
        lambda xb, wb: model.e_step(params, xb, wb), (x, weights), chunk_size
    )
    return _stats.attach(stats, x), log_lik


def e_step(model, params, x, weights, plan: Plan):
    """The E-step as ``plan`` distributes it: in chunks, and with a mesh,
    each device on its own rows with the additive statistics summed across
    devices (``shard_map`` + ``psum``; per-observation statistics stay with
    their rows)."""
    if plan.mesh is None:
        return _chunked_e_step(model, params, x, weights, plan.chunk_size)
    axes = plan.data_axes

    def local(params, x, weights):
        stats, log_lik = _chunked_e_step(model, params, x, weights, plan.chunk_size)
        return _stats.psum(_stats.detach(stats), axes), lax.psum(log_lik, axes)

    rows = PartitionSpec(axes)
    shapes = jax.eval_shape(lambda p, x, w: model.e_step(p, x, w)[0], params, x, weights)
    stats, log_lik = jax.shard_map(
        local,
        mesh=plan.mesh,
        in_specs=(PartitionSpec(), rows, rows),
        out_specs=(_stats.partition_specs(shapes, rows, PartitionSpec()), PartitionSpec()),
        # (the replication checker rejects restarts batched over a mesh axis
        # around this map; the psums above make the outputs replicated)
        check_vma=False,
    )(params, x, weights)
    return _stats.attach(stats, x), log_lik


def objective(model, params, x, weights, weight: Array, plan: Plan):
    """E-step, and the monitored objective: the mean log-likelihood plus
    ``log p(θ)``, both over the total weight."""
    stats, log_lik = e_step(model, params, x, weights, plan)
    return stats, (log_lik + model.log_prior(params)) / weight


def m_step(model, stats, params, m_step_state, x):
    """The model's M-step, with the data attached to per-observation statistics."""
    return model.m_step(_stats.attach(stats, x), params, m_step_state)


def propose(model, state: EMState, x) -> tuple[Params, Any]:
    """The M-step from the carried statistics (none before the first E-step)."""
    return lax.cond(
        state.evaluated,
        lambda: m_step(model, state.stats, state.params, state.m_step_state, x),
        lambda: (state.params, state.m_step_state),
    )


def accept(
    state: EMState,
    params,
    m_step_state,
    stats,
    objective,
    tol,
    decrease_tol,
    max_iter,
    stop_on_decrease: bool = False,
    m_steps: Any = 1,
) -> EMState:
    """Book-keeping after the E-step under the proposed ``params``: keep them
    if finite, record the history, test convergence (scikit-learn's rule:
    the change below ``tol``; with ``stop_on_decrease``, hmmlearn's: the
    gain below ``tol``, so a decrease stops too). ``m_steps``: the M-steps
    the proposal took."""
    started = state.evaluated
    finite = jnp.isfinite(objective) & tree_all_finite(params)
    keep = lambda new, old: jnp.where(finite, new, old)
    change = objective - state.log_likelihood
    scale = jnp.maximum(1.0, jnp.abs(objective))
    # The objective of the parameters entering this iteration (sklearn's
    # lower bound of iteration num_iter + 1); nothing before the first.
    index = jnp.where(started, state.num_iter, max_iter)
    gain = state.log_likelihood - state.previous
    stalled = jnp.abs(gain) < tol
    if stop_on_decrease:
        stalled = stalled | (gain < 0)
    history = state.history
    if max_iter > 0:  # (an empty history has nothing to index)
        history = history.at[index].set(state.log_likelihood, mode="drop")
    return EMState(
        params=jax.tree.map(keep, params, state.params),
        m_step_state=jax.tree.map(keep, m_step_state, state.m_step_state),
        stats=jax.tree.map(keep, _stats.detach(stats), state.stats),
        log_likelihood=jnp.where(finite | ~started, objective, state.log_likelihood),
        previous=jnp.where(finite, state.log_likelihood, state.previous),
        evaluated=jnp.ones_like(started),
        num_iter=state.num_iter + started.astype(state.num_iter.dtype),
        converged=finite & started & stalled,
        nonfinite=~finite,
        decreased=state.decreased | (finite & started & (change < -decrease_tol * scale)),
        history=history,
        num_m_steps=state.num_m_steps + jnp.where(started, m_steps, 0).astype(jnp.int32),
        step_max=state.step_max,
    )


def stopped(state: EMState, max_iter: int) -> Array:
    return state.converged | state.nonfinite | (state.evaluated & (state.num_iter >= max_iter))


def iterate(
    model,
    state: EMState,
    x,
    weights,
    weight,
    tol,
    decrease_tol,
    max_iter,
    plan,
    stop_on_decrease: bool = False,
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
        params, m_step_state = propose(model, state, x)
        stats, value = objective(model, params, x, weights, weight, plan)
        return accept(
            state, params, m_step_state, stats, value, tol, decrease_tol, max_iter, stop_on_decrease
        )

    return lax.cond(stopped(state, max_iter), lambda s: s, advance, state)


# ---------------------------------------------------------------- restarts


def map_restarts(
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


def restart_keys(key: Array, num_restarts: int) -> Array:
    """The PRNG keys of a fit's restarts: restart ``0`` uses ``key`` itself
    and restart ``r >= 1`` uses ``jax.random.fold_in(key, r)``.

    So the keys are prefix-stable: restart ``r`` is the same whatever the
    number of restarts, and a fit with more restarts, keeping the best, is
    never worse than one with fewer (as scikit-learn's ``n_init`` promises).

    Args:
      key: a PRNG key.
      num_restarts: ``R >= 1``.

    Returns:
      ``(R,)`` keys.

    Examples:
      >>> import jax, jaxem
      >>> keys = jaxem.restart_keys(jax.random.key(0), 3)
      >>> first, key = jax.random.key_data(keys[0]), jax.random.key_data(jax.random.key(0))
      >>> keys.shape, bool((first == key).all())
      ((3,), True)
    """
    others = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(1, num_restarts))
    return jnp.concatenate([key[None], others])


def init_restarts(model, x, weights, key, num_restarts: int, batch: int):
    """``model.init`` for each restart's key, batched over a leading axis."""
    keys = restart_keys(key, num_restarts)
    return map_restarts(lambda k: model.init(k, x, weights), keys, batch)


jitted_init_restarts = jax.jit(init_restarts, static_argnums=(0, 4, 5))


def initial_states(
    params, m_step_states, stats, dtype, num_restarts: int, max_iter: int, previous=None
) -> EMState:
    """Restart states before the first E-step (``stats`` for one restart,
    detached; ``params`` and ``m_step_states`` with a leading restart axis).
    ``previous``: the objective of the parameters before ``params`` (a fit
    continued from another's), against which the first iteration tests
    convergence; ``-inf`` by default."""
    stats = jax.tree.map(lambda z: jnp.broadcast_to(z, (num_restarts, *z.shape)), stats)
    before = -jnp.inf if previous is None else previous
    return EMState(
        params=params,
        m_step_state=m_step_states,
        stats=stats,
        log_likelihood=jnp.broadcast_to(jnp.asarray(before, dtype), (num_restarts,)),
        previous=jnp.full((num_restarts,), -jnp.inf, dtype),
        evaluated=jnp.zeros((num_restarts,), bool),
        num_iter=jnp.zeros((num_restarts,), jnp.int32),
        converged=jnp.zeros((num_restarts,), bool),
        nonfinite=jnp.zeros((num_restarts,), bool),
        decreased=jnp.zeros((num_restarts,), bool),
        history=jnp.full((num_restarts, max_iter), jnp.nan, dtype),
        num_m_steps=jnp.zeros((num_restarts,), jnp.int32),
        step_max=jnp.ones((num_restarts,), dtype),
    )


def zero_stats(shapes: Any) -> Any:
    """Zero statistics of the given shapes, per-observation parts detached."""
    return zeros_like_shapes(_stats.detach(shapes))


def result(model, states: EMState, invalid_input: Array) -> FitResult:
    """The fit's outcome from the final restart states: the best restart."""
    final = states.log_likelihood
    diagnostics = dict(jax.vmap(model.diagnose)(states.stats, states.params))
    ranked = jnp.where(jnp.isfinite(final), final, -jnp.inf)
    best = jnp.argmax(ranked)
    pick = lambda tree: jax.tree.map(lambda leaf: leaf[best], tree)
    return FitResult(
        params=pick(states.params),
        m_step_state=pick(states.m_step_state),
        log_likelihood=final[best],
        history=states.history,
        num_iter=states.num_iter,
        num_m_steps=states.num_m_steps,
        converged=states.converged,
        restarts=states.params,
        restart_log_likelihood=final,
        best_restart=best.astype(jnp.int32),
        diagnostics=diagnostics,
        nonfinite=states.nonfinite,
        decreased=states.decreased,
        invalid_input=invalid_input,
    )


def auto_restart_batch_size(model, x, num_restarts) -> int:
    """Restarts per vectorised step, by backend, dtype and problem size.

    On accelerators all restarts advance together (``vmap``). On a CPU there
    is no parallel hardware for a batch axis to use, and running restarts in
    turn (``1``) costs what separate fits cost. Measured on a 2-core x86
    machine (8 restarts, full and diag Gaussian mixtures, n·params from 1e4
    to 2e7), ``vmap`` was 1.1-1.5x faster only for float32 problems with
    1e5 <= n·params <= 1.5e6; elsewhere (all of float64, tiny and large
    problems) it was up to 2x slower. So that window vectorises and the rest
    runs in turn. Models with per-observation statistics (gradient M-steps)
    run in turn on a CPU: their M-steps hold while-loops (line searches) that
    ``vmap`` turns into lock-step loops (a 4-restart float32 mixture of
    experts took 43 ms per iteration vmapped against 5 ms in turn, n = 1e3).
    """
    if num_restarts == 1:
        return 1
    if jax.default_backend() != "cpu":
        return num_restarts
    shapes = shape_of(x)
    if _stats.has_per_observation(stats_shapes(model, shapes)):
        return 1
    expected = param_shapes(model, shapes)
    param_size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(expected))
    work = num_rows(x) * param_size
    if data_dtype(x) == jnp.float32 and 1e5 <= work <= 1.5e6:
        return num_restarts
    return 1
