"""Covariance structures of Gaussian components: full, tied, diagonal, spherical.

Each structure is a small stateless object that owns what depends on the
shape of the covariances of ``K`` components in ``D`` dimensions: their
shape and checks, the log-densities as matrix products over Cholesky factors
(or over squared features for the diagonal ones), the second moments and how
they combine into a scatter matrix, the MLE and posterior-mode denominators,
regularisation, the conjugate prior's density, sampling and the parameter
count. The Gaussian component is written once over these pieces, and other
families with Gaussian structure (hidden Markov model emissions, factor
models) reuse them.

Moments are taken about *centres* (each component's mean for full and tied
covariances, the average of the means for diagonal and spherical ones), so no
``E[xxᵀ] − μμᵀ`` cancellation happens, and float32 stays accurate; and in a
*frame* scaled by a power of two ``s >= 1`` of the size of the deviations
(:func:`jaxem._numerics.frame_scale`), so that sums of squares over many
observations do not overflow where the covariances themselves are
representable (data of size 1e18 in float32). The scaling is exact: for data
of unit size and smaller ``s = 1``, and elsewhere every rounding is the
unscaled one's, scaled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln, multigammaln

from jaxem import gem
from jaxem._numerics import (
    LOG_2PI,
    cholesky_with_jitter,
    contract_rows,
    default_block_size,
    exact_matmul,
    frame_scale,
    inverse_cholesky_transpose,
    rows_last,
    symmetrize,
)
from jaxem._stats import map_over_rows, reduce_over_rows
from jaxem._validation import is_concrete

Array = jax.Array


def centred_moments(weights: Array, u: Array, offsets: Array) -> tuple[Array, Array]:
    """First and second moments of a block about ``K`` centres.

    ``(Σ_i w_ik (u_i − d_k), Σ_i w_ik (u_i − d_k)(u_i − d_k)ᵀ)``, ``(K, D)`` and
    ``(K, D, D)``. The rows go last (``(D, rows)``, transposed by
    :func:`~jaxem._numerics.rows_last`), so forming each component's
    residuals and weighting them reads contiguous memory, and each second
    moment is one ``(D × rows)·(rows × D)`` product of residuals centred at
    their own component on both sides (no cancellation). On a 2-core x86 CPU
    (n = 1e5, D = K = 16, float32) this takes 17 ms per pass against 22 ms
    with the rows first. Up to 32 components the loop over components is
    unrolled (on a CPU that beats one batched product: 17 vs 23 ms); beyond,
    and on accelerators, one batched product over a ``(K, D, rows)``
    temporary. A single ``(K·D × rows)·(rows × D)`` product against rows
    about a common point is faster still (10 ms) but loses precision like
    ``|d_k| / σ_k``, which broke float32 fits of collapsed components.

    Args:
      weights: ``(rows, K)``, e.g. weighted responsibilities.
      u: ``(rows, D)``, the rows about a reference point (and in a frame).
      offsets: ``(K, D)``, the centres about the same reference.
    """
    k = offsets.shape[0]
    u_t, w_t = rows_last(u), rows_last(weights)  # (D, rows), (K, rows)
    first = exact_matmul(w_t, u) - jnp.sum(weights, axis=0)[:, None] * offsets
    rows_axis = (((1,), (1,)), ((), ()))
    if jax.default_backend() == "cpu" and k <= 32:
        seconds = []
        for j in range(k):
            residual = u_t - offsets[j][:, None]  # (D, rows)
            seconds.append(
                lax.dot_general(
                    residual * w_t[j], residual, rows_axis, precision=lax.Precision.HIGHEST
                )
            )
        return first, jnp.stack(seconds)
    residual = u_t[None, :, :] - offsets[:, :, None]  # (K, D, rows)
    second = lax.dot_general(
        w_t[:, None, :] * residual,
        residual,
        (((2,), (2,)), ((0,), (0,))),
        precision=lax.Precision.HIGHEST,
    )
    return first, second


def has_missing(x: Array) -> Array:
    """Whether a block of data holds a NaN (a missing value), a scalar."""
    return jnp.any(jnp.isnan(x))


def conditional_gaussian(
    x: Array, means: Array, covariances: Array, covariance: bool = True
) -> tuple[Array, Array, Array | None]:
    """One row's observed-coordinate log-densities and its conditional
    distribution under each of ``K`` full-covariance Gaussians.

    With ``o`` the observed (non-NaN) coordinates of ``x`` and ``m`` the
    missing ones, for every component: ``log N(x_o | μ_o, Σ_oo)``, the
    conditional mean ``E[x | x_o] = μ + Σ Σ̃⁻¹ r`` (``x_o`` on the observed
    coordinates, ``μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o)`` on the missing ones) and
    the conditional covariance ``Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om`` (zero in the
    observed rows and columns). ``Σ̃ = Σ_oo ⊕ I_mm`` is one Cholesky
    factorisation of fixed shape whatever the pattern of missing values, so
    rows with different patterns batch together (vmap) with no Python loop.

    Args:
      x: one row ``(D,)``, NaN where missing.
      means: ``(K, D)``.
      covariances: ``(K, D, D)``.
      covariance: also return the conditional covariances.

    Returns:
      ``(log_densities (K,), conditional_means (K, D), conditional
      covariances (K, D, D) or None)``.
    """
    observed = ~jnp.isnan(x)
    o = observed.astype(means.dtype)
    pair = o[:, None] * o[None, :]
    padded = covariances * pair + jnp.diag(1.0 - o)  # Σ_oo ⊕ I, (K, D, D)
    factors = jnp.linalg.cholesky(padded)
    residual = o * (jnp.where(observed, x, 0.0) - means)  # (K, D), zero where missing
    solved = solve_triangular(factors, residual[..., None], lower=True)[..., 0]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), axis=-1)
    log_densities = -0.5 * (jnp.sum(o) * LOG_2PI + log_det + jnp.sum(jnp.square(solved), -1))
    alpha = solve_triangular(factors, solved[..., None], lower=True, trans=1)  # Σ̃⁻¹ r
    conditional = means + (covariances @ alpha)[..., 0]
    conditional = jnp.where(observed, jnp.where(observed, x, 0.0), conditional)
    if not covariance:
        return log_densities, conditional, None
    reduced = solve_triangular(factors, o[:, None] * covariances, lower=True)  # L⁻¹ O Σ
    missing = 1.0 - o
    spread = covariances - jnp.swapaxes(reduced, -1, -2) @ reduced
    return log_densities, conditional, spread * (missing[:, None] * missing[None, :])


def _rows_per_block(num_components: int, dim: int) -> int:
    """Rows of a block of missing-value rows: ``(rows, K, D, D)`` temporaries
    of about ``2**20`` elements."""
    return max(1, 2**20 // (num_components * dim * dim))


class Covariance:
    """The interface every covariance structure implements (see the module)."""

    name: str
    #: The covariances' domain (:mod:`jaxem.gem`): positive-definite
    #: matrices, or positive variances.
    constraint: gem.Constraint

    def shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        """Shape of the covariances of ``K`` components in ``D`` dimensions."""
        raise NotImplementedError

    def outer(self, a: Array, b: Array) -> Array:
        """Per component, the part of ``a bᵀ`` the structure keeps, for
        ``a, b`` of shape ``(K, D)``: ``(K, D, D)`` for matrices, ``(K, D)``
        (the diagonal) or ``(K,)`` (the trace) for the others."""
        raise NotImplementedError

    def pool(self, per_component: Array) -> Array:
        """Per-component second moments in the structure's own shape (summed
        over components when all share one matrix)."""
        return per_component

    def scale_by(self, counts: Array, values: Array) -> Array:
        """``counts (K,)`` times per-component ``values`` of :meth:`outer`'s shape."""
        return counts.reshape(counts.shape + (1,) * (values.ndim - 1)) * values

    # ------------------------------------------------------- missing values
    #
    # NaN in the data means "missing" (at random). The log-density of a row is
    # that of its observed coordinates, and the moments are expected under the
    # conditional distribution of the missing coordinates given the observed
    # ones (Ghahramani & Jordan 1994), so the M-step is exact. Data known to
    # be complete take the complete-data code alone (`jaxem.fit` resolves
    # this once, on the concrete data); otherwise a `lax.cond` per block
    # picks it.

    def log_densities(
        self, prepared: dict[str, Array], x: Array, missing: bool | None = None
    ) -> Array:
        """``log N(x_i,o | μ_k,o, Σ_k,oo)`` for a block of rows, ``(rows, K)``:
        the density of each row's observed (non-NaN) coordinates.

        ``missing``: whether the data hold missing values, when known
        statically (``False``: the complete-data code alone; ``True``: the
        missing-value code); ``None`` decides per block (one ``lax.cond``)."""
        if missing is None:
            return lax.cond(
                has_missing(x),
                lambda: self._missing_log_densities(prepared, x),
                lambda: self._complete_log_densities(prepared, x),
            )
        if missing:
            return self._missing_log_densities(prepared, x)
        return self._complete_log_densities(prepared, x)

    def expected_moments(
        self,
        x: Array,
        resp: Array,
        centres: Array,
        scale: Array,
        means: Array,
        covariances: Array,
        missing: bool | None = None,
    ) -> tuple[Array, Array]:
        """:meth:`moments` of a block whose NaN entries are missing: of
        ``E[x | x_o, z = k]`` about the centres, plus the conditional
        covariances of the missing coordinates in the second moments, under
        the components ``(means, covariances)`` the responsibilities come from.
        The complete-data moments where nothing is missing (``missing`` as for
        :meth:`log_densities`)."""
        if missing is None:
            return lax.cond(
                has_missing(x),
                lambda: self._missing_moments(x, resp, centres, scale, means, covariances),
                lambda: self.moments(x, resp, centres, scale),
            )
        if missing:
            return self._missing_moments(x, resp, centres, scale, means, covariances)
        return self.moments(x, resp, centres, scale)

    def frame(self, means: Array, covariances: Array) -> Array:
        """The scale ``s`` of the frame statistics are taken in, for
        parameters ``(means, covariances)``: a power of two ``>= 1`` at least
        the largest standard deviation and the largest distance of a mean
        from its centre."""
        offsets = means - self.centres(means)
        largest = jnp.maximum(jnp.max(self.variances(covariances)), jnp.max(jnp.square(offsets)))
        return frame_scale(jnp.sqrt(largest))


