"""Missing values filled in by a fitted model, for any model that takes them."""

from __future__ import annotations

import functools
from typing import Any

import jax

from jaxem._model import as_model
from jaxem._validation import is_concrete

Array = jax.Array


def impute(model: Any, params: Any, x: Any, key: Array | None = None) -> Array:
    """The data with their missing (NaN) entries filled in by ``model``.

    Without ``key``, the conditional means ``E[x_m | x_o, θ]`` of the missing
    entries given each observation's observed ones (the best guess in squared
    error); with ``key``, one draw from ``p(x_m | x_o, θ)`` (for multiple
    imputation, draw with several keys). Observed entries are returned
    unchanged. Models that take missing values define ``impute(params, x,
    key)``: mixtures and hidden Markov models of Gaussian families, factor
    analysis and linear dynamical systems.

    Args:
      model: a model that takes missing values, e.g. ``jaxem.GaussianMixture``.
      params: its (fitted) parameters.
      x: data in the model's layout, NaN where missing.
      key: optional PRNG key, for a draw instead of the conditional means.

    Returns:
      The filled-in data values (for sequence models, the ``(B, T, ...)``
      values array). Jitted with ``model`` static.

    Raises:
      TypeError: the model does not take missing values.
      ValueError: data the model cannot take (see its ``check_data``).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (100, 2)) @ jnp.array([[1.0, 0.9], [0.0, 0.4]])
      >>> model = jaxem.GaussianMixture(1)
      >>> params = jaxem.fit(model, x, key=jax.random.key(1)).params
      >>> filled = jaxem.impute(model, params, x.at[0, 1].set(jnp.nan))
      >>> bool(jnp.isfinite(filled[0, 1]))
      True
    """
    if not callable(getattr(model, "impute", None)):
        raise TypeError(f"{type(model).__name__} does not take missing values: nothing to impute")
    model = as_model(model)
    x = jax.tree.map(lambda a: jax.numpy.asarray(a), x)
    # (a latent structure over a family without missing values says so when
    # traced: no compilation)
    jax.eval_shape(lambda p, d: model.impute(p, d, None), params, x)
    model.check_data(x)
    model.check_params(params, x)
    if all(is_concrete(leaf) for leaf in jax.tree.leaves(x)):
        model = model.for_data(x)
    return _impute(model, params, x, key)


@functools.partial(jax.jit, static_argnums=0)
def _impute(model: Any, params: Any, x: Any, key: Array | None) -> Array:
    return model.impute(params, x, key)
