"""Expected sufficient statistics of two kinds, and the one place that
splits and combines them across rows.

EM's statistics are **additive** (design fact 1): ``S(A ∪ B) = S(A) + S(B)``,
so full-batch, chunked, sharded, streamed and online EM compute them on
pieces of the data and add them. A gradient M-step needs more than a sum: its
objective ``Q(θ) = Σ_i E_q[log p(x_i, z_i | θ)]`` is a function of ``θ`` over
every observation, so it keeps each observation's posterior, and the
observations themselves. Such statistics are typed :class:`PerObservation`:
arrays with one row per observation, which *concatenate* across pieces of the
data instead of adding. One statistics pytree may hold both kinds (a mixture
of experts: additive statistics for linear experts, per-observation posteriors
for its gate).

Everything that splits rows (a model's row blocks, the driver's chunks and
shards, online EM's minibatches) combines statistics with the functions here,
so the kind of a statistic is read from its type, in one place, and nothing
else in the library asks a model how its statistics combine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


class PerObservation(NamedTuple):
    """Statistics with one row per observation, and the data they describe.

    What a gradient M-step needs: ``values`` (e.g. the weighted posterior
    responsibilities ``(n, K)``) and ``data`` (the observations ``x``, as the
    E-step saw them), so that ``Q(θ)`` can be evaluated at any ``θ``. Pieces
    of the data give pieces of ``values``, which concatenate along the leading
    axis (where additive statistics add).

    The driver carries statistics from one iteration to the next *detached*
    (``data=None``) and attaches the data again when it calls the M-step, so
    the data are never copied once per restart.

    Attributes:
      values: a pytree of arrays with leading axis ``n``.
      data: the observations the rows describe (an array, or a tuple of
        arrays such as ``(inputs, targets)``), or ``None`` when detached.
    """

    values: Any
    data: Any = None


def is_per_observation(node: Any) -> bool:
    """Whether ``node`` is a :class:`PerObservation` (a pytree ``is_leaf``)."""
    return isinstance(node, PerObservation)


def _flatten(stats: Any) -> tuple[list[Any], Any]:
    return jax.tree.flatten(stats, is_leaf=is_per_observation)


def has_per_observation(stats: Any) -> bool:
    """Whether any part of ``stats`` is kept per observation."""
    return any(is_per_observation(leaf) for leaf in _flatten(stats)[0])


def _map_nodes(fn: Callable[[PerObservation], Any], stats: Any) -> Any:
    """``stats`` with every :class:`PerObservation` node replaced by ``fn(node)``."""
    return jax.tree.map(
        lambda node: fn(node) if is_per_observation(node) else node,
        stats,
        is_leaf=is_per_observation,
    )


def detach(stats: Any) -> Any:
    """``stats`` without the data of their per-observation parts."""
    return _map_nodes(lambda node: PerObservation(node.values), stats)


def attach(stats: Any, data: Any) -> Any:
    """``stats`` whose per-observation parts describe ``data``."""
    return _map_nodes(lambda node: PerObservation(node.values, data), stats)


def map_statistics(additive: Callable, rows: Callable, stats: Any, *others: Any) -> Any:
    """Apply ``additive`` leaf by leaf to the additive statistics and ``rows``
    leaf by leaf to the ``values`` of the per-observation ones, over one or
    more statistics pytrees of the same structure. Per-observation results are
    detached (their data dropped)."""
    leaves, tree = _flatten(stats)
    other_leaves = [_flatten(other)[0] for other in others]
    out = []
    for i, leaf in enumerate(leaves):
        rest = [leaves_[i] for leaves_ in other_leaves]
        if is_per_observation(leaf):
            values = jax.tree.map(rows, leaf.values, *(node.values for node in rest))
            out.append(PerObservation(values))
        else:
            out.append(additive(leaf, *rest))
    return jax.tree.unflatten(tree, out)


def add(a: Any, b: Any) -> Any:
    """Statistics of two pieces of data: additive parts added,
    per-observation parts concatenated (``a``'s rows first)."""
    return map_statistics(jnp.add, lambda u, v: jnp.concatenate([u, v]), a, b)


def psum(stats: Any, axis_name: Any) -> Any:
    """Inside ``shard_map``: additive parts summed over ``axis_name``;
    per-observation parts stay with the device's own rows."""
    return map_statistics(lambda leaf: lax.psum(leaf, axis_name), lambda rows: rows, stats)


def scale(stats: Any, factor: Array) -> Any:
    """Every floating statistic times ``factor`` (additive sums and
    per-observation weighted values alike: both are linear in the
    observation weights)."""

    def times(leaf: Array) -> Array:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf
        return leaf * jnp.asarray(factor, leaf.dtype)

    return map_statistics(times, times, stats)


def running_average(old: Any, new: Any, rho: Array) -> Any:
    """Online EM's recursion ``s ← (1 − ρ) s + ρ ŝ`` for the additive parts;
    the per-observation parts are the newest minibatch's (they describe that
    minibatch's rows only)."""
    return map_statistics(lambda a, b: (1.0 - rho) * a + rho * b, lambda a, b: b, old, new)


def partition_specs(stats: Any, rows: Any, replicated: Any) -> Any:
    """A ``shard_map`` output specification for ``stats``: ``rows`` for the
    per-observation values (they stay split with the data), ``replicated``
    for the additive parts (summed across devices)."""
    leaves, tree = _flatten(stats)
    specs = [
        PerObservation(jax.tree.map(lambda _: rows, leaf.values))
        if is_per_observation(leaf)
        else replicated
        for leaf in leaves
    ]
    return jax.tree.unflatten(tree, specs)


def _rows(data: Any, start: Any, size: int) -> Any:
    """Rows ``start : start + size`` of every leaf of ``data``."""
    return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, size, axis=0), data)


