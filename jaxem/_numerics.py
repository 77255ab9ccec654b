"""Numerical building blocks shared by the models: log-space normalisation,
Cholesky factors, and row-blocked reductions that bound temporary memory.

Everything here is a pure function written for one dataset; nothing is jitted.
"""

from __future__ import annotations

import math
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


def contract_rows(a: Array, b: Array) -> Array:
    """``aᵀ b`` for ``a (rows, p)`` and ``b (rows, q)``: a contraction over
    the rows, ``(p, q)``, with full-precision float32 products."""
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def rows_last(a: Array) -> Array:
    """``aᵀ`` for a block ``a (rows, p)``: ``(p, rows)``.

    On a CPU this is a product with the identity (exact: one nonzero term
    per entry). XLA's CPU transpose of a narrow block inside a loop cost
    about 75 µs per ``(1024, 16)`` block on a 2-core x86 machine, more than
    the matrix products of the block; the product costs ``2 p²`` flops per
    row and runs at matrix-product speed. Elsewhere a plain transpose.
    """
    if jax.default_backend() != "cpu":
        return a.T
    eye = jnp.eye(a.shape[1], dtype=a.dtype)
    return lax.dot_general(eye, a, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)


def frame_scale(magnitude: Array) -> Array:
    """A power of two ``s >= 1`` with ``s >= magnitude`` (within a factor 2).

    Sums of squares over many observations overflow float32 long before their
    means do (data of size 1e18 have variances near 1e36, which float32
    holds, but the sum of 1000 such squares does not). Statistics computed
    on ``(x − c) / s`` and scaled back by ``s²`` after dividing by the counts
    are exact (a power of two scales every rounding exactly), equal to the
    unscaled computation whenever that does not overflow, and finite where
    it would. ``s = 1`` for data of unit size and smaller: nothing changes.

    Args:
      magnitude: a non-negative scalar (e.g. the largest standard deviation).
    """
    magnitude = jnp.asarray(magnitude)
    usable = jnp.isfinite(magnitude) & (magnitude > 1.0)
    _, exponent = jnp.frexp(jnp.where(usable, magnitude, 1.0))
    # (s² must be finite too: beyond that no variance is representable anyway)
    exponent = jnp.minimum(exponent, jnp.finfo(magnitude.dtype).maxexp // 2 - 1)
    return jnp.where(usable, jnp.ldexp(jnp.ones_like(magnitude), exponent), 1.0).astype(
        magnitude.dtype
    )


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
