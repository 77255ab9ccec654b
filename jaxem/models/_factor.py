"""Factor analysis and probabilistic PCA: one Gaussian whose covariance is a
low-rank part plus noise, fitted by EM.

``x = μ + W z + ε`` with ``q`` latent factors ``z ~ N(0, I_q)`` and noise
``ε ~ N(0, Ψ)``: diagonal ``Ψ`` is factor analysis (Rubin & Thayer 1982),
isotropic ``Ψ = σ² I`` probabilistic PCA (Tipping & Bishop 1999). The models
are the factor-analysis component family (:mod:`jaxem.models.components`
``FactorAnalyzer``) with one component and no leading ``K`` axis in their
parameters; passed to a latent structure (``jaxem.Mixture(jaxem.FactorAnalysis(q),
K)``, ``jaxem.HMM(jaxem.PPCA(q), K)``), they stand for that family.

References:
  Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor
  analysis. Psychometrika 47, 69-76.

  Tipping, M. E. and Bishop, C. M. (1999). Probabilistic principal component
  analysis. Journal of the Royal Statistical Society B 61, 611-622.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jaxem._model import Model
from jaxem._numerics import num_rows
from jaxem._stats import map_over_rows, reduce_over_rows
from jaxem._validation import check_int, check_number
from jaxem.models.components._checks import (
    check_param_fields,
    check_param_values,
    check_params_type,
    fill_missing,
)
from jaxem.models.components._factor import _GAUSSIAN, FactorAnalyzer, FactorParams
from jaxem.models.components._gaussian import GaussianStats

Array = jax.Array


class FactorAnalysisParams(NamedTuple):
    """Parameters of :class:`jaxem.FactorAnalysis` and :class:`jaxem.PPCA`.

    Attributes:
      mean: ``μ``, ``(D,)``.
      loadings: ``W``, ``(D, q)``; defined up to a rotation ``W R`` (only
        ``W Wᵀ`` is identified).
      noise: ``Ψ``: the noise variance of each feature, ``(D,)`` (factor
        analysis), or one variance ``σ²``, a scalar ``()`` (probabilistic PCA).
    """

    mean: Array
    loadings: Array
    noise: Array


class FactorAnalysisStats(NamedTuple):
    """Additive statistics of a factor model: the expected data moments, about
    the mean of the parameters they were computed under (see
    :class:`jaxem.models.components.GaussianStats`, of which these are the
    one-component case).

    Attributes:
      count: ``Σ_i w_i``, a scalar.
      sum_x: ``Σ_i w_i E[x_i − μ] / s``, ``(D,)``, in the frame of scale ``s``
        of the parameters' covariance.
      sum_xx: ``Σ_i w_i E[(x_i − μ)(x_i − μ)ᵀ] / s²``, ``(D, D)`` (with the
        conditional covariance of missing values).
    """

    count: Array
    sum_x: Array
    sum_xx: Array


class FactorModel(Model):
    """Factor analysis or probabilistic PCA over ``self.num_factors``,
    ``self.noise_floor``, ``self.num_inner_steps``, ``self.block_size`` and
    ``self.missing`` (see :class:`jaxem.FactorAnalysis`); the subclasses choose
    the noise."""

    isotropic: ClassVar[bool]
    num_factors: int
    noise_floor: float
    num_inner_steps: int
    block_size: int | None
    missing: bool | None

    def __post_init__(self):
        object.__setattr__(self, "num_factors", check_int(self.num_factors, "num_factors", 1))
        object.__setattr__(self, "noise_floor", check_number(self.noise_floor, "noise_floor", 0.0))
        object.__setattr__(
            self, "num_inner_steps", check_int(self.num_inner_steps, "num_inner_steps", 1)
        )
        object.__setattr__(self, "missing", self.component.missing)  # (checked there)
        size = self.block_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
        ):
            raise ValueError(f"block_size must be a positive integer or None; got {size!r}")

    @property
    def component(self) -> FactorAnalyzer:
        """The component family this model is the one-component case of."""
        return FactorAnalyzer(
            self.num_factors, self.isotropic, self.noise_floor, self.num_inner_steps, self.missing
        )

    def as_component(self) -> FactorAnalyzer:
        """The component family, for a latent structure given this model
        (``jaxem.Mixture(jaxem.FactorAnalysis(q), K)``: a mixture of factor
        analysers)."""
        return self.component

    # ---------------------------------------------------------------- layout

    def _expand(self, params: Any) -> FactorParams:
        """The component family's parameters, with ``K = 1``."""
        return FactorParams(params.mean[None], params.loadings[None], params.noise[None])

    def _strip(self, params: FactorParams) -> FactorAnalysisParams:
        return FactorAnalysisParams(params.means[0], params.loadings[0], params.noise[0])

    def _block_rows(self, x: Array) -> int:
        if self.block_size is not None:
            return self.block_size
        return self.component.block_rows(x, 1)

    # ------------------------------------------------------------------ checks

    def for_data(self, x: Any) -> FactorModel:
        """The model with ``missing`` read off concrete data ``x`` (whether it
        holds a NaN), when it is ``None``: the compiled program then has the
        complete-data code, or the missing-value code, alone."""
        missing = self.component.for_data(x).missing
        return self if missing == self.missing else dataclasses.replace(self, missing=missing)

    def check_data(self, x: Any) -> Array:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(n, D)`` with
        ``n >= 2`` and ``D >= num_factors``, and (when concrete) finite or NaN
        (missing; unless ``missing=False``), with something observed in every
        row; return whether the values are valid."""
        valid = self.component.check_data(x, 1)
        n = num_rows(x)
        if n < 2:
            raise ValueError(
                f"x has {n} observation(s); {type(self).__name__} needs at least 2 (it "
                "estimates a covariance)"
            )
        return valid

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure or shape, or (when
        concrete) non-finite values or noise variances that are not positive."""
        check_params_type(params, FactorAnalysisParams)
        dim, q = x.shape[-1], self.num_factors
        expected = {"mean": (dim,), "loadings": (dim, q), "noise": () if self.isotropic else (dim,)}
        if check_param_fields(params, expected, f"D={dim}, num_factors={q}"):
            check_param_values(params.noise, "noise", lambda a: a > 0, "positive")

    # ------------------------------------------------------------- the contract

    def init(self, key: Array, x: Array, weights: Array | None = None) -> FactorAnalysisParams:
        """Parameters for one restart: the closed-form probabilistic PCA of
        the (weighted) data covariance (see ``FactorAnalyzer.initialize``;
        missing values filled with their column's mean for this start), its
        loadings perturbed by a tenth of the noise standard deviations times
        standard normal draws from ``key``, so that restarts differ."""
        x = jnp.asarray(x)
        start = self.component.initialize(x, jnp.ones((x.shape[0], 1), x.dtype), weights)
        params = self._strip(start)
        spread = jnp.sqrt(self.component.noise_variances(start)[0])
        draws = jax.random.normal(key, params.loadings.shape, x.dtype)
        return params._replace(loadings=params.loadings + 0.1 * spread[:, None] * draws)

    def init_with_noise(
        self, x: Array, noise: Array, weights: Array | None = None
    ) -> FactorAnalysisParams:
        """Parameters that start from given noise variances (scikit-learn's
        ``noise_variance_init``): the (weighted) data mean, ``noise``, and the
        loadings that maximise the likelihood for that noise (see
        ``FactorAnalyzer.loadings_given_noise``).

        Args:
          x: data ``(n, D)`` (missing values filled with their column's mean
            for this start).
          noise: ``(D,)`` (factor analysis) or a scalar (probabilistic PCA),
            positive.
          weights: optional ``(n,)`` observation weights.
        """
        x = fill_missing(jnp.asarray(x), weights)
        moments = _GAUSSIAN.initialize(x, jnp.ones((x.shape[0], 1), x.dtype), weights)
        noise = jnp.asarray(noise, x.dtype)
        per_feature = jnp.broadcast_to(noise, (x.shape[1],))
        loadings = self.component.loadings_given_noise(moments.covariances, per_feature[None])
        return FactorAnalysisParams(moments.means[0], loadings[0], noise)

    def e_step(
        self, params: FactorAnalysisParams, x: Array, weights: Array | None = None
    ) -> tuple[FactorAnalysisStats, Array]:
        """Expected sufficient statistics and the summed log-likelihood.

        Args:
          params: current parameters.
          x: data ``(n, D)``, NaN where missing.
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          ``(stats, log_likelihood)``: :class:`FactorAnalysisStats` under
          ``params``, and ``Σ_i w_i log p(x_i | params)`` (a scalar; the
          density of the observed coordinates where values are missing).
        """
        component = self.component
        expanded = self._expand(params)
        prepared = component.prepare(expanded)

        def block(xb: Array, wb: Array | None) -> tuple[FactorAnalysisStats, Array]:
            log_density = component.log_likelihoods(prepared, xb)[:, 0]
            if wb is None:
                resp = jnp.ones((xb.shape[0], 1), xb.dtype)
            else:
                resp = wb[:, None]
                # A zero-weight row adds nothing, even where its density is 0.
                log_density = jnp.where(wb > 0, log_density * wb, 0.0)
            moments = component.statistics(xb, resp, expanded)
            stats = FactorAnalysisStats(jnp.sum(resp), moments.sum_x[0], moments.sum_xx[0])
            return stats, jnp.sum(log_density)

        return reduce_over_rows(block, (x, weights), self._block_rows(x))

    def m_step(
        self, stats: FactorAnalysisStats, params: FactorAnalysisParams, m_step_state: Any = ()
    ) -> tuple[FactorAnalysisParams, Any]:
        """The closed-form mean, then ``num_inner_steps`` factor-analysis EM
        updates of the loadings and noise on the expected scatter (one:
        exactly Rubin & Thayer's EM with complete data). Always finite."""
        count = jnp.maximum(stats.count, jnp.finfo(stats.sum_x.dtype).tiny)
        moments = GaussianStats(stats.sum_x[None], stats.sum_xx[None])
        new, _ = self.component.maximize(moments, count[None], self._expand(params), ())
        return self._strip(new), m_step_state

    def shift_stats(
        self,
        stats: FactorAnalysisStats,
        from_params: FactorAnalysisParams,
        to_params: FactorAnalysisParams,
    ) -> FactorAnalysisStats:
        """``stats`` computed under ``from_params``, re-expressed about the
        mean (and in the frame) of ``to_params`` (exact; online EM needs it)."""
        moments = self.component.shift_statistics(
            GaussianStats(stats.sum_x[None], stats.sum_xx[None]),
            stats.count[None],
            self._expand(from_params),
            self._expand(to_params),
        )
        return FactorAnalysisStats(stats.count, moments.sum_x[0], moments.sum_xx[0])

    def log_prob(self, params: FactorAnalysisParams, x: Array) -> Array:
        """Per-observation ``log N(x_i | μ, W Wᵀ + Ψ)``, ``(n,)`` (of the
        observed coordinates, where values are missing)."""
        component = self.component
        prepared = component.prepare(self._expand(params))
        return map_over_rows(
            lambda xb: component.log_likelihoods(prepared, xb)[:, 0], (x,), self._block_rows(x)
        )

    def factor_posterior(self, params: FactorAnalysisParams, x: Array) -> tuple[Array, Array]:
        """The posterior of the factors given each row: ``z | x ~ N(M⁻¹ Wᵀ
        Ψ⁻¹ (x − μ), M⁻¹)`` with ``M = I + Wᵀ Ψ⁻¹ W``, from the observed
        coordinates only where values are missing (then the covariance differs
        by row).

        Returns:
          ``(means (n, q), covariances (n, q, q))``.
        """
        means, covariances = self.component.factor_posterior(self._expand(params), x)
        return means[:, 0], covariances[:, 0]

    def posterior(self, params: FactorAnalysisParams, x: Array) -> Array:
        """The posterior means of the factors ``E[z_i | x_i]``, ``(n, q)``."""
        return self.factor_posterior(params, x)[0]

    def transform(self, params: FactorAnalysisParams, x: Array) -> Array:
        """The data in factor space: the posterior means ``E[z_i | x_i]``,
        ``(n, q)`` (as scikit-learn's ``FactorAnalysis.transform``)."""
        return self.posterior(params, x)

    def log_prior(self, params: FactorAnalysisParams) -> Array:
        """``0.0``: no prior."""
        return jnp.zeros((), params.mean.dtype)

    def sample(self, key: Array, params: FactorAnalysisParams, n: int) -> Array:
        """``n`` draws ``μ + W z + ε``, ``(n, D)``."""
        return self.component.sample(key, self._expand(params), jnp.zeros(n, jnp.int32))

    def constraints(self, params: FactorAnalysisParams) -> FactorAnalysisParams:
        """Real mean and loadings, positive noise variances (one scalar for
        probabilistic PCA): the component family's declaration. The
        loadings' rotation is not removed (``q (q − 1) / 2`` free
        coordinates more than :meth:`num_parameters`)."""
        return FactorAnalysisParams(*self.component.constraints(self._expand(params)))

    def num_parameters(self, params: FactorAnalysisParams) -> int:
        """``D`` means, ``D q − q (q − 1) / 2`` loadings (up to rotation) and
        ``D`` noise variances (``1`` for probabilistic PCA)."""
        return self.component.num_parameters(self._expand(params))

    def impute(self, params: FactorAnalysisParams, x: Array, key: Array | None = None) -> Array:
        """``x`` with its missing (NaN) entries filled in: their conditional
        means given each row's observed values, or with ``key`` one draw from
        their conditional distribution. Observed entries are returned
        unchanged."""
        x = jnp.asarray(x)
        resp = jnp.ones((x.shape[0], 1), x.dtype)
        return self.component.impute(self._expand(params), x, resp, key)

    # ------------------------------------------------------------ the rest

    def covariance(self, params: FactorAnalysisParams) -> Array:
        """The model's covariance ``W Wᵀ + Ψ``, ``(D, D)``."""
        return self.component.covariances(self._expand(params))[0]

    def precision(self, params: FactorAnalysisParams) -> Array:
        """The inverse covariance ``(W Wᵀ + Ψ)⁻¹``, ``(D, D)``, by the
        Woodbury identity ``Ψ^(-1/2) (I − W̃ M⁻¹ W̃ᵀ) Ψ^(-1/2)`` with ``W̃ =
        Ψ^(-1/2) W`` and ``M = I + W̃ᵀ W̃`` (a ``q × q`` factorisation)."""
        root = jnp.sqrt(self.component.noise_variances(self._expand(params))[0])
        whitened = params.loadings / root[:, None]
        q = self.num_factors
        factor = jnp.linalg.cholesky(jnp.eye(q, dtype=root.dtype) + whitened.T @ whitened)
        reduced = solve_triangular(factor, whitened.T, lower=True)  # L⁻¹ W̃ᵀ, (q, D)
        inner = jnp.eye(root.shape[0], dtype=root.dtype) - reduced.T @ reduced
        return inner / (root[:, None] * root[None, :])


