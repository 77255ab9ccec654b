"""Multivariate Student-t components (full scale matrices, per-component
degrees of freedom) for :class:`jaxem.Mixture`, fitted by ECM.

The t distribution is a Gaussian scale mixture: ``x | τ ~ N(μ, Σ / τ)`` with
``τ ~ Gamma(ν/2, rate ν/2)``. The E-step adds the latent scales' posterior
expectations ``u_ik = E[τ_i | x_i, z_i = k] = (ν_k + D) / (ν_k + δ_ik²)``
(``δ_ik²`` the squared Mahalanobis distance) to the responsibilities; the
CM-steps are weighted Gaussian updates of the means and scales, then a
one-dimensional root solve per component for ``ν_k`` (Liu & Rubin 1995;
McLachlan & Peel 2000, ch. 7). The expected complete-data log-likelihood
separates into a (means, scales) part and a ``ν`` part, so the two CM-steps
together maximise it exactly and the iteration never decreases the
log-likelihood.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma, gammaln, polygamma

from jaxem import gem
from jaxem._numerics import (
    cholesky_with_jitter,
    default_block_size,
    exact_matmul,
    frame_scale,
    inverse_cholesky_transpose,
    symmetrize,
)
from jaxem._validation import check_number
from jaxem.models.components._checks import (
    check_matrix_data,
    check_param_fields,
    guarded_counts,
)
from jaxem.models.components._component import Component
from jaxem.models.components._covariance import COVARIANCES, centred_moments

Array = jax.Array

# Where log(z) − ψ(z) switches from digamma to its asymptotic series (whose
# first omitted term, 691 / (32760 z¹²), is below 1e-10 of the value at 8).
_ASYMPTOTIC_FROM = 8.0
# |d| below which d − log(1 + d) is summed as a series (first omitted term
# d¹³/13: below 2e-12 of the value at |d| = 0.1).
_SERIES_BELOW = 0.1
# Safeguarded Newton iterations for ν (log g is nearly linear in log ν, so
# Newton converges in a handful; the rest are free insurance).
_NEWTON_ITERATIONS = 20
# ν of every component before the first M-step (unless fixed).
INITIAL_DEGREES_OF_FREEDOM = 10.0
FULL = COVARIANCES["full"]


def log_minus_digamma(z: Array) -> tuple[Array, Array]:
    """``g(z) = log z − ψ(z)`` and its derivative ``1/z − ψ'(z)``, for ``z > 0``.

    For large ``z`` both are differences of nearly equal numbers
    (``g(z) ≈ 1/(2z)``), so from ``z = 8`` on they are evaluated by their
    asymptotic series, which keeps full relative precision in float32.

    Args:
      z: positive values, any shape.

    Returns:
      ``(g(z), g'(z))``, each of ``z``'s shape.
    """
    large = z >= _ASYMPTOTIC_FROM
    zl = jnp.maximum(z, _ASYMPTOTIC_FROM)
    zs = jnp.minimum(z, _ASYMPTOTIC_FROM)
    inv = 1.0 / zl
    inv2 = inv * inv
    g_large = 0.5 * inv + inv2 * (
        1.0 / 12.0
        - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0)))
    )
    dg_large = -0.5 * inv2 - inv2 * inv * (
        1.0 / 6.0
        - inv2 * (1.0 / 30.0 - inv2 * (1.0 / 42.0 - inv2 * (1.0 / 30.0 - inv2 * 5.0 / 66.0)))
    )
    g_small = jnp.log(zs) - digamma(zs)
    dg_small = 1.0 / zs - polygamma(1, zs)
    return jnp.where(large, g_large, g_small), jnp.where(large, dg_large, dg_small)


def _excess(d: Array, log_u: Array) -> Array:
    """``u − 1 − log u ≥ 0`` from ``d = u − 1`` and ``log u``, accurate near
    ``u = 1`` (a series there, where the difference cancels)."""
    ds = jnp.clip(d, -_SERIES_BELOW, _SERIES_BELOW)
    # d − log1p(d) = Σ_{j≥2} (−d)^j / j, to j = 12, by Horner.
    series = 1.0 / 12.0
    for j in range(11, 1, -1):
        series = 1.0 / j - ds * series
    series = ds * ds * series
    return jnp.where(jnp.abs(d) < _SERIES_BELOW, series, d - log_u)


def solve_degrees_of_freedom(target: Array, initial: Array, bounds: tuple[float, float]) -> Array:
    """Solve ``log(ν/2) − ψ(ν/2) = target`` for ``ν`` in ``bounds``, elementwise.

    The left side decreases from ``+∞`` to ``0``, so there is one root for
    ``target > 0``; outside ``bounds`` the nearer bound is returned (the
    maximiser of the concave objective on the interval). Newton's method in
    ``t = log(ν/2)`` on ``log g(e^t) = log target`` (nearly linear in ``t``),
    started at ``initial`` and safeguarded by a bracket: a step that leaves
    the bracket bisects it instead. A fixed number of iterations (no
    data-dependent loop), so it jits and vmaps like any other function.

    Args:
      target: ``(K,)`` positive right-hand sides.
      initial: ``(K,)`` starting ``ν`` (e.g. the current values).
      bounds: ``(ν_min, ν_max)``.

    Returns:
      ``(K,)`` degrees of freedom in ``bounds``.
    """
    dtype = target.dtype
    lower = jnp.full_like(target, math.log(0.5 * bounds[0]))
    upper = jnp.full_like(target, math.log(0.5 * bounds[1]))
    log_target = jnp.log(jnp.maximum(target, jnp.finfo(dtype).tiny))

    def residual(t):
        g, dg = log_minus_digamma(jnp.exp(t))
        return jnp.log(g) - log_target, jnp.exp(t) * dg / g

    h_lower, _ = residual(lower)
    h_upper, _ = residual(upper)

    def newton(_, carry):
        t, lo, hi = carry
        h, slope = residual(t)
        lo = jnp.where(h > 0, t, lo)  # h decreases: the root is above t
        hi = jnp.where(h > 0, hi, t)
        step = t - h / slope
        inside = jnp.isfinite(step) & (step >= lo) & (step <= hi)
        return jnp.where(inside, step, 0.5 * (lo + hi)), lo, hi

    start = jnp.clip(jnp.log(0.5 * initial), lower, upper)
    t, _, _ = lax.fori_loop(0, _NEWTON_ITERATIONS, newton, (start, lower, upper))
    t = jnp.where(h_lower <= 0, lower, jnp.where(h_upper >= 0, upper, t))
    return jnp.clip(2.0 * jnp.exp(t), bounds[0], bounds[1]).astype(dtype)


class StudentTParams(NamedTuple):
    """Parameters of ``K`` multivariate Student-t components.

    Attributes:
      means: locations ``μ_k``, ``(K, D)``.
      scales: scale matrices ``Σ_k`` (symmetric positive definite),
        ``(K, D, D)``; the covariance is ``ν_k / (ν_k − 2) Σ_k`` for ``ν_k > 2``.
      degrees_of_freedom: ``ν_k > 0``, ``(K,)``.
    """

    means: Array
    scales: Array
    degrees_of_freedom: Array


class StudentTStats(NamedTuple):
    """Additive statistics of ``K`` Student-t components, from weighted
    responsibilities ``r_ik`` and the latent scale expectations ``u_ik``
    under the parameters they were computed with (moments about those
    parameters' means ``μ_k``, so no cancellation happens in the M-step).

    Attributes:
      sum_u: ``Σ_i r_ik u_ik``, ``(K,)``.
      sum_x: ``Σ_i r_ik u_ik (x_i − μ_k)``, ``(K, D)``.
      sum_xx: ``Σ_i r_ik u_ik (x_i − μ_k)(x_i − μ_k)ᵀ``, ``(K, D, D)``.
      sum_excess: ``Σ_i r_ik (u_ik − 1 − log u_ik) ≥ 0``, ``(K,)`` (for ``ν``;
        this is ``−Σ_i r_ik (log u_ik − u_ik) − N_k``, kept in this form
        because it does not cancel when ``u ≈ 1``).
    """

    sum_u: Array
    sum_x: Array
    sum_xx: Array
    sum_excess: Array


@dataclasses.dataclass(frozen=True)
class StudentT(Component):
    """Multivariate Student-t components with full scale matrices and
    per-component degrees of freedom, for :class:`jaxem.Mixture`.

    Heavy-tailed clusters: outliers get small latent scale weights
    ``u_ik = (ν_k + D) / (ν_k + δ_ik²)`` and pull the means and scales less
    than in a Gaussian mixture. The log-density of component ``k`` is

    ``log Γ((ν+D)/2) − log Γ(ν/2) − (D/2) log(νπ) − ½ log|Σ| − ((ν+D)/2) log(1 + δ²/ν)``

    with ``δ² = (x − μ)ᵀ Σ⁻¹ (x − μ)`` (``scipy.stats.multivariate_t``).

    Fitted by ECM (Liu & Rubin 1995; McLachlan & Peel 2000, §7.5): the means
    are the ``r·u``-weighted means, the scales the ``r·u``-weighted scatter
    divided by ``N_k = Σ_i r_ik`` (plus ``reg_covar`` on the diagonal), and
    each ``ν_k`` solves

    ``−ψ(ν/2) + log(ν/2) + 1 + (1/N_k) Σ_i r_ik (E[log τ_ik] − u_ik) = 0``,

    with ``E[log τ_ik] = ψ((ν_old+D)/2) − log((ν_old+D)/2) + log u_ik``, by a
    safeguarded Newton iteration in ``log ν`` (see
    :func:`solve_degrees_of_freedom`). The root is clamped to
    ``degrees_of_freedom_bounds``: the lower bound keeps a component from
    becoming arbitrarily heavy-tailed (ν → 0 can make the likelihood
    degenerate); the upper bound stands for "Gaussian" (the ML ``ν`` of
    Gaussian data is infinite; at ``ν = 1000`` the log-density differs from
    the Gaussian's by about ``(δ⁴ − 2Dδ² + D(D − 2)) / (4ν)``, a few
    thousandths within a few scale units). With ``reg_covar = 0`` the
    log-likelihood never decreases.

    Log-densities and moments are products over Cholesky factors: no
    ``(n, K, D, D)`` tensor is formed; the moments are taken about the
    current means (float32 stays accurate), one ``(D, rows) @ (rows, D)``
    product per component on a CPU.

    Args:
      reg_covar: non-negative value added to the scales' diagonal after each
        M-step (as :class:`jaxem.Gaussian`'s ``reg_covar``).
      fix_degrees_of_freedom: hold every ``ν_k`` at this value (``> 0``);
        ``None`` estimates them. The E-step uses the parameters' own ``ν``, so
        parameters passed in (``init_params``) should carry the fixed value.
      degrees_of_freedom_bounds: ``(ν_min, ν_max)`` with ``0 < ν_min < ν_max``
        (finite), the interval the estimated ``ν_k`` are kept in.

    Before the first M-step every ``ν_k`` is ``10`` (or the fixed value), and
    the means and scales are the weighted Gaussian estimates from the
    initial responsibilities.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.t(jax.random.key(0), 3.0, (300, 2))
      >>> x = x.at[:150].add(8.0)
      >>> model = jaxem.Mixture(jaxem.StudentT(), num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> result.params.components.scales.shape
      (2, 2, 2)
      >>> result.params.components.degrees_of_freedom.shape
      (2,)

    References:
      Liu, C. and Rubin, D. B. (1995). ML estimation of the t distribution
      using EM and its extensions, ECM and ECME. Statistica Sinica 5, 19-39.

      McLachlan, G. J. and Peel, D. (2000). Finite Mixture Models, ch. 7.
      Wiley.
    """

    reg_covar: float = 1e-6
    fix_degrees_of_freedom: float | None = None
    degrees_of_freedom_bounds: tuple[float, float] = (0.1, 1000.0)

    def __post_init__(self):
        object.__setattr__(self, "reg_covar", check_number(self.reg_covar, "reg_covar", 0.0))
        fixed = check_number(
            self.fix_degrees_of_freedom,
            "fix_degrees_of_freedom",
            0.0,
            inclusive=False,
            allow_none=True,
        )
        object.__setattr__(self, "fix_degrees_of_freedom", fixed)
        bounds = self.degrees_of_freedom_bounds
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"degrees_of_freedom_bounds must be a pair of numbers; got {bounds!r}"
            ) from error
        if not (0 < low < high and math.isfinite(high)):
            raise ValueError(
                "degrees_of_freedom_bounds must be (low, high) with 0 < low < high < inf; "
                f"got {bounds!r}"
            )
        object.__setattr__(self, "degrees_of_freedom_bounds", (low, high))

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(n, D)``."""
        return check_matrix_data(x, "StudentT")

    def check_params(self, params: Any, x: Array, num_components: int) -> None:
        """Raise for parameters of the wrong structure or shape; for concrete
        arrays also for non-finite values, scales that are not symmetric
        positive definite, and non-positive degrees of freedom."""
        if not isinstance(params, StudentTParams):
            raise TypeError(f"params must be a StudentTParams; got {type(params).__name__}")
        k, dim = num_components, x.shape[-1]
        expected = {
            "means": (k, dim),
            "scales": (k, dim, dim),
            "degrees_of_freedom": (k,),
        }
        if not check_param_fields(params, expected, f"num_components={k}, D={dim}"):
            return
        scales = np.asarray(params.scales, dtype=float)
        if not np.allclose(scales, np.swapaxes(scales, -1, -2), rtol=1e-5, atol=0):
            raise ValueError("params.scales must be symmetric")
        if np.any(np.linalg.eigvalsh(scales)[..., 0] <= 0):
            raise ValueError("params.scales must be positive definite")
        dof = np.asarray(params.degrees_of_freedom, dtype=float)
        if np.any(dof <= 0):
            raise ValueError(f"params.degrees_of_freedom must be > 0; got minimum {dof.min():.6g}")

    def block_rows(self, x: Array, num_components: int) -> int:
        """Rows per E-step block (a block holds ``(rows, K, D)`` temporaries)."""
        return default_block_size(x.shape[0], num_components * x.shape[1])

    # ---------------------------------------------------------- log densities

    def prepare(self, params: StudentTParams) -> dict[str, Array]:
        """Per-parameter quantities the log-densities need, once per call."""
        means, nu = params.means, params.degrees_of_freedom
        dim = means.shape[1]
        factors = jnp.linalg.cholesky(params.scales)
        prec_chol = inverse_cholesky_transpose(factors)  # (K, D, D)
        half_log_det = -jnp.sum(jnp.log(jnp.diagonal(factors, axis1=-2, axis2=-1)), axis=-1)
        const = (
            gammaln(0.5 * (nu + dim))
            - gammaln(0.5 * nu)
            - 0.5 * dim * jnp.log(nu * math.pi)
            + half_log_det
        )
        reference = jnp.mean(means, axis=0)
        shifted = jnp.einsum("kd,kde->ke", means - reference, prec_chol)
        stacked = jnp.transpose(prec_chol, (1, 0, 2)).reshape(dim, -1)
        return {
            "const": const,
            "reference": reference,
            "shifted": shifted,
            "stacked": stacked,
            "degrees_of_freedom": nu,
        }

    def log_likelihoods(self, prepared: dict[str, Array], x: Array) -> Array:
        """``log t(x_i | μ_k, Σ_k, ν_k)`` for a block of rows, ``(rows, K)``."""
        k = prepared["shifted"].shape[0]
        dim = x.shape[1]
        whitened = ((x - prepared["reference"]) @ prepared["stacked"]).reshape(x.shape[0], k, dim)
        distances = jnp.sum(jnp.square(whitened - prepared["shifted"]), axis=-1)
        nu = prepared["degrees_of_freedom"]
        return prepared["const"] - 0.5 * (nu + dim) * jnp.log1p(distances / nu)

    # ------------------------------------------------------------ statistics

    def _frame(self, params: StudentTParams) -> Array:
        """The scale of the frame the moments are taken in (see
        :mod:`jaxem.models.components` ``FullCovariance.frame``)."""
        return FULL.frame(params.means, params.scales)

    def statistics(self, x: Array, resp: Array, params: StudentTParams) -> StudentTStats:
        """Statistics of a block, from weighted responsibilities ``(rows, K)``
        and the latent scale expectations under ``params`` (moments in the
        frame of the scales' size)."""
        means, nu = params.means, params.degrees_of_freedom
        k, dim = means.shape
        prec_chol = inverse_cholesky_transpose(jnp.linalg.cholesky(params.scales))
        frame = self._frame(params)

        def scale_weights(distances, nu):
            # u = (ν + D)/(ν + δ²); d = u − 1 without cancellation.
            log_u = jnp.log(nu + dim) - jnp.log(nu + distances)
            d = (dim - distances) / (nu + distances)
            return jnp.exp(log_u), _excess(d, log_u)

        # Every component's Mahalanobis distance from one whitening product
        # about the mean of the means (as the Gaussian's E-step), and the
        # moments of all components from one more (see centred_moments).
        reference = jnp.mean(means, axis=0)
        stacked = jnp.transpose(prec_chol, (1, 0, 2)).reshape(dim, k * dim)
        shifted = jnp.einsum("kd,kde->ke", means - reference, prec_chol)
        whitened = exact_matmul(x - reference, stacked).reshape(x.shape[0], k, dim) - shifted
        u, h = scale_weights(jnp.sum(jnp.square(whitened), axis=-1), nu)  # (rows, K)
        weight = resp * u
        first, second = centred_moments(
            weight, (x - reference) / frame, (means - reference) / frame
        )
        return StudentTStats(jnp.sum(weight, axis=0), first, second, jnp.sum(resp * h, axis=0))

    def shift_statistics(
        self,
        stats: StudentTStats,
        counts: Array,
        from_params: StudentTParams,
        to_params: StudentTParams,
    ) -> StudentTStats:
        """Statistics computed under ``from_params`` re-expressed about
        ``to_params`` (exact): the ``r·u``-weighted moments move from the old
        means to the new ones (``d = μ_from − μ_to``:
        ``S₁ + W d`` and ``S₂ + S₁ dᵀ + d S₁ᵀ + W d dᵀ`` with ``W = Σ r u``), and
        ``sum_excess`` absorbs the change of ``g((ν + D)/2) = log − ψ`` so that
        the ``ν`` equation's target ``g((ν + D)/2) + sum_excess / N_k`` stays the same.

        Args:
          stats: statistics computed under ``from_params``.
          counts: the components' total responsibilities ``N_k``, ``(K,)``.
          from_params: the parameters the statistics were computed under.
          to_params: the parameters to express them about.
        """
        frame_to = self._frame(to_params)
        ratio = self._frame(from_params) / frame_to
        d = (from_params.means - to_params.means) / frame_to  # (K, D), in the new frame
        dim = d.shape[1]
        weight = stats.sum_u
        sum_x = ratio * stats.sum_x
        cross = jnp.einsum("kd,ke->kde", sum_x, d)
        sum_xx = (
            jnp.square(ratio) * stats.sum_xx
            + cross
            + jnp.swapaxes(cross, -1, -2)
            + weight[:, None, None] * jnp.einsum("kd,ke->kde", d, d)
        )
        g_from, _ = log_minus_digamma(0.5 * (from_params.degrees_of_freedom + dim))
        g_to, _ = log_minus_digamma(0.5 * (to_params.degrees_of_freedom + dim))
        return StudentTStats(
            weight,
            sum_x + weight[:, None] * d,
            sum_xx,
            stats.sum_excess + counts * (g_from - g_to),
        )

    def maximize(
        self, stats: StudentTStats, counts: Array, params: StudentTParams, m_step_state: Any = ()
    ) -> tuple[StudentTParams, Any]:
        """The CM-steps: means and scales in closed form, then ``ν_k``.

        Always finite: an empty component keeps its mean, gets scale
        ``reg_covar · I`` (a scale that is singular in the working precision
        gets jitter) and a ``ν`` within the bounds.
        """
        means, scales = self._maximize_location_scale(
            stats, counts, params.means, self._frame(params)
        )
        dof = self._maximize_dof(stats, counts, params)
        return StudentTParams(means, scales, dof), m_step_state

    def _maximize_location_scale(
        self, stats: StudentTStats, counts: Array, old_means: Array, frame: Array
    ) -> tuple[Array, Array]:
        dtype = stats.sum_x.dtype
        dim = stats.sum_x.shape[1]
        positive = stats.sum_u > 0
        shift = stats.sum_x / jnp.where(positive, stats.sum_u, 1.0)[:, None]
        means = old_means + frame * shift
        # Σ r u (x − μ_new)(x − μ_new)ᵀ = S_xx − s sᵀ / Σ r u, about the old
        # means, in the statistics' frame, then scaled back.
        scatter = symmetrize(stats.sum_xx - jnp.einsum("kd,ke->kde", stats.sum_x, shift))
        scales = jnp.square(frame) * (scatter / counts[:, None, None])
        scales = scales + self.reg_covar * jnp.eye(dim, dtype=dtype)
        factors, jittered = cholesky_with_jitter(scales)
        rebuilt = factors @ jnp.swapaxes(factors, -1, -2)
        return means, jnp.where(jittered[:, None, None], rebuilt, scales)

    def _maximize_dof(self, stats: StudentTStats, counts: Array, params: StudentTParams) -> Array:
        dtype = counts.dtype
        if self.fix_degrees_of_freedom is not None:
            return jnp.full(counts.shape, self.fix_degrees_of_freedom, dtype)
        dim = stats.sum_x.shape[1]
        old = params.degrees_of_freedom
        g_old, _ = log_minus_digamma(0.5 * (old + dim))
        # log(ν/2) − ψ(ν/2) = log(a) − ψ(a) + (1/N_k) Σ r (u − 1 − log u), a = (ν_old + D)/2.
        target = g_old + stats.sum_excess / counts
        return solve_degrees_of_freedom(target, old, self.degrees_of_freedom_bounds)

    def initialize(self, x: Array, resp: Array, weights: Array | None = None) -> StudentTParams:
        """Weighted Gaussian means and covariances (as the means and scales)
        from responsibilities ``(n, K)``; ``ν_k = 10`` (or the fixed value).
        An empty component starts at the data mean."""
        k = resp.shape[1]
        dtype = x.dtype
        w = jnp.ones(x.shape[0], dtype) if weights is None else weights
        weighted = resp * w[:, None]
        counts = jnp.sum(weighted, axis=0)
        mean = (w @ x) / jnp.sum(w)
        own = (weighted.T @ x) / jnp.where(counts > 0, counts, 1.0)[:, None]
        means = jnp.where((counts > 0)[:, None], own, mean)
        # With u ≡ 1 (ν = ∞) the statistics are the Gaussian ones: one
        # M-step from moments about the component means, in the frame of the
        # data's largest deviation from its mean.
        frame = frame_scale(jnp.max(jnp.abs(x - mean)))
        sum_x, sum_xx = centred_moments(weighted, (x - mean) / frame, (means - mean) / frame)
        stats = StudentTStats(counts, sum_x, sum_xx, jnp.zeros((k,), dtype))
        counts = guarded_counts(counts, x.shape[0])
        means, scales = self._maximize_location_scale(stats, counts, means, frame)
        dof = self.fix_degrees_of_freedom or INITIAL_DEGREES_OF_FREEDOM
        return StudentTParams(means, scales, jnp.full((k,), dof, dtype))

    # ------------------------------------------------------------ the rest

    def log_prior(self, params: StudentTParams) -> Array:
        """``0.0``: maximum likelihood, no prior."""
        return jnp.zeros((), params.means.dtype)

    def sample(self, key: Array, params: StudentTParams, labels: Array) -> Array:
        """One draw per label, ``(n, D)``: ``μ + L z / √τ`` with ``z`` standard
        normal, ``L`` the Cholesky factor of the scale and
        ``τ ~ Gamma(ν/2, rate ν/2)``."""
        means, nu = params.means, params.degrees_of_freedom
        k, dim = means.shape
        n = labels.shape[0]
        dtype = means.dtype
        normal_key, gamma_key = jax.random.split(key)
        noise = jax.random.normal(normal_key, (n, dim), dtype)
        half = 0.5 * nu[labels]
        tau = jax.random.gamma(gamma_key, half, dtype=dtype) / half
        factors = jnp.linalg.cholesky(params.scales)

        def add_component(draws, component):
            factor, index = component
            return jnp.where((labels == index)[:, None], noise @ factor.T, draws), None

        draws, _ = lax.scan(add_component, jnp.zeros((n, dim), dtype), (factors, jnp.arange(k)))
        return means[labels] + draws / jnp.sqrt(tau)[:, None]

    def constraints(self, params: StudentTParams) -> StudentTParams:
        """Real means, positive-definite scales, and positive degrees of
        freedom (fixed with ``fix_degrees_of_freedom``)."""
        dof = gem.positive if self.fix_degrees_of_freedom is None else gem.fixed
        return StudentTParams(gem.real, gem.positive_definite, dof)

    def num_parameters(self, params: StudentTParams) -> int:
        """``K·D`` means, ``K·D(D+1)/2`` scales, and ``K`` degrees of freedom
        unless fixed."""
        k, dim = params.means.shape[-2:]
        dof = 0 if self.fix_degrees_of_freedom is not None else k
        return int(k * dim + k * dim * (dim + 1) // 2 + dof)
