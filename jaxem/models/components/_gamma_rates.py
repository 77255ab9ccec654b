"""What Poisson and exponential components share: rates ``λ (K, D)`` with an
optional ``Gamma(α, β)`` prior on each, and the statistic ``Σ_i w_i r_ik x_i``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxem import gem
from jaxem._numerics import exact_matmul
from jaxem.models.components._checks import (
    check_param_shape,
    check_param_values,
    check_params_type,
    check_prior_number,
    check_prior_pair,
    gamma_log_density,
    maximize_responsibilities,
)
from jaxem.models.components._component import Component

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GammaRateComponent(Component):
    """Base of components whose parameters are positive rates ``(K, D)`` with
    a Gamma prior, and whose statistics are ``Σ_i w_i r_ik x_i`` ``(K, D)``.

    Subclasses set ``params_type`` and ``stats_type`` (one-field NamedTuples:
    ``rates`` and ``sum_x``) and define the family's own parts: ``check_data``,
    ``prepare``, ``log_likelihoods``, ``maximize`` and ``sample``.
    """

    prior_shape: float | None = None
    prior_rate: float | None = None

    params_type: ClassVar[type]
    stats_type: ClassVar[type]

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

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong type or shape, or (when concrete)
        rates that are not positive and finite."""
        check_params_type(params, self.params_type)
        check_param_shape(params.rates, "rates", num_components, x)
        check_param_values(params.rates, "rates", lambda r: r > 0, "positive")

    def statistics(self, x: Array, resp: Array, params: Any) -> Any:
        """``Σ_i r_ik x_i`` ``(K, D)`` from weighted responsibilities ``(rows, K)``."""
        return self.stats_type(exact_matmul(resp.T, x))

    def initialize(self, x: Array, resp: Array, weights: Array | None) -> Any:
        """The M-step from unweighted responsibilities ``(n, K)``."""
        return maximize_responsibilities(self, x, resp, weights)

    def log_prior(self, params: Any) -> Array:
        """``Σ_kd log Gamma(λ_kd | α, β)`` (``0.0`` without a prior)."""
        rates = params.rates
        if not self.has_prior:
            return jnp.zeros((), rates.dtype)
        return gamma_log_density(rates, self.prior_shape, self.prior_rate)

    def constraints(self, params: Any) -> Any:
        """Positive rates."""
        return self.params_type(gem.positive)

    def num_parameters(self, params: Any) -> int:
        """``K·D`` rates."""
        k, dim = params.rates.shape[-2:]
        return int(k * dim)