# ------------------------------------------------------------- matrices


class _Matrix(Covariance):
    """Full or tied covariance matrices, through their Cholesky factors."""

    constraint = gem.positive_definite

    def outer(self, a: Array, b: Array) -> Array:
        return jnp.einsum("kd,ke->kde", a, b)

    def block_rows(self, x: Array, num_components: int) -> int:
        # Blocks of about 2**20 elements of the (rows, K·D) temporaries in
        # float32 and 2**19 in float64: on a 2-core x86 CPU (n = 1e5,
        # D = K = 16) the second moments took 17 ms in float32 blocks of 4096
        # rows (19 in 2048, 23 in 8192) and 27 ms in float64 blocks of 2048
        # (33 in 4096).
        target = 2**20 if x.dtype == jnp.float32 else 2**19
        return default_block_size(x.shape[0], num_components * x.shape[1], target)

    def centres(self, means: Array) -> Array:
        return means

    def prepare(self, means: Array, covariances: Array) -> dict[str, Array]:
        """Per-parameter quantities of the log-densities, once per call:
        the whitening factors ``P = L⁻ᵀ`` stacked for one product, the
        whitened means and the normalising constants."""
        dim = means.shape[1]
        reference = jnp.mean(means, axis=0)
        factors = jnp.linalg.cholesky(covariances)
        whitening = inverse_cholesky_transpose(factors)  # (K, D, D) or (D, D)
        log_det = -jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), axis=-1)
        const = jnp.broadcast_to(log_det - 0.5 * dim * LOG_2PI, means.shape[:1])
        shifted, stacked = self._whitened_means(means - reference, whitening)
        return {
            "const": const,
            "reference": reference,
            "shifted": shifted,
            "stacked": stacked,
            "means": means,
            "matrices": self.matrices(covariances, *means.shape),
        }

    def _complete_log_densities(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log N(x_i | μ_k, Σ_k)`` for a block of rows, ``(rows, K)``."""
        k = prepared["shifted"].shape[0]
        # Full float32 products (no TF32 on GPUs): the whitened residuals carry
        # the log-densities, and a 10-bit mantissa would cost them about 1e-3
        # of their size.
        whitened = exact_matmul(x - prepared["reference"], prepared["stacked"])
        residual = self._per_component(whitened, k) - prepared["shifted"]
        return prepared["const"] - 0.5 * jnp.sum(jnp.square(residual), axis=-1)

    def moments(self, x: Array, resp: Array, centres: Array, scale: Array) -> tuple[Array, Array]:
        """``(Σ r u, Σ r u uᵀ)`` with ``u = (x − c) / s``: moments of a block
        about the centres, in the frame of scale ``s``, from weighted
        responsibilities ``(rows, K)`` (see :func:`centred_moments`)."""
        # About the mean of the centres, scaled once for all components
        # (exact: s is a power of two).
        reference = jnp.mean(centres, axis=0)
        inverse = 1.0 / scale
        return self._centred_moments(
            resp, (x - reference) * inverse, (centres - reference) * inverse
        )

    def _missing_frame(self, means: Array, matrices: Array) -> tuple[Array, Array]:
        """A reference point and a power-of-two scale for missing-value rows
        (squares of data of size 1e18 overflow float32 otherwise)."""
        reference = jnp.mean(means, axis=0)
        offsets = jnp.max(jnp.abs(means - reference))
        variances = jnp.max(jnp.diagonal(matrices, axis1=-2, axis2=-1))
        return reference, frame_scale(jnp.sqrt(jnp.maximum(variances, jnp.square(offsets))))

    def _missing_log_densities(self, prepared: dict[str, Array], x: Array) -> Array:
        means, matrices = prepared["means"], prepared["matrices"]
        k, dim = means.shape
        reference, scale = self._missing_frame(means, matrices)
        scaled_means = (means - reference) / scale
        scaled = matrices / jnp.square(scale)
        log_scale = jnp.log(scale)

        def rows(xb: Array) -> Array:
            one = lambda row: conditional_gaussian(row, scaled_means, scaled, covariance=False)[0]
            counts = jnp.sum(~jnp.isnan(xb), axis=1, keepdims=True)
            return jax.vmap(one)((xb - reference) / scale) - counts * log_scale

        return map_over_rows(rows, (x,), _rows_per_block(k, dim))

    def _missing_moments(self, x, resp, centres, scale, means, covariances):
        k, dim = means.shape
        # Rows about one reference point (the mean of the centres), in the
        # frame; each component's conditional mean then moved to its centre.
        reference = jnp.mean(centres, axis=0)
        scaled_means = (means - reference) / scale
        scaled_centres = (centres - reference) / scale
        scaled = self.matrices(covariances, k, dim) / jnp.square(scale)

        def rows(xb: Array, rb: Array) -> tuple[Array, Array]:
            one = lambda row: conditional_gaussian(row, scaled_means, scaled)[1:]
            conditional, spread = jax.vmap(one)((xb - reference) / scale)
            deviation = conditional - scaled_centres  # (rows, K, D)
            first = jnp.einsum("rk,rkd->kd", rb, deviation)
            second = jnp.einsum("rk,rkd,rke->kde", rb, deviation, deviation)
            return first, second + jnp.einsum("rk,rkde->kde", rb, spread)

        first, second = reduce_over_rows(rows, (x, resp), _rows_per_block(k, dim))
        return first, self.pool(second)

    def finish_scatter(self, scatter: Array) -> Array:
        return symmetrize(scatter)

    def singular(self, covariances: Array, reg_covar: float, num_components: int) -> Array:
        """``(K,)``: whether ``Σ_k + reg_covar · I`` has no Cholesky factor
        (scikit-learn's "ill-defined empirical covariance")."""
        dim = covariances.shape[-1]
        factors = jnp.linalg.cholesky(
            covariances + reg_covar * jnp.eye(dim, dtype=covariances.dtype)
        )
        failed = ~jnp.all(jnp.isfinite(factors), axis=(-2, -1))
        return jnp.broadcast_to(failed, (num_components,))

    def regularize(self, covariances: Array, reg_covar: float) -> Array:
        """``Σ + reg_covar · I``, with jitter where it is singular in the
        working precision (always a valid covariance)."""
        dim = covariances.shape[-1]
        covariances = covariances + reg_covar * jnp.eye(dim, dtype=covariances.dtype)
        factors, jittered = cholesky_with_jitter(covariances)
        rebuilt = factors @ jnp.swapaxes(factors, -1, -2)
        return jnp.where(jittered[..., None, None], rebuilt, covariances)

    def check(self, covariances: Any, owner: str) -> None:
        """Raise unless concrete covariances are symmetric positive definite."""
        if not is_concrete(covariances):
            return
        dim = np.shape(covariances)[-1]
        matrices = np.asarray(covariances, dtype=float).reshape((-1, dim, dim))
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-5, atol=0):
            raise ValueError(f"{owner}.covariances must be symmetric")
        if np.any(np.linalg.eigvalsh(matrices)[..., 0] <= 0):
            raise ValueError(f"{owner}.covariances must be positive definite")

    def default_prior_scale(self, centred: Array, w: Array, shrink: float) -> Array:
        """The data covariance shrunk by ``K^(2/D)`` (Fraley & Raftery)."""
        return ((centred * w[:, None]).T @ centred) / jnp.sum(w) / shrink

    def prior_scale(self, given: Array, dim: int, owner: str) -> Array:
        if given.ndim == 0:
            return given * jnp.eye(dim, dtype=given.dtype)
        if given.shape != (dim, dim):
            raise ValueError(
                f"{owner}.scale for covariance_type={self.name!r} must be a number or have "
                f"shape {(dim, dim)}; got shape {given.shape}"
            )
        return given

    def log_prior(self, means: Array, covariances: Array, prior: Any) -> Array:
        """Normal-inverse-Wishart ``log p(μ, Σ)``."""
        dim = means.shape[1]
        kappa, nu, scale = prior.mean_precision, prior.degrees_of_freedom, prior.scale
        factors = jnp.linalg.cholesky(covariances)
        whitening = inverse_cholesky_transpose(factors)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), -1)
        whitened, trace = self._prior_terms(means - prior.mean, whitening, scale)
        _, log_det_scale = jnp.linalg.slogdet(scale)
        log_wishart = (
            0.5 * nu * log_det_scale
            - 0.5 * nu * dim * math.log(2.0)
            - multigammaln(0.5 * nu, dim)
            - 0.5 * (nu + dim + 1.0) * log_det
            - 0.5 * trace
        )
        log_mean = (
            -0.5 * dim * LOG_2PI
            + 0.5 * dim * jnp.log(kappa)
            - 0.5 * log_det
            - 0.5 * kappa * jnp.sum(jnp.square(whitened), axis=-1)
        )
        return jnp.sum(log_wishart) + jnp.sum(log_mean)

    def num_parameters(self, num_components: int, dim: int) -> int:
        return self._num_matrices(num_components) * dim * (dim + 1) // 2