@dataclasses.dataclass(frozen=True)
class FactorAnalysis(FactorModel):
    """Factor analysis: ``x ~ N(μ, W Wᵀ + Ψ)`` with ``q`` factors and diagonal
    noise ``Ψ``, fitted by EM (Rubin & Thayer 1982).

    Parameters are :class:`jaxem.models.FactorAnalysisParams` (``mean (D,)``,
    ``loadings (D, q)``, ``noise (D,)``). NaN in the data is a missing value
    (EM on the incomplete data; :func:`jaxem.impute` fills it in). Given to a
    latent structure, the model stands for its component family:
    ``jaxem.Mixture(jaxem.FactorAnalysis(q), K)`` is a mixture of factor
    analysers (Ghahramani & Hinton 1996), and ``jaxem.HMM(jaxem.FactorAnalysis(q),
    K)`` has factor-analysis emissions.

    Args:
      num_factors: ``q >= 1`` latent factors (at most ``D``).
      noise_floor: the relative floor of the noise variances (a fraction of
        each feature's variance; see ``jaxem.models.components.FactorAnalyzer``).
      num_inner_steps: factor-analysis EM updates of the loadings and noise
        per M-step (``1``: Rubin & Thayer's EM). With complete data the
        statistics do not change between them, so more cost no pass over the
        data and take fewer EM iterations; every one keeps EM monotone.
      block_size: rows per E-step block; ``None`` chooses from the sizes.
      missing: NaN in the data is a missing value: ``None`` (decided from the
        data), ``True`` or ``False`` (NaN refused); see :class:`jaxem.Gaussian`.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> z = jax.random.normal(jax.random.key(0), (500, 2))
      >>> x = z @ jnp.array([[1.0, 0.5, 0.0, 2.0], [0.0, 1.0, 1.0, 0.0]])
      >>> x = x + 0.3 * jax.random.normal(jax.random.key(1), (500, 4))
      >>> model = jaxem.FactorAnalysis(num_factors=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(2), max_iter=300, tol=1e-6)
      >>> result.params.loadings.shape, model.transform(result.params, x).shape
      ((4, 2), (500, 2))

    References:
      Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor
      analysis. Psychometrika 47, 69-76.

      Ghahramani, Z. and Hinton, G. E. (1996). The EM algorithm for mixtures
      of factor analyzers. Technical Report CRG-TR-96-1, University of
      Toronto.
    """

    isotropic: ClassVar[bool] = False
    num_factors: int
    noise_floor: float = 1e-6
    num_inner_steps: int = 1
    block_size: int | None = None
    missing: bool | None = None


