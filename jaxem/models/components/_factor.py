"""Factor-analysis components: Gaussians whose covariance is a low-rank part
plus noise, ``Σ_k = W_k W_kᵀ + Ψ_k``, with diagonal (factor analysis) or
isotropic (probabilistic PCA) noise ``Ψ_k``.

An observation of component ``k`` is ``x = μ_k + W_k z + ε`` with ``q``
latent factors ``z ~ N(0, I_q)`` and noise ``ε ~ N(0, Ψ_k)``. Marginally
``x ~ N(μ_k, W_k W_kᵀ + Ψ_k)``, so the log-densities, the moments (missing
values included) and imputation are the full-covariance Gaussian's
(:mod:`jaxem.models.components` ``FullCovariance``), evaluated at that
covariance; what is the family's own is the M-step, the initialisation,
sampling through the factors, and the posterior of the factors.

The M-step is that of the alternating expectation-conditional
maximisation (AECM) algorithm of Meng & van Dyk (1997), as McLachlan, Peel
& Bean (2003) use it for mixtures of factor analysers: the means are the
weighted means of the expected observations; then, with ``S_k`` the expected
scatter about the new means divided by ``N_k``, an EM update of factor
analysis on ``S_k`` from the current ``(W_k, Ψ_k)`` (``num_inner_steps`` of
them, one by default)::

    B = Wᵀ Σ⁻¹ = M⁻¹ Wᵀ Ψ⁻¹,   M = I + Wᵀ Ψ⁻¹ W          (Woodbury)
    W' = S Bᵀ (M⁻¹ + B S Bᵀ)⁻¹                            (E[z zᵀ] = M⁻¹ + B S Bᵀ)
    Ψ' = diag(S − W' B S)      (isotropic: σ²' = tr(S − W' B S) / D)

With complete data and one component, one update per M-step is exactly the
EM algorithm of Rubin & Thayer (1982) (Tipping & Bishop 1999 for isotropic
noise). In general, with ``Q(θ) = Σ_i Σ_k r_ik E[log N(x_i | μ_k, Σ_k)]``
(the expectation over the missing values given the observed ones, under the
old parameters), the means maximise ``Q`` for any covariances, and at those
means ``Q`` is, per component, the factor-analysis log-likelihood of the
scatter ``S_k``, which every EM update of factor analysis increases. So the
M-step is a generalised EM step: the observed-data log-likelihood never
decreases, with missing values too (their conditional moments enter ``S_k``).
With complete data ``S_k`` does not depend on the parameters, so further
inner updates cost no pass over the data.

References:
  Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor
  analysis. Psychometrika 47, 69-76.

  Ghahramani, Z. and Hinton, G. E. (1996). The EM algorithm for mixtures of
  factor analyzers. Technical Report CRG-TR-96-1, University of Toronto.

  Meng, X.-L. and van Dyk, D. (1997). The EM algorithm — an old folk-song
  sung to a fast new tune. Journal of the Royal Statistical Society B 59,
  511-567.

  Tipping, M. E. and Bishop, C. M. (1999). Mixtures of probabilistic
  principal component analyzers. Neural Computation 11, 443-482.

  McLachlan, G. J., Peel, D. and Bean, R. W. (2003). Modelling
  high-dimensional data by mixtures of factor analyzers. Computational
  Statistics & Data Analysis 41, 379-388.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve

from jaxem import gem
from jaxem._numerics import exact_matmul, symmetrize
from jaxem._stats import map_over_rows
from jaxem._validation import check_int, check_number, holds_nan, is_concrete
from jaxem.models.components._checks import (
    check_matrix_data,
    check_param_fields,
    check_param_values,
    check_params_type,
    fill_missing,
)
from jaxem.models.components._component import Component
from jaxem.models.components._covariance import COVARIANCES, has_missing
from jaxem.models.components._gaussian import Gaussian, GaussianParams, GaussianStats

Array = jax.Array

FULL = COVARIANCES["full"]
# The full-covariance Gaussian family the factor family's marginal is: its
# statistics shift and imputation are reused as they are.
_GAUSSIAN = Gaussian("full", reg_covar=0.0)

#: A feature whose variance is below this fraction of the average variance
#: has its noise floor set from the average instead (a constant feature has
#: no variance to take a fraction of).
_SMALL_VARIANCE = 1e-6


class FactorParams(NamedTuple):
    """Parameters of ``K`` factor-analysis components with ``q`` factors.

    Attributes:
      means: ``μ_k``, ``(K, D)``.
      loadings: ``W_k``, ``(K, D, q)`` (defined up to a rotation ``W_k R``:
        only ``W_k W_kᵀ`` is identified).
      noise: ``Ψ_k``, the noise variances: ``(K, D)`` per feature (factor
        analysis), or ``(K,)``, one per component (probabilistic PCA).
    """

    means: Array
    loadings: Array
    noise: Array


def _power_of_two(magnitude: Array) -> Array:
    """A power of two within a factor 2 of a positive ``magnitude`` (``1``
    where it is zero or not finite): an exact unit to work in."""
    usable = jnp.isfinite(magnitude) & (magnitude > 0)
    _, exponent = jnp.frexp(jnp.where(usable, magnitude, 1.0))
    return jnp.where(usable, jnp.ldexp(jnp.ones_like(magnitude), exponent), 1.0)


def _update(scatter: Array, loadings: Array, noise: Array) -> tuple[Array, Array]:
    """One EM update of factor analysis on one scatter matrix.

    Args:
      scatter: ``S``, ``(D, D)``.
      loadings: ``W``, ``(D, q)``.
      noise: ``Ψ`` per feature, ``(D,)``, positive.

    Returns:
      ``(W', r)``: the new loadings ``S Bᵀ (M⁻¹ + B S Bᵀ)⁻¹`` and the
      residual variances ``r = diag(S − W' B S)`` (``(D,)``; before any floor).
    """
    # (full-precision products: accelerators round float32 matmul inputs
    # otherwise, and these are cheap, D × D × q at most)
    q = loadings.shape[1]
    eye = jnp.eye(q, dtype=loadings.dtype)
    root = jnp.sqrt(noise)
    whitened = loadings / root[:, None]  # Ψ^(-1/2) W
    inner = (jnp.linalg.cholesky(eye + exact_matmul(whitened.T, whitened)), True)  # M
    gain = cho_solve(inner, (whitened / root[:, None]).T)  # B = M⁻¹ Wᵀ Ψ⁻¹, (q, D)
    cross = exact_matmul(scatter, gain.T)  # S Bᵀ, (D, q)
    second = symmetrize(cho_solve(inner, eye) + exact_matmul(gain, cross))  # E[z zᵀ] per row
    new = cho_solve((jnp.linalg.cholesky(second), True), cross.T).T
    return new, jnp.diagonal(scatter) - jnp.sum(new * cross, axis=1)


@dataclasses.dataclass(frozen=True)
class FactorAnalyzer(Component):
    """Factor-analysis (or probabilistic-PCA) components, for
    :class:`jaxem.Mixture` (a mixture of factor analysers), :class:`jaxem.HMM`
    emissions, or any latent structure built from components.

    Each component is the Gaussian ``N(μ_k, W_k W_kᵀ + Ψ_k)`` with ``q``
    factors: ``D + D q − q (q − 1) / 2 + D`` free parameters (``+ 1`` instead
    of ``+ D`` for isotropic noise) instead of a full covariance's
    ``D (D + 3) / 2``. NaN in the data is a missing value. Usually built by
    passing :class:`jaxem.FactorAnalysis` or :class:`jaxem.PPCA` to the latent
    structure, which stands for this family.

    The noise variances are kept at or above a floor: ``noise_floor`` (or
    ``10 D`` machine epsilons, if larger) times the feature's variance within
    the component (or times a millionth of the average variance, where the
    feature's is smaller: a constant feature), so the covariance stays
    positive definite and its Cholesky factor exists even where the factors
    explain a feature entirely (a Heywood case). The floor is relative, so a
    fit does not depend on the features' units. (For isotropic noise, the
    floor is the mean of the features' floors.)

    Args:
      num_factors: ``q >= 1`` latent factors per component (at most ``D``).
      isotropic: one noise variance per component (probabilistic PCA) instead
        of one per feature (factor analysis).
      noise_floor: the relative floor of the noise variances, ``>= 0``.
      num_inner_steps: factor-analysis EM updates of the loadings and noise
        per M-step, ``>= 1`` (each one increases the objective; more of them
        cost no pass over the data and take fewer EM iterations).
      missing: NaN in the data is a missing value: ``None`` (the default)
        decides from the data (``jaxem.fit`` reads it off the concrete data
        once; under a user's ``jit`` each block of rows branches on it);
        ``True``: always the missing-value code; ``False``: NaN is refused as
        bad input (the complete-data code alone). As for :class:`jaxem.Gaussian`.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (200, 4))
      >>> model = jaxem.Mixture(jaxem.FactorAnalysis(num_factors=1), num_components=2)
      >>> params = jaxem.fit(model, x, key=jax.random.key(1), max_iter=5).params
      >>> params.components.loadings.shape, params.components.noise.shape
      ((2, 4, 1), (2, 4))
    """

    num_factors: int
    isotropic: bool = False
    noise_floor: float = 1e-6
    num_inner_steps: int = 1
    missing: bool | None = None

    def __post_init__(self):
        object.__setattr__(self, "num_factors", check_int(self.num_factors, "num_factors", 1))
        if not isinstance(self.isotropic, (bool, np.bool_)):
            raise TypeError(f"isotropic must be True or False; got {self.isotropic!r}")
        object.__setattr__(self, "isotropic", bool(self.isotropic))
        object.__setattr__(self, "noise_floor", check_number(self.noise_floor, "noise_floor", 0.0))
        object.__setattr__(
            self, "num_inner_steps", check_int(self.num_inner_steps, "num_inner_steps", 1)
        )
        if self.missing not in (None, True, False):
            raise TypeError(f"missing must be None, True or False; got {self.missing!r}")
        object.__setattr__(self, "missing", None if self.missing is None else bool(self.missing))

    @property
    def _name(self) -> str:
        return "PPCA" if self.isotropic else "FactorAnalysis"

    # ------------------------------------------------------------------ checks

    @property
    def missing_values(self) -> bool:
        """Whether NaN in the data is a missing value (unless ``missing=False``)."""
        return self.missing is not False

    def for_data(self, x: Any) -> FactorAnalyzer:
        """The family with ``missing`` read off concrete data ``x`` (whether
        it holds a NaN), when it is ``None``."""
        if self.missing is not None or not is_concrete(x):
            return self
        return dataclasses.replace(self, missing=holds_nan(x))

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(n, D)`` with
        ``D >= num_factors`` and (when concrete) finite or NaN (missing; unless
        ``missing=False``) values, something observed in every row; return
        whether it is valid."""
        valid = check_matrix_data(x, self._name, missing=self.missing_values)
        if x.shape[1] < self.num_factors:
            raise ValueError(
                f"num_factors={self.num_factors} exceeds the number of features D={x.shape[1]}: "
                "a factor model has at most D factors"
            )
        return valid

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong structure or shape, or (when
        concrete) non-finite values or noise variances that are not positive."""
        check_params_type(params, FactorParams)
        k, dim, q = num_components, x.shape[-1], self.num_factors
        expected = {
            "means": (k, dim),
            "loadings": (k, dim, q),
            "noise": (k,) if self.isotropic else (k, dim),
        }
        context = f"num_components={k}, D={dim}, num_factors={q}"
        if check_param_fields(params, expected, context):
            check_param_values(params.noise, "noise", lambda a: a > 0, "positive")

    def features(self, x: Array) -> Array:
        """The data for k-means seeding, missing values filled with their
        column's mean."""
        return fill_missing(x)

    def block_rows(self, x: Array, num_components: int) -> int:
        """Rows per E-step block (the full-covariance Gaussian's)."""
        return FULL.block_rows(x, num_components)

    # ----------------------------------------------------------- covariances

    def noise_variances(self, params: Any) -> Array:
        """The noise variances per feature, ``(K, D)`` (isotropic noise
        broadcast)."""
        return jnp.broadcast_to(
            params.noise[:, None] if self.isotropic else params.noise, params.means.shape
        )

    def covariances(self, params: Any) -> Array:
        """``Σ_k = W_k W_kᵀ + Ψ_k``, ``(K, D, D)``."""
        low_rank = jnp.einsum(
            "kdq,keq->kde", params.loadings, params.loadings, precision=lax.Precision.HIGHEST
        )
        noise = self.noise_variances(params)
        return low_rank + noise[..., :, None] * jnp.eye(noise.shape[-1], dtype=noise.dtype)

    def _gaussian(self, params: Any) -> GaussianParams:
        return GaussianParams(params.means, self.covariances(params))

    # ---------------------------------------------------------- log densities

    def prepare(self, params: Any) -> dict[str, Array]:
        """The full-covariance Gaussian's precomputation at ``Σ_k``."""
        return FULL.prepare(params.means, self.covariances(params))

    def log_likelihoods(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log N(x_i | μ_k, W_k W_kᵀ + Ψ_k)`` for a block of rows,
        ``(rows, K)``; for a row with missing (NaN) values, the density of its
        observed coordinates."""
        return FULL.log_densities(prepared, x, self.missing)

    # ------------------------------------------------------------ statistics

    def statistics(self, x: Array, resp: Array, params: Any) -> GaussianStats:
        """The full-covariance Gaussian's moments of a block about the means
        of ``params`` (in the frame of their covariances), from weighted
        responsibilities ``(rows, K)``; missing values enter by their
        conditional moments given the row's observed values."""
        covariances = self.covariances(params)
        scale = FULL.frame(params.means, covariances)
        moments = FULL.expected_moments(
            x, resp, params.means, scale, params.means, covariances, self.missing
        )
        return GaussianStats(*moments)

    def shift_statistics(
        self, stats: GaussianStats, counts: Array, from_params: Any, to_params: Any
    ) -> GaussianStats:
        """Moments about the means of ``from_params`` moved to those of
        ``to_params`` (and their frame), as for full-covariance Gaussians."""
        return _GAUSSIAN.shift_statistics(
            stats, counts, self._gaussian(from_params), self._gaussian(to_params)
        )

    def _floors(self, variances: Array, average: Array) -> Array:
        """The noise floors ``(K, D)`` for per-feature variances ``(K, D)``
        and the average variance ``average`` (a scalar)."""
        dim = variances.shape[-1]
        relative = max(self.noise_floor, 10.0 * dim * float(jnp.finfo(variances.dtype).eps))
        floors = relative * jnp.maximum(variances, _SMALL_VARIANCE * average)
        if self.isotropic:
            floors = jnp.broadcast_to(jnp.mean(floors, axis=-1, keepdims=True), floors.shape)
        return jnp.maximum(floors, jnp.finfo(variances.dtype).tiny)

    def maximize(
        self, stats: GaussianStats, counts: Array, params: Any, m_step_state: Any = ()
    ) -> tuple[FactorParams, Any]:
        """The AECM step (see the module): the means, then
        ``num_inner_steps`` factor-analysis EM updates of ``(W_k, Ψ_k)`` on the
        scatter about the new means.

        Always finite: a component whose scatter is zero (no data, or all of
        it on one point) keeps its loadings and noise; every noise variance is
        at or above its floor.
        """
        covariances = self.covariances(params)
        scale = FULL.frame(params.means, covariances)  # the statistics' frame
        shift = stats.sum_x / counts[:, None]
        scatter = symmetrize(
            stats.sum_xx / counts[:, None, None] - shift[:, :, None] * shift[:, None, :]
        )
        means = params.means + scale * shift
        variances = jnp.diagonal(scatter, axis1=-2, axis2=-1)  # (K, D)
        average = jnp.sum(counts @ variances) / (jnp.sum(counts) * variances.shape[-1])
        # Work in units of the average standard deviation (a power of two, so
        # exactly): every quantity of the update is then of order one.
        unit = scale * _power_of_two(jnp.sqrt(average))
        ratio = jnp.square(scale / unit)
        scatter, variances, average = scatter * ratio, variances * ratio, average * ratio
        loadings = params.loadings / unit
        noise = self.noise_variances(params) / jnp.square(unit)
        floors = self._floors(variances, average)

        def update(_: Any, state: tuple[Array, Array]) -> tuple[Array, Array]:
            new_loadings, residual = jax.vmap(_update)(scatter, *state)
            if self.isotropic:
                residual = jnp.broadcast_to(
                    jnp.mean(residual, axis=-1, keepdims=True), residual.shape
                )
            return new_loadings, jnp.maximum(residual, floors)

        if self.num_inner_steps == 1:
            new_loadings, new_noise = update(0, (loadings, noise))
        else:
            new_loadings, new_noise = lax.fori_loop(
                0, self.num_inner_steps, update, (loadings, noise)
            )
        # (a trace that is zero or a rounding error's negative: nothing to fit)
        empty = jnp.trace(scatter, axis1=-2, axis2=-1) <= jnp.finfo(scatter.dtype).tiny
        new_loadings = jnp.where(empty[:, None, None], loadings, new_loadings)
        new_noise = jnp.where(empty[:, None], noise, new_noise)
        if self.isotropic:
            new_noise = new_noise[:, 0]
        return (
            FactorParams(means, new_loadings * unit, new_noise * jnp.square(unit)),
            m_step_state,
        )

    # ---------------------------------------------------------- initialisation

    def initialize(self, x: Array, resp: Array, weights: Array | None = None) -> FactorParams:
        """Parameters from responsibilities ``(n, K)`` alone: each
        component's weighted mean and covariance ``S_k`` (missing values
        filled with their column's mean for this start; an empty component
        takes the pooled covariance), then the closed-form maximum-likelihood
        probabilistic PCA of ``S_k`` (Tipping & Bishop 1999): ``W_k = U_q
        (Λ_q − σ² I)^(1/2)`` from the top ``q`` eigenpairs, with ``σ²`` the
        mean of the other eigenvalues (each factor kept at a thousandth of its
        eigenvalue at least, so that EM can move it); for factor analysis
        ``Ψ_k = diag(S_k − W_k W_kᵀ)``, floored."""
        x = fill_missing(x, weights)
        moments = _GAUSSIAN.initialize(x, resp, weights)
        w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
        counts = jnp.sum(resp * w[:, None], axis=0)
        scatter = moments.covariances
        pooled = jnp.einsum("k,kde->de", counts, scatter) / jnp.sum(counts)
        scatter = jnp.where((counts > 0)[:, None, None], scatter, pooled)
        return FactorParams(moments.means, *self._from_scatter(scatter))

    def _from_scatter(self, scatter: Array) -> tuple[Array, Array]:
        """``(loadings, noise)`` from covariances ``(K, D, D)`` (see
        :meth:`initialize`)."""
        dim, q = scatter.shape[-1], self.num_factors
        variances = jnp.diagonal(scatter, axis1=-2, axis2=-1)
        average = jnp.mean(variances)
        unit = _power_of_two(jnp.sqrt(average))
        scatter, variances, average = (
            scatter / jnp.square(unit),
            variances / jnp.square(unit),
            average / jnp.square(unit),
        )
        values, vectors = jnp.linalg.eigh(scatter)  # ascending
        top = values[:, ::-1][:, :q]
        basis = vectors[:, :, ::-1][:, :, :q]
        if q < dim:
            rest = jnp.mean(values[:, : dim - q], axis=-1)
        else:
            rest = jnp.zeros(values.shape[:1], values.dtype)
        floors = self._floors(variances, average)
        sigma2 = jnp.maximum(rest, jnp.mean(floors, axis=-1))  # (K,)
        strength = jnp.maximum(top - sigma2[:, None], 1e-3 * jnp.maximum(top, 0.0))
        loadings = basis * jnp.sqrt(strength)[:, None, :]
        if self.isotropic:
            noise = sigma2
        else:
            noise = jnp.maximum(variances - jnp.sum(jnp.square(loadings), axis=-1), floors)
        return loadings * unit, noise * jnp.square(unit)

    def loadings_given_noise(self, scatter: Array, noise: Array) -> Array:
        """The loadings that maximise the likelihood of covariances
        ``scatter (K, D, D)`` for fixed noise variances ``noise (K, D)``:
        ``W = Ψ^(1/2) U_q (Λ_q − I)^(1/2)`` from the top ``q`` eigenpairs of
        ``Ψ^(-1/2) S Ψ^(-1/2)`` (each factor kept at a thousandth of its
        eigenvalue at least, so that EM can move it), ``(K, D, q)``."""
        root = jnp.sqrt(noise)
        values, vectors = jnp.linalg.eigh(scatter / (root[:, :, None] * root[:, None, :]))
        top = values[:, ::-1][:, : self.num_factors]
        basis = vectors[:, :, ::-1][:, :, : self.num_factors]
        strength = jnp.maximum(top - 1.0, 1e-3 * jnp.maximum(top, 0.0))
        return root[:, :, None] * basis * jnp.sqrt(strength)[:, None, :]

    # ------------------------------------------------------- factor posterior

    def factor_posterior(self, params: Any, x: Array) -> tuple[Array, Array]:
        """The posterior of the factors given each row, under each component:
        ``z | x, k ~ N(M⁻¹ W̃ᵀ Ψ^(-1/2) (x − μ_k), M⁻¹)`` with ``W̃ =
        Ψ^(-1/2) W_k`` and ``M = I + W̃ᵀ W̃``. For a row with missing (NaN)
        values, ``W̃`` and the residual keep its observed coordinates only (the
        posterior given what was observed).

        Args:
          params: the components' parameters.
          x: data ``(n, D)``, NaN where missing.

        Returns:
          ``(means (n, K, q), covariances (n, K, q, q))``.
        """
        k, q = params.means.shape[0], self.num_factors
        einsum = functools.partial(jnp.einsum, precision=lax.Precision.HIGHEST)
        root = jnp.sqrt(self.noise_variances(params))  # (K, D)
        whitened = params.loadings / root[..., None]  # (K, D, q)
        eye = jnp.eye(q, dtype=whitened.dtype)
        inner = jnp.linalg.cholesky(eye + einsum("kdq,kdr->kqr", whitened, whitened))
        shared = cho_solve((inner, True), jnp.broadcast_to(eye, (k, q, q)))

        def complete(xb: Array) -> tuple[Array, Array]:
            residual = (xb[:, None, :] - params.means) / root  # (rows, K, D)
            projected = einsum("nkd,kdq->kqn", residual, whitened)
            means = jnp.transpose(cho_solve((inner, True), projected), (2, 0, 1))
            return means, jnp.broadcast_to(shared, (xb.shape[0], k, q, q))

        def incomplete(xb: Array) -> tuple[Array, Array]:
            observed = (~jnp.isnan(xb)).astype(xb.dtype)  # (rows, D)
            values = jnp.where(jnp.isnan(xb), 0.0, xb)
            residual = (values[:, None, :] - params.means) / root * observed[:, None, :]
            precision = eye + einsum("kdq,nd,kdr->nkqr", whitened, observed, whitened)
            factors = jnp.linalg.cholesky(precision)
            projected = einsum("nkd,kdq->nkq", residual, whitened)[..., None]
            means = cho_solve((factors, True), projected)[..., 0]
            covariances = cho_solve((factors, True), jnp.broadcast_to(eye, precision.shape))
            return means, covariances

        def block(xb: Array) -> Array:
            if self.missing is None:
                means, covariances = lax.cond(has_missing(xb), incomplete, complete, xb)
            else:
                means, covariances = (incomplete if self.missing else complete)(xb)
            return jnp.concatenate([means, covariances.reshape(*means.shape[:2], q * q)], -1)

        rows = max(1, self.block_rows(x, k) // max(1, q))
        packed = map_over_rows(block, (x,), rows)
        means = packed[..., :q]
        return means, packed[..., q:].reshape(*means.shape, q)

    # ------------------------------------------------------------ the rest

    def impute(self, params: Any, x: Array, resp: Array, key: Array | None = None) -> Array:
        """``x`` with its missing (NaN) entries filled in, given the rows'
        posterior over the components ``resp (n, K)``: the conditional means
        of the missing values (or, with ``key``, one draw from their
        conditional distribution), as for the full-covariance Gaussian at
        ``Σ_k = W_k W_kᵀ + Ψ_k``. Observed entries are returned unchanged."""
        return _GAUSSIAN.impute(self._gaussian(params), x, resp, key)

    def sample(self, key: Array, params: Any, labels: Array) -> Array:
        """One draw per label, ``(n, D)``: ``μ_k + W_k z + ε`` with
        ``z ~ N(0, I_q)`` and ``ε ~ N(0, Ψ_k)``."""
        factor_key, noise_key = jax.random.split(key)
        n, dtype = labels.shape[0], params.means.dtype
        factors = jax.random.normal(factor_key, (n, self.num_factors), dtype)
        noise = jax.random.normal(noise_key, (n, params.means.shape[1]), dtype)
        scales = jnp.sqrt(self.noise_variances(params))
        signal = jnp.einsum("ndq,nq->nd", params.loadings[labels], factors)
        return params.means[labels] + signal + scales[labels] * noise

    def constraints(self, params: Any) -> FactorParams:
        """Real means and loadings, positive noise variances. The loadings'
        rotation ``W_k R`` is not removed: their ``D q`` entries are all free
        coordinates, ``q (q − 1) / 2`` per component more than
        :meth:`num_parameters` counts."""
        return FactorParams(gem.real, gem.real, gem.positive)

    def num_parameters(self, params: Any) -> int:
        """Per component: ``D`` means, ``D q − q (q − 1) / 2`` loadings (a
        rotation of the factors changes nothing) and ``D`` (or ``1``) noise
        variances."""
        k, dim = params.means.shape[-2:]
        q = self.num_factors
        noise = 1 if self.isotropic else dim
        return int(k * (dim + dim * q - q * (q - 1) // 2 + noise))
