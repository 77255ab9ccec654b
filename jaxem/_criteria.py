"""Information criteria for model selection, for any model of the contract."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxem._model import as_model

Array = jax.Array


@functools.partial(jax.jit, static_argnums=0)
def bic(model, params: Any, x: Array) -> Array:
    """Bayesian information criterion, ``−2 log p(x | θ) + p log n`` (lower is better).

    Args:
      model: a model of the :class:`~jaxem.Model` contract.
      params: its parameters.
      x: data with ``n`` observations (``model.num_observations(x)``: the
        rows of an array or of a tuple of arrays such as ``(inputs,
        targets)``; the valid steps of a batch of sequences).

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
    n = jnp.asarray(as_model(model).num_observations(x), log_lik.dtype)
    return -2.0 * log_lik + model.num_parameters(params) * jnp.log(n)


@functools.partial(jax.jit, static_argnums=0)
def aic(model, params: Any, x: Array) -> Array:
    """Akaike information criterion, ``−2 log p(x | θ) + 2p`` (lower is better)."""
    log_lik = jnp.sum(model.log_prob(params, x))
    return -2.0 * log_lik + 2.0 * model.num_parameters(params)