@dataclasses.dataclass(frozen=True)
class FullCovariance(_Matrix):
    """Each component its own ``(D, D)`` matrix: covariances ``(K, D, D)``."""

    name = "full"

    def shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        return (num_components, dim, dim)

    def variances(self, covariances: Array) -> Array:
        return jnp.diagonal(covariances, axis1=-2, axis2=-1)

    def _whitened_means(self, offsets: Array, whitening: Array) -> tuple[Array, Array]:
        dim = offsets.shape[1]
        shifted = jnp.einsum("kd,kde->ke", offsets, whitening)
        return shifted, jnp.transpose(whitening, (1, 0, 2)).reshape(dim, -1)

    def _per_component(self, whitened: Array, num_components: int) -> Array:
        return whitened.reshape(whitened.shape[0], num_components, -1)

    def _centred_moments(self, resp: Array, u: Array, offsets: Array) -> tuple[Array, Array]:
        return centred_moments(resp, u, offsets)

    def denominator(self, counts: Array, dim: int, prior_dof: Array | None) -> Array:
        if prior_dof is None:
            return counts[:, None, None]
        return (prior_dof + counts + dim + 2.0)[:, None, None]

    def _prior_terms(self, offsets: Array, whitening: Array, scale: Array):
        whitened = jnp.einsum("kd,kde->ke", offsets, whitening)
        return whitened, jnp.einsum("de,kef,kdf->k", scale, whitening, whitening)

    def _num_matrices(self, num_components: int) -> int:
        return num_components

    def sample(self, key: Array, means: Array, covariances: Array, labels: Array) -> Array:
        k, dim = means.shape
        noise = jax.random.normal(key, (labels.shape[0], dim), means.dtype)
        factors = jnp.linalg.cholesky(covariances)

        def add_component(draws, component):
            mean, factor, index = component
            return jnp.where((labels == index)[:, None], mean + noise @ factor.T, draws), None

        draws, _ = lax.scan(add_component, jnp.zeros_like(noise), (means, factors, jnp.arange(k)))
        return draws

    def matrices(self, covariances: Array, num_components: int, dim: int) -> Array:
        return covariances


