"""Gaussian mixture models with full, tied, diagonal or spherical covariances."""

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

from jaxem import _kmeans
from jaxem._numerics import (
    LOG_2PI,
    cholesky_with_jitter,
    default_block_size,
    inverse_cholesky_transpose,
    log_normalize,
    map_over_blocks,
    sum_over_blocks,
    symmetrize,
)
from jaxem._validation import is_concrete

Array = jax.Array

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


class GaussianMixturePriorParams(NamedTuple):
    """Resolved hyperparameters of the conjugate prior (arrays).

    Attributes:
      weight_concentration: Dirichlet concentration ``α``, ``(K,)``.
      mean: prior mean ``m₀`` of every component mean, ``(D,)``.
      mean_precision: ``κ₀``, scalar; ``μ_k | Σ_k ~ N(m₀, Σ_k / κ₀)``.
      degrees_of_freedom: ``ν₀``, scalar.
      scale: inverse-Wishart scale ``Ψ₀`` ``(D, D)`` (full, tied); inverse-gamma
        scales ``ψ₀`` per feature ``(D,)`` (diag); one scalar (spherical).
    """

    weight_concentration: Array
    mean: Array
    mean_precision: Array
    degrees_of_freedom: Array
    scale: Array


class GaussianMixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture (scikit-learn's shapes).

    Attributes:
      weights: mixing proportions, ``(K,)``, on the simplex.
      means: component means, ``(K, D)``.
      covariances: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical.
      prior: the resolved prior hyperparameters when the model has a prior
        (carried unchanged by the M-step; not fitted), else ``None``.
    """

    weights: Array
    means: Array
    covariances: Array
    prior: GaussianMixturePriorParams | None = None


class GaussianMixtureStats(NamedTuple):
    """Additive expected sufficient statistics of a Gaussian mixture.

    Moments are taken about the centres of the parameters they were computed
    under (each component's mean for full and tied covariances, the mixture's
    overall mean for diag and spherical), so no ``E[xxᵀ] − μμᵀ`` cancellation
    happens in the M-step. Statistics from different blocks of data computed
    under the same parameters add up.

    Attributes:
      counts: ``N_k = Σ_i w_i r_ik``, ``(K,)``.
      sum_x: ``Σ_i w_i r_ik (x_i − c_k)``, ``(K, D)``.
      sum_xx: second moments about the centres: ``(K, D, D)`` full, summed
        over components ``(D, D)`` tied, per feature ``(K, D)`` diag, summed
        over features ``(K,)`` spherical.
      num_observations: number of rows, a scalar.
    """

    counts: Array
    sum_x: Array
    sum_xx: Array
    num_observations: Array


def _one_product_per_component(num_components: int) -> bool:
    """Second moments as one ``(D, rows) @ (rows, D)`` product per component?

    On a CPU that beats one batched contraction over a ``(K, rows, D)``
    tensor (58 vs 75 ms per E-step in float32, 101 vs 119 ms in float64, for
    n = 1e5, D = K = 16 on a 2-core x86 machine); accelerators prefer the
    batched form. The loop is unrolled, so it is used only up to 32
    components to bound compile time.
    """
    return jax.default_backend() == "cpu" and num_components <= 32


def _as_static_tuple(value: Any) -> Any:
    """Floats and nested sequences (arrays) as hashable nested tuples."""
    if value is None or isinstance(value, numbers.Real):
        return None if value is None else float(value)
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else tuple(map(_as_static_tuple, array))


@dataclasses.dataclass(frozen=True)
class GaussianMixturePrior:
    """Conjugate prior for MAP estimation of a Gaussian mixture.

    A Dirichlet prior on the weights and a normal-inverse-Wishart prior on
    each component's mean and covariance (normal-inverse-gamma per feature for
    diag, one inverse-gamma variance for spherical, one shared inverse-Wishart
    for tied). Unset fields take the data-driven defaults of Fraley & Raftery
    (2007), computed from the data the model is initialised on: the prior mean
    is the data mean, ``ν₀ = D + 2``, and the scale is the data covariance
    divided by ``K^(2/D)`` (its diagonal for diag, its mean variance for
    spherical).

    With a prior, EM maximises ``log p(x | θ) + log p(θ)``; ``jaxem.fit``
    monitors that sum divided by the number of observations.

    Attributes:
      weight_concentration: Dirichlet ``α ≥ 1`` (``1`` is flat).
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

    weight_concentration: float = 1.0
    mean_precision: float = 0.01
    mean: Any = None
    degrees_of_freedom: float | None = None
    scale: Any = None

    def __post_init__(self):
        for name in ("weight_concentration", "mean_precision", "degrees_of_freedom"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)
            ):
                raise TypeError(f"GaussianMixturePrior.{name} must be a number; got {value!r}")
        if not self.weight_concentration >= 1.0:
            raise ValueError(
                "GaussianMixturePrior.weight_concentration must be >= 1 (the MAP weights "
                f"are on the boundary of the simplex below 1); got {self.weight_concentration}"
            )
        if not (self.mean_precision > 0 and math.isfinite(self.mean_precision)):
            raise ValueError(
                f"GaussianMixturePrior.mean_precision must be > 0; got {self.mean_precision}"
            )
        object.__setattr__(self, "mean", _as_static_tuple(self.mean))
        object.__setattr__(self, "scale", _as_static_tuple(self.scale))

    def resolve(
        self,
        x: Array,
        num_components: int,
        covariance_type: str,
        weights: Array | None = None,
    ) -> GaussianMixturePriorParams:
        """The hyperparameters as arrays, filling unset fields from ``x``.

        Args:
          x: data, ``(n, D)``.
          num_components: ``K``.
          covariance_type: one of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``.
          weights: optional ``(n,)`` observation weights for the data moments.

        Returns:
          A :class:`GaussianMixturePriorParams` in ``x``'s dtype.
        """
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
        if not dof > dim - 1:
            raise ValueError(
                f"GaussianMixturePrior.degrees_of_freedom must be > D - 1 = {dim - 1}; got {dof}"
            )
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
                    f"GaussianMixturePrior.scale for covariance_type={covariance_type!r} must "
                    f"be a number or have shape {shape}; got shape {given.shape}"
                )
        return GaussianMixturePriorParams(
            weight_concentration=jnp.full((num_components,), self.weight_concentration, dtype),
            mean=mean.astype(dtype),
            mean_precision=jnp.asarray(self.mean_precision, dtype),
            degrees_of_freedom=jnp.asarray(dof, dtype),
            scale=jnp.asarray(scale, dtype),
        )


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A mixture of ``K`` multivariate Gaussians, fitted by EM (MLE or MAP).

    The model holds configuration only; parameters are a
    :class:`GaussianMixtureParams` pytree. Every method is a pure function of
    ``(params, x)`` for one dataset, so it can be jitted, vmapped and
    differentiated. E and M steps are matrix products over Cholesky factors,
    evaluated in row blocks: no ``(n, K, D)`` or ``(n, K, D, D)`` tensor is
    ever formed, and second moments are taken about the current means so
    float32 stays accurate.

    Args:
      num_components: ``K >= 1``.
      covariance_type: ``"full"`` (each component its own matrix),
        ``"tied"`` (one shared matrix), ``"diag"`` (per-component diagonal) or
        ``"spherical"`` (per-component single variance).
      reg_covar: non-negative value added to the covariances' diagonal after
        each M-step, as in scikit-learn.
      init_method: how :meth:`init` starts a restart: ``"kmeans"`` (greedy
        k-means++ seeding, then Lloyd iterations to convergence, then an
        M-step from the hard assignment), ``"k-means++"`` (an M-step from the
        seeds alone), ``"random"`` (random responsibilities) or
        ``"random_from_data"`` (``K`` random observations as seeds).
      prior: a :class:`GaussianMixturePrior` for MAP estimation, or ``None``
        for maximum likelihood.
      block_size: rows per block in the E-step (bounds temporaries to
        ``block_size × K × D``); ``None`` picks it from the backend and sizes.
      kmeans_max_iter: Lloyd iterations at most, for ``init_method="kmeans"``.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (500, 2))
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(1), x)
      >>> params.means.shape, params.covariances.shape
      ((2, 2), (2, 2, 2))
      >>> stats, log_lik = model.e_step(params, x)
      >>> params = model.m_step(stats, params)
      >>> model.posterior(params, x).shape
      (500, 2)
    """

    num_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    init_method: str = "kmeans"
    prior: GaussianMixturePrior | None = None
    block_size: int | None = None
    kmeans_max_iter: int = 100

    def __post_init__(self):
        k = self.num_components
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"num_components must be an integer; got {k!r}")
        if k < 1:
            raise ValueError(f"num_components must be >= 1; got {k}")
        object.__setattr__(self, "num_components", int(k))
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
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")
        if self.prior is not None and not isinstance(self.prior, GaussianMixturePrior):
            raise TypeError(f"prior must be a GaussianMixturePrior or None; got {self.prior!r}")
        if self.block_size is not None and (
            not isinstance(self.block_size, numbers.Integral) or self.block_size < 1
        ):
            raise ValueError(
                f"block_size must be a positive integer or None; got {self.block_size!r}"
            )
        if not isinstance(self.kmeans_max_iter, numbers.Integral) or self.kmeans_max_iter < 0:
            raise ValueError(
                f"kmeans_max_iter must be an integer >= 0; got {self.kmeans_max_iter!r}"
            )

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Array) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(n, D)`` with ``n >= K``."""
        if x.ndim != 2:
            hint = " (for one feature, reshape with x[:, None])" if x.ndim == 1 else ""
            raise ValueError(
                f"x must be a 2-D array of shape (n, D); got shape {tuple(x.shape)}{hint}"
            )
        n, dim = x.shape
        if dim < 1:
            raise ValueError(f"x must have at least one feature; got shape {tuple(x.shape)}")
        if n < self.num_components:
            raise ValueError(
                f"x has {n} observation(s) but num_components={self.num_components}: "
                "need at least as many observations as components"
            )

    def check_params(self, params: Any, x: Array) -> None:
        """Raise for parameters of the wrong structure, shape or value.

        Shapes are checked always; positivity, normalisation and finiteness
        only for concrete arrays.
        """
        if not isinstance(params, GaussianMixtureParams):
            raise TypeError(f"params must be a GaussianMixtureParams; got {type(params).__name__}")
        k, dim = self.num_components, x.shape[-1]
        expected = {
            "weights": (k,),
            "means": (k, dim),
            "covariances": self._covariance_shape(dim),
        }
        for name, shape in expected.items():
            value = getattr(params, name)
            if tuple(jnp.shape(value)) != shape:
                raise ValueError(
                    f"params.{name} must have shape {shape} for num_components={k}, "
                    f"D={dim}, covariance_type={self.covariance_type!r}; "
                    f"got {tuple(jnp.shape(value))}"
                )
        if self.prior is not None and params.prior is None:
            raise ValueError(
                "the model has a prior but params.prior is None: build the hyperparameters "
                "with params._replace(prior=model.prior.resolve(x, K, covariance_type))"
            )
        if not all(is_concrete(leaf) for leaf in jax.tree.leaves(params)):
            return
        for name in ("weights", "means", "covariances"):
            if not bool(jnp.all(jnp.isfinite(getattr(params, name)))):
                raise ValueError(f"params.{name} contains NaN or inf")
        weights = np.asarray(params.weights, dtype=float)
        if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-4:
            raise ValueError(
                f"params.weights must be non-negative and sum to 1; got sum {weights.sum():.6g} "
                f"and minimum {weights.min():.6g}"
            )
        covariances = np.asarray(params.covariances, dtype=float)
        if self.covariance_type in ("diag", "spherical"):
            if np.any(covariances <= 0):
                raise ValueError(f"params.covariances must be positive ({self.covariance_type})")
        else:
            matrices = covariances.reshape((-1, dim, dim))
            if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-5, atol=0):
                raise ValueError("params.covariances must be symmetric")
            if np.any(np.linalg.eigvalsh(matrices)[..., 0] <= 0):
                raise ValueError("params.covariances must be positive definite")

    def _covariance_shape(self, dim: int) -> tuple[int, ...]:
        k = self.num_components
        return {"full": (k, dim, dim), "tied": (dim, dim), "diag": (k, dim), "spherical": (k,)}[
            self.covariance_type
        ]

    # ---------------------------------------------------------- log densities

    def _block_rows(self, x: Array) -> int:
        if self.block_size is not None:
            return self.block_size
        k, dim = self.num_components, x.shape[1]
        if self.covariance_type in ("full", "tied"):
            return default_block_size(x.shape[0], k * dim)
        # diag/spherical rows are narrow. On a 2-core x86 CPU (n = 1e5,
        # D = K = 16) float32 ran twice as fast in blocks of ~2**22 elements
        # as in cache-sized ones (10 vs 19 ms per iteration), while float64
        # was 20% faster in cache-sized blocks (15.5 vs 19 ms).
        target = 2**22 if x.dtype == jnp.float32 else 2**18
        return default_block_size(x.shape[0], 2 * dim + 3 * k, cpu_target=target)

    def _prepare(self, params: GaussianMixtureParams) -> dict[str, Array]:
        """Per-parameter quantities the E-step needs, computed once per call."""
        weights, means, cov = params.weights, params.means, params.covariances
        dim = means.shape[1]
        ctype = self.covariance_type
        log_weights = jnp.log(weights)
        if ctype in ("full", "tied"):
            factors = jnp.linalg.cholesky(cov)
            prec_chol = inverse_cholesky_transpose(factors)  # (K, D, D) or (D, D)
            log_det = -jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), axis=-1)
            reference = weights @ means
            const = log_weights + log_det - 0.5 * dim * LOG_2PI
            if ctype == "full":
                shifted = jnp.einsum("kd,kde->ke", means - reference, prec_chol)
                stacked = jnp.transpose(prec_chol, (1, 0, 2)).reshape(dim, -1)
            else:
                shifted = (means - reference) @ prec_chol
                stacked = prec_chol
            return {"const": const, "reference": reference, "shifted": shifted, "stacked": stacked}
        if ctype == "diag":
            precisions = 1.0 / cov
            log_det = -0.5 * jnp.sum(jnp.log(cov), axis=1)
        else:
            precisions = 1.0 / cov
            log_det = -0.5 * dim * jnp.log(cov)
        reference = weights @ means
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
        const = log_weights + log_det - 0.5 * dim * LOG_2PI - 0.5 * offset_term
        return {"const": const, "reference": reference, "coefficients": coefficients}

    def _features(self, x: Array, reference: Array) -> Array:
        """diag/spherical: ``[(x − m)², x − m]`` (or ``[|x − m|², x − m]``)."""
        centred = x - reference
        squares = jnp.square(centred)
        if self.covariance_type == "spherical":
            squares = jnp.sum(squares, axis=1, keepdims=True)
        return jnp.concatenate([squares, centred], axis=1)

    def _joint_log_probs(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log π_k + log N(x_i | μ_k, Σ_k)`` for a block of rows, ``(rows, K)``."""
        k = self.num_components
        if self.covariance_type in ("full", "tied"):
            whitened = (x - prepared["reference"]) @ prepared["stacked"]
            if self.covariance_type == "full":
                whitened = whitened.reshape(x.shape[0], k, -1)
            else:
                whitened = whitened[:, None, :]
            residual = whitened - prepared["shifted"]
            return prepared["const"] - 0.5 * jnp.sum(jnp.square(residual), axis=-1)
        features = self._features(x, prepared["reference"])
        return prepared["const"] - 0.5 * (features @ prepared["coefficients"])

    def _centres(self, params: GaussianMixtureParams) -> Array:
        """Points the statistics' moments are taken about, ``(K, D)``."""
        if self.covariance_type in ("full", "tied"):
            return params.means
        reference = params.weights @ params.means
        return jnp.broadcast_to(reference, params.means.shape)

    def _block_moments(self, x: Array, resp: Array, centres: Array) -> GaussianMixtureStats:
        """Statistics of a block from its (weighted) responsibilities ``(rows, K)``."""
        counts = jnp.sum(resp, axis=0)
        rows = jnp.asarray(x.shape[0], x.dtype)
        if self.covariance_type in ("full", "tied") and _one_product_per_component(
            self.num_components
        ):
            firsts, seconds = [], []
            for k in range(self.num_components):
                residual = x - centres[k]  # (rows, D)
                weighted = resp[:, k, None] * residual
                firsts.append(jnp.sum(weighted, axis=0))
                seconds.append(weighted.T @ residual)
            sum_x = jnp.stack(firsts)
            sum_xx = jnp.stack(seconds) if self.covariance_type == "full" else sum(seconds)
            return GaussianMixtureStats(counts, sum_x, sum_xx, rows)
        if self.covariance_type in ("full", "tied"):
            residual = x[None, :, :] - centres[:, None, :]  # (K, rows, D)
            weighted = resp.T[:, :, None] * residual
            sum_x = jnp.sum(weighted, axis=1)
            if self.covariance_type == "full":
                sum_xx = jnp.einsum("krd,kre->kde", weighted, residual)
            else:
                sum_xx = jnp.einsum("krd,kre->de", weighted, residual)
            return GaussianMixtureStats(counts, sum_x, sum_xx, rows)
        features = self._features(x, centres[0])
        moments = resp.T @ features
        squares, sum_x = moments[:, : -x.shape[1]], moments[:, -x.shape[1] :]
        if self.covariance_type == "spherical":
            squares = squares[:, 0]
        return GaussianMixtureStats(counts, sum_x, squares, rows)

    # ------------------------------------------------------------- the contract

    def e_step(
        self, params: GaussianMixtureParams, x: Array, weights: Array | None = None
    ) -> tuple[GaussianMixtureStats, Array]:
        """Expected sufficient statistics and the summed log-likelihood.

        Args:
          params: current parameters.
          x: data, ``(n, D)``.
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          ``(stats, log_likelihood)``: :class:`GaussianMixtureStats` about the
          centres of ``params``, and ``Σ_i w_i log p(x_i | params)`` (a scalar).
        """
        prepared = self._prepare(params)
        centres = self._centres(params)

        def block(xb: Array, wb: Array | None) -> tuple[GaussianMixtureStats, Array]:
            log_norm, resp = log_normalize(self._joint_log_probs(prepared, xb), axis=1)
            if wb is not None:
                resp = resp * wb[:, None]
                log_norm = log_norm * wb
            return self._block_moments(xb, resp, centres), jnp.sum(log_norm)

        return sum_over_blocks(block, (x, weights), self._block_rows(x))

    def m_step(
        self, stats: GaussianMixtureStats, params: GaussianMixtureParams
    ) -> GaussianMixtureParams:
        """Closed-form ``argmax Q(θ) + log p(θ)``.

        Args:
          stats: statistics from :meth:`e_step` under ``params`` (summed over
            any number of blocks of data).
          params: the parameters the statistics were computed under.

        Returns:
          The updated :class:`GaussianMixtureParams`; always finite (an empty
          component keeps its mean and gets ``reg_covar`` covariance; a
          covariance that is singular in the working precision gets jitter).
        """
        return self._maximize(stats, self._centres(params), params.prior)

    def _maximize(
        self,
        stats: GaussianMixtureStats,
        centres: Array,
        prior: GaussianMixturePriorParams | None,
    ) -> GaussianMixtureParams:
        dtype = stats.sum_x.dtype
        k, dim = stats.sum_x.shape
        ctype = self.covariance_type
        counts = stats.counts + 10.0 * jnp.finfo(dtype).eps
        if prior is None:
            weights = counts / jnp.sum(counts)
            shift = stats.sum_x / counts[:, None]
            means = centres + shift
            pull = None
        else:
            excess = prior.weight_concentration - 1.0
            weights = (counts + excess) / jnp.sum(counts + excess)
            kappa = prior.mean_precision
            shift = (stats.sum_x + kappa * (prior.mean - centres)) / (counts + kappa)[:, None]
            means = centres + shift
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
        return GaussianMixtureParams(weights, means, covariances, prior)

    def log_prob(self, params: GaussianMixtureParams, x: Array) -> Array:
        """Per-observation ``log p(x_i)``, shape ``(n,)``."""
        prepared = self._prepare(params)
        return map_over_blocks(
            lambda xb: log_normalize(self._joint_log_probs(prepared, xb), axis=1)[0],
            (x,),
            self._block_rows(x),
        )

    def posterior(self, params: GaussianMixtureParams, x: Array) -> Array:
        """Responsibilities ``p(z_i = k | x_i)``, shape ``(n, K)``."""
        prepared = self._prepare(params)
        return map_over_blocks(
            lambda xb: log_normalize(self._joint_log_probs(prepared, xb), axis=1)[1],
            (x,),
            self._block_rows(x),
        )

    def log_prior(self, params: GaussianMixtureParams) -> Array:
        """``log p(θ)`` under the model's prior (``0.0`` without a prior)."""
        dtype = params.means.dtype
        prior = params.prior
        if self.prior is None or prior is None:
            return jnp.zeros((), dtype)
        k, dim = params.means.shape
        alpha = prior.weight_concentration
        log_dirichlet = (
            gammaln(jnp.sum(alpha))
            - jnp.sum(gammaln(alpha))
            + jnp.sum((alpha - 1.0) * jnp.log(params.weights))
        )
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
            return log_dirichlet + jnp.sum(log_wishart) + jnp.sum(log_mean)
        # Inverse-gamma(ν₀/2, ψ₀/2) variances with normal means.
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
        return log_dirichlet + jnp.sum(log_inverse_gamma) + jnp.sum(log_mean)

    def init(self, key: Array, x: Array, weights: Array | None = None) -> GaussianMixtureParams:
        """Parameters for one restart, from ``init_method`` (see the class).

        Args:
          key: PRNG key.
          x: data, ``(n, D)``.
          weights: optional ``(n,)`` observation weights (used by the seeding,
            the Lloyd iterations, the initial M-step and a data-driven prior).

        Returns:
          :class:`GaussianMixtureParams` in ``x``'s dtype.
        """
        n = x.shape[0]
        k = self.num_components
        dtype = x.dtype
        w = jnp.ones(n, dtype) if weights is None else weights
        method = self.init_method
        if method in ("kmeans", "k-means++"):
            centres, seeds = _kmeans.kmeans_plusplus(key, x, k, w)
            if method == "kmeans":
                _, labels = _kmeans.lloyd(x, centres, w, max_iter=self.kmeans_max_iter)
                resp = jax.nn.one_hot(labels, k, dtype=dtype)
            else:
                resp = jnp.zeros((n, k), dtype).at[seeds, jnp.arange(k)].set(1.0)
        elif method == "random":
            resp = jax.random.uniform(key, (n, k), dtype)
            resp = resp / jnp.sum(resp, axis=1, keepdims=True)
        else:
            p = None if weights is None else w / jnp.sum(w)  # no constant p (see _kmeans)
            seeds = jax.random.choice(key, n, (k,), replace=False, p=p)
            resp = jnp.zeros((n, k), dtype).at[seeds, jnp.arange(k)].set(1.0)
        prior = None if self.prior is None else self.prior.resolve(x, k, self.covariance_type, w)
        return self.from_responsibilities(x, resp, weights, prior)

    def from_responsibilities(
        self,
        x: Array,
        resp: Array,
        weights: Array | None = None,
        prior: GaussianMixturePriorParams | None = None,
    ) -> GaussianMixtureParams:
        """The M-step from given responsibilities ``(n, K)``.

        This is how every ``init_method`` ends, and how to start from a
        clustering of one's own.
        """
        w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
        weighted = resp * w[:, None]
        counts = jnp.sum(weighted, axis=0)
        mean = (w @ x) / jnp.sum(w)
        if self.covariance_type in ("full", "tied"):
            # Each component's mean; an empty component starts at the data mean.
            own = (weighted.T @ x) / jnp.where(counts > 0, counts, 1.0)[:, None]
            centres = jnp.where((counts > 0)[:, None], own, mean)
        else:
            centres = jnp.broadcast_to(mean, (self.num_components, x.shape[1]))
        stats = sum_over_blocks(
            lambda xb, rb: self._block_moments(xb, rb, centres),
            (x, weighted),
            self._block_rows(x),
        )
        return self._maximize(stats, centres, prior)

    def sample(self, key: Array, params: GaussianMixtureParams, n: int) -> tuple[Array, Array]:
        """``n`` draws: ``(x (n, D), labels (n,))``."""
        means, cov = params.means, params.covariances
        k, dim = means.shape
        dtype = means.dtype
        label_key, noise_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(params.weights), shape=(n,))
        noise = jax.random.normal(noise_key, (n, dim), dtype)
        if self.covariance_type in ("diag", "spherical"):
            scales = jnp.sqrt(cov if self.covariance_type == "diag" else cov[:, None])
            scales = jnp.broadcast_to(scales, (k, dim))
            return means[labels] + noise * scales[labels], labels
        factors = jnp.linalg.cholesky(cov)
        if self.covariance_type == "tied":
            return means[labels] + noise @ factors.T, labels

        def add_component(draws, component):
            mean, factor, index = component
            return jnp.where((labels == index)[:, None], mean + noise @ factor.T, draws), None

        draws, _ = lax.scan(
            add_component, jnp.zeros((n, dim), dtype), (means, factors, jnp.arange(k))
        )
        return draws, labels

    def covariance_matrices(self, params: GaussianMixtureParams) -> Array:
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

    def num_parameters(self, params: GaussianMixtureParams) -> int:
        """Free parameters: ``K − 1`` weights, ``K·D`` means, and the covariances."""
        k, dim = params.means.shape[-2:]
        per_matrix = dim * (dim + 1) // 2
        covariance = {
            "full": k * per_matrix,
            "tied": per_matrix,
            "diag": k * dim,
            "spherical": k,
        }[self.covariance_type]
        return int(k - 1 + k * dim + covariance)

    def diagnose(
        self, stats: GaussianMixtureStats, params: GaussianMixtureParams
    ) -> dict[str, Array]:
        """Value-dependent problems, as boolean arrays.

        Returns:
          ``{"collapsed": (K,)}``: components whose total responsibility is
          below a thousandth of an average observation's weight (they have
          lost all their points and sit at ``reg_covar`` covariance, or at the
          prior's mode).
        """
        average_weight = jnp.sum(stats.counts) / jnp.maximum(stats.num_observations, 1.0)
        return {"collapsed": stats.counts < 1e-3 * average_weight}
