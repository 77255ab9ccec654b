"""Information criteria for model selection, for any model of the contract."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxem._numerics import num_rows

Array = jax.Array


@functools.partial(jax.jit, static_argnums=0)
def bic(model, params: Any, x: Array) -> Array:
    """Bayesian information criterion, ``−2 log p(x | θ) + p log n`` (lower is better).

    Args:
      model: a model of the :class:`~jaxem.Model` contract.
      params: its parameters.
      x: data with ``n`` observations along the leading axis (an array, or a
        tuple of arrays such as ``(inputs, targets)``).

    Returns:
      A scalar. Jitted with ``model`` static (compiles once per model and
      shapes).

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> scores = []
      >>> for k in (1, 2, 3):
      ...     model = jaxem.GaussianMixture(num_components=k)
      ...     result = jaxem.fit(model, x, key=jax.random.key(0))
      ...     scores.append(float(jaxem.bic(model, result.params, x)))
      >>> min(range(3), key=scores.__getitem__) + 1  # two clusters of eruptions
      2
    """
    log_lik = jnp.sum(model.log_prob(params, x))
    return -2.0 * log_lik + model.num_parameters(params) * math.log(num_rows(x))


@functools.partial(jax.jit, static_argnums=0)
def aic(model, params: Any, x: Array) -> Array:
    """Akaike information criterion, ``−2 log p(x | θ) + 2p`` (lower is better)."""
    log_lik = jnp.sum(model.log_prob(params, x))
    return -2.0 * log_lik + 2.0 * model.num_parameters(params)
