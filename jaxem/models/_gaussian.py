"""Gaussian components (full, tied, diagonal or spherical covariances), and
the Gaussian mixture built on :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln, multigammaln

from jaxem._numerics import (
    LOG_2PI,
    cholesky_with_jitter,
    default_block_size,
    exact_matmul,
    inverse_cholesky_transpose,
    sum_over_blocks,
    symmetrize,
)
from jaxem._validation import is_concrete
from jaxem.models._component_checks import check_matrix_data

Array = jax.Array

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _as_static_tuple(value: Any) -> Any:
    """Floats and nested sequences (arrays) as hashable nested tuples."""
    if value is None or isinstance(value, numbers.Real):
        return None if value is None else float(value)
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else tuple(map(_as_static_tuple, array))


def _one_product_per_component(num_components: int) -> bool:
    """Second moments as one ``(D, rows) @ (rows, D)`` product per component?

    On a CPU that beats one batched contraction over a ``(K, rows, D)``
    tensor (58 vs 75 ms per E-step in float32, 101 vs 119 ms in float64, for
    n = 1e5, D = K = 16 on a 2-core x86 machine); accelerators prefer the
    batched form. The loop is unrolled, so it is used only up to 32
    components to bound compile time.
    """
    return jax.default_backend() == "cpu" and num_components <= 32


# ------------------------------------------------------------------- priors


class GaussianPriorParams(NamedTuple):
    """Resolved normal-inverse-Wishart hyperparameters (arrays).

    Attributes:
      mean: prior mean ``m₀`` of every component mean, ``(D,)``.
      mean_precision: ``κ₀``, scalar; ``μ_k | Σ_k ~ N(m₀, Σ_k / κ₀)``.
      degrees_of_freedom: ``ν₀``, scalar.
      scale: inverse-Wishart scale ``Ψ₀`` ``(D, D)`` (full, tied); inverse-gamma
        scales ``ψ₀`` per feature ``(D,)`` (diag); one scalar (spherical).
    """

    mean: Array
    mean_precision: Array
    degrees_of_freedom: Array
    scale: Array


class GaussianMixturePriorParams(NamedTuple):
    """Resolved hyperparameters of a :class:`GaussianMixturePrior` (arrays):
    the Dirichlet concentration ``(K,)`` and the fields of
    :class:`GaussianPriorParams`."""

    weight_concentration: Array
    mean: Array
    mean_precision: Array
    degrees_of_freedom: Array
    scale: Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianPrior:
    """Conjugate prior on Gaussian components' means and covariances.

    A normal-inverse-Wishart prior on each component's mean and covariance
    (normal-inverse-gamma per feature for diag, one inverse-gamma variance
    for spherical, one shared inverse-Wishart for tied). Unset fields take the
    data-driven defaults of Fraley & Raftery (2007), computed from the data
    the model is initialised on: the prior mean is the data mean,
    ``ν₀ = D + 2``, and the scale is the data covariance divided by
    ``K^(2/D)`` (its diagonal for diag, its mean variance for spherical).

    Attributes:
      mean_precision: ``κ₀ > 0``, pseudo-observations on the means.
      mean: prior mean ``(D,)``; ``None`` for the data mean.
      degrees_of_freedom: ``ν₀ > D − 1``; ``None`` for ``D + 2``.
      scale: ``Ψ₀``: a number (times the identity), or an array in the shape
        of one covariance (``(D, D)`` full/tied, ``(D,)`` diag, scalar
        spherical); ``None`` for the data-driven default.

    References:
      Fraley, C. and Raftery, A. E. (2007). Bayesian regularization for normal
      mixture estimation and model-based clustering. Journal of
      Classification 24, 155-181.
    """

    mean_precision: float = 0.01
    mean: Any = None
    degrees_of_freedom: float | None = None
    scale: Any = None

    def __post_init__(self):
        for name in ("mean_precision", "degrees_of_freedom"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)
            ):
                raise TypeError(f"{type(self).__name__}.{name} must be a number; got {value!r}")
        if not (self.mean_precision > 0 and math.isfinite(self.mean_precision)):
            raise ValueError(
                f"{type(self).__name__}.mean_precision must be > 0; got {self.mean_precision}"
            )
        object.__setattr__(self, "mean", _as_static_tuple(self.mean))
        object.__setattr__(self, "scale", _as_static_tuple(self.scale))

    def _resolve(
        self, x: Array, num_components: int, covariance_type: str, weights: Array | None
    ) -> GaussianPriorParams:
        dtype = x.dtype
        dim = x.shape[1]
        w = jnp.ones(x.shape[0], dtype) if weights is None else weights
        data_mean = (w @ x) / jnp.sum(w)
        centred = x - data_mean
        shrink = num_components ** (2.0 / dim)
        if self.mean is None:
            mean = data_mean
        else:
            mean = jnp.broadcast_to(jnp.asarray(self.mean, dtype), (dim,))
        dof = dim + 2.0 if self.degrees_of_freedom is None else self.degrees_of_freedom
        name = type(self).__name__
        if not dof > dim - 1:
            raise ValueError(f"{name}.degrees_of_freedom must be > D - 1 = {dim - 1}; got {dof}")
        if self.scale is None:
            if covariance_type in ("full", "tied"):
                scale = ((centred * w[:, None]).T @ centred) / jnp.sum(w) / shrink
            else:
                variances = (w @ jnp.square(centred)) / jnp.sum(w) / shrink
                scale = variances if covariance_type == "diag" else jnp.mean(variances)
        else:
            given = jnp.asarray(self.scale, dtype)
            shapes = {"full": (dim, dim), "tied": (dim, dim), "diag": (dim,), "spherical": ()}
            shape = shapes[covariance_type]
            if given.ndim == 0 and covariance_type in ("full", "tied"):
                scale = given * jnp.eye(dim, dtype=dtype)
            elif given.ndim == 0:
                scale = jnp.broadcast_to(given, shape)
            elif given.shape == shape:
                scale = given
            else:
                raise ValueError(
                    f"{name}.scale for covariance_type={covariance_type!r} must "
                    f"be a number or have shape {shape}; got shape {given.shape}"
                )
        return GaussianPriorParams(
            mean=mean.astype(dtype),
            mean_precision=jnp.asarray(self.mean_precision, dtype),
            degrees_of_freedom=jnp.asarray(dof, dtype),
            scale=jnp.asarray(scale, dtype),
        )

    def resolve(
        self,
        x: Array,
        num_components: int,
        covariance_type: str,
        weights: Array | None = None,
    ) -> GaussianPriorParams:
        """The hyperparameters as arrays, filling unset fields from ``x``.

        Args:
          x: data, ``(n, D)``.
          num_components: ``K``.
          covariance_type: one of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``.
          weights: optional ``(n,)`` observation weights for the data moments.
        """
        return self._resolve(x, num_components, covariance_type, weights)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianMixturePrior(GaussianPrior):
    """Conjugate prior for MAP estimation of a :class:`GaussianMixture`.

    A Dirichlet prior on the weights (``weight_concentration``) and the
    normal-inverse-Wishart prior of :class:`GaussianPrior` on the components
    (see there for the Fraley & Raftery (2007) data-driven defaults). With a
    prior, EM maximises ``log p(x | θ) + log p(θ)``; ``jaxem.fit`` monitors
    that sum divided by the number of observations.

    Attributes:
      weight_concentration: Dirichlet ``α ≥ 1`` (``1`` is flat).
    """

    weight_concentration: float = 1.0

    def __post_init__(self):
        alpha = self.weight_concentration
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(
                f"GaussianMixturePrior.weight_concentration must be a number; got {alpha!r}"
            )
        if not alpha >= 1.0:
            raise ValueError(
                "GaussianMixturePrior.weight_concentration must be >= 1 (the MAP weights "
                f"are on the boundary of the simplex below 1); got {alpha}"
            )
        super().__post_init__()

    def component_prior(self) -> GaussianPrior:
        """The normal-inverse-Wishart part, for the :class:`Gaussian` component."""
        return GaussianPrior(
            mean_precision=self.mean_precision,
            mean=self.mean,
            degrees_of_freedom=self.degrees_of_freedom,
            scale=self.scale,
        )

    def resolve(
        self,
        x: Array,
        num_components: int,
        covariance_type: str,
        weights: Array | None = None,
    ) -> GaussianMixturePriorParams:
        """The hyperparameters as arrays, filling unset fields from ``x``
        (see :meth:`GaussianPrior.resolve`), with the Dirichlet concentration."""
        niw = self._resolve(x, num_components, covariance_type, weights)
        alpha = jnp.full((num_components,), self.weight_concentration, x.dtype)
        return GaussianMixturePriorParams(alpha, *niw)


# ----------------------------------------------------------- the component


class GaussianParams(NamedTuple):
    """Parameters of ``K`` Gaussian components.

    Attributes:
      means: ``(K, D)``.
      covariances: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical.
      prior: the resolved prior hyperparameters when the component has a
        prior (carried unchanged; not fitted), else ``None``.
    """

    means: Array
    covariances: Array
    prior: GaussianPriorParams | None = None


class GaussianStats(NamedTuple):
    """Additive statistics of ``K`` Gaussian components.

    Moments are taken about the centres of the parameters they were computed
    under (each component's mean for full and tied covariances, the average
    of the means for diag and spherical), so no ``E[xxᵀ] − μμᵀ`` cancellation
    happens in the M-step.

    Attributes:
      sum_x: ``Σ_i w_i r_ik (x_i − c_k)``, ``(K, D)``.
      sum_xx: second moments about the centres: ``(K, D, D)`` full, summed
        over components ``(D, D)`` tied, per feature ``(K, D)`` diag, summed
        over features ``(K,)`` spherical.
    """

    sum_x: Array
    sum_xx: Array


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Multivariate Gaussian components, for :class:`jaxem.Mixture`.

    Log-densities and statistics are matrix products over Cholesky factors:
    no ``(n, K, D)`` or ``(n, K, D, D)`` tensor is formed, and second moments
    are taken about the current means so float32 stays accurate.

    Args:
      covariance_type: ``"full"`` (each component its own matrix), ``"tied"``
        (one shared matrix), ``"diag"`` (per-component diagonal) or
        ``"spherical"`` (per-component single variance).
      reg_covar: non-negative value added to the covariances' diagonal after
        each M-step, as in scikit-learn.
      prior: a :class:`GaussianPrior` for MAP estimation, or ``None``.
    """

    covariance_type: str = "full"
    reg_covar: float = 1e-6
    prior: GaussianPrior | None = None

    def __post_init__(self):
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {self.covariance_type!r}"
            )
        reg = self.reg_covar
        if isinstance(reg, bool) or not isinstance(reg, numbers.Real):
            raise TypeError(f"reg_covar must be a number; got {reg!r}")
        if not (reg >= 0 and math.isfinite(reg)):
            raise ValueError(f"reg_covar must be a finite number >= 0; got {reg}")
        object.__setattr__(self, "reg_covar", float(reg))
        if isinstance(self.prior, GaussianMixturePrior):
            raise TypeError(
                "Gaussian(prior=...) takes a GaussianPrior; the Dirichlet part of a "
                "GaussianMixturePrior belongs to Mixture(weight_concentration=...) "
                "(use prior.component_prior())"
            )
        if self.prior is not None and not isinstance(self.prior, GaussianPrior):
            raise TypeError(f"prior must be a GaussianPrior or None; got {self.prior!r}")

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> None:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(n, D)``."""
        check_matrix_data(x, "Gaussian")

    def covariance_shape(self, num_components: int, dim: int) -> tuple[int, ...]:
        k = num_components
        return {"full": (k, dim, dim), "tied": (dim, dim), "diag": (k, dim), "spherical": (k,)}[
            self.covariance_type
        ]

    def check_params(self, params: Any, x: Array, num_components: int) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only for concrete arrays)."""
        if not isinstance(params, GaussianParams):
            raise TypeError(f"params must be a GaussianParams; got {type(params).__name__}")
        check_gaussian_params(
            self, params.means, params.covariances, params.prior, x, num_components
        )

    def block_rows(self, x: Array, num_components: int) -> int:
        k, dim = num_components, x.shape[1]
        if self.covariance_type in ("full", "tied"):
            return default_block_size(x.shape[0], k * dim)
        # diag/spherical rows are narrow. On a 2-core x86 CPU (n = 1e5,
        # D = K = 16) float32 ran twice as fast in blocks of ~2**22 elements
        # as in cache-sized ones (10 vs 19 ms per iteration), while float64
        # was 20% faster in cache-sized blocks (15.5 vs 19 ms).
        target = 2**22 if x.dtype == jnp.float32 else 2**18
        return default_block_size(x.shape[0], 2 * dim + 3 * k, cpu_target=target)

    # ---------------------------------------------------------- log densities

    def prepare(self, params: GaussianParams) -> dict[str, Array]:
        """Per-parameter quantities the log-densities need, once per call."""
        means, cov = params.means, params.covariances
        dim = means.shape[1]
        ctype = self.covariance_type
        reference = jnp.mean(means, axis=0)
        if ctype in ("full", "tied"):
            factors = jnp.linalg.cholesky(cov)
            prec_chol = inverse_cholesky_transpose(factors)  # (K, D, D) or (D, D)
            log_det = -jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), axis=-1)
            const = jnp.broadcast_to(log_det - 0.5 * dim * LOG_2PI, means.shape[:1])
            if ctype == "full":
                shifted = jnp.einsum("kd,kde->ke", means - reference, prec_chol)
                stacked = jnp.transpose(prec_chol, (1, 0, 2)).reshape(dim, -1)
            else:
                shifted = (means - reference) @ prec_chol
                stacked = prec_chol
            return {"const": const, "reference": reference, "shifted": shifted, "stacked": stacked}
        precisions = 1.0 / cov
        if ctype == "diag":
            log_det = -0.5 * jnp.sum(jnp.log(cov), axis=1)
        else:
            log_det = -0.5 * dim * jnp.log(cov)
        offset = means - reference
        # Mahalanobis distance expanded about the reference m:
        # Σ_d p_kd ((x − m)_d² − 2 (x − m)_d (μ_k − m)_d + (μ_k − m)_d²).
        if ctype == "diag":
            quadratic = precisions.T  # (D, K)
            linear = (-2.0 * offset * precisions).T
            offset_term = jnp.sum(offset * offset * precisions, axis=1)
        else:
            quadratic = precisions[None, :]  # (1, K)
            linear = (-2.0 * offset * precisions[:, None]).T
            offset_term = jnp.sum(offset * offset, axis=1) * precisions
        coefficients = jnp.concatenate([quadratic, linear], axis=0)
        const = log_det - 0.5 * dim * LOG_2PI - 0.5 * offset_term
        return {"const": const, "reference": reference, "coefficients": coefficients}

    def _features(self, x: Array, reference: Array) -> Array:
        """diag/spherical: ``[(x − m)², x − m]`` (or ``[|x − m|², x − m]``)."""
        centred = x - reference
        squares = jnp.square(centred)
        if self.covariance_type == "spherical":
            squares = jnp.sum(squares, axis=1, keepdims=True)
        return jnp.concatenate([squares, centred], axis=1)

    def log_likelihoods(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log N(x_i | μ_k, Σ_k)`` for a block of rows, ``(rows, K)``."""
        if self.covariance_type in ("full", "tied"):
            k = prepared["shifted"].shape[0]
            whitened = (x - prepared["reference"]) @ prepared["stacked"]
            if self.covariance_type == "full":
                whitened = whitened.reshape(x.shape[0], k, -1)
            else:
                whitened = whitened[:, None, :]
            residual = whitened - prepared["shifted"]
            return prepared["const"] - 0.5 * jnp.sum(jnp.square(residual), axis=-1)
        features = self._features(x, prepared["reference"])
        # The expansion cancels (x², −2xμ and μ² terms), so it needs full
        # float32 products: GPUs otherwise round float32 matmul inputs to
        # TF32 (10-bit mantissa), which cost 2% of the log-likelihood on data
        # scaled by 1e8 (an H200, tests/test_degenerate.py).
        quadratic = exact_matmul(features, prepared["coefficients"])
        return prepared["const"] - 0.5 * quadratic

    # ------------------------------------------------------------ statistics

    def centres(self, means: Array) -> Array:
        """Points the statistics' moments are taken about, ``(K, D)``."""
        if self.covariance_type in ("full", "tied"):
            return means
        return jnp.broadcast_to(jnp.mean(means, axis=0), means.shape)

    def _moments(self, x: Array, resp: Array, centres: Array) -> GaussianStats:
        k = resp.shape[1]
        if self.covariance_type in ("full", "tied") and _one_product_per_component(k):
            firsts, seconds = [], []
            for j in range(k):
                residual = x - centres[j]  # (rows, D)
                weighted = resp[:, j, None] * residual
                firsts.append(jnp.sum(weighted, axis=0))
                seconds.append(weighted.T @ residual)
            sum_xx = jnp.stack(seconds) if self.covariance_type == "full" else sum(seconds)
            return GaussianStats(jnp.stack(firsts), sum_xx)
        if self.covariance_type in ("full", "tied"):
            residual = x[None, :, :] - centres[:, None, :]  # (K, rows, D)
            weighted = resp.T[:, :, None] * residual
            sum_x = jnp.sum(weighted, axis=1)
            spec = "krd,kre->kde" if self.covariance_type == "full" else "krd,kre->de"
            return GaussianStats(sum_x, jnp.einsum(spec, weighted, residual))
        moments = exact_matmul(resp.T, self._features(x, centres[0]))
        squares, sum_x = moments[:, : -x.shape[1]], moments[:, -x.shape[1] :]
        if self.covariance_type == "spherical":
            squares = squares[:, 0]
        return GaussianStats(sum_x, squares)

    def statistics(self, x: Array, resp: Array, params: GaussianParams) -> GaussianStats:
        """Moments of a block about the centres of ``params``, from weighted
        responsibilities ``(rows, K)``."""
        return self._moments(x, resp, self.centres(params.means))

    def shift_statistics(
        self,
        stats: GaussianStats,
        counts: Array,
        from_params: GaussianParams,
        to_params: GaussianParams,
    ) -> GaussianStats:
        """Moments about the centres of ``from_params`` moved to those of
        ``to_params`` (exact): with ``d = c_from − c_to``,
        ``Σ r (x − c_to) = S₁ + N d`` and
        ``Σ r (x − c_to)(x − c_to)ᵀ = S₂ + S₁ dᵀ + d S₁ᵀ + N d dᵀ``.

        Args:
          stats: statistics computed about ``from_params``' centres.
          counts: the components' total responsibilities ``N_k``, ``(K,)``.
          from_params: the parameters the statistics were computed under.
          to_params: the parameters to express them about.
        """
        d = self.centres(from_params.means) - self.centres(to_params.means)  # (K, D)
        sum_x = stats.sum_x
        ctype = self.covariance_type
        if ctype in ("full", "tied"):
            cross = jnp.einsum("kd,ke->kde", sum_x, d)
            correction = (
                cross
                + jnp.swapaxes(cross, -1, -2)
                + counts[:, None, None] * jnp.einsum("kd,ke->kde", d, d)
            )
            if ctype == "tied":
                correction = jnp.sum(correction, axis=0)
            sum_xx = stats.sum_xx + correction
        else:
            correction = 2.0 * sum_x * d + counts[:, None] * jnp.square(d)
            if ctype == "spherical":
                correction = jnp.sum(correction, axis=1)
            sum_xx = stats.sum_xx + correction
        return GaussianStats(sum_x + counts[:, None] * d, sum_xx)

    def maximize(
        self, stats: GaussianStats, counts: Array, params: GaussianParams
    ) -> GaussianParams:
        """Closed-form means and covariances (MLE, or the posterior mode).

        Always finite: an empty component keeps its mean (or moves to the
        prior mean) and gets ``reg_covar`` covariance (or the prior's mode); a
        covariance that is singular in the working precision gets jitter.
        """
        return self._maximize(stats, counts, self.centres(params.means), params.prior)

    def _maximize(
        self,
        stats: GaussianStats,
        counts: Array,
        centres: Array,
        prior: GaussianPriorParams | None,
    ) -> GaussianParams:
        dtype = stats.sum_x.dtype
        k, dim = stats.sum_x.shape
        ctype = self.covariance_type
        if prior is None:
            shift = stats.sum_x / counts[:, None]
            pull = None
        else:
            kappa = prior.mean_precision
            shift = (stats.sum_x + kappa * (prior.mean - centres)) / (counts + kappa)[:, None]
        means = centres + shift
        if prior is not None:
            pull = means - prior.mean  # (K, D)
        # Scatter about the new means: Σ r (x − μ)(x − μ)ᵀ [+ κ₀ (μ − m₀)(μ − m₀)ᵀ].
        if ctype in ("full", "tied"):
            cross = jnp.einsum("kd,ke->kde", stats.sum_x, shift)
            outer = jnp.einsum("kd,ke->kde", shift, shift) * counts[:, None, None]
            correction = outer - cross - jnp.swapaxes(cross, -1, -2)
            if pull is not None:
                correction = correction + kappa * jnp.einsum("kd,ke->kde", pull, pull)
            if ctype == "full":
                scatter = stats.sum_xx + correction
            else:
                scatter = stats.sum_xx + jnp.sum(correction, axis=0)
            scatter = symmetrize(scatter)
        else:
            correction = counts[:, None] * shift * shift - 2.0 * stats.sum_x * shift
            if pull is not None:
                correction = correction + kappa * pull * pull
            if ctype == "spherical":
                correction = jnp.sum(correction, axis=1)
            scatter = jnp.maximum(stats.sum_xx + correction, 0.0)
        # Divide by the effective count (MLE) or by the posterior mode's
        # denominator (MAP), then regularise.
        if prior is None:
            if ctype == "full":
                covariances = scatter / counts[:, None, None]
            elif ctype == "tied":
                covariances = scatter / jnp.sum(counts)
            elif ctype == "diag":
                covariances = scatter / counts[:, None]
            else:
                covariances = scatter / (counts * dim)
        else:
            nu, scale = prior.degrees_of_freedom, prior.scale
            if ctype == "full":
                covariances = (scale + scatter) / (nu + counts + dim + 2.0)[:, None, None]
            elif ctype == "tied":
                covariances = (scale + scatter) / (nu + jnp.sum(counts) + k + dim + 1.0)
            elif ctype == "diag":
                covariances = (scale + scatter) / (nu + counts + 3.0)[:, None]
            else:
                covariances = (scale + scatter) / (nu + 2.0 + dim + counts * dim)
        if ctype in ("full", "tied"):
            covariances = covariances + self.reg_covar * jnp.eye(dim, dtype=dtype)
            factors, jittered = cholesky_with_jitter(covariances)
            rebuilt = factors @ jnp.swapaxes(factors, -1, -2)
            covariances = jnp.where(jittered[..., None, None], rebuilt, covariances)
        else:
            tiny = jnp.finfo(dtype).tiny
            covariances = jnp.maximum(covariances + self.reg_covar, tiny)
        return GaussianParams(means, covariances, prior)

    def initialize(self, x: Array, resp: Array, weights: Array | None = None) -> GaussianParams:
        """Means and covariances from responsibilities ``(n, K)`` alone (the
        prior, if any, resolved from ``x``)."""
        k = resp.shape[1]
        prior = (
            None if self.prior is None else self.prior.resolve(x, k, self.covariance_type, weights)
        )
        return self.initialize_with_prior(x, resp, weights, prior)

    def initialize_with_prior(
        self,
        x: Array,
        resp: Array,
        weights: Array | None,
        prior: GaussianPriorParams | None,
    ) -> GaussianParams:
        """:meth:`initialize` with already-resolved prior hyperparameters."""
        w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
        weighted = resp * w[:, None]
        counts = jnp.sum(weighted, axis=0)
        mean = (w @ x) / jnp.sum(w)
        if self.covariance_type in ("full", "tied"):
            # Each component's mean; an empty component starts at the data mean.
            own = (weighted.T @ x) / jnp.where(counts > 0, counts, 1.0)[:, None]
            centres = jnp.where((counts > 0)[:, None], own, mean)
        else:
            centres = jnp.broadcast_to(mean, (resp.shape[1], x.shape[1]))
        stats = sum_over_blocks(
            lambda xb, rb: self._moments(xb, rb, centres),
            (x, weighted),
            self.block_rows(x, resp.shape[1]),
        )
        counts = counts + 10.0 * jnp.finfo(counts.dtype).eps
        return self._maximize(stats, counts, centres, prior)

    # ------------------------------------------------------------ the rest

    def log_prior(self, params: GaussianParams) -> Array:
        """Normal-inverse-Wishart ``log p(μ, Σ)`` (``0.0`` without a prior)."""
        dtype = params.means.dtype
        prior = params.prior
        if self.prior is None or prior is None:
            return jnp.zeros((), dtype)
        dim = params.means.shape[1]
        kappa, nu, scale = prior.mean_precision, prior.degrees_of_freedom, prior.scale
        offset = params.means - prior.mean  # (K, D)
        cov = params.covariances
        ctype = self.covariance_type
        if ctype in ("full", "tied"):
            factors = jnp.linalg.cholesky(cov)
            prec_chol = inverse_cholesky_transpose(factors)
            log_det_cov = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), -1)
            if ctype == "full":
                whitened = jnp.einsum("kd,kde->ke", offset, prec_chol)
                trace = jnp.einsum("de,kef,kdf->k", scale, prec_chol, prec_chol)
            else:
                whitened = offset @ prec_chol
                trace = jnp.sum((scale @ prec_chol) * prec_chol)
            _, log_det_scale = jnp.linalg.slogdet(scale)
            log_wishart = (
                0.5 * nu * log_det_scale
                - 0.5 * nu * dim * math.log(2.0)
                - multigammaln(0.5 * nu, dim)
                - 0.5 * (nu + dim + 1.0) * log_det_cov
                - 0.5 * trace
            )
            log_mean = (
                -0.5 * dim * LOG_2PI
                + 0.5 * dim * jnp.log(kappa)
                - 0.5 * log_det_cov
                - 0.5 * kappa * jnp.sum(jnp.square(whitened), axis=-1)
            )
            return jnp.sum(log_wishart) + jnp.sum(log_mean)
        # Inverse-gamma(ν₀/2, ψ₀/2) variances with normal means.
        k = params.means.shape[0]
        if ctype == "diag":
            variances = cov  # (K, D)
            scales = jnp.broadcast_to(scale, cov.shape)
        else:
            variances = cov[:, None]  # (K, 1), shared by the D features
            scales = jnp.broadcast_to(scale, (k, 1))
        shape, rate = 0.5 * nu, 0.5 * scales
        log_inverse_gamma = (
            shape * jnp.log(rate)
            - gammaln(shape)
            - (shape + 1.0) * jnp.log(variances)
            - rate / variances
        )
        log_mean = -0.5 * (
            LOG_2PI - jnp.log(kappa) + jnp.log(variances) + kappa * jnp.square(offset) / variances
        )
        return jnp.sum(log_inverse_gamma) + jnp.sum(log_mean)

    def sample(self, key: Array, params: GaussianParams, labels: Array) -> Array:
        """One draw per label, ``(n, D)``."""
        means, cov = params.means, params.covariances
        k, dim = means.shape
        n = labels.shape[0]
        dtype = means.dtype
        noise = jax.random.normal(key, (n, dim), dtype)
        if self.covariance_type in ("diag", "spherical"):
            scales = jnp.sqrt(cov if self.covariance_type == "diag" else cov[:, None])
            scales = jnp.broadcast_to(scales, (k, dim))
            return means[labels] + noise * scales[labels]
        factors = jnp.linalg.cholesky(cov)
        if self.covariance_type == "tied":
            return means[labels] + noise @ factors.T

        def add_component(draws, component):
            mean, factor, index = component
            return jnp.where((labels == index)[:, None], mean + noise @ factor.T, draws), None

        draws, _ = lax.scan(
            add_component, jnp.zeros((n, dim), dtype), (means, factors, jnp.arange(k))
        )
        return draws

    def covariance_matrices(self, params: Any) -> Array:
        """Every component's covariance as a ``(K, D, D)`` matrix, whatever the
        covariance type (for plotting and comparison)."""
        cov = params.covariances
        k, dim = params.means.shape[-2:]
        eye = jnp.eye(dim, dtype=cov.dtype)
        if self.covariance_type == "full":
            return cov
        if self.covariance_type == "tied":
            return jnp.broadcast_to(cov, (*cov.shape[:-2], k, dim, dim))
        if self.covariance_type == "diag":
            return cov[..., :, None] * eye
        return cov[..., None, None] * eye

    def num_parameters(self, params: Any) -> int:
        """``K·D`` means and the covariances' free entries."""
        k, dim = params.means.shape[-2:]
        per_matrix = dim * (dim + 1) // 2
        covariance = {
            "full": k * per_matrix,
            "tied": per_matrix,
            "diag": k * dim,
            "spherical": k,
        }[self.covariance_type]
        return int(k * dim + covariance)


