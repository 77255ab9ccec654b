"""Poisson components (independent counts per feature), with an optional
Gamma prior on the rates, for :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from jaxem._numerics import exact_matmul
from jaxem.models._component_checks import (
    check_count_data,
    check_matrix_data,
    check_param_shape,
    check_param_values,
    check_params_type,
    check_prior_number,
    check_prior_pair,
    clip_rates,
    gamma_log_density,
    maximize_responsibilities,
)

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
class Poisson:
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

    prior_shape: float | None = None
    prior_rate: float | None = None

    def __post_init__(self):
        owner = type(self).__name__
        shape = check_prior_number(owner, "prior_shape", self.prior_shape, 1.0, inclusive=True)
        rate = check_prior_number(owner, "prior_rate", self.prior_rate, 0.0, inclusive=False)
        check_prior_pair(owner, ("prior_shape", "prior_rate"), (shape, rate))
        object.__setattr__(self, "prior_shape", shape)
        object.__setattr__(self, "prior_rate", rate)

    @property
    def has_prior(self) -> bool:
        """Whether the component has a Gamma prior (MAP estimation)."""
        return self.prior_shape is not None

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> None:
        """Raise unless ``x`` is an ``(n, D)`` array of non-negative integer
        counts (values checked only when ``x`` is concrete)."""
        check_matrix_data(x, "Poisson")
        check_count_data(x, "Poisson")

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong type or shape, or (when concrete)
        rates that are not positive and finite."""
        check_params_type(params, PoissonParams)
        check_param_shape(params.rates, "rates", num_components, x)
        check_param_values(params.rates, "rates", lambda r: r > 0, "positive")

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

    def statistics(self, x: Array, resp: Array, params: PoissonParams) -> PoissonStats:
        """``Σ_i r_ik x_i`` ``(K, D)`` from weighted responsibilities ``(rows, K)``."""
        return PoissonStats(exact_matmul(resp.T, x))

    def maximize(
        self, stats: PoissonStats, counts: Array, params: PoissonParams | None
    ) -> PoissonParams:
        """Maximum-likelihood or posterior-mode rates, clipped to
        ``[√tiny, 1/√tiny]`` (``params`` is not needed)."""
        sum_x = stats.sum_x
        if self.has_prior:
            rates = (sum_x + (self.prior_shape - 1.0)) / (counts + self.prior_rate)[:, None]
        else:
            rates = sum_x / counts[:, None]
        return PoissonParams(clip_rates(rates))

    def initialize(self, x: Array, resp: Array, weights: Array | None) -> PoissonParams:
        """The M-step from unweighted responsibilities ``(n, K)``."""
        return maximize_responsibilities(self, x, resp, weights)

    def log_prior(self, params: PoissonParams) -> Array:
        """``Σ_kd log Gamma(λ_kd | α, β)`` (``0.0`` without a prior)."""
        rates = params.rates
        if not self.has_prior:
            return jnp.zeros((), rates.dtype)
        return gamma_log_density(rates, self.prior_shape, self.prior_rate)

    def sample(self, key: Array, params: PoissonParams, labels: Array) -> Array:
        """One draw per label: counts ``(n, D)`` in the params' (floating) dtype."""
        rates = params.rates
        return jax.random.poisson(key, rates[labels]).astype(rates.dtype)

    def num_parameters(self, params: PoissonParams) -> int:
        """``K·D`` rates."""
        k, dim = params.rates.shape[-2:]
        return int(k * dim)
