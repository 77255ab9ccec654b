"""Exact EM on data streamed from the host, chunk by chunk.

``jaxem.fit(model, x, stream=True, chunk_size=c)`` with ``x`` a numpy array
(or a memory-mapped ``.npy`` file, or a tuple of them), or ``x`` a stream of
chunks, lands here. The data never goes to the device whole: every EM
iteration is a compiled M-step (all restarts), then one compiled E-step per
chunk that adds the chunk's statistics to a running sum (all restarts at
once, so each chunk crosses to the device once per iteration), then a
compiled book-keeping step that is the engine's own (``accept``). Statistics
add up, so the result is full-batch EM; only the order of the sums differs.

Chunk ``i + 1`` is read and sent while the device works on chunk ``i`` (JAX
dispatches asynchronously); at most two chunks are in flight, so a
memory-mapped file is never read into memory whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _engine, _stats
from jaxem._numerics import num_rows
from jaxem._validation import as_float_array, check_weights, to_device

Array = jax.Array

_IN_FLIGHT = 2  # chunks dispatched before waiting for the oldest


class _Chunk(NamedTuple):
    index: int
    start: int  # first row, counted from the stream's start
    x: Any  # numpy array or tuple of numpy arrays
    weights: Any  # numpy array or None


def _leaves(x: Any) -> list[Any]:
    return list(x) if isinstance(x, tuple) else [x]


def _rebuild(x: Any, leaves: list[Any]) -> Any:
    return tuple(leaves) if isinstance(x, tuple) else leaves[0]


def _float_dtype(leaves: list[Any]) -> Any:
    """The floating dtype ``fit`` would use for these arrays (as_float_array's
    rules on a one-row slice, so nothing large is converted)."""
    return jnp.result_type(
        *[as_float_array(np.asarray(leaf[:1]), f"x[{i}]") for i, leaf in enumerate(leaves)]
    )


class _ArraySource:
    """Chunks of a host array (numpy, memory-mapped, or a tuple of them)."""

    def __init__(self, x: Any, weights: Any, chunk_size: int):
        leaves = [np.asarray(leaf) if isinstance(leaf, list) else leaf for leaf in _leaves(x)]
        names = [f"x[{i}]" for i in range(len(leaves))] if isinstance(x, tuple) else ["x"]
        _engine.check_common_rows(leaves, names)
        self.x = _rebuild(x, leaves)
        self.num_rows = leaves[0].shape[0]
        if self.num_rows == 0:
            raise ValueError("x has no observations")
        self.dtype = _float_dtype(leaves)
        self.weights = None
        if weights is not None:
            self.weights = np.asarray(check_weights(weights, self.num_rows, self.dtype))
        self.chunk_size = chunk_size
        self.recheck = False  # the data cannot change between passes

    def chunks(self) -> Iterator[_Chunk]:
        for index, start in enumerate(range(0, self.num_rows, self.chunk_size)):
            stop = min(start + self.chunk_size, self.num_rows)
            x = _rebuild(
                self.x, [np.asarray(leaf[start:stop], self.dtype) for leaf in _leaves(self.x)]
            )
            weights = None if self.weights is None else self.weights[start:stop]
            yield _Chunk(index, start, x, weights)


class _StreamSource:
    """Chunks from a function returning an iterable, or a re-iterable object."""

    def __init__(self, stream: Any):
        if not callable(stream):
            if iter(stream) is stream:
                raise TypeError(
                    "x is an iterator, which can be read only once, but EM reads the data "
                    "once per iteration: pass a function that returns a new iterator of "
                    "chunks, or a re-iterable object"
                )
        self.stream = stream
        self.num_rows = None  # known after the first pass
        self.dtype = None
        self.weights = None
        self.recheck = True  # a stream may yield different data on each pass

    def chunks(self) -> Iterator[_Chunk]:
        iterable = self.stream() if callable(self.stream) else self.stream
        start = 0
        for index, item in enumerate(iterable):
            if isinstance(item, list):
                item = np.asarray(item)
            if isinstance(item, tuple):
                leaves = [np.asarray(leaf) for leaf in item]
            else:
                leaves = [np.asarray(item)]
            for leaf in leaves:
                if leaf.ndim == 0 or leaf.shape[0] != leaves[0].shape[0]:
                    raise ValueError(
                        f"chunk {index}: every array needs the same leading (row) axis; got "
                        f"shapes {[tuple(a.shape) for a in leaves]}"
                    )
            if self.dtype is None:
                self.dtype = _float_dtype(leaves)
            if any(leaf.dtype.kind not in "biuf" for leaf in leaves):
                raise TypeError(
                    f"chunk {index} must hold real numbers; got dtypes "
                    f"{[str(a.dtype) for a in leaves]}"
                )
            x = _rebuild(item, [leaf.astype(self.dtype, copy=False) for leaf in leaves])
            yield _Chunk(index, start, x, None)
            start += leaves[0].shape[0]
        if start == 0:
            raise ValueError("the stream of chunks x yielded no data")


class _Checker:
    """Checks each chunk against the first (same trailing shapes), and by
    the model's own data checks (values, NaN included); errors name the
    chunk, with indices counted within it."""

    def __init__(self, model):
        self.model = model
        self.first = None

    def __call__(self, chunk: _Chunk) -> None:
        rows = num_rows(chunk.x)
        where = f"chunk {chunk.index} (rows {chunk.start}:{chunk.start + rows})"
        shapes = [leaf.shape[1:] for leaf in _leaves(chunk.x)]
        if self.first is None:
            self.first = chunk
            self.shapes = shapes
        elif shapes != self.shapes or isinstance(chunk.x, tuple) != isinstance(self.first.x, tuple):
            raise ValueError(
                f"{where} has trailing shape(s) {shapes}, but chunk 0 has {self.shapes}: "
                "every chunk needs the same number of features"
            )
        x = chunk.x
        if chunk is not self.first and rows < num_rows(self.first.x):
            # Count checks (e.g. at least K rows) are about the whole data:
            # check a short chunk followed by the first, which passed (so a
            # problem found is in the chunk's own rows, at its own indices).
            x = jax.tree.map(lambda a, b: np.concatenate([a, b]), x, self.first.x)
        try:
            self.model.check_data(x)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{where}, indices within the chunk: {error}") from error


# ------------------------------------------------------------ compiled parts


@jax.jit
def _add(total: Any, part: Any) -> Any:
    return jax.tree.map(jnp.add, total, part)


def _chunk_e_step(model, params, x, weights):
    """Statistics and summed log-likelihood of one chunk, for every restart."""
    return jax.vmap(lambda p: model.e_step(p, x, weights))(params)


_jitted_chunk_e_step = jax.jit(_chunk_e_step, static_argnums=0)


@jax.jit
def _stopped(states, max_iter):
    return jnp.all(_engine.stopped(states, max_iter))


def _propose(model, states):
    return jax.vmap(lambda s: _engine.propose(model, s, None))(states)


_jitted_propose = jax.jit(_propose, static_argnums=0)
_jitted_init_m_step_states = jax.jit(
    lambda model, params: jax.vmap(model.init_m_step_state)(params), static_argnums=0
)


def _finish(model, states, proposal, stats, log_lik, total_weight, tol, max_iter):
    """The engine's book-keeping for every restart; stopped restarts keep
    their state (as the masked loop of ``fit`` does)."""
    dtype = states.log_likelihood.dtype
    decrease_tol = _engine.decrease_tolerance(dtype)

    def one(state, proposal, stats, log_lik):
        params, m_step_state = proposal
        objective = (log_lik + model.log_prior(params)) / total_weight
        new = _engine.accept(
            state, params, m_step_state, stats, objective, tol, decrease_tol, max_iter
        )
        stopped = _engine.stopped(state, max_iter)
        return jax.tree.map(lambda old, new: jnp.where(stopped, old, new), state, new)

    return jax.vmap(one)(states, proposal, stats, log_lik)


_jitted_finish = jax.jit(_finish, static_argnums=(0, 7))


# ------------------------------------------------------------------ the fit


def _source(x: Any, weights: Any, chunk_size: int | None):
    if isinstance(x, jax.Array) or (
        isinstance(x, tuple) and any(isinstance(a, jax.Array) for a in x)
    ):
        raise TypeError(
            "stream=True streams data from the host, but x is a JAX array (already on a "
            "device): pass a numpy array or a memory-mapped file, or drop stream=True "
            "(chunk_size then chunks the E-step on the device)"
        )
    if isinstance(x, (np.ndarray, list, tuple)):
        if chunk_size is None:
            raise ValueError(
                "stream=True with an array needs chunk_size (the rows sent to the device at a time)"
            )
        return _ArraySource(x, weights, chunk_size)
    if weights is not None:
        raise ValueError(
            "weights cannot be given with a stream of chunks; stream arrays, or weight "
            "the data in a numpy array with chunk_size"
        )
    if chunk_size is not None:
        raise ValueError("chunk_size does not apply to a stream of chunks: the chunks set it")
    return _StreamSource(x)


def fit_stream(
    model,
    x: Any,
    *,
    key: Array,
    weights: Any,
    num_restarts: int,
    max_iter: int,
    tol: Any,
    init_params: Any,
    chunk_size: int | None,
) -> _engine.FitResult:
    """Exact EM over chunks read from the host (see :func:`jaxem.fit`)."""
    source = _source(x, weights, chunk_size)
    checker = _Checker(model)
    passes = itertools.count()

    def chunks() -> Iterator[_Chunk]:
        checking = next(passes) == 0 or source.recheck
        for chunk in source.chunks():
            if checking:
                checker(chunk)
            yield chunk

    # The first chunk initialises the restarts (or checks init_params).
    first = next(iter(source.chunks()))
    checker(first)
    first_x = jax.tree.map(to_device, first.x)
    first_w = None if first.weights is None else to_device(first.weights)
    if _stats.has_per_observation(_engine.stats_shapes(model, _engine.shape_of(first_x))):
        raise ValueError(
            f"{type(model).__name__} keeps statistics per observation (a gradient M-step "
            "needs all the data), so it cannot stream from the host; pass the data as an "
            "array (chunk_size then bounds the E-step on the device), or use jaxem.fit_online"
        )
    if init_params is None:
        params = _engine.jitted_init_restarts(
            model, first_x, first_w, key, num_restarts, num_restarts
        )
    else:
        params = _engine.check_params(model, init_params, first_x, num_restarts, key)
    dtype = _engine.data_dtype(first_x)
    tol = jnp.asarray(tol, dtype)
    shapes = jax.eval_shape(lambda p: _chunk_e_step(model, p, first_x, first_w), params)
    zero_stats, zero_log_lik = _engine.zero_stats(shapes)
    single = jax.tree.map(lambda leaf: leaf[0], zero_stats)
    m_step_states = _jitted_init_m_step_states(model, params)
    states = _engine.initial_states(params, m_step_states, single, dtype, num_restarts, max_iter)

    total_weight = None
    if source.num_rows is not None:
        total_weight = float(source.num_rows if source.weights is None else source.weights.sum())
    while not bool(_stopped(states, max_iter)):
        proposal = _jitted_propose(model, states)
        params = proposal[0]
        total = (zero_stats, zero_log_lik)
        in_flight: list[Any] = []
        rows = 0.0
        for chunk in chunks():
            x_chunk = jax.device_put(chunk.x)
            w_chunk = None if chunk.weights is None else jax.device_put(chunk.weights)
            total = _add(total, _jitted_chunk_e_step(model, params, x_chunk, w_chunk))
            rows += num_rows(chunk.x)
            in_flight.append(total)
            if len(in_flight) > _IN_FLIGHT:
                jax.block_until_ready(in_flight.pop(0))
        if total_weight is None:
            total_weight = rows
        stats, log_lik = total
        states = _jitted_finish(
            model, states, proposal, stats, log_lik, jnp.asarray(total_weight, dtype), tol, max_iter
        )
    return _engine.result(model, states, jnp.asarray(False))
