"""Exponential components (independent non-negative features), with an
optional Gamma prior on the rates, for :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from jaxem._numerics import exact_matmul
from jaxem.models.components._checks import (
    check_data_values,
    check_matrix_data,
    clip_rates,
)
from jaxem.models.components._gamma_rates import GammaRateComponent

Array = jax.Array


class ExponentialParams(NamedTuple):
    """Parameters of ``K`` exponential components.

    Attributes:
      rates: ``λ_kd`` (the inverse of feature ``d``'s mean in component
        ``k``), ``(K, D)``, positive.
    """

    rates: Array


class ExponentialStats(NamedTuple):
    """Additive statistics of ``K`` exponential components.

    Attributes:
      sum_x: ``Σ_i w_i r_ik x_i``, ``(K, D)``.
    """

    sum_x: Array


@dataclasses.dataclass(frozen=True)
class Exponential(GammaRateComponent):
    """Independent exponential features, for :class:`jaxem.Mixture`
    (e.g. waiting times, durations).

    ``log p(x_i | k) = Σ_d log λ_kd − λ_kd x_id`` for data ``x`` ``(n, D)``
    of non-negative reals (``scipy.stats.expon.logpdf(x, scale=1/λ)``; the
    density at 0 is ``λ``, so zeros are allowed). The M-step gives
    ``λ_kd = N_k / S_kd`` (maximum likelihood), or with a
    ``Gamma(shape α, rate β)`` prior on every rate the posterior mode
    ``(N_k + α − 1) / (S_kd + β)``, where ``S_kd = Σ_i w_i r_ik x_id`` and
    ``N_k = Σ_i w_i r_ik``. Rates are clipped to ``[√tiny, 1/√tiny]`` of the
    dtype (about ``1e-19`` to ``1e19`` in float32), so an empty component,
    or one that holds only zeros, keeps finite parameters; clipping the
    maximiser of this concave objective keeps EM monotone.

    Exact zeros make the likelihood unbounded: a component that holds only
    zeros has maximum-likelihood rate ``∞`` (the clip bounds it). A Gamma
    prior (``β > 0``) keeps every rate below ``(N_k + α − 1) / β``.

    Args:
      prior_shape: ``α >= 1`` of a ``Gamma(α, β)`` prior on every rate
        (``α − 1`` pseudo-observations); ``None`` with ``prior_rate`` for
        maximum likelihood.
      prior_rate: ``β > 0`` (their total size); set both or neither.

    Raises:
      TypeError, ValueError: for ``α < 1`` (the mode would be at 0),
        ``β <= 0``, a non-finite or non-numeric value, or only one of them.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.exponential(jax.random.key(0), (200, 3))
      >>> component = jaxem.Exponential(prior_shape=2.0, prior_rate=1.0)
      >>> model = jaxem.Mixture(component, num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> result.params.components.rates.shape
      (2, 3)
    """

    params_type: ClassVar[type] = ExponentialParams
    stats_type: ClassVar[type] = ExponentialStats

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is an ``(n, D)`` array of non-negative values
        (values checked only when ``x`` is concrete); return whether it is."""
        finite = check_matrix_data(x, "Exponential")
        return finite & check_data_values(
            x, lambda a: a < 0, "Exponential", "non-negative", "negative"
        )

    # ------------------------------------------------------------- the contract

    def prepare(self, params: ExponentialParams) -> tuple[Array, Array]:
        """``(λ (D, K), Σ_d log λ_kd (K,))``, once per call."""
        rates = params.rates
        return rates.T, jnp.sum(jnp.log(rates), axis=1)

    def log_likelihoods(self, prepared: tuple[Array, Array], x: Array) -> Array:
        """``log p(x_i | k)`` for a block of rows ``(rows, D)``: ``(rows, K)``."""
        rates, log_rates = prepared
        return log_rates - exact_matmul(x, rates)

    def maximize(
        self,
        stats: ExponentialStats,
        counts: Array,
        params: ExponentialParams | None,
        m_step_state: Any = (),
    ) -> tuple[ExponentialParams, Any]:
        """Maximum-likelihood or posterior-mode rates, clipped to
        ``[√tiny, 1/√tiny]`` (``params`` is not needed)."""
        sum_x = stats.sum_x
        if self.has_prior:
            rates = (counts + (self.prior_shape - 1.0))[:, None] / (sum_x + self.prior_rate)
        else:
            rates = counts[:, None] / sum_x  # inf where S = 0: clipped below
        return ExponentialParams(clip_rates(rates)), m_step_state

    def sample(self, key: Array, params: ExponentialParams, labels: Array) -> Array:
        """One draw per label, ``(n, D)``, in the params' dtype."""
        rates = params.rates
        draws = jax.random.exponential(key, (labels.shape[0], rates.shape[-1]), rates.dtype)
        return draws / rates[labels]
