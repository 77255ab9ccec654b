"""Information criteria for model selection, for any model of the contract."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem import _engine
from jaxem._model import Model, _Completed, as_model
from jaxem._validation import is_concrete

Array = jax.Array


def _resolved(model: Any, x: Any) -> Any:
    """The model specialised to concrete data (see ``Model.for_data``)."""
    model = as_model(model)
    if all(is_concrete(leaf) for leaf in jax.tree.leaves(x)):
        return model.for_data(jax.tree.map(jnp.asarray, x))
    return model


def _checked(model: Any, params: Any, x: Any) -> tuple[Any, Any, Any]:
    """``(model resolved for the data, params, x)``, checked eagerly as
    :func:`jaxem.fit` checks them: data as floating arrays the model takes,
    parameters of ``model.init``'s structure and shapes, in the data's dtype."""
    model = as_model(model)
    x, _, _ = _engine.check_data(model, x, None)
    params = _engine.check_params(model, params, x, num_restarts=1, key=None)
    return _resolved(model, x), params, x


def defines_expected_log_joint(model: Any) -> bool:
    """Whether ``model`` (through :func:`~jaxem._model.as_model`) defines
    ``expected_log_joint`` (the contract's default raises ``TypeError``)."""
    owner = model.model if isinstance(model, _Completed) else model
    method = getattr(type(owner), "expected_log_joint", None)
    return method is not None and method is not Model.expected_log_joint


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


def icl(model, params: Any, x: Any) -> Array:
    """Integrated completed likelihood, ``BIC + 2 H(q)`` (lower is better).

    The BIC-entropy form of Biernacki, Celeux and Govaert (2000): BIC
    penalised by twice the entropy ``H(q)`` of the posterior ``q = p(z | x,
    θ)`` of the latent variables (summed over observations; for a hidden
    Markov model, the entropy of each sequence's posterior over state
    paths), equivalently ``−2 E_q[log p(x, z | θ)] + p log n``. It prefers
    well-separated clusters: where BIC may pick extra overlapping components
    to fit a non-Gaussian cluster, ICL does not. ``H(q) = log p(x | θ) −
    E_q[log p(x, z | θ)]``, with the model's ``expected_log_joint``.

    Args:
      model: a model of the :class:`~jaxem.Model` contract that defines
        ``expected_log_joint`` (mixtures, mixtures of experts, hidden Markov
        models).
      params: its parameters.
      x: data with ``n`` observations (see :func:`bic`).

    Returns:
      A scalar. Jitted with ``model`` static (compiles once per model and
      shapes).

    Raises:
      TypeError: the model does not define ``expected_log_joint``.
      ValueError: data or parameters the model does not take.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = jaxem.fit(model, x, key=jax.random.key(0)).params
      >>> bool(jaxem.icl(model, params, x) >= jaxem.bic(model, params, x))  # H(q) >= 0
      True

    References:
      Biernacki, C., Celeux, G. and Govaert, G. (2000). Assessing a mixture
      model for clustering with the integrated completed likelihood. IEEE
      Transactions on Pattern Analysis and Machine Intelligence 22, 719-725.
    """
    model, params, x = _checked(model, params, x)
    if not defines_expected_log_joint(model):
        model.expected_log_joint(params, x, params)  # (raises its TypeError)
    return _icl(model, params, x)


@functools.partial(jax.jit, static_argnums=0)
def _icl(model, params: Any, x: Any) -> Array:
    return _scores(model, params, x, with_icl=True).icl


class Scores(NamedTuple):
    """Every criterion of one fitted model (scalars; ``icl`` is NaN for a
    model without ``expected_log_joint``)."""

    log_likelihood: Array
    bic: Array
    aic: Array
    icl: Array


def _scores(model, params: Any, x: Any, with_icl: bool) -> Scores:
    log_lik = jnp.sum(model.log_prob(params, x))
    n = jnp.asarray(model.num_observations(x), log_lik.dtype)
    num_parameters = model.num_parameters(params)
    bic_value = -2.0 * log_lik + num_parameters * jnp.log(n)
    if with_icl:
        entropy = log_lik - model.expected_log_joint(params, x, params)
        icl_value = bic_value + 2.0 * entropy
    else:
        icl_value = jnp.full((), jnp.nan, log_lik.dtype)
    return Scores(log_lik, bic_value, -2.0 * log_lik + 2.0 * num_parameters, icl_value)


scores = jax.jit(_scores, static_argnums=(0, 3))
"""Every criterion of a fitted model in one program (jitted, ``model`` and
``with_icl`` static): :class:`Scores`."""


@functools.partial(jax.jit, static_argnums=0)
def _bic(model, params: Any, x: Array) -> Array:
    log_lik = jnp.sum(model.log_prob(params, x))
    n = jnp.asarray(model.num_observations(x), log_lik.dtype)
    return -2.0 * log_lik + model.num_parameters(params) * jnp.log(n)


@functools.partial(jax.jit, static_argnums=0)
def _aic(model, params: Any, x: Array) -> Array:
    log_lik = jnp.sum(model.log_prob(params, x))
    return -2.0 * log_lik + 2.0 * model.num_parameters(params)