@dataclasses.dataclass(frozen=True)
class PPCA(FactorModel):
    """Probabilistic principal component analysis: ``x ~ N(μ, W Wᵀ + σ² I)``
    with ``q`` factors and isotropic noise, fitted by EM (Tipping & Bishop
    1999).

    Parameters are :class:`jaxem.models.FactorAnalysisParams` with a scalar
    ``noise`` ``σ²``. The maximum-likelihood fit spans the principal subspace:
    ``W = U_q (Λ_q − σ² I)^(1/2) R`` with ``σ²`` the mean of the discarded
    eigenvalues of the data covariance (any rotation ``R``). NaN in the data
    is a missing value. Given to a latent structure, the model stands for its
    component family (``jaxem.Mixture(jaxem.PPCA(q), K)``: a mixture of
    probabilistic principal component analysers).

    Args:
      num_factors: ``q >= 1`` latent factors (at most ``D``).
      noise_floor: the relative floor of ``σ²`` (a fraction of the average
        variance).
      num_inner_steps: EM updates of the loadings and noise per M-step (see
        :class:`jaxem.FactorAnalysis`).
      block_size: rows per E-step block; ``None`` chooses from the sizes.
      missing: NaN in the data is a missing value: ``None`` (decided from the
        data), ``True`` or ``False`` (NaN refused); see :class:`jaxem.Gaussian`.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (300, 5))
      >>> model = jaxem.PPCA(num_factors=2)
      >>> params = jaxem.fit(model, x, key=jax.random.key(1), max_iter=20).params
      >>> params.loadings.shape, params.noise.shape
      ((5, 2), ())

    References:
      Tipping, M. E. and Bishop, C. M. (1999). Probabilistic principal
      component analysis. Journal of the Royal Statistical Society B 61,
      611-622.
    """

    isotropic: ClassVar[bool] = True
    num_factors: int
    noise_floor: float = 1e-6
    num_inner_steps: int = 1
    block_size: int | None = None
    missing: bool | None = None
