"""Poisson components (independent counts per feature), with an optional
Gamma prior on the rates, for :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from jaxem._numerics import exact_matmul
from jaxem.models.components._checks import (
    check_count_data,
    check_matrix_data,
    clip_rates,
)
from jaxem.models.components._gamma_rates import GammaRateComponent

Array = jax.Array


class PoissonParams(NamedTuple):
    """Parameters of ``K`` Poisson components.

    Attributes:
      rates: ``λ_kd``, the mean count of feature ``d`` in component ``k``,
        ``(K, D)``, positive.
    """

    rates: Array


class PoissonStats(NamedTuple):
    """Additive statistics of ``K`` Poisson components.

    Attributes:
      sum_x: ``Σ_i w_i r_ik x_i``, ``(K, D)``.
    """

    sum_x: Array


@dataclasses.dataclass(frozen=True)
class Poisson(GammaRateComponent):
    """Independent Poisson counts per feature, for :class:`jaxem.Mixture`.

    ``log p(x_i | k) = Σ_d x_id log λ_kd − λ_kd − log(x_id!)``, for data
    ``x`` ``(n, D)`` of non-negative integer counts. The M-step gives
    ``λ_kd = S_kd / N_k`` (maximum likelihood), or with a
    ``Gamma(shape α, rate β)`` prior on every rate the posterior mode
    ``(S_kd + α − 1) / (N_k + β)``, where ``S_kd = Σ_i w_i r_ik x_id`` and
    ``N_k = Σ_i w_i r_ik``. Rates are clipped to ``[√tiny, 1/√tiny]`` of the
    dtype (about ``1e-19`` to ``1e19`` in float32), so a feature that is
    always 0 in a component, or an empty component, keeps finite
    log-likelihoods; clipping the maximiser of this concave objective keeps
    EM monotone.

    Args:
      prior_shape: ``α >= 1`` of a ``Gamma(α, β)`` prior on every rate
        (``α − 1`` pseudo-counts); ``None`` with ``prior_rate`` for maximum
        likelihood.
      prior_rate: ``β > 0`` (pseudo-observations); set both or neither.

    Raises:
      TypeError, ValueError: for ``α < 1`` (the mode would be at 0),
        ``β <= 0``, a non-finite or non-numeric value, or only one of them.

    Examples:
      >>> import jax, jaxem
      >>> counts = jax.random.poisson(jax.random.key(0), 3.0, (200, 4))
      >>> model = jaxem.Mixture(jaxem.Poisson(), num_components=2)
      >>> result = jaxem.fit(model, counts, key=jax.random.key(1))
      >>> result.params.components.rates.shape
      (2, 4)
    """

    params_type: ClassVar[type] = PoissonParams
    stats_type: ClassVar[type] = PoissonStats

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is an ``(n, D)`` array of non-negative integer
        counts (values checked only when ``x`` is concrete); return whether it is."""
        return check_matrix_data(x, "Poisson") & check_count_data(x, "Poisson")

    # ------------------------------------------------------------- the contract

    def prepare(self, params: PoissonParams) -> tuple[Array, Array]:
        """``(log λ (D, K), Σ_d λ_kd (K,))``, once per call."""
        rates = params.rates
        return jnp.log(rates).T, jnp.sum(rates, axis=1)

    def log_likelihoods(self, prepared: tuple[Array, Array], x: Array) -> Array:
        """``log p(x_i | k)`` for a block of rows ``(rows, D)``: ``(rows, K)``."""
        log_rates, total_rates = prepared
        log_factorials = jnp.sum(gammaln(x + 1.0), axis=1)
        return exact_matmul(x, log_rates) - total_rates - log_factorials[:, None]

    def maximize(
        self,
        stats: PoissonStats,
        counts: Array,
        params: PoissonParams | None,
        m_step_state: Any = (),
    ) -> tuple[PoissonParams, Any]:
        """Maximum-likelihood or posterior-mode rates, clipped to
        ``[√tiny, 1/√tiny]`` (``params`` is not needed)."""
        sum_x = stats.sum_x
        if self.has_prior:
            rates = (sum_x + (self.prior_shape - 1.0)) / (counts + self.prior_rate)[:, None]
        else:
            rates = sum_x / counts[:, None]
        return PoissonParams(clip_rates(rates)), m_step_state

    def sample(self, key: Array, params: PoissonParams, labels: Array) -> Array:
        """One draw per label: counts ``(n, D)`` in the params' (floating) dtype."""
        rates = params.rates
        return jax.random.poisson(key, rates[labels]).astype(rates.dtype)