@dataclasses.dataclass(frozen=True)
class TiedCovariance(_Matrix):
    """One ``(D, D)`` matrix shared by all components."""

    name = "tied"

    def shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        return (dim, dim)

    def pool(self, per_component: Array) -> Array:
        return jnp.sum(per_component, axis=0)

    def variances(self, covariances: Array) -> Array:
        return jnp.diagonal(covariances)

    def _whitened_means(self, offsets: Array, whitening: Array) -> tuple[Array, Array]:
        return offsets @ whitening, whitening

    def _per_component(self, whitened: Array, num_components: int) -> Array:
        return whitened[:, None, :]

    def _centred_moments(self, resp: Array, u: Array, offsets: Array) -> tuple[Array, Array]:
        """The moments with the second ones pooled, as one ``(D × rows)·(rows
        × D)`` product: ``Σ_k Σ_i r_ik (u_i − d_k)(u_i − d_k)ᵀ = Σ_i v_i u_iᵀ −
        Σ_k S1_k d_kᵀ`` with ``v_i = Σ_k r_ik (u_i − d_k)``."""
        first = contract_rows(resp, u) - jnp.sum(resp, axis=0)[:, None] * offsets
        v = jnp.sum(resp, axis=1, keepdims=True) * u - exact_matmul(resp, offsets)
        return first, contract_rows(v, u) - exact_matmul(first.T, offsets)

    def denominator(self, counts: Array, dim: int, prior_dof: Array | None) -> Array:
        total = jnp.sum(counts)
        if prior_dof is None:
            return total
        return prior_dof + total + counts.shape[0] + dim + 1.0

    def _prior_terms(self, offsets: Array, whitening: Array, scale: Array):
        return offsets @ whitening, jnp.sum((scale @ whitening) * whitening)

    def _num_matrices(self, num_components: int) -> int:
        return 1

    def sample(self, key: Array, means: Array, covariances: Array, labels: Array) -> Array:
        noise = jax.random.normal(key, (labels.shape[0], means.shape[1]), means.dtype)
        return means[labels] + noise @ jnp.linalg.cholesky(covariances).T

    def matrices(self, covariances: Array, num_components: int, dim: int) -> Array:
        return jnp.broadcast_to(covariances, (*covariances.shape[:-2], num_components, dim, dim))