def reduce_over_rows(fn: Callable[..., Any], arrays: tuple[Any, ...], block_size: int) -> Any:
    """``fn`` over row blocks of ``arrays``, its outputs combined.

    Additive outputs are summed over the blocks and per-observation outputs
    concatenated back to ``n`` rows (see :func:`add`), without a Python loop:
    full blocks are visited by ``lax.scan`` (plus one statically shaped
    remainder), so temporaries are ``O(block_size)`` rows, however many rows
    there are.

    Args:
      fn: maps blocks of ``arrays`` (same leading length) to a statistics
        pytree (which may hold further additive outputs, such as a
        log-likelihood sum).
      arrays: arrays or pytrees with a common leading axis ``n``, or ``None``
        (passed through as ``None``).
      block_size: rows per block (static).

    Returns:
      The combined output of ``fn`` (per-observation parts detached).
    """
    total_rows = jax.tree.leaves(arrays)[0].shape[0]
    if block_size >= total_rows:
        return fn(*arrays)
    num_full = total_rows // block_size
    shapes, tree = _flatten(jax.eval_shape(fn, *_rows(arrays, 0, block_size)))
    kinds = [is_per_observation(leaf) for leaf in shapes]

    def split(out: Any) -> tuple[list[Any], list[Any]]:
        leaves = _flatten(out)[0]
        additive = [leaf for leaf, rows in zip(leaves, kinds, strict=True) if not rows]
        per_row = [leaf.values for leaf, rows in zip(leaves, kinds, strict=True) if rows]
        return additive, per_row

    def body(total: list[Any], index: Array) -> tuple[list[Any], list[Any]]:
        additive, per_row = split(fn(*_rows(arrays, index * block_size, block_size)))
        return [a + b for a, b in zip(total, additive, strict=True)], per_row

    zeros = [jnp.zeros(s.shape, s.dtype) for s, rows in zip(shapes, kinds, strict=True) if not rows]
    summed, stacked = lax.scan(body, zeros, jnp.arange(num_full))
    split_at = num_full * block_size
    stacked = jax.tree.map(lambda a: a.reshape((split_at, *a.shape[2:])), stacked)
    summed, stacked = iter(summed), iter(stacked)
    out = jax.tree.unflatten(
        tree, [PerObservation(next(stacked)) if rows else next(summed) for rows in kinds]
    )
    if split_at < total_rows:
        out = add(out, fn(*jax.tree.map(lambda a: a[split_at:], arrays)))
    return out


def map_over_rows(fn: Callable[..., Array], arrays: tuple[Any, ...], block_size: int) -> Array:
    """``fn``'s per-row outputs over row blocks of ``arrays``, concatenated to
    ``n`` rows (e.g. per-observation log-likelihoods or posteriors), with
    temporaries bounded by the block (see :func:`reduce_over_rows`)."""
    return reduce_over_rows(lambda *blocks: PerObservation(fn(*blocks)), arrays, block_size).values
