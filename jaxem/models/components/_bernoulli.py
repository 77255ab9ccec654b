"""Multivariate Bernoulli components (independent binary features), with an
optional Beta prior, for :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem import gem
from jaxem._numerics import exact_matmul
from jaxem.models.components._checks import (
    check_data_values,
    check_matrix_data,
    check_param_shape,
    check_param_values,
    check_params_type,
    check_prior_number,
    check_prior_pair,
    maximize_responsibilities,
)
from jaxem.models.components._component import Component

Array = jax.Array


class BernoulliParams(NamedTuple):
    """Parameters of ``K`` multivariate Bernoulli components.

    Attributes:
      probs: ``p_kd = P(x_d = 1 | k)``, ``(K, D)``, in the open interval
        ``(0, 1)``.
    """

    probs: Array


class BernoulliStats(NamedTuple):
    """Additive statistics of ``K`` Bernoulli components.

    Attributes:
      sum_x: ``Σ_i w_i r_ik x_i``, ``(K, D)``: the expected number of ones
        per component and feature.
    """

    sum_x: Array


@dataclasses.dataclass(frozen=True)
class Bernoulli(Component):
    """Independent Bernoulli features, for :class:`jaxem.Mixture` (a latent
    class model for binary data).

    ``log p(x_i | k) = Σ_d x_id log p_kd + (1 − x_id) log(1 − p_kd)``, for data
    ``x`` ``(n, D)`` of zeros and ones (booleans and integers are converted to
    floats). The M-step gives ``p_kd = S_kd / N_k`` (maximum likelihood), or
    with a ``Beta(a, b)`` prior on every probability the posterior mode
    ``(S_kd + a − 1) / (N_k + a + b − 2)``, where ``S_kd = Σ_i w_i r_ik x_id``
    and ``N_k = Σ_i w_i r_ik``. Probabilities are clipped to
    ``[eps, 1 − eps]`` of the dtype, so log-likelihoods stay finite (a
    feature that is always 0 in a component gets ``p = eps``; an empty
    component gets ``p = eps`` without a prior, the prior's mode with one);
    clipping the maximiser of this concave objective keeps EM monotone.

    Args:
      prior_a: ``a >= 1`` of a ``Beta(a, b)`` prior on every ``p_kd`` (the
        prior's pseudo-count of ones is ``a − 1``); ``None`` with ``prior_b``
        for maximum likelihood.
      prior_b: ``b >= 1`` (pseudo-count of zeros ``b − 1``); set both or
        neither. ``Beta(2, 2)`` is Laplace smoothing: one pseudo-observation
        of each value.

    Raises:
      TypeError, ValueError: for a hyperparameter that is not a finite number
        ``>= 1`` (the mode is on the boundary below 1), or only one of them.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.bernoulli(jax.random.key(0), 0.3, (100, 5))
      >>> component = jaxem.Bernoulli(prior_a=2.0, prior_b=2.0)
      >>> model = jaxem.Mixture(component, num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> result.params.components.probs.shape
      (2, 5)
    """

    prior_a: float | None = None
    prior_b: float | None = None

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("prior_a", "prior_b"):
            value = check_prior_number(owner, name, getattr(self, name), 1.0, inclusive=True)
            object.__setattr__(self, name, value)
        check_prior_pair(owner, ("prior_a", "prior_b"), (self.prior_a, self.prior_b))

    @property
    def has_prior(self) -> bool:
        """Whether the component has a Beta prior (MAP estimation)."""
        return self.prior_a is not None

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is an ``(n, D)`` array of zeros and ones (values
        checked only when ``x`` is concrete); return whether they are."""
        finite = check_matrix_data(x, "Bernoulli")
        return finite & check_data_values(
            x, lambda a: (a != 0) & (a != 1), "Bernoulli", "binary (0 or 1)", "non-binary"
        )

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong type or shape, or (when concrete)
        probabilities outside the open interval ``(0, 1)``."""
        check_params_type(params, BernoulliParams)
        check_param_shape(params.probs, "probs", num_components, x)
        check_param_values(
            params.probs, "probs", lambda p: (p > 0) & (p < 1), "in the open interval (0, 1)"
        )

    # ------------------------------------------------------------- the contract

    def prepare(self, params: BernoulliParams) -> tuple[Array, Array]:
        """``(logits (D, K), Σ_d log(1 − p_kd) (K,))``, once per call."""
        probs = params.probs
        log_complement = jnp.log1p(-probs)
        return (jnp.log(probs) - log_complement).T, jnp.sum(log_complement, axis=1)

    def log_likelihoods(self, prepared: tuple[Array, Array], x: Array) -> Array:
        """``log p(x_i | k)`` for a block of rows ``(rows, D)``: ``(rows, K)``."""
        logits, constant = prepared
        return exact_matmul(x, logits) + constant

    def statistics(self, x: Array, resp: Array, params: BernoulliParams) -> BernoulliStats:
        """``Σ_i r_ik x_i`` ``(K, D)`` from weighted responsibilities ``(rows, K)``."""
        return BernoulliStats(exact_matmul(resp.T, x))

    def maximize(
        self,
        stats: BernoulliStats,
        counts: Array,
        params: BernoulliParams | None,
        m_step_state: Any = (),
    ) -> tuple[BernoulliParams, Any]:
        """Maximum-likelihood or posterior-mode probabilities, clipped to
        ``[eps, 1 − eps]`` (``params`` is not needed)."""
        sum_x = stats.sum_x
        if self.has_prior:
            numerator = sum_x + (self.prior_a - 1.0)
            denominator = counts + (self.prior_a + self.prior_b - 2.0)
        else:
            numerator, denominator = sum_x, counts
        eps = jnp.finfo(sum_x.dtype).eps
        probs = jnp.clip(numerator / denominator[:, None], eps, 1.0 - eps)
        return BernoulliParams(probs), m_step_state

    def initialize(self, x: Array, resp: Array, weights: Array | None) -> BernoulliParams:
        """The M-step from unweighted responsibilities ``(n, K)``."""
        return maximize_responsibilities(self, x, resp, weights)

    def log_prior(self, params: BernoulliParams) -> Array:
        """``Σ_kd log Beta(p_kd | a, b)`` (``0.0`` without a prior)."""
        probs = params.probs
        if not self.has_prior:
            return jnp.zeros((), probs.dtype)
        a, b = self.prior_a, self.prior_b
        log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        return jnp.sum((a - 1.0) * jnp.log(probs) + (b - 1.0) * jnp.log1p(-probs)) - (
            probs.size * log_beta
        )

    def sample(self, key: Array, params: BernoulliParams, labels: Array) -> Array:
        """One draw per label: ``(n, D)`` zeros and ones, in the params' dtype."""
        probs = params.probs
        return jax.random.bernoulli(key, probs[labels]).astype(probs.dtype)

    def constraints(self, params: BernoulliParams) -> BernoulliParams:
        """Probabilities in ``(0, 1)``."""
        return BernoulliParams(gem.unit_interval)

    def num_parameters(self, params: BernoulliParams) -> int:
        """``K·D`` probabilities."""
        k, dim = params.probs.shape[-2:]
        return int(k * dim)
