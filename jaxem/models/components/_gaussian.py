"""Multivariate Gaussian components (full, tied, diagonal or spherical
covariances), with an optional conjugate normal-inverse-Wishart prior."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import gem
from jaxem._numerics import frame_scale
from jaxem._stats import reduce_over_rows
from jaxem._validation import check_finite_values, check_number, holds_nan, is_concrete
from jaxem.models.components._checks import check_matrix_data, fill_missing, guarded_counts
from jaxem.models.components._component import Component
from jaxem.models.components._covariance import COVARIANCES, Covariance, conditional_gaussian

Array = jax.Array

COVARIANCE_TYPES = tuple(COVARIANCES)


def as_static_tuple(value: Any) -> Any:
    """Floats and nested sequences (arrays) as hashable nested tuples."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else tuple(map(as_static_tuple, array))


# ------------------------------------------------------------------- prior


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
        owner = type(self).__name__
        object.__setattr__(
            self,
            "mean_precision",
            check_number(self.mean_precision, f"{owner}.mean_precision", 0.0, inclusive=False),
        )
        object.__setattr__(
            self,
            "degrees_of_freedom",
            check_number(self.degrees_of_freedom, f"{owner}.degrees_of_freedom", allow_none=True),
        )
        object.__setattr__(self, "mean", as_static_tuple(self.mean))
        object.__setattr__(self, "scale", as_static_tuple(self.scale))

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

        Raises:
          ValueError: ``ν₀ <= D − 1``, or a ``scale`` of the wrong shape.
        """
        covariance = COVARIANCES[covariance_type]
        dtype = x.dtype
        dim = x.shape[1]
        owner = type(self).__name__
        w = jnp.ones(x.shape[0], dtype) if weights is None else weights
        data_mean = (w @ x) / jnp.sum(w)
        if self.mean is None:
            mean = data_mean
        else:
            mean = jnp.broadcast_to(jnp.asarray(self.mean, dtype), (dim,))
        dof = dim + 2.0 if self.degrees_of_freedom is None else self.degrees_of_freedom
        if not dof > dim - 1:
            raise ValueError(f"{owner}.degrees_of_freedom must be > D - 1 = {dim - 1}; got {dof}")
        if self.scale is None:
            shrink = num_components ** (2.0 / dim)
            centred = x - data_mean
            frame = frame_scale(jnp.max(jnp.abs(centred)))  # (no overflow of the moments)
            scale = jnp.square(frame) * covariance.default_prior_scale(centred / frame, w, shrink)
        else:
            scale = covariance.prior_scale(jnp.asarray(self.scale, dtype), dim, owner)
        return GaussianPriorParams(
            mean=mean.astype(dtype),
            mean_precision=jnp.asarray(self.mean_precision, dtype),
            degrees_of_freedom=jnp.asarray(dof, dtype),
            scale=jnp.asarray(scale, dtype),
        )


# --------------------------------------------------------------- component


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
class Gaussian(Component):
    """Multivariate Gaussian components, for :class:`jaxem.Mixture` (and any
    latent structure built from components).

    Log-densities and statistics are matrix products over Cholesky factors
    (or, for diagonal and spherical covariances, over squared features): no
    ``(n, K, D)`` or ``(n, K, D, D)`` tensor is formed, and second moments are
    taken about the current means so float32 stays accurate. What depends on
    the covariance structure lives in its own small piece
    (:mod:`jaxem.models.components` ``FullCovariance``, ...).

    The parameters are read by name (``params.means``, ``params.covariances``,
    ``params.prior``), so any parameter tuple with those fields serves, such
    as :class:`jaxem.GaussianMixture`'s flat layout.

    Args:
      covariance_type: ``"full"`` (each component its own matrix), ``"tied"``
        (one shared matrix), ``"diag"`` (per-component diagonal) or
        ``"spherical"`` (per-component single variance).
      reg_covar: non-negative value added to the covariances' diagonal after
        each M-step, as in scikit-learn.
      prior: a :class:`GaussianPrior` for MAP estimation, or ``None``.
      missing: NaN in the data is a missing value (at random). ``None`` (the
        default): decided from the data (``jaxem.fit`` reads it off the
        concrete data once; under a user's ``jit`` each block of rows
        branches on it); ``True``: always the missing-value code; ``False``:
        NaN is refused as bad input (the complete-data code alone).

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (200, 3))
      >>> model = jaxem.Mixture(jaxem.Gaussian("diag"), num_components=2)
      >>> model.init(jax.random.key(1), x).components.covariances.shape
      (2, 3)
    """

    covariance_type: str = "full"
    reg_covar: float = 1e-6
    prior: GaussianPrior | None = None
    missing: bool | None = None

    def __post_init__(self):
        if self.covariance_type not in COVARIANCES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {self.covariance_type!r}"
            )
        object.__setattr__(self, "reg_covar", check_number(self.reg_covar, "reg_covar", 0.0))
        if self.prior is not None and not isinstance(self.prior, GaussianPrior):
            raise TypeError(f"prior must be a GaussianPrior or None; got {self.prior!r}")
        if self.missing not in (None, True, False):
            raise TypeError(f"missing must be None, True or False; got {self.missing!r}")
        object.__setattr__(self, "missing", None if self.missing is None else bool(self.missing))

    @property
    def covariance(self) -> Covariance:
        """The covariance structure (a piece shared with other Gaussian families)."""
        return COVARIANCES[self.covariance_type]

    # ------------------------------------------------------------------ checks

    @property
    def missing_values(self) -> bool:
        """Whether NaN in the data is a missing value (unless ``missing=False``)."""
        return self.missing is not False

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(n, D)`` and
        (when concrete) finite or NaN (missing; unless ``missing=False``),
        with at least one observed value in every row; return whether it is
        valid."""
        return check_matrix_data(x, "Gaussian", missing=self.missing_values)

    def for_data(self, x: Any) -> Gaussian:
        """The family with ``missing`` read off concrete data ``x`` (whether
        it holds a NaN), when it is ``None``."""
        if self.missing is not None or not is_concrete(x):
            return self
        return dataclasses.replace(self, missing=holds_nan(x))

    def features(self, x: Array) -> Array:
        """The data for k-means seeding, missing values filled with their
        column's mean."""
        return fill_missing(x)

    def check_params(self, params: Any, x: Array, num_components: int) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only for concrete arrays)."""
        if not isinstance(params, GaussianParams):
            raise TypeError(f"params must be a GaussianParams; got {type(params).__name__}")
        self.check_fields(params, x, num_components)

    def check_fields(self, params: Any, x: Array, num_components: int, owner: str = "params"):
        """The checks of :meth:`check_params` on any parameters with fields
        ``means``, ``covariances`` and ``prior``: shapes always; finiteness,
        symmetry and positive definiteness for concrete arrays."""
        k, dim = num_components, x.shape[-1]
        expected = {
            "means": (k, dim),
            "covariances": self.covariance.shape(k, dim),
        }
        for name, shape in expected.items():
            got = tuple(jnp.shape(getattr(params, name)))
            if got != shape:
                raise ValueError(
                    f"{owner}.{name} must have shape {shape} for num_components={k}, "
                    f"D={dim}, covariance_type={self.covariance_type!r}; got {got}"
                )
        if self.prior is not None and params.prior is None:
            raise ValueError(
                f"the model has a prior but {owner}.prior is None: build the hyperparameters "
                f"with {owner}._replace(prior=model.resolve_prior(x)) (GaussianMixture), or "
                "with the prior's resolve(x, K, covariance_type)"
            )
        if not all(is_concrete(getattr(params, name)) for name in expected):
            return
        for name in expected:
            check_finite_values(getattr(params, name), f"{owner}.{name}")
        self.covariance.check(params.covariances, owner)

    def block_rows(self, x: Array, num_components: int) -> int:
        """Rows per E-step block (by covariance structure and dtype)."""
        return self.covariance.block_rows(x, num_components)

    # ---------------------------------------------------------- log densities

    def prepare(self, params: Any) -> dict[str, Array]:
        """Per-parameter quantities the log-densities need, once per call."""
        return self.covariance.prepare(params.means, params.covariances)

    def log_likelihoods(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log N(x_i | μ_k, Σ_k)`` for a block of rows, ``(rows, K)``; for
        a row with missing (NaN) values, the density of its observed
        coordinates."""
        return self.covariance.log_densities(prepared, x, self.missing)

    # ------------------------------------------------------------ statistics

    def _frame(self, params: Any) -> tuple[Array, Array]:
        """The centres and the scale of the frame statistics are taken in."""
        centres = self.covariance.centres(params.means)
        return centres, self.covariance.frame(params.means, params.covariances)

    def statistics(self, x: Array, resp: Array, params: Any) -> GaussianStats:
        """Moments of a block about the centres of ``params``, in the frame
        of their scale, from weighted responsibilities ``(rows, K)``.

        Missing (NaN) values enter by their conditional distribution given
        the row's observed values and its component: the conditional mean in
        the first and second moments, and the conditional covariance in the
        second (Ghahramani & Jordan 1994), so the M-step is exact EM."""
        centres, scale = self._frame(params)
        moments = self.covariance.expected_moments(
            x, resp, centres, scale, params.means, params.covariances, self.missing
        )
        return GaussianStats(*moments)

    def shift_statistics(
        self, stats: GaussianStats, counts: Array, from_params: Any, to_params: Any
    ) -> GaussianStats:
        """Moments about the centres of ``from_params`` moved to those of
        ``to_params``, and to their frame (exact): with ``ρ = s_from / s_to``
        and ``d = (c_from − c_to) / s_to``, ``S₁ → ρ S₁ + N d`` and
        ``S₂ → ρ² S₂ + ρ (S₁ dᵀ + d S₁ᵀ) + N d dᵀ``.

        Args:
          stats: statistics computed under ``from_params``.
          counts: the components' total responsibilities ``N_k``, ``(K,)``.
          from_params: the parameters the statistics were computed under.
          to_params: the parameters to express them about.
        """
        cov = self.covariance
        centres_from, scale_from = self._frame(from_params)
        centres_to, scale_to = self._frame(to_params)
        ratio = scale_from / scale_to
        d = (centres_from - centres_to) / scale_to  # (K, D)
        sum_x = ratio * stats.sum_x
        correction = (
            cov.outer(sum_x, d) + cov.outer(d, sum_x) + cov.scale_by(counts, cov.outer(d, d))
        )
        sum_xx = jnp.square(ratio) * stats.sum_xx + cov.pool(correction)
        return GaussianStats(sum_x + counts[:, None] * d, sum_xx)

    def maximize(
        self, stats: GaussianStats, counts: Array, params: Any, m_step_state: Any = ()
    ) -> tuple[GaussianParams, Any]:
        """Closed-form means and covariances (MLE, or the posterior mode).

        Always finite: an empty component keeps its mean (or moves to the
        prior mean) and gets ``reg_covar`` covariance (or the prior's mode); a
        covariance that is singular in the working precision gets jitter.
        """
        centres, scale = self._frame(params)
        return self._maximize(stats, counts, centres, scale, params.prior), m_step_state

    def _maximize(
        self,
        stats: GaussianStats,
        counts: Array,
        centres: Array,
        scale: Array,
        prior: GaussianPriorParams | None,
    ) -> GaussianParams:
        means, covariances = self._unregularized(stats, counts, centres, scale, prior)
        return GaussianParams(means, self.covariance.regularize(covariances, self.reg_covar), prior)

    def _unregularized(
        self,
        stats: GaussianStats,
        counts: Array,
        centres: Array,
        scale: Array,
        prior: GaussianPriorParams | None,
    ) -> tuple[Array, Array]:
        """The M-step's means and covariances before ``reg_covar``, computed
        in the statistics' frame (units of ``scale``) and scaled back."""
        cov = self.covariance
        dim = stats.sum_x.shape[1]
        if prior is None:
            shift = stats.sum_x / counts[:, None]
        else:
            kappa = prior.mean_precision
            pulled = kappa * (prior.mean - centres) / scale
            shift = (stats.sum_x + pulled) / (counts + kappa)[:, None]
        # Scatter about the new means: Σ r (x − μ)(x − μ)ᵀ [+ κ₀ (μ − m₀)(μ − m₀)ᵀ].
        correction = (
            cov.scale_by(counts, cov.outer(shift, shift))
            - cov.outer(stats.sum_x, shift)
            - cov.outer(shift, stats.sum_x)
        )
        if prior is not None:
            pull = shift + (centres - prior.mean) / scale  # (μ − m₀) / s
            correction = correction + kappa * cov.outer(pull, pull)
        scatter = cov.finish_scatter(stats.sum_xx + cov.pool(correction))
        # Divide by the effective count (MLE) or by the posterior mode's
        # denominator (MAP), and leave the frame.
        means = centres + scale * shift
        squared = jnp.square(scale)
        if prior is None:
            return means, squared * (scatter / cov.denominator(counts, dim, None))
        denominator = cov.denominator(counts, dim, prior.degrees_of_freedom)
        return means, squared * ((prior.scale / squared + scatter) / denominator)

    def diagnose(self, stats: GaussianStats, counts: Array, params: Any) -> dict[str, Array]:
        """``{"singular": (K,)}``: components whose covariance from these
        statistics plus ``reg_covar`` is singular (has no Cholesky factor, or a
        non-positive variance) before the M-step's repair: scikit-learn's
        "ill-defined empirical covariance", e.g. a component on one point with
        ``reg_covar = 0``."""
        centres, scale = self._frame(params)
        _, covariances = self._unregularized(stats, counts, centres, scale, params.prior)
        k = params.means.shape[0]
        return {"singular": self.covariance.singular(covariances, self.reg_covar, k)}

    def initialize(self, x: Array, resp: Array, weights: Array | None = None) -> GaussianParams:
        """Means and covariances from responsibilities ``(n, K)`` alone (the
        prior, if any, resolved from ``x``; missing values filled with their
        column's mean for this start)."""
        x = fill_missing(x, weights)
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
        x = fill_missing(x, weights)
        w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
        weighted = resp * w[:, None]
        counts = jnp.sum(weighted, axis=0)
        mean = (w @ x) / jnp.sum(w)
        # Moments about the centres of the components' own means (an empty
        # component's mean starts at the data mean), in the frame of the
        # data's largest deviation from its mean.
        own = (weighted.T @ x) / jnp.where(counts > 0, counts, 1.0)[:, None]
        centres = self.covariance.centres(jnp.where((counts > 0)[:, None], own, mean))
        scale = frame_scale(jnp.max(jnp.abs(x - mean)))
        stats = reduce_over_rows(
            lambda xb, rb: GaussianStats(*self.covariance.moments(xb, rb, centres, scale)),
            (x, weighted),
            self.block_rows(x, resp.shape[1]),
        )
        return self._maximize(stats, guarded_counts(counts, x.shape[0]), centres, scale, prior)

    # ------------------------------------------------------------ the rest

    def log_prior(self, params: Any) -> Array:
        """Normal-inverse-Wishart ``log p(μ, Σ)`` (``0.0`` without a prior)."""
        if self.prior is None or params.prior is None:
            return jnp.zeros((), params.means.dtype)
        return self.covariance.log_prior(params.means, params.covariances, params.prior)

    def impute(self, params: Any, x: Array, resp: Array, key: Array | None = None) -> Array:
        """``x`` with its missing (NaN) entries filled in, given the rows'
        posterior over the components ``resp (n, K)``.

        Without ``key``: the conditional means ``E[x_m | x_o] = Σ_k r_ik
        E[x_m | x_o, z = k]``. With ``key``: one draw per row from
        ``p(x_m | x_o)``, the component drawn from ``resp`` and the missing
        values from its conditional Gaussian. Observed entries are returned
        unchanged.
        """
        k, dim = params.means.shape
        matrices = self.covariance.matrices(params.covariances, k, dim)
        row = lambda xi: conditional_gaussian(xi, params.means, matrices, key is not None)[1:]
        conditional, spread = jax.vmap(row)(x)  # (n, K, D), (n, K, D, D) | None
        if key is None:
            return jnp.where(jnp.isnan(x), jnp.einsum("nk,nkd->nd", resp, conditional), x)
        label_key, draw_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(resp), axis=1)
        mean = jnp.take_along_axis(conditional, labels[:, None, None], axis=1)[:, 0]
        spread = jnp.take_along_axis(spread, labels[:, None, None, None], axis=1)[:, 0]
        missing = jnp.isnan(x)
        # (the observed block of the conditional covariance is zero: make it
        # the identity for the factorisation, and mask the noise there)
        factors = jnp.linalg.cholesky(spread + jax.vmap(jnp.diag)((~missing).astype(x.dtype)))
        noise = jax.random.normal(draw_key, x.shape, x.dtype)
        draws = mean + jnp.einsum("nde,ne->nd", factors, noise)
        return jnp.where(missing, draws, x)

    def sample(self, key: Array, params: Any, labels: Array) -> Array:
        """One draw per label, ``(n, D)``."""
        return self.covariance.sample(key, params.means, params.covariances, labels)

    def covariance_matrices(self, params: Any) -> Array:
        """Every component's covariance as a ``(K, D, D)`` matrix, whatever the
        covariance type (for plotting and comparison)."""
        k, dim = params.means.shape[-2:]
        return self.covariance.matrices(params.covariances, k, dim)

    def constraints(self, params: Any) -> GaussianParams:
        """Real means; positive-definite covariances (full, tied) or positive
        variances (diag, spherical); the resolved prior, when there is one,
        fixed."""
        prior = None if params.prior is None else gem.fixed
        return GaussianParams(gem.real, self.covariance.constraint, prior)

    def num_parameters(self, params: Any) -> int:
        """``K·D`` means and the covariances' free entries."""
        k, dim = params.means.shape[-2:]
        return int(k * dim + self.covariance.num_parameters(k, dim))
