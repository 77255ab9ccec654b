"""Inference for latent variables: pure functions on arrays.

Models call these, and users can call them inside their own ``jit``,
``vmap`` and ``grad`` code. Today: the posterior of a discrete latent
variable from its log-joint values (mixtures, mixtures of experts, models
given as a log-joint). Forward-backward and Kalman smoothing belong here too.
"""

from jaxem.inference._discrete import (
    discrete_posterior,
    expected_log_joint,
    posterior_from_gradient,
)

__all__ = ["discrete_posterior", "expected_log_joint", "posterior_from_gradient"]
