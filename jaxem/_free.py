"""Free coordinates: a model's parameters as one unconstrained vector.

Acceleration (SQUAREM), the observed information and differentiation
through a fit all need the parameters as a point of ``R^p`` with ``p`` the
number of *free* parameters, so that extrapolation cannot leave the domain,
the Hessian is not singular along a constraint, and a linear solve is
square. A model declares its parameters' domains with
``model.constraints(params)`` (a pytree of :mod:`jaxem.gem` constraints);
this module turns a declaration into a minimal bijection:

- ``real``: the values themselves;
- ``positive``: logarithms;
- ``unit_interval``: logits;
- ``simplex`` (over the last axis): additive log-ratios against the last
  entry, ``K − 1`` per vector (the softmax's shift direction, along which
  nothing changes, is not a coordinate);
- ``positive_definite`` (over the last two axes): the lower triangle of the
  Cholesky factor with the logarithm of its diagonal, ``D(D + 1)/2`` per
  matrix;
- ``positive_diagonal`` (diagonal matrices over the last two axes): the
  logarithms of the diagonal, ``D`` per matrix;
- ``logits`` (real up to a common shift over the last axis): the
  differences against the last entry, ``C − 1`` per vector (the mean over
  the axis, along which nothing changes, is not a coordinate and is kept);
- ``fixed``, and integer leaves: no coordinates (the value is kept);
- any other :class:`~jaxem.gem.Constraint`: its own inverse, every entry free.

So ``to_free(...).size`` equals ``model.num_parameters(params)`` for models
whose parameters have no further structure.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxem import gem

Array = jax.Array


def _is_constraint(node: Any) -> bool:
    return node is None or isinstance(node, gem.Constraint)


def _pairs(constraints: Any, params: Any) -> list[tuple[Any, Any]]:
    """``(constraint, leaf)`` for every leaf of ``params``, in leaf order."""
    if constraints is None:
        return [(None, leaf) for leaf in jax.tree.leaves(params)]
    if isinstance(constraints, gem.Constraint):
        return [(constraints, leaf) for leaf in jax.tree.leaves(params)]
    pairs: list[tuple[Any, Any]] = []

    def visit(constraint: Any, subtree: Any) -> None:
        pairs.extend((constraint, leaf) for leaf in jax.tree.leaves(subtree))

    jax.tree.map(visit, constraints, params, is_leaf=_is_constraint)
    return pairs


def _is_free(constraint: Any, leaf: Any) -> bool:
    if constraint is not None and constraint.name == "fixed":
        return False
    return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def _tril(dim: int) -> tuple[Array, Array]:
    return jnp.tril_indices(dim)


def _forward_free(constraint: Any, leaf: Array) -> Array:
    """The free coordinates of one leaf, flattened."""
    name = None if constraint is None else constraint.name
    if name in (None, "real"):
        return jnp.ravel(leaf)
    # (values on the boundary, such as a probability that underflowed to 0,
    # are floored at the smallest normal number: finite coordinates)
    tiny = jnp.finfo(jnp.result_type(leaf)).tiny
    if name == "positive":
        return jnp.ravel(jnp.log(jnp.maximum(leaf, tiny)))
    if name == "unit_interval":
        leaf = jnp.clip(leaf, tiny, 1.0 - jnp.finfo(jnp.result_type(leaf)).epsneg)
        return jnp.ravel(jnp.log(leaf) - jnp.log1p(-leaf))
    if name == "simplex":
        logs = jnp.log(jnp.maximum(leaf, tiny))
        return jnp.ravel(logs[..., :-1] - logs[..., -1:])
    if name == "positive_definite":
        factor = jnp.linalg.cholesky(leaf)
        dim = leaf.shape[-1]
        eye = jnp.eye(dim, dtype=leaf.dtype)
        raw = (
            factor * (1 - eye) + jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1))[..., None] * eye
        )
        rows, cols = _tril(dim)
        return jnp.ravel(raw[..., rows, cols])
    if name == "positive_diagonal":
        return jnp.ravel(jnp.log(jnp.diagonal(leaf, axis1=-2, axis2=-1)))
    if name == "logits":
        return jnp.ravel(leaf[..., :-1] - leaf[..., -1:])
    return jnp.ravel(constraint.inverse(leaf))


def _size_free(constraint: Any, leaf: Any) -> int:
    name = None if constraint is None else constraint.name
    shape = jnp.shape(leaf)
    if name in ("simplex", "logits"):
        return int(jnp.size(leaf) // shape[-1] * (shape[-1] - 1))
    if name == "positive_definite":
        dim = shape[-1]
        return int(jnp.size(leaf) // (dim * dim) * dim * (dim + 1) // 2)
    if name == "positive_diagonal":
        return int(jnp.size(leaf) // shape[-1])
    return int(jnp.size(leaf))


def _backward_free(constraint: Any, coords: Array, like: Array) -> Array:
    """One leaf of the shape and dtype of ``like`` from its free coordinates."""
    name = None if constraint is None else constraint.name
    shape = jnp.shape(like)
    coords = coords.astype(jnp.result_type(like))
    if name in (None, "real"):
        return coords.reshape(shape)
    if name == "positive":
        return jnp.exp(coords).reshape(shape)
    if name == "unit_interval":
        return jax.nn.sigmoid(coords).reshape(shape)
    if name == "simplex":
        ratios = coords.reshape((*shape[:-1], shape[-1] - 1))
        logits = jnp.concatenate([ratios, jnp.zeros((*shape[:-1], 1), ratios.dtype)], axis=-1)
        return jax.nn.softmax(logits, axis=-1)
    if name == "positive_definite":
        dim = shape[-1]
        rows, cols = _tril(dim)
        packed = coords.reshape((*shape[:-2], dim * (dim + 1) // 2))
        raw = jnp.zeros(shape, coords.dtype).at[..., rows, cols].set(packed)
        eye = jnp.eye(dim, dtype=coords.dtype)
        factor = raw * (1 - eye) + jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))[..., None] * eye
        return factor @ jnp.swapaxes(factor, -1, -2)
    if name == "positive_diagonal":
        diagonal = jnp.exp(coords.reshape(shape[:-1]))
        return diagonal[..., :, None] * jnp.eye(shape[-1], dtype=coords.dtype)
    if name == "logits":
        ratios = coords.reshape((*shape[:-1], shape[-1] - 1))
        values = jnp.concatenate([ratios, jnp.zeros((*shape[:-1], 1), ratios.dtype)], axis=-1)
        centre = jnp.mean(jnp.asarray(like, coords.dtype), axis=-1, keepdims=True)
        return values - jnp.mean(values, axis=-1, keepdims=True) + centre
    return constraint.forward(coords.reshape(shape))


def to_free(constraints: Any, params: Any) -> Array:
    """The free coordinates of ``params`` as one vector ``(p,)``.

    Args:
      constraints: a pytree of :mod:`jaxem.gem` constraints mirroring
        ``params`` (or a prefix of it; ``None``: all real), as
        ``model.constraints(params)`` returns.
      params: the parameters (interior points of their domains).
    """
    parts = [_forward_free(c, leaf) for c, leaf in _pairs(constraints, params) if _is_free(c, leaf)]
    if not parts:
        leaves = jax.tree.leaves(params)
        return jnp.zeros((0,), jnp.result_type(*leaves) if leaves else jnp.float32)
    dtype = jnp.result_type(*parts)
    return jnp.concatenate([part.astype(dtype) for part in parts])


def from_free(constraints: Any, coords: Array, params: Any) -> Any:
    """The parameters whose free coordinates are ``coords``: the inverse of
    :func:`to_free`, with the structure, shapes, dtypes and fixed values of
    ``params`` (and its ``logits``' means over their last axis)."""
    leaves, treedef = jax.tree.flatten(params)
    pairs = _pairs(constraints, params)
    out, start = [], 0
    for (constraint, leaf), original in zip(pairs, leaves, strict=True):
        if not _is_free(constraint, leaf):
            out.append(original)
            continue
        size = _size_free(constraint, leaf)
        out.append(_backward_free(constraint, coords[start : start + size], leaf))
        start += size
    return jax.tree.unflatten(treedef, out)


def num_free(constraints: Any, params: Any) -> int:
    """``p``, the number of free coordinates (static)."""
    return sum(_size_free(c, leaf) for c, leaf in _pairs(constraints, params) if _is_free(c, leaf))
