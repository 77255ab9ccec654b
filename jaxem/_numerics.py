"""Numerical building blocks shared by the models: log-space normalisation,
Cholesky factors, and row-blocked reductions that bound temporary memory.

Everything here is a pure function written for one dataset; nothing is jitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

Array = jax.Array

LOG_2PI = math.log(2.0 * math.pi)


def log_normalize(logits: Array, axis: int = -1) -> tuple[Array, Array]:
    """Log-normaliser and normalised probabilities, with one exponential.

    Args:
      logits: unnormalised log-probabilities, e.g. ``(n, K)``.
      axis: the axis to normalise over.

    Returns:
      ``(log_normalizer, probabilities)``: ``logsumexp(logits, axis)`` with
      ``axis`` removed, and ``softmax(logits, axis)`` with the input's shape.
      The gradient of the log-normaliser with respect to ``logits`` is the
      softmax (the E-step as a gradient).
    """
    peak = lax.stop_gradient(jnp.max(logits, axis=axis, keepdims=True))
    peak = jnp.where(jnp.isfinite(peak), peak, jnp.zeros_like(peak))
    unnormalized = jnp.exp(logits - peak)
    total = jnp.sum(unnormalized, axis=axis, keepdims=True)
    log_normalizer = jnp.squeeze(peak + jnp.log(total), axis=axis)
    return log_normalizer, unnormalized / total


def exact_matmul(a: Array, b: Array) -> Array:
    """``a @ b`` with full-precision float32 products.

    GPUs and TPUs round float32 matmul inputs to TF32/bfloat16 by default,
    which is too coarse for log-likelihoods and sufficient statistics (on an
    H200 it broke monotone EM for count mixtures and cost 2% of a diagonal
    Gaussian's log-likelihood on badly scaled data). Used for the cheap,
    narrow products of the E-step; a no-op on CPUs.
    """
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def add_to_diagonal(matrices: Array, value: Array | float) -> Array:
    """``matrices + value * I`` for a ``(..., D, D)`` stack."""
    dim = matrices.shape[-1]
    return matrices + jnp.asarray(value, matrices.dtype) * jnp.eye(dim, dtype=matrices.dtype)


def symmetrize(matrices: Array) -> Array:
    """``(A + Aᵀ) / 2`` over the last two axes."""
    return 0.5 * (matrices + jnp.swapaxes(matrices, -1, -2))


def cholesky_with_jitter(matrices: Array) -> tuple[Array, Array]:
    """Cholesky factors of symmetric matrices that are PD up to rounding.

    A factorisation counts as failed when it is not finite, or when a pivot
    ``L_ii²`` is within ``100 · eps`` of its diagonal entry ``Σ_ii`` (variable
    ``i`` is a linear combination of the previous ones up to rounding, so the
    matrix is singular or indefinite in the working precision, and may not
    factor in another dtype). Failed matrices get ``1e3 · eps · Σ_ii`` added
    to each diagonal entry and are factored again; if that fails too, the
    factor of the (clipped) diagonal alone is used. The result is always
    finite. Well-conditioned matrices, however different their variables'
    scales, are left unchanged.

    Args:
      matrices: ``(..., D, D)`` symmetric matrices.

    Returns:
      ``(factors, jittered)``: lower-triangular factors ``(..., D, D)``, and a
      boolean ``(...)`` array that is true where the matrix had to be changed.
    """
    dtype = matrices.dtype
    eps = jnp.finfo(dtype).eps
    dim = matrices.shape[-1]
    diagonal = jnp.abs(jnp.diagonal(matrices, axis1=-2, axis2=-1))
    scale = jnp.mean(diagonal, axis=-1, keepdims=True)
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))

    def succeeded(factors, diagonal):
        pivots = jnp.square(jnp.diagonal(factors, axis1=-2, axis2=-1))
        return jnp.all(jnp.isfinite(factors), axis=(-2, -1)) & jnp.all(
            pivots > (100.0 * eps) * diagonal, axis=-1
        )

    factors = jnp.linalg.cholesky(matrices)
    ok = succeeded(factors, diagonal)
    jitter = (1e3 * eps) * (diagonal + eps * scale)
    retry = jnp.linalg.cholesky(matrices + jitter[..., :, None] * jnp.eye(dim, dtype=dtype))
    retry_ok = succeeded(retry, diagonal + jitter)
    fallback = jnp.sqrt(jnp.maximum(diagonal, eps * scale))[..., :, None] * jnp.eye(
        dim, dtype=dtype
    )
    factors = jnp.where(
        ok[..., None, None], factors, jnp.where(retry_ok[..., None, None], retry, fallback)
    )
    return factors, ~ok


def inverse_cholesky_transpose(factors: Array) -> Array:
    """``L⁻ᵀ`` for lower-triangular ``L`` (upper triangular; ``Σ⁻¹ = L⁻ᵀ L⁻¹``).

    With ``P = L⁻ᵀ``, the whitened residual of ``x`` is ``(x − μ) P`` (a
    matrix product), and ``log det Σ⁻¹ = 2 Σ log diag P``.
    """
    dim = factors.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=factors.dtype), factors.shape)
    return jnp.swapaxes(solve_triangular(factors, eye, lower=True), -1, -2)


def default_block_size(num_rows: int, row_width: int, cpu_target: int = 2**18) -> int:
    """Rows per block so a block's ``(rows, row_width)`` temporaries stay small.

    On a CPU a block holds about ``cpu_target`` elements (the caller's
    measured optimum: small enough to stay in cache where that pays); on
    accelerators about 2**26 elements, bounding memory while keeping the
    matrix products large.
    """
    target = cpu_target if jax.default_backend() == "cpu" else 2**26
    rows = max(target // max(row_width, 1), 64)
    return int(min(num_rows, rows))


def num_rows(data: Any) -> int:
    """The common leading length of an array, or of a pytree of arrays."""
    return jax.tree.leaves(data)[0].shape[0]


def map_over_blocks(
    fn: Callable[..., Array],
    arrays: tuple[Any, ...],
    block_size: int,
) -> Array:
    """``concatenate([fn(*block_b) for b])`` over row blocks, with ``lax.map``.

    ``fn`` returns an array with the block's leading length; the result has
    ``n`` rows. Temporaries inside ``fn`` are bounded by ``block_size`` rows.
    Entries of ``arrays`` may be pytrees of arrays with a common leading axis.
    """
    total_rows = num_rows(arrays)
    if block_size >= total_rows:
        return fn(*arrays)
    num_full = total_rows // block_size
    split = num_full * block_size
    heads = jax.tree.map(lambda a: a[:split].reshape((num_full, block_size, *a.shape[1:])), arrays)
    out = lax.map(lambda blocks: fn(*blocks), heads)
    out = out.reshape((split, *out.shape[2:]))
    if split < total_rows:
        out = jnp.concatenate([out, fn(*jax.tree.map(lambda a: a[split:], arrays))], axis=0)
    return out


def zeros_like_shapes(shapes: Any) -> Any:
    """Zero arrays with the shapes and dtypes of a pytree of
    ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape``)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def tree_all_finite(tree: Any) -> Array:
    """A scalar boolean: every leaf of ``tree`` is finite (True for no leaves)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack(leaves).all()
