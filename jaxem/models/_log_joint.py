"""Models given only as a log-joint ``log p(x_i, z_i = k | θ)``.

From a function ``log_joint(params, x) -> (n, K)`` everything EM needs
follows: the marginal log-likelihood is its row-wise log-sum-exp, the
posterior is the gradient of that log-normaliser with respect to the
log-joint, ``Q(θ, θ_old) = Σ_i w_i Σ_k r_ik log_joint(θ, x)_ik`` with the
responsibilities held fixed, and the M-step is a :class:`jaxem.gem.GradientMStep`
on ``Q + log prior`` (or a closed form the user supplies).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxem import gem
from jaxem._numerics import log_normalize, num_rows, tree_all_finite

Array = jax.Array


class LogJointParams(NamedTuple):
    """Parameters of a :class:`LogJointModel`.

    Attributes:
      params: the user's parameters (any pytree).
      optimizer_state: the GEM optimizer's state, carried across EM
        iterations (warm start); ``()`` with a closed-form M-step. Not fitted.
    """

    params: Any
    optimizer_state: Any = ()


class LogJointStats(NamedTuple):
    """What the M-step of a :class:`LogJointModel` needs.

    Attributes:
      responsibilities: ``w_i p(z_i = k | x_i, θ_old)``, ``(n, K)``
        (observation weights included). They concatenate (not add) across
        blocks of observations.
    """

    responsibilities: Array


def e_step_from_log_joint(log_joint: Array, weights: Array | None) -> tuple[Array, Array]:
    """Weighted responsibilities and summed log-likelihood from ``(n, K)``
    log-joint values: the posterior as the gradient of the log-normaliser
    ``Σ_i w_i logsumexp_k ℓ_ik`` with respect to ``ℓ``."""
    w = jnp.ones(log_joint.shape[0], log_joint.dtype) if weights is None else weights

    def log_normalizer(ell: Array) -> Array:
        return jnp.sum(w * log_normalize(ell, axis=1)[0])

    total, resp = jax.value_and_grad(log_normalizer)(log_joint)
    return lax.stop_gradient(resp), total


def expected_log_joint(resp: Array, log_joint: Array) -> Array:
    """``Q = Σ_ik r_ik ℓ_ik``, treating ``0 · (−inf)`` as ``0``."""
    return jnp.sum(jnp.where(resp > 0, resp * log_joint, 0.0))


def count_free_parameters(params: Any, constraints: Any) -> int:
    """Free parameters of ``params`` under ``constraints``: a simplex over the
    last axis loses one per vector, a ``D × D`` positive-definite matrix has
    ``D (D + 1) / 2``, everything else counts every entry."""

    def count(constraint: gem.Constraint | None, subtree: Any) -> int:
        total = 0
        for leaf in jax.tree.leaves(subtree):
            shape = jnp.shape(leaf)
            size = math.prod(shape)
            if constraint is gem.simplex and shape:
                size -= size // shape[-1]
            elif constraint is gem.positive_definite and len(shape) >= 2:
                dim = shape[-1]
                size = size // (dim * dim) * dim * (dim + 1) // 2
            total += size
        return total

    if constraints is None:
        return sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(params))
    counts = jax.tree.map(
        count, constraints, params, is_leaf=lambda c: c is None or isinstance(c, gem.Constraint)
    )
    return int(sum(jax.tree.leaves(counts)))


@dataclasses.dataclass(frozen=True)
class LogJointModel:
    """A latent-variable model with a discrete latent, given by its log-joint.

    Args:
      log_joint_fn: ``(params, x) -> (n, K)``, ``log p(x_i, z_i = k | params)``
        (pure and differentiable in ``params``).
      init_fn: ``(key, x) -> params``, the starting parameters of one restart.
      gradient_step: the :class:`jaxem.gem.GradientMStep` that makes the
        M-step (``None``: 20 Adam steps of size 0.05, no constraints).
      m_step_fn: a closed form ``(responsibilities (n, K), x, params) ->
        params`` that maximises ``Q`` (plus the log prior), used instead of
        gradient steps; the responsibilities include the observation weights.
      log_prior_fn: ``params -> scalar`` for MAP estimation; ``None`` for none.
      sample_fn: ``(key, params, n) -> draws``, for :meth:`sample`.
      num_parameters_fn: ``params -> int`` for BIC/AIC; ``None`` counts the
        free entries under the gradient step's constraints.
      check_data_fn: ``x -> None``, raising for data the model cannot take.

    Examples:
      A mixture of two unit-variance Gaussians with unknown means and weights:

      >>> import jax, jax.numpy as jnp, optax, jaxem
      >>> from jaxem import gem
      >>> def log_joint(params, x):
      ...     logits, means = params
      ...     log_weights = jax.nn.log_softmax(logits)
      ...     return log_weights - 0.5 * (x - means) ** 2 - 0.5 * jnp.log(2 * jnp.pi)
      >>> def init(key, x):
      ...     return jnp.zeros(2), jax.random.choice(key, x[:, 0], (2,), replace=False)
      >>> model = jaxem.LogJointModel(
      ...     log_joint, init, gradient_step=gem.GradientMStep(optax.adam(0.1), num_steps=25))
      >>> x = jnp.concatenate([jnp.full((50, 1), -2.0), jnp.full((50, 1), 3.0)])
      >>> x = x + 0.5 * jax.random.normal(jax.random.key(0), x.shape)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1), num_restarts=4, max_iter=200)
      >>> sorted(round(float(m)) for m in result.params.params[1])
      [-2, 3]
    """

    log_joint_fn: Callable[[Any, Any], Array]
    init_fn: Callable[[Array, Any], Any]
    gradient_step: gem.GradientMStep | None = None
    m_step_fn: Callable[[Array, Any, Any], Any] | None = None
    log_prior_fn: Callable[[Any], Array] | None = None
    sample_fn: Callable[[Array, Any, int], Any] | None = None
    num_parameters_fn: Callable[[Any], int] | None = None
    check_data_fn: Callable[[Any], None] | None = None

    m_step_uses_data: ClassVar[bool] = True
    stats_per_observation: ClassVar[bool] = True

    def __post_init__(self):
        for name in ("log_joint_fn", "init_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable; got {getattr(self, name)!r}")
        for name in (
            "m_step_fn",
            "log_prior_fn",
            "sample_fn",
            "num_parameters_fn",
            "check_data_fn",
        ):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None; got {value!r}")
        if self.gradient_step is None:
            if self.m_step_fn is None:
                object.__setattr__(self, "gradient_step", _default_gradient_step())
        elif not isinstance(self.gradient_step, gem.GradientMStep):
            raise TypeError(
                "gradient_step must be a jaxem.gem.GradientMStep or None; "
                f"got {self.gradient_step!r}"
            )
        if self.gradient_step is not None and self.m_step_fn is not None:
            raise ValueError("give either gradient_step or a closed-form m_step_fn, not both")

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any) -> None:
        if self.check_data_fn is not None:
            self.check_data_fn(x)

    def check_params(self, params: Any, x: Any) -> None:
        if not isinstance(params, LogJointParams):
            raise TypeError(
                "params must be a LogJointParams(params, optimizer_state) (model.init "
                f"builds one); got {type(params).__name__}"
            )

    # ------------------------------------------------------------- the contract

    def init(self, key: Array, x: Any, weights: Array | None = None) -> LogJointParams:
        """The user's initial parameters, with a fresh optimizer state."""
        del weights  # the user's initialiser sees the data only
        return self.wrap(self.init_fn(key, x))

    def wrap(self, params: Any) -> LogJointParams:
        """Own parameters as :class:`LogJointParams` with a fresh optimizer state."""
        step = self.gradient_step
        return LogJointParams(params, () if step is None else step.init(params))

    def e_step(
        self, params: LogJointParams, x: Any, weights: Array | None = None
    ) -> tuple[LogJointStats, Array]:
        """Responsibilities (as the gradient of the log-normaliser) and the
        summed log-likelihood."""
        log_joint = self.log_joint_fn(params.params, x)
        resp, total = e_step_from_log_joint(log_joint, weights)
        return LogJointStats(resp), total

    def expected_log_joint(self, params: Any, stats: LogJointStats, x: Any) -> Array:
        """``Q(θ, θ_old)`` for the user's parameters ``params`` (the
        responsibilities in ``stats`` came from ``θ_old``)."""
        return expected_log_joint(stats.responsibilities, self.log_joint_fn(params, x))

    def m_step(
        self, stats: LogJointStats, params: LogJointParams, x: Any, weights: Array | None = None
    ) -> LogJointParams:
        """Gradient steps on ``Q + log prior`` (or the closed form)."""
        del weights  # already in the responsibilities
        step = self.gradient_step
        if step is None:
            return LogJointParams(
                self.m_step_fn(stats.responsibilities, x, params.params), params.optimizer_state
            )

        def objective(theta: Any) -> Array:
            return self.expected_log_joint(theta, stats, x) + self.log_prior(theta)

        theta, state = step.update(objective, params.params, params.optimizer_state)
        return LogJointParams(theta, state)

    def is_finite(self, params: LogJointParams) -> Array:
        """Whether the fitted parameters are finite (the optimizer state may
        hold inf, e.g. a line search's initial value)."""
        return tree_all_finite(params.params)

    def log_prob(self, params: LogJointParams, x: Any) -> Array:
        return log_normalize(self.log_joint_fn(params.params, x), axis=1)[0]

    def posterior(self, params: LogJointParams, x: Any) -> Array:
        return log_normalize(self.log_joint_fn(params.params, x), axis=1)[1]

    def log_prior(self, params: Any) -> Array:
        """``log p(θ)`` of the user's parameters (or of :class:`LogJointParams`)."""
        if isinstance(params, LogJointParams):
            params = params.params
        if self.log_prior_fn is None:
            leaves = jax.tree.leaves(params)
            dtype = jnp.result_type(*leaves) if leaves else jnp.float32
            return jnp.zeros((), dtype)
        return self.log_prior_fn(params)

    def sample(self, key: Array, params: LogJointParams, n: int) -> Any:
        if self.sample_fn is None:
            raise TypeError(
                "this LogJointModel has no sampler: pass sample_fn=(key, params, n) -> x"
            )
        return self.sample_fn(key, params.params, n)

    def num_parameters(self, params: LogJointParams) -> int:
        if self.num_parameters_fn is not None:
            return int(self.num_parameters_fn(params.params))
        step = self.gradient_step
        return count_free_parameters(params.params, None if step is None else step.constraints)

    def diagnose(self, stats: LogJointStats, params: LogJointParams) -> dict[str, Array]:
        """``{"collapsed": (K,)}``: latent states with less than a thousandth
        of an average observation's weight."""
        resp = stats.responsibilities
        counts = jnp.sum(resp, axis=0)
        average = jnp.sum(counts) / jnp.maximum(num_rows(resp), 1)
        return {"collapsed": counts < 1e-3 * average}


@functools.cache
def _default_gradient_step() -> gem.GradientMStep:
    """One shared default (so equal models compile once)."""
    return gem.GradientMStep(optax.adam(0.05), num_steps=20)