def check_gaussian_params(
    component: Gaussian,
    means: Any,
    covariances: Any,
    prior: Any,
    x: Array,
    num_components: int,
    owner: str = "params",
) -> None:
    """Shapes always; finiteness, symmetry and positive definiteness for
    concrete arrays."""
    k, dim = num_components, x.shape[-1]
    ctype = component.covariance_type
    expected = {"means": (k, dim), "covariances": component.covariance_shape(k, dim)}
    for name, value in (("means", means), ("covariances", covariances)):
        shape = expected[name]
        if tuple(jnp.shape(value)) != shape:
            raise ValueError(
                f"{owner}.{name} must have shape {shape} for num_components={k}, "
                f"D={dim}, covariance_type={ctype!r}; got {tuple(jnp.shape(value))}"
            )
    if component.prior is not None and prior is None:
        raise ValueError(
            f"the model has a prior but {owner}.prior is None: build the hyperparameters "
            f"with {owner}._replace(prior=model.prior.resolve(x, K, covariance_type))"
        )
    if not all(is_concrete(leaf) for leaf in (means, covariances)):
        return
    for name, value in (("means", means), ("covariances", covariances)):
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"{owner}.{name} contains NaN or inf")
    cov = np.asarray(covariances, dtype=float)
    if ctype in ("diag", "spherical"):
        if np.any(cov <= 0):
            raise ValueError(f"{owner}.covariances must be positive ({ctype})")
    else:
        matrices = cov.reshape((-1, dim, dim))
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-5, atol=0):
            raise ValueError(f"{owner}.covariances must be symmetric")
        if np.any(np.linalg.eigvalsh(matrices)[..., 0] <= 0):
            raise ValueError(f"{owner}.covariances must be positive definite")
