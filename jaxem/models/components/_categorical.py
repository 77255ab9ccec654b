"""Categorical / multinomial components (counts over ``D`` categories), with an
optional Dirichlet prior, for :class:`jaxem.Mixture`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import gem
from jaxem._numerics import exact_matmul
from jaxem._validation import is_concrete
from jaxem.models.components._checks import (
    check_count_data,
    check_matrix_data,
    check_param_shape,
    check_param_values,
    check_params_type,
    check_prior_number,
    maximize_responsibilities,
)
from jaxem.models.components._component import Component

Array = jax.Array


class CategoricalParams(NamedTuple):
    """Parameters of ``K`` categorical (multinomial) components.

    Attributes:
      probs: category probabilities ``p_kd``, ``(K, D)``; each row is
        positive and sums to 1.
    """

    probs: Array


class CategoricalStats(NamedTuple):
    """Additive statistics of ``K`` categorical components.

    Attributes:
      sum_x: ``Σ_i w_i r_ik x_i``, ``(K, D)``: expected counts of each
        category per component.
    """

    sum_x: Array


@dataclasses.dataclass(frozen=True)
class Categorical(Component):
    """Multinomial components over ``D`` categories, for :class:`jaxem.Mixture`
    (a mixture of unigrams for bags of words; one-hot rows are categorical
    data).

    Each row ``x_i`` ``(D,)`` holds non-negative integer counts (the number
    of trials ``n_i = Σ_d x_id`` may differ between rows, and may be 0), and
    ``log p(x_i | k) = log(n_i! / Π_d x_id!) + Σ_d x_id log p_kd``, the
    multinomial log-pmf (``scipy.stats.multinomial.logpmf``). The M-step
    gives ``p_kd ∝ S_kd`` (maximum likelihood), or with a symmetric
    ``Dirichlet(α)`` prior on every row of probabilities the posterior mode
    ``p_kd ∝ S_kd + α − 1``, where ``S_kd = Σ_i w_i r_ik x_id``.
    Probabilities are floored at ``√tiny`` of the dtype (about ``1e-19`` in
    float32) and renormalised, so a category never seen by a component, or an
    empty component (which becomes uniform), keeps finite log-likelihoods.

    k-means initialisation clusters the rows' proportions ``x_i / n_i``
    (:meth:`features`), not the raw counts, so rows of different lengths
    with the same composition start together.

    Args:
      prior_concentration: ``α >= 1`` of a symmetric Dirichlet prior on each
        component's probabilities (``α − 1`` pseudo-counts per category;
        ``α = 2`` is Laplace smoothing); ``None`` for maximum likelihood.

    Raises:
      TypeError, ValueError: for a concentration that is not a finite number
        ``>= 1`` (the mode is on the boundary of the simplex below 1).

    Examples:
      >>> import jax, jaxem
      >>> labels = jax.random.categorical(jax.random.key(0), jax.numpy.zeros(6), shape=(100,))
      >>> x = jax.nn.one_hot(labels, 6)
      >>> component = jaxem.Categorical(prior_concentration=2.0)
      >>> model = jaxem.Mixture(component, num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> result.params.components.probs.shape
      (2, 6)
    """

    prior_concentration: float | None = None

    def __post_init__(self):
        value = check_prior_number(
            type(self).__name__,
            "prior_concentration",
            self.prior_concentration,
            1.0,
            inclusive=True,
        )
        object.__setattr__(self, "prior_concentration", value)

    @property
    def has_prior(self) -> bool:
        """Whether the component has a Dirichlet prior (MAP estimation)."""
        return self.prior_concentration is not None

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is an ``(n, D)`` array of non-negative integer
        counts (values checked only when ``x`` is concrete); return whether it is."""
        return check_matrix_data(x, "Categorical") & check_count_data(x, "Categorical")

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong type or shape, or (when concrete)
        probabilities that are not positive or whose rows do not sum to 1."""
        check_params_type(params, CategoricalParams)
        check_param_shape(params.probs, "probs", num_components, x)
        check_param_values(params.probs, "probs", lambda p: p > 0, "positive")
        if is_concrete(params.probs):
            probs = np.asarray(params.probs, dtype=float)
            totals = probs.sum(axis=1)
            dim = probs.shape[1]
            tolerance = max(1e-4, 10.0 * dim * float(jnp.finfo(params.probs.dtype).eps))
            bad = np.flatnonzero(np.abs(totals - 1.0) > tolerance)
            if bad.size:
                raise ValueError(
                    f"every row of params.probs must sum to 1; {bad.size} row(s) do not, "
                    f"the first is row {bad[0]}, which sums to {totals[bad[0]]:.6g}"
                )

    def features(self, x: Array) -> Array:
        """Proportions ``x_i / n_i`` ``(n, D)`` for k-means seeding (rows with
        no counts stay zero)."""
        totals = jnp.sum(x, axis=1, keepdims=True)
        return x / jnp.where(totals > 0, totals, 1.0)

    # ------------------------------------------------------------- the contract

    def prepare(self, params: CategoricalParams) -> Array:
        """``log p`` transposed, ``(D, K)``, once per call."""
        return jnp.log(params.probs).T

    def log_likelihoods(self, prepared: Array, x: Array) -> Array:
        """Multinomial ``log p(x_i | k)`` for a block of rows ``(rows, D)``:
        ``(rows, K)``."""
        log_coefficient = gammaln(jnp.sum(x, axis=1) + 1.0) - jnp.sum(gammaln(x + 1.0), axis=1)
        return exact_matmul(x, prepared) + log_coefficient[:, None]

    def statistics(self, x: Array, resp: Array, params: CategoricalParams) -> CategoricalStats:
        """``Σ_i r_ik x_i`` ``(K, D)`` from weighted responsibilities ``(rows, K)``."""
        return CategoricalStats(exact_matmul(resp.T, x))

    def maximize(
        self,
        stats: CategoricalStats,
        counts: Array,
        params: CategoricalParams | None,
        m_step_state: Any = (),
    ) -> tuple[CategoricalParams, Any]:
        """Maximum-likelihood or posterior-mode probabilities, floored at
        ``√tiny`` and renormalised (``counts`` and ``params`` are not needed:
        the normaliser is each row's total count)."""
        sum_x = stats.sum_x
        if self.has_prior:
            sum_x = sum_x + (self.prior_concentration - 1.0)
        floor = math.sqrt(float(jnp.finfo(sum_x.dtype).tiny))
        totals = jnp.sum(sum_x, axis=1, keepdims=True)
        probs = jnp.maximum(sum_x / jnp.maximum(totals, floor), floor)
        return CategoricalParams(probs / jnp.sum(probs, axis=1, keepdims=True)), m_step_state

    def initialize(self, x: Array, resp: Array, weights: Array | None) -> CategoricalParams:
        """The M-step from unweighted responsibilities ``(n, K)``."""
        return maximize_responsibilities(self, x, resp, weights)

    def log_prior(self, params: CategoricalParams) -> Array:
        """``Σ_k log Dirichlet(p_k | α)`` (``0.0`` without a prior)."""
        probs = params.probs
        if not self.has_prior:
            return jnp.zeros((), probs.dtype)
        alpha = self.prior_concentration
        k, dim = probs.shape
        log_normalizer = math.lgamma(dim * alpha) - dim * math.lgamma(alpha)
        return k * log_normalizer + (alpha - 1.0) * jnp.sum(jnp.log(probs))

    def sample(self, key: Array, params: CategoricalParams, labels: Array) -> Array:
        """One draw of one trial per label: one-hot rows ``(n, D)`` in the
        params' dtype. (The number of trials of count data is not a parameter;
        sum draws for more trials.)"""
        probs = params.probs
        categories = jax.random.categorical(key, jnp.log(probs)[labels], axis=-1)
        return jax.nn.one_hot(categories, probs.shape[-1], dtype=probs.dtype)

    def constraints(self, params: CategoricalParams) -> CategoricalParams:
        """Rows of probabilities on the simplex."""
        return CategoricalParams(gem.simplex)

    def num_parameters(self, params: CategoricalParams) -> int:
        """``K·(D − 1)`` free probabilities."""
        k, dim = params.probs.shape[-2:]
        return int(k * (dim - 1))
