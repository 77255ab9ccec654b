"""The evidence lower bound of EM, for models with a discrete latent structure."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _engine
from jaxem._criteria import _checked, defines_expected_log_joint
from jaxem._numerics import num_rows
from jaxem._validation import as_float_array, check_finite, is_concrete

Array = jax.Array


class LowerBound(NamedTuple):
    """The evidence lower bound at parameters θ for a posterior q, and its gap.

    ``log_likelihood = elbo + kl``, each a scalar summed (weighted) over the
    observations.

    Attributes:
      elbo: ``E_q[log p(x, z | θ)] + H(q)``.
      kl: ``KL(q ‖ p(z | x, θ)) >= 0``, zero when q is the posterior under θ.
      log_likelihood: ``log p(x | θ)``.
    """

    elbo: Array
    kl: Array
    log_likelihood: Array


def elbo(model, params: Any, x: Any, q: Any = None, weights: Any = None) -> LowerBound:
    """The evidence lower bound ``E_q[log p(x, z | θ)] + H(q)`` of EM.

    ``q = p(z | x, q)`` is the posterior of the latent variables under the
    parameters ``q`` (``θ_old`` in EM; by default ``params`` itself, where
    the bound is tight). EM's E-step makes the bound touch the
    log-likelihood (``kl = 0``), and its M-step maximises the bound in θ with
    q held: ``elbo(model, θ_new, x, q=θ_old).elbo >= elbo(model, θ_old, x,
    q=θ_old).elbo``. At ``θ = q`` the bound's gradient in θ is the
    log-likelihood's (Fisher's identity). With ``H(q) = log p(x | q) −
    E_q[log p(x, z | q)]``, everything comes from the model's
    ``expected_log_joint`` and ``log_prob``.

    Args:
      model: a model of the :class:`~jaxem.Model` contract that defines
        ``expected_log_joint`` (mixtures, mixtures of experts, hidden Markov
        models).
      params: the parameters θ of the log-joint.
      x: data with ``n`` rows (sequences, for a hidden Markov model).
      q: the parameters of the posterior (``None``: ``params``).
      weights: optional ``(n,)`` non-negative per-observation weights (used
        as given, not rescaled).

    Returns:
      A :class:`LowerBound` ``(elbo, kl, log_likelihood)`` of scalars, summed
      (weighted) over the observations. Jitted with ``model`` static
      (compiles once per model and shapes); differentiable in ``params`` and
      ``q``.

    Raises:
      TypeError: the model does not define ``expected_log_joint``.
      ValueError: data, parameters or weights the model does not take.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> old = model.init(jax.random.key(0), x)
      >>> new, _ = jaxem.em_step(model, old, x)
      >>> before = jaxem.elbo(model, old, x)  # tight: kl = 0
      >>> after = jaxem.elbo(model, new, x, q=old)  # the M-step raised the bound
      >>> bool(after.elbo >= before.elbo), bool(after.kl >= 0)
      (True, True)
    """
    checked, params, x = _checked(model, params, x)
    if q is not None:
        q = _engine.check_params(checked, q, x, num_restarts=1, key=None)
    if not defines_expected_log_joint(checked):
        checked.expected_log_joint(params, x, params)  # (raises its TypeError)
    return _lower_bound(checked, params, x, params if q is None else q, _weights(weights, x))


def _weights(weights: Any, x: Any) -> Array | None:
    """Weights as a floating ``(n,)`` array of the data's dtype (not rescaled)."""
    if weights is None:
        return None
    n = num_rows(x)
    weights = as_float_array(weights, "weights")
    if weights.ndim != 1 or weights.shape[0] != n:
        raise ValueError(
            f"weights must have shape (n,) = ({n},), one per observation; "
            f"got shape {tuple(weights.shape)}"
        )
    check_finite(weights, "weights")
    if is_concrete(weights) and np.any(np.asarray(weights) < 0):
        raise ValueError("weights must be non-negative")
    return jnp.asarray(weights, jax.tree.leaves(x)[0].dtype)


def _weighted_sum(values: Array, weights: Array | None) -> Array:
    if weights is None:
        return jnp.sum(values)
    # A zero-weight observation adds nothing, even where its density is 0.
    return jnp.sum(jnp.where(weights > 0, weights * values, 0.0))


@functools.partial(jax.jit, static_argnums=0)
def _lower_bound(model, params: Any, x: Any, q: Any, weights: Array | None) -> LowerBound:
    log_likelihood = _weighted_sum(model.log_prob(params, x), weights)
    q_log_likelihood = _weighted_sum(model.log_prob(q, x), weights)
    cross = model.expected_log_joint(params, x, q, weights)
    tight = model.expected_log_joint(q, x, q, weights)
    # KL(q ‖ p_θ) = log p(x | θ) − E_q log p(x, z | θ) − H(q), with
    # H(q) = log p(x | q) − E_q log p(x, z | q), as differences of like terms
    # (exactly zero at q = θ).
    kl = (log_likelihood - q_log_likelihood) - (cross - tight)
    return LowerBound(log_likelihood - kl, kl, log_likelihood)
