"""Posteriors of a discrete latent variable from log-joint values.

For one observation ``x_i`` and ``K`` values of its latent ``z_i``, the
log-joint ``ℓ_ik = log p(x_i, z_i = k | θ)`` gives everything the E-step
needs: the marginal log-likelihood ``log p(x_i) = logsumexp_k ℓ_ik`` and the
posterior ``p(z_i = k | x_i) = softmax_k ℓ_ik``, which is the gradient of the
log-normaliser with respect to ``ℓ`` (design fact 2). Pure functions on
arrays, for one dataset, unjitted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxem._numerics import log_normalize

Array = jax.Array


def discrete_posterior(log_joint: Array) -> tuple[Array, Array]:
    """Marginal log-likelihoods and posteriors from log-joint values.

    Args:
      log_joint: ``(n, K)``, ``log p(x_i, z_i = k)``.

    Returns:
      ``(log_marginal (n,), posterior (n, K))``: ``logsumexp`` over ``k``
      and the normalised probabilities (one exponential per entry; a row
      whose entries are all ``-inf`` has ``log_marginal = -inf``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxem import inference
      >>> log_joint = jnp.log(jnp.array([[0.1, 0.3], [0.2, 0.2]]))
      >>> log_marginal, posterior = inference.discrete_posterior(log_joint)
      >>> import numpy as np
      >>> np.exp(np.asarray(log_marginal, float)).round(6).tolist()
      [0.4, 0.4]
      >>> np.asarray(posterior, float).round(6).tolist()
      [[0.25, 0.75], [0.5, 0.5]]
    """
    return log_normalize(log_joint, axis=1)


def posterior_from_gradient(log_joint: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """Weighted posteriors as the gradient of the weighted log-normaliser.

    ``L(ℓ) = Σ_i w_i logsumexp_k ℓ_ik`` is the (weighted) observed-data
    log-likelihood, and ``∂L / ∂ℓ_ik = w_i p(z_i = k | x_i)``: the E-step is
    one reverse-mode derivative. This is how a model given only by its
    log-joint gets its E-step.

    Args:
      log_joint: ``(n, K)``.
      weights: optional ``(n,)`` observation weights (``1`` each by default).

    Returns:
      ``(responsibilities (n, K), log_likelihood)``: ``w_i p(z_i = k | x_i)``
      (held fixed: no gradient flows through them) and ``L``, a scalar.
    """
    w = jnp.ones(log_joint.shape[0], log_joint.dtype) if weights is None else weights

    def log_normalizer(ell: Array) -> Array:
        # (a zero-weight row adds nothing, even where its density is 0)
        return jnp.sum(jnp.where(w > 0, w * log_normalize(ell, axis=1)[0], 0.0))

    total, resp = jax.value_and_grad(log_normalizer)(log_joint)
    return lax.stop_gradient(resp), total


def expected_log_joint(responsibilities: Array, log_joint: Array) -> Array:
    """``Q = Σ_ik r_ik ℓ_ik``, with ``0 · (−∞)`` taken as ``0``.

    With ``r`` the posterior under ``θ_old`` (held fixed) and ``ℓ`` the
    log-joint under ``θ``, this is EM's ``Q(θ, θ_old)`` up to the posterior's
    entropy, and its gradient in ``θ`` at ``θ_old`` is the log-likelihood's
    (Fisher's identity).

    Args:
      responsibilities: ``(n, K)`` (observation weights included).
      log_joint: ``(n, K)``.

    Returns:
      A scalar.
    """
    return jnp.sum(jnp.where(responsibilities > 0, responsibilities * log_joint, 0.0))
