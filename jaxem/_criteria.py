"""Information criteria for model selection, for any model of the contract."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxem._model import as_model
from jaxem._validation import is_concrete

Array = jax.Array


def _resolved(model: Any, x: Any) -> Any:
    """The model specialised to concrete data (see ``Model.for_data``)."""
    model = as_model(model)
    if all(is_concrete(leaf) for leaf in jax.tree.leaves(x)):
        return model.for_data(jax.tree.map(jnp.asarray, x))
    return model


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
    return _bic(_resolved(model, x), params, x)


def aic(model, params: Any, x: Array) -> Array:
    """Akaike information criterion, ``−2 log p(x | θ) + 2p`` (lower is better).

    Jitted with ``model`` static, as :func:`bic`."""
    return _aic(_resolved(model, x), params, x)


@functools.partial(jax.jit, static_argnums=0)
def _bic(model, params: Any, x: Array) -> Array:
    log_lik = jnp.sum(model.log_prob(params, x))
    n = jnp.asarray(model.num_observations(x), log_lik.dtype)
    return -2.0 * log_lik + model.num_parameters(params) * jnp.log(n)


@functools.partial(jax.jit, static_argnums=0)
def _aic(model, params: Any, x: Array) -> Array:
    log_lik = jnp.sum(model.log_prob(params, x))
    return -2.0 * log_lik + 2.0 * model.num_parameters(params)
