"""The EM driver: one pure iteration (:func:`em_step`), and a compiled fit
over restarts (:func:`fit`).

The driver knows nothing about any model, by import or by behaviour: it
calls the model contract (:mod:`jaxem._model`) through the engine
(:mod:`jaxem._engine`). Restarts are a batch axis, advanced together or in
groups inside one ``lax.while_loop``; each restart stops updating when it
converges (masked), so a batched fit returns what separate fits with the
same keys return. The M-step state (a gradient M-step's optimizer state) is
carried beside the parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxem import _accelerate, _engine, _implicit
from jaxem._engine import EMInfo, FitResult, Plan
from jaxem._model import as_model
from jaxem._numerics import num_rows, tree_all_finite
from jaxem._streaming import fit_stream
from jaxem._validation import check_int, check_key, check_nonnegative_float, is_concrete

Array = jax.Array
Params = Any


# ----------------------------------------------------------------- one step


def _em_step(model, params, m_step_state, x, weights, chunk_size):
    if m_step_state is None:  # (a fresh state, inside the compiled step)
        m_step_state = model.init_m_step_state(params)
    weight = _engine.total_weight(x, weights)
    plan = Plan(chunk_size)
    stats, value = _engine.objective(model, params, x, weights, weight, plan)
    params, m_step_state = _engine.m_step(model, stats, params, m_step_state, x)
    return params, m_step_state, value


_jitted_em_step = jax.jit(_em_step, static_argnums=(0, 5))


def em_step(
    model,
    params: Params,
    x: Any,
    weights: Any = None,
    *,
    m_step_state: Any = None,
    chunk_size: int | None = None,
) -> tuple[Params, Array] | tuple[Params, Any, Array]:
    """One pure EM iteration: an E-step under ``params``, then the M-step.

    Jitted with ``model`` static: compiles once per model and shapes.

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract.
      params: current parameters.
      x: data, e.g. ``(n, D)``.
      weights: optional per-observation weights, ``(n,)``, non-negative and
        relative (see :func:`fit`).
      m_step_state: the M-step state to continue from (a gradient M-step's
        optimizer state, e.g. ``FitResult.m_step_state`` or a previous
        ``em_step``'s). When given, the new state is returned too; when
        ``None``, the M-step starts from ``model.init_m_step_state(params)``.
      chunk_size: run the E-step over chunks of this many rows and combine
        their statistics (the same step; memory bounded by the chunk).

    Returns:
      ``(new_params, log_likelihood)``, or with ``m_step_state`` given,
      ``(new_params, new_m_step_state, log_likelihood)``: the updated
      parameters, and the mean per-observation log-likelihood (plus
      ``log p(θ)`` over the total weight, with a prior) of the *input*
      ``params``, which EM guarantees the new parameters do not lower.

    Raises:
      ValueError, TypeError: for bad data, weights, parameters or state.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(1), x)
      >>> params, before = jaxem.em_step(model, params, x)
      >>> _, after = jaxem.em_step(model, params, x)
      >>> bool(after >= before - 1e-6)
      True
    """
    model = as_model(model)
    x, weights, _ = _engine.check_data(model, x, weights)
    chunk_size = _check_chunk_size(chunk_size)
    params = _engine.check_params(model, params, x, num_restarts=1, key=None)
    given = m_step_state is not None
    if given:
        m_step_state = _engine.check_m_step_state(model, m_step_state, params)
    model = _engine.for_data(model, x)  # (after every check: it may compile)
    params, m_step_state, value = _jitted_em_step(
        model, params, m_step_state, x, weights, chunk_size
    )
    return (params, m_step_state, value) if given else (params, value)


# ------------------------------------------------------------------ the fit


def _fit(
    model,
    x,
    key,
    weights,
    init_params,
    tol,
    valid,
    previous,
    *,
    max_iter: int,
    num_restarts: int,
    restart_batch_size: int,
    callback: Callable | None,
    callback_every: int,
    plan: Plan,
    stop_on_decrease: bool,
    accelerate: str | None,
) -> FitResult:
    # The loop is not differentiated: gradients with respect to the data and
    # weights reach the best restart's parameters and objective through the
    # EM fixed point (implicit differentiation, _implicit.attach).
    data = (x, weights)
    x, weights = lax.stop_gradient(data)
    dtype = _engine.data_dtype(x)
    weight = _engine.total_weight(x, weights)
    tol = jnp.asarray(tol, dtype)
    batch = restart_batch_size
    if init_params is None:
        params = _engine.init_restarts(model, x, weights, key, num_restarts, batch)
    else:
        params = init_params
    m_step_states = _engine.map_restarts(model.init_m_step_state, params, batch)

    single = jax.tree.map(lambda leaf: leaf[0], params)
    shapes = jax.eval_shape(
        lambda p: _engine.objective(model, p, x, weights, weight, plan)[0], single
    )
    states = _engine.initial_states(
        params, m_step_states, _engine.zero_stats(shapes), dtype, num_restarts, max_iter, previous
    )
    step = functools.partial(
        _accelerate.iterate if accelerate == "squarem" else _engine.iterate,
        model,
        x=x,
        weights=weights,
        weight=weight,
        tol=tol,
        decrease_tol=_engine.decrease_tolerance(dtype),
        max_iter=max_iter,
        plan=plan,
        stop_on_decrease=stop_on_decrease,
    )

    def running(carry):
        _, states = carry
        return jnp.any(~_engine.stopped(states, max_iter))

    def body(carry):
        iteration, states = carry
        states = _engine.map_restarts(step, states, batch, plan.restart_axis)
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
    result = _engine.result(model, states, ~valid)
    params, log_likelihood = _implicit.attach(
        model, result.params, result.log_likelihood, *data, plan
    )
    return result._replace(params=params, log_likelihood=log_likelihood)


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
        "stop_on_decrease",
        "accelerate",
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
    stream: bool = False,
    mesh: Mesh | None = None,
    data_axes: str | tuple[str, ...] | None = None,
    restart_axis: str | None = None,
    previous_log_likelihood: Any = None,
    stop_on_decrease: bool = False,
    accelerate: str | None = None,
) -> FitResult:
    """Fit ``model`` to ``x`` by EM, with restarts, in one compiled program.

    Every restart is initialised with ``model.init`` from its own key
    (:func:`jaxem.restart_keys`: restart ``0`` uses ``key`` itself, so the
    first restart of any fit is the one-restart fit, and more restarts are
    never worse), iterated until the change of the objective is below ``tol``
    (or ``max_iter``), and the restart with the highest final objective is
    returned. The loop runs on the device (``lax.while_loop``), with no host
    round-trip per iteration unless ``callback`` is given. The compiled
    program is cached per (model, shapes, dtypes, static options): a second
    call with new data, key or ``tol`` does not recompile. ``fit`` can be
    called under ``jax.vmap`` to fit many equally-shaped datasets at once.

    Args:
      model: a model implementing the :class:`~jaxem.Model` contract (its
        configuration is static).
      x: data, e.g. ``(n, D)``, or a tuple of arrays with ``n`` rows each
        (e.g. ``(inputs, targets)``); integer data is converted to floats,
        and the fit runs in ``x``'s floating dtype. (As everywhere in JAX,
        float64 needs ``jax.config.update("jax_enable_x64", True)`` or the
        ``jax.enable_x64()`` context; otherwise float64 input runs in
        float32.) With ``stream=True``, a host array or a stream of chunks.
      key: a PRNG key, ``jax.random.key(seed)``.
      weights: optional per-observation weights, ``(n,)``, non-negative and
        relative: they are rescaled to mean one, so multiplying all of them by
        one constant changes nothing, and a prior weighs against the ``n``
        rows. (Without a prior, integer weights are repeated rows.)
      num_restarts: ``R >= 1`` restarts.
      max_iter: EM iterations at most per restart (``0`` returns the
        initialisation).
      tol: convergence threshold on the change of the mean log-likelihood
        (plus ``log p(θ)`` over the total weight), as in scikit-learn; ``0``
        runs ``max_iter`` iterations unless the change is exactly zero. A
        loose ``tol`` can stop a restart on a plateau (e.g. near the saddle
        that ``"random"`` initialisation starts from), as it does in
        scikit-learn: use more restarts or a smaller ``tol``.
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
      chunk_size: exact EM with the E-step over chunks of this many rows,
        their statistics combined (added; concatenated for per-observation
        statistics): the same fit as without chunks, with the E-step's
        temporaries bounded by the chunk. Without ``stream``, the data go to
        the device and the chunks are visited inside the compiled loop; with
        ``stream=True``, ``chunk_size`` is the size of the chunks streamed
        from the host.
      stream: keep the data on the host and stream them to the device chunk
        by chunk every iteration, so the device holds only a chunk or two at
        a time (see "Streaming" below). ``x`` is then a numpy array
        (including a memory-mapped ``.npy`` file from
        ``np.load(path, mmap_mode="r")``) or a tuple of them, with
        ``chunk_size``; or a stream of chunks.
      mesh: a :class:`jax.sharding.Mesh`: observations are split over the
        mesh's ``data_axes`` (padded with zero-weight rows to a multiple of
        the number of shards), each device runs the E-step on its rows, and
        the additive statistics are summed across devices (``shard_map`` +
        ``psum``); the M-step runs replicated. Initialisation
        (``model.init``) runs on the unsharded data. The same call runs on
        many hosts after ``jax.distributed.initialize()``, with ``x`` a
        global array (see the README).
      data_axes: the mesh axis name(s) that split the observations (default:
        every axis of ``mesh`` except ``restart_axis``).
      restart_axis: a mesh axis that splits the restarts (``num_restarts``
        must be a multiple of its size): each group of devices along it fits
        its own restarts on all the data.
      previous_log_likelihood: when ``init_params`` continue a previous fit,
        that fit's objective (a number, or one per restart), so that
        convergence is tested from the first iteration on (the change
        between it and the objective of ``init_params``), as scikit-learn's
        ``warm_start`` does; ``None``: the first test is at the second
        iteration.
      stop_on_decrease: also stop a restart when its objective decreases
        (hmmlearn's rule, "the gain below ``tol``"; scikit-learn's, the
        default, tests the absolute change). EM never decreases the
        log-likelihood, but an objective that leaves out an improper prior
        (as hmmlearn's monitor does) can.
      accelerate: ``None`` (plain EM) or ``"squarem"``: SQUAREM (Varadhan &
        Roland 2008, scheme S3 with its step-length safeguards), which
        extrapolates two EM steps in the model's free coordinates
        (``model.constraints``) and falls back to the plain EM steps when the
        objective would decrease, so the fit stays monotone. Each iteration
        then takes up to three M-steps (``FitResult.num_m_steps`` counts
        them) and ``max_iter`` bounds the iterations. Typically several times
        fewer M-steps on slow problems (overlapping components, factor and
        state-space models); see :func:`squarem_step`.

    Streaming (``stream=True``): ``x`` may also be a function that returns a
    fresh iterable of chunks (arrays, or tuples of arrays, of equal trailing
    shapes) on every call, or a re-iterable object (not a one-shot
    iterator), since EM reads the data once per iteration. The loop then runs
    on the host: each iteration is a compiled M-step, one compiled chunk
    E-step per chunk (all restarts at once; chunks of equal size compile
    once), and a compiled book-keeping step, with the next chunk read and
    transferred while the device works on the current one. Without
    ``init_params``, restarts are initialised from the first chunk. Chunks are
    checked as they arrive (every pass for streams, the first pass for
    arrays), and bad ones raise an error naming the chunk. Models whose
    statistics are kept per observation (gradient M-steps need all the data)
    cannot stream, and ``callback``, ``mesh`` and ``restart_batch_size`` do
    not apply.

    Differentiating through a fit: ``result.params`` and
    ``result.log_likelihood`` are differentiable in reverse mode
    (``jax.grad``, ``jax.vjp``, also under ``jax.vmap``) with respect to
    ``x`` and ``weights``, by the implicit function theorem at the EM fixed
    point (the loop itself is not differentiated; see
    :func:`jaxem.fixed_point`, which also differentiates with respect to a
    model's hyperparameters). The derivative is as accurate as the fit's
    convergence (use a small ``tol``); the other fields, and streamed fits,
    carry no derivative.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError, TypeError: before anything is traced, for data the model
        does not take (wrong rank or feature count, NaN/inf where the model
        takes no missing values: how many, and where the first is; fewer
        observations than the model needs), bad weights, options out of
        range, a missing or malformed key, or parameters of the wrong shape.

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
    model = as_model(model)
    key = check_key(key)
    max_iter = check_int(max_iter, "max_iter", 0)
    num_restarts = check_int(num_restarts, "num_restarts", 1)
    callback_every = check_int(callback_every, "callback_every", 1)
    tol = check_nonnegative_float(tol, "tol")
    chunk_size = _check_chunk_size(chunk_size)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {callback!r}")
    if callback is None:  # (static: without a callback it must not split the compiled programs)
        callback_every = 1
    if not isinstance(stream, (bool, np.bool_)):
        raise TypeError(f"stream must be True or False; got {stream!r}")
    if not isinstance(stop_on_decrease, (bool, np.bool_)):
        raise TypeError(f"stop_on_decrease must be True or False; got {stop_on_decrease!r}")
    stop_on_decrease = bool(stop_on_decrease)
    accelerate = _check_accelerate(accelerate)
    if stream:
        if accelerate is not None:
            raise ValueError("accelerate does not apply with stream=True")
        if stop_on_decrease:
            raise ValueError("stop_on_decrease does not apply with stream=True")
        if previous_log_likelihood is not None:
            raise ValueError("previous_log_likelihood does not apply with stream=True")
        if mesh is not None:
            raise ValueError(
                "mesh does not apply with stream=True: pass an array, placed on the mesh"
            )
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
    if _is_stream(x):
        raise TypeError(
            f"x is a stream of chunks ({type(x).__name__}); pass stream=True to fit it chunk by "
            "chunk from the host"
        )
    x, weights, valid = _engine.check_data(model, x, weights)
    plan = _check_mesh(Plan(chunk_size), mesh, data_axes, restart_axis, num_restarts)
    if init_params is not None:
        init_params = _engine.check_params(model, init_params, x, num_restarts, key)
        if not all(is_concrete(leaf) for leaf in jax.tree.leaves(init_params)):
            # (checked when concrete; under a user's jit, reported as a flag)
            valid = valid & tree_all_finite(init_params)
    if previous_log_likelihood is not None:
        if init_params is None:
            raise ValueError("previous_log_likelihood needs init_params (the fit it continues)")
        previous_log_likelihood = _check_previous(previous_log_likelihood, num_restarts)
    if plan.mesh is not None:
        restart_batch_size = num_restarts
    elif restart_batch_size is None:
        restart_batch_size = _engine.auto_restart_batch_size(model, x, num_restarts)
    else:
        restart_batch_size = min(
            check_int(restart_batch_size, "restart_batch_size", 1), num_restarts
        )
    model = _engine.for_data(model, x)  # (after every check: it may compile)
    if plan.mesh is not None:
        x, weights = _on_auto_mesh((x, weights), plan)
        if init_params is None:  # on the unsplit data, exactly as without a mesh
            init_params = _engine.jitted_init_restarts(
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
        valid,
        previous_log_likelihood,
        max_iter=max_iter,
        num_restarts=num_restarts,
        restart_batch_size=restart_batch_size,
        callback=callback,
        callback_every=callback_every,
        plan=plan,
        stop_on_decrease=stop_on_decrease,
        accelerate=accelerate,
    )


# ------------------------------------------------------- one SQUAREM step


class SquaremStep(NamedTuple):
    """What :func:`squarem_step` returns.

    Attributes:
      params: the new parameters.
      log_likelihood: the objective of the *input* parameters (as
        :func:`em_step` returns it).
      new_log_likelihood: the objective of the new parameters (never below
        ``log_likelihood``, up to rounding).
      step_max: the step-length bound for the next step.
      m_step_state: the M-step state after the step.
      num_m_steps: M-steps the step took (2 or 3).
    """

    params: Params
    log_likelihood: Array
    new_log_likelihood: Array
    step_max: Array
    m_step_state: Any
    num_m_steps: Array


def _squarem_step(model, params, m_step_state, step_max, x, weights, chunk_size):
    dtype = _engine.data_dtype(x)
    if m_step_state is None:
        m_step_state = model.init_m_step_state(params)
    batch = lambda tree: jax.tree.map(lambda leaf: leaf[None], tree)
    weight = _engine.total_weight(x, weights)
    plan = Plan(chunk_size)
    shapes = jax.eval_shape(
        lambda p: _engine.objective(model, p, x, weights, weight, plan)[0], params
    )
    state = _engine.initial_states(
        batch(params), batch(m_step_state), _engine.zero_stats(shapes), dtype, 1, 1
    )
    state = jax.tree.map(lambda leaf: leaf[0], state)
    state = state._replace(step_max=jnp.asarray(step_max, dtype))
    step = functools.partial(
        _accelerate.iterate,
        model,
        x=x,
        weights=weights,
        weight=weight,
        tol=jnp.asarray(-1.0, dtype),  # (never converged: both stages run)
        decrease_tol=_engine.decrease_tolerance(dtype),
        max_iter=1,
        plan=plan,
    )
    evaluated = step(state)
    stepped = step(evaluated)
    return SquaremStep(
        stepped.params,
        evaluated.log_likelihood,
        stepped.log_likelihood,
        stepped.step_max,
        stepped.m_step_state,
        stepped.num_m_steps,
    )


_jitted_squarem_step = jax.jit(_squarem_step, static_argnums=(0, 6))


def squarem_step(
    model,
    params: Params,
    x: Any,
    weights: Any = None,
    *,
    step_max: Any = 1.0,
    m_step_state: Any = None,
    chunk_size: int | None = None,
) -> SquaremStep:
    """One pure SQUAREM iteration (Varadhan & Roland 2008): two EM steps, an
    extrapolation in the model's free coordinates, and a stabilising EM step,
    kept only if the objective does not decrease (else the two EM steps).

    ``jaxem.fit(..., accelerate="squarem")`` runs this in its compiled loop;
    this is the step for a loop of one's own, as :func:`em_step` is for EM.
    Jitted with ``model`` static.

    Args:
      model: a model of the :class:`~jaxem.Model` contract (its
        ``constraints`` give the free coordinates).
      params: current parameters.
      x: data.
      weights: optional per-observation weights.
      step_max: the largest step length allowed (start at 1; pass on the
        returned ``step_max``).
      m_step_state: the M-step state to continue from (``None``: fresh).
      chunk_size: E-steps over chunks of this many rows.

    Returns:
      A :class:`SquaremStep`.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(0), x)
      >>> step = jaxem.squarem_step(model, params, x)
      >>> bool(step.new_log_likelihood >= step.log_likelihood)
      True
    """
    model = as_model(model)
    x, weights, _ = _engine.check_data(model, x, weights)
    chunk_size = _check_chunk_size(chunk_size)
    params = _engine.check_params(model, params, x, num_restarts=1, key=None)
    if m_step_state is not None:
        m_step_state = _engine.check_m_step_state(model, m_step_state, params)
    step_max = check_nonnegative_float(step_max, "step_max")
    if is_concrete(step_max) and float(step_max) < 1.0:
        raise ValueError(f"step_max must be >= 1; got {step_max}")
    model = _engine.for_data(model, x)
    return _jitted_squarem_step(model, params, m_step_state, step_max, x, weights, chunk_size)


# ----------------------------------------------------------- input checks


ACCELERATORS = ("squarem",)


def _check_accelerate(accelerate: Any) -> str | None:
    if accelerate is None:
        return None
    if not isinstance(accelerate, str) or accelerate not in ACCELERATORS:
        raise ValueError(f"accelerate must be None or one of {ACCELERATORS}; got {accelerate!r}")
    return accelerate


def _check_previous(value: Any, num_restarts: int) -> Array:
    """A finite number, or one per restart."""
    array = value if isinstance(value, jax.Array) else np.asarray(value)
    if array.ndim not in (0, 1) or (array.ndim == 1 and array.shape[0] != num_restarts):
        raise ValueError(
            f"previous_log_likelihood must be a number or have shape ({num_restarts},); got "
            f"shape {tuple(array.shape)}"
        )
    if is_concrete(array) and not np.all(np.isfinite(np.asarray(array))):
        raise ValueError(f"previous_log_likelihood must be finite; got {value}")
    return array


def _check_chunk_size(chunk_size: Any) -> int | None:
    return None if chunk_size is None else check_int(chunk_size, "chunk_size", 1)


def _is_stream(x: Any) -> bool:
    """Whether ``x`` is a stream of chunks (a function returning an iterable,
    or an iterable that is not an array, a list of rows or a tuple)."""
    if isinstance(x, (tuple, list, str, bytes, Mapping, jax.Array, np.ndarray, np.generic)):
        return False
    return callable(x) or (hasattr(x, "__iter__") and not hasattr(x, "__array__"))


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
            weights = jnp.ones(rows, _engine.data_dtype(x))
        weights = jnp.concatenate([weights, jnp.zeros(pad, weights.dtype)])
    sharding = NamedSharding(plan.mesh, PartitionSpec(plan.data_axes))
    return jax.device_put(x, sharding), jax.device_put(weights, sharding)