# -------------------------------------------------------------- vectors


class _Vector(Covariance):
    """Diagonal or spherical covariances: variances, and log-densities as one
    product of squared and linear features about a reference point.

    The moments are taken about one common centre (the average of the means),
    so that each pass is one ``(K × rows)·(rows × 2D)`` product. The price is
    cancellation for a component far from that centre: its variance keeps
    about ``−log10(eps) − 2·log10(|μ_k − c| / σ_k)`` digits, so in float32 a
    component ``1e3·σ`` away from the average of the means has few left (an
    HMM started with states 1e4 from the data rounds its visited states'
    variances to multiples of 2.56). Scikit-learn takes them about the origin.
    Full and tied covariances centre each component on its own mean.
    """

    constraint = gem.positive

    def block_rows(self, x: Array, num_components: int) -> int:
        # Narrow rows. On a 2-core x86 CPU (n = 1e5, D = K = 16) float32 ran
        # twice as fast in blocks of ~2**22 elements as in cache-sized ones
        # (10 vs 19 ms per iteration), while float64 was 20% faster in
        # cache-sized blocks (15.5 vs 19 ms).
        target = 2**22 if x.dtype == jnp.float32 else 2**18
        return default_block_size(x.shape[0], 2 * x.shape[1] + 3 * num_components, target)

    def centres(self, means: Array) -> Array:
        return jnp.broadcast_to(jnp.mean(means, axis=0), means.shape)

    def _features(self, x: Array, reference: Array, scale: Array) -> Array:
        """``[u², u]`` with ``u = (x − m) / s`` (the squares summed for
        spherical), ``(rows, ·)``."""
        # (times the exact inverse of the power of two: cheaper per row than a division)
        centred = (x - reference) * (1.0 / scale)
        return jnp.concatenate([self._squares(jnp.square(centred)), centred], axis=1)

    def variances(self, covariances: Array) -> Array:
        return covariances

    def prepare(self, means: Array, covariances: Array) -> dict[str, Array]:
        """The Mahalanobis distance expanded about the reference ``m`` as
        coefficients of the features: ``Σ_d p_kd ((x − m)_d² − 2 (x − m)_d
        (μ_k − m)_d + (μ_k − m)_d²)``."""
        dim = means.shape[1]
        reference = jnp.mean(means, axis=0)
        scale = self.frame(means, covariances)
        offset = (means - reference) / scale
        # Precisions in the frame's units: s² / σ².
        precisions = jnp.square(scale) / covariances
        per_feature = self._per_feature(precisions, dim)  # (K, D)
        quadratic = self._quadratic(precisions)
        linear = (-2.0 * offset * per_feature).T
        const = (
            -0.5 * jnp.sum(jnp.log(self._per_feature(covariances, dim)), axis=1)
            - 0.5 * dim * LOG_2PI
            - 0.5 * jnp.sum(offset * offset * per_feature, axis=1)
        )
        coefficients = jnp.concatenate([quadratic, linear], axis=0)
        return {
            "const": const,
            "reference": reference,
            "scale": scale,
            "coefficients": coefficients,
            "offset": offset,
            "precisions": per_feature,
            "log_variances": jnp.log(self._per_feature(covariances, dim)),
        }

    def _complete_log_densities(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log N(x_i | μ_k, Σ_k)`` for a block of rows, ``(rows, K)``."""
        features = self._features(x, prepared["reference"], prepared["scale"])
        # The expansion cancels (x², −2xμ and μ² terms), so it needs full
        # float32 products: GPUs otherwise round float32 matmul inputs to
        # TF32 (10-bit mantissa), which cost 2% of the log-likelihood on data
        # scaled by 1e8 (an H200).
        return prepared["const"] - 0.5 * exact_matmul(features, prepared["coefficients"])

    def moments(self, x: Array, resp: Array, centres: Array, scale: Array) -> tuple[Array, Array]:
        dim = x.shape[1]
        moments = exact_matmul(resp.T, self._features(x, centres[0], scale))
        squares, sum_x = moments[:, :-dim], moments[:, -dim:]
        return sum_x, self._squeeze(squares)

    # The coordinates are independent given the component: a missing one is
    # left out of the density, and contributes its component's mean and
    # variance to the moments. Products of masks and squared features only.

    def _missing_log_densities(self, prepared: dict[str, Array], x: Array) -> Array:
        observed = ~jnp.isnan(x)
        o = observed.astype(x.dtype)
        u = jnp.where(observed, (x - prepared["reference"]) * (1.0 / prepared["scale"]), 0.0)
        offset, precisions = prepared["offset"], prepared["precisions"]  # (K, D)
        quadratic = (
            exact_matmul(jnp.square(u), precisions.T)
            - 2.0 * exact_matmul(u, (offset * precisions).T)
            + exact_matmul(o, (jnp.square(offset) * precisions).T)
        )
        log_det = exact_matmul(o, prepared["log_variances"].T)
        counts = jnp.sum(o, axis=1, keepdims=True)
        return -0.5 * (counts * LOG_2PI + log_det + quadratic)

    def _missing_moments(self, x, resp, centres, scale, means, covariances):
        dim = x.shape[1]
        observed = ~jnp.isnan(x)
        missing = (~observed).astype(x.dtype)
        u = jnp.where(observed, (x - centres[0]) * (1.0 / scale), 0.0)
        offsets = (means - centres) / scale  # (K, D)
        variances = self._per_feature(covariances, dim) / jnp.square(scale)
        absent = exact_matmul(resp.T, missing)  # Σ_i r_ik m_id, (K, D)
        sum_x = exact_matmul(resp.T, u) + absent * offsets
        squares = exact_matmul(resp.T, jnp.square(u)) + absent * (jnp.square(offsets) + variances)
        return sum_x, self._squeeze(self._squares(squares))

    def finish_scatter(self, scatter: Array) -> Array:
        return jnp.maximum(scatter, 0.0)

    def singular(self, covariances: Array, reg_covar: float, num_components: int) -> Array:
        """``(K,)``: whether a variance plus ``reg_covar`` is not positive."""
        variances = self._variances(covariances + reg_covar)  # (K, D) or (K, 1)
        return jnp.any(variances <= 0, axis=1)

    def regularize(self, covariances: Array, reg_covar: float) -> Array:
        return jnp.maximum(covariances + reg_covar, jnp.finfo(covariances.dtype).tiny)

    def check(self, covariances: Any, owner: str) -> None:
        if is_concrete(covariances) and np.any(np.asarray(covariances) <= 0):
            raise ValueError(f"{owner}.covariances must be positive ({self.name})")

    def log_prior(self, means: Array, covariances: Array, prior: Any) -> Array:
        """Inverse-gamma ``(ν₀/2, ψ₀/2)`` variances with normal means."""
        kappa, nu = prior.mean_precision, prior.degrees_of_freedom
        variances = self._variances(covariances)  # (K, D) or (K, 1)
        scales = jnp.broadcast_to(prior.scale, covariances.shape)
        shape, rate = 0.5 * nu, 0.5 * self._variances(scales)
        log_inverse_gamma = (
            shape * jnp.log(rate)
            - gammaln(shape)
            - (shape + 1.0) * jnp.log(variances)
            - rate / variances
        )
        offset = means - prior.mean
        log_mean = -0.5 * (
            LOG_2PI - jnp.log(kappa) + jnp.log(variances) + kappa * jnp.square(offset) / variances
        )
        return jnp.sum(log_inverse_gamma) + jnp.sum(log_mean)

    def sample(self, key: Array, means: Array, covariances: Array, labels: Array) -> Array:
        k, dim = means.shape
        noise = jax.random.normal(key, (labels.shape[0], dim), means.dtype)
        scales = jnp.broadcast_to(jnp.sqrt(self._variances(covariances)), (k, dim))
        return means[labels] + noise * scales[labels]

    def matrices(self, covariances: Array, num_components: int, dim: int) -> Array:
        eye = jnp.eye(dim, dtype=covariances.dtype)
        return self._per_feature(covariances, dim)[..., :, None] * eye


@dataclasses.dataclass(frozen=True)
class DiagCovariance(_Vector):
    """Per-component variances of each feature: covariances ``(K, D)``."""

    name = "diag"

    def shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        return (num_components, dim)

    def outer(self, a: Array, b: Array) -> Array:
        return a * b

    def _squares(self, squares: Array) -> Array:
        return squares

    def _squeeze(self, squares: Array) -> Array:
        return squares

    def _per_feature(self, values: Array, dim: int) -> Array:
        return values

    def _quadratic(self, precisions: Array) -> Array:
        return precisions.T  # (D, K)

    def _variances(self, covariances: Array) -> Array:
        return covariances

    def denominator(self, counts: Array, dim: int, prior_dof: Array | None) -> Array:
        if prior_dof is None:
            return counts[:, None]
        return (prior_dof + counts + 3.0)[:, None]

    def default_prior_scale(self, centred: Array, w: Array, shrink: float) -> Array:
        return (w @ jnp.square(centred)) / jnp.sum(w) / shrink

    def prior_scale(self, given: Array, dim: int, owner: str) -> Array:
        if given.ndim == 0:
            return jnp.broadcast_to(given, (dim,))
        if given.shape != (dim,):
            raise ValueError(
                f"{owner}.scale for covariance_type='diag' must be a number or have shape "
                f"{(dim,)}; got shape {given.shape}"
            )
        return given

    def num_parameters(self, num_components: int, dim: int) -> int:
        return num_components * dim


@dataclasses.dataclass(frozen=True)
class SphericalCovariance(_Vector):
    """One variance per component: covariances ``(K,)``."""

    name = "spherical"

    def shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        return (num_components,)

    def outer(self, a: Array, b: Array) -> Array:
        return jnp.sum(a * b, axis=1)

    def _squares(self, squares: Array) -> Array:
        return jnp.sum(squares, axis=1, keepdims=True)

    def _squeeze(self, squares: Array) -> Array:
        return squares[:, 0]

    def _per_feature(self, values: Array, dim: int) -> Array:
        return jnp.broadcast_to(values[..., None], (*values.shape, dim))

    def _quadratic(self, precisions: Array) -> Array:
        return precisions[None, :]  # (1, K)

    def _variances(self, covariances: Array) -> Array:
        return covariances[..., None]  # (K, 1): shared by the D features

    def denominator(self, counts: Array, dim: int, prior_dof: Array | None) -> Array:
        if prior_dof is None:
            return counts * dim
        return prior_dof + 2.0 + dim + counts * dim

    def default_prior_scale(self, centred: Array, w: Array, shrink: float) -> Array:
        return jnp.mean((w @ jnp.square(centred)) / jnp.sum(w) / shrink)

    def prior_scale(self, given: Array, dim: int, owner: str) -> Array:
        if given.ndim != 0:
            raise ValueError(
                f"{owner}.scale for covariance_type='spherical' must be a number or have shape "
                f"(); got shape {given.shape}"
            )
        return given

    def num_parameters(self, num_components: int, dim: int) -> int:
        return num_components


COVARIANCES: dict[str, Covariance] = {
    piece.name: piece
    for piece in (FullCovariance(), TiedCovariance(), DiagCovariance(), SphericalCovariance())
}
"""The four structures by ``covariance_type`` name."""
