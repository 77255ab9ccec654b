"""Generalized EM: M-steps by gradient ascent on ``Q + log p(θ)`` with optax.

Where no closed-form M-step exists, EM still works if the M-step merely
*increases* ``Q(θ, θ_old) + log p(θ)`` (Dempster, Laird & Rubin 1977): the
observed-data objective then never decreases. :class:`GradientMStep` runs a
fixed number of updates of any ``optax.GradientTransformation`` on
``−(Q + log prior)`` in an unconstrained parameterisation, inside
``lax.scan``, and keeps the best point it visited, so the step never lowers
the objective (a proposal that lowers it is rejected).

Constraints map unconstrained reals onto a parameter's domain:
:data:`real`, :data:`fixed` (not estimated), :data:`positive` (softplus),
:data:`simplex` (softmax over the last axis), :data:`unit_interval`
(sigmoid), :data:`positive_definite` (``L Lᵀ`` with ``L`` lower
triangular with a softplus diagonal), :data:`positive_diagonal` (diagonal
matrices with a softplus diagonal) and :data:`logits` (real, meaningful up
to a shift over the last axis). Declare them
with a pytree that mirrors the parameters (or a prefix of it); ``None``
means real.

>>> import jax.numpy as jnp, optax
>>> from jaxem import gem
>>> step = gem.GradientMStep(optax.adam(0.1), num_steps=50, constraints=gem.positive)
>>> objective = lambda scale: -jnp.sum((scale - 2.0) ** 2)
>>> scale = jnp.array([0.5])
>>> state = step.init(scale)
>>> scale, state = step.update(objective, scale, state)
>>> bool(objective(scale) > objective(jnp.array([0.5])))
True
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

Array = jax.Array

__all__ = [
    "Constraint",
    "GEMInfo",
    "GradientMStep",
    "constrain",
    "fixed",
    "logits",
    "positive",
    "positive_definite",
    "positive_diagonal",
    "real",
    "simplex",
    "unconstrain",
    "unit_interval",
]


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A bijection from unconstrained reals onto a parameter's domain.

    Attributes:
      name: for messages.
      forward: unconstrained array -> constrained parameter.
      inverse: constrained parameter -> unconstrained array (a right inverse
        of ``forward`` on the domain).
    """

    name: str
    forward: Callable[[Array], Array]
    inverse: Callable[[Array], Array]

    def __repr__(self) -> str:
        return f"gem.{self.name}"


def _identity(value: Array) -> Array:
    return value


def _inverse_softplus(value: Array) -> Array:
    value = jnp.maximum(value, jnp.finfo(jnp.result_type(value)).tiny)
    # log(exp(y) − 1) = y + log(1 − exp(−y)), stable for large and small y.
    return value + jnp.log(-jnp.expm1(-value))


def _simplex_inverse(probs: Array) -> Array:
    logits = jnp.log(jnp.maximum(probs, jnp.finfo(jnp.result_type(probs)).tiny))
    return logits - jnp.mean(logits, axis=-1, keepdims=True)


def _logit(probs: Array) -> Array:
    tiny = jnp.finfo(jnp.result_type(probs)).tiny
    probs = jnp.clip(probs, tiny, 1.0 - jnp.finfo(jnp.result_type(probs)).epsneg)
    return jnp.log(probs) - jnp.log1p(-probs)


def _cholesky_forward(raw: Array) -> Array:
    diagonal = jax.nn.softplus(jnp.diagonal(raw, axis1=-2, axis2=-1))
    factor = jnp.tril(raw, -1) + diagonal[..., :, None] * jnp.eye(raw.shape[-1], dtype=raw.dtype)
    return factor @ jnp.swapaxes(factor, -1, -2)


def _cholesky_inverse(matrix: Array) -> Array:
    factor = jnp.linalg.cholesky(matrix)
    diagonal = _inverse_softplus(jnp.diagonal(factor, axis1=-2, axis2=-1))
    eye = jnp.eye(matrix.shape[-1], dtype=matrix.dtype)
    return jnp.tril(factor, -1) + diagonal[..., :, None] * eye


real = Constraint("real", _identity, _identity)
"""No constraint."""

fixed = Constraint("fixed", lax.stop_gradient, _identity)
"""A value the fit does not estimate (a resolved prior hyperparameter, a
parameter held fixed): gradient steps leave it where it is, and it has no
free coordinates (see :meth:`jaxem.Model.constraints`)."""

positive = Constraint("positive", jax.nn.softplus, _inverse_softplus)
"""Positive values: ``softplus(u)``."""

simplex = Constraint("simplex", lambda u: jax.nn.softmax(u, axis=-1), _simplex_inverse)
"""Probability vectors over the last axis: ``softmax(u)`` (logits)."""

unit_interval = Constraint("unit_interval", jax.nn.sigmoid, _logit)
"""Values in ``(0, 1)``: ``sigmoid(u)``."""

positive_definite = Constraint("positive_definite", _cholesky_forward, _cholesky_inverse)
"""Symmetric positive-definite matrices over the last two axes: ``L Lᵀ`` with
``L`` lower triangular (its strict lower triangle from ``u``, its diagonal
``softplus`` of ``u``'s diagonal)."""


def _diagonal_forward(raw: Array) -> Array:
    diagonal = jax.nn.softplus(jnp.diagonal(raw, axis1=-2, axis2=-1))
    return diagonal[..., :, None] * jnp.eye(raw.shape[-1], dtype=raw.dtype)


def _diagonal_inverse(matrix: Array) -> Array:
    diagonal = _inverse_softplus(jnp.diagonal(matrix, axis1=-2, axis2=-1))
    return diagonal[..., :, None] * jnp.eye(matrix.shape[-1], dtype=matrix.dtype)


positive_diagonal = Constraint("positive_diagonal", _diagonal_forward, _diagonal_inverse)
"""Diagonal matrices with a positive diagonal over the last two axes (a
diagonal covariance stored as a matrix): ``diag(softplus(diag(u)))``; the
off-diagonal entries stay zero, and only the diagonal is free."""

logits = Constraint("logits", _identity, _identity)
"""Real values over the last axis that matter only up to a common shift
(the logits of a softmax, such as a softmax regression's coefficients over
its classes): gradient steps move every entry, while the free coordinates
(see :meth:`jaxem.Model.constraints`) are the ``C − 1`` differences against the
last entry, the mean over the axis held where it is."""


def _is_constraint(node: Any) -> bool:
    return node is None or isinstance(node, Constraint)


def _apply(constraints: Any, tree: Any, direction: str) -> Any:
    if constraints is None:
        return tree

    def one(constraint: Constraint | None, subtree: Any) -> Any:
        if constraint is None:
            return subtree
        fn = getattr(constraint, direction)
        return jax.tree.map(fn, subtree)

    return jax.tree.map(one, constraints, tree, is_leaf=_is_constraint)


def constrain(constraints: Any, unconstrained: Any) -> Any:
    """Map unconstrained values onto the parameters' domains.

    Args:
      constraints: a pytree of :class:`Constraint` (or ``None`` for real)
        that is a prefix of ``unconstrained``'s structure, or one constraint
        for everything, or ``None``.
      unconstrained: the unconstrained pytree.
    """
    return _apply(constraints, unconstrained, "forward")


def unconstrain(constraints: Any, params: Any) -> Any:
    """The inverse of :func:`constrain`."""
    return _apply(constraints, params, "inverse")


class GEMInfo(NamedTuple):
    """What one gradient M-step did (for diagnostics).

    Attributes:
      objective_before: ``Q + log prior`` at the incoming parameters.
      objective_after: ``Q + log prior`` at the returned parameters
        (never below ``objective_before`` unless it was not finite).
      accepted: whether any proposal improved on the incoming parameters.
    """

    objective_before: Array
    objective_after: Array
    accepted: Array


@dataclasses.dataclass(frozen=True)
class GradientMStep:
    """A generalized-EM M-step: ``num_steps`` optax updates that never lower
    the objective.

    The step maximises ``objective(params)`` (the expected complete-data
    log-likelihood ``Q(θ, θ_old)`` with the posterior held fixed, plus the
    log prior) in the unconstrained parameterisation given by
    ``constraints``. Every visited point's objective comes with its gradient,
    so keeping the best point costs one extra evaluation (the last point);
    if no point beats the incoming parameters, they are returned unchanged
    (the proposal is rejected). The optimizer state is returned for the next
    EM iteration (warm start) unless ``reset``.

    Args:
      optimizer: any ``optax.GradientTransformation`` (those that need the
        value or the objective, such as ``optax.lbfgs``, receive ``value``,
        ``grad`` and ``value_fn``).
      num_steps: optimizer updates per M-step, ``>= 1``.
      constraints: a pytree of :class:`Constraint` mirroring the optimised
        parameters (or a prefix of them: one constraint covers a subtree),
        ``None`` for all real.
      reset: start the optimizer afresh at every M-step instead of carrying
        its state (moments, curvature pairs) across EM iterations.
    """

    optimizer: optax.GradientTransformation
    num_steps: int = 10
    constraints: Any = None
    reset: bool = False

    def __post_init__(self):
        if not (
            callable(getattr(self.optimizer, "init", None))
            and callable(getattr(self.optimizer, "update", None))
        ):
            raise TypeError(
                f"optimizer must be an optax.GradientTransformation; got {self.optimizer!r}"
            )
        steps = self.num_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1; got {steps!r}")
        leaves = jax.tree.leaves(self.constraints, is_leaf=_is_constraint)
        bad = [leaf for leaf in leaves if leaf is not None and not isinstance(leaf, Constraint)]
        if bad:
            raise TypeError(
                f"constraints must be a pytree of jaxem.gem constraints (or None); got {bad[0]!r}"
            )
        object.__setattr__(self, "optimizer", optax.with_extra_args_support(self.optimizer))

    def init(self, params: Any) -> Any:
        """The optimizer state for ``params`` (in the unconstrained space)."""
        return self.optimizer.init(unconstrain(self.constraints, params))

    def update(
        self,
        objective: Callable[[Any], Array],
        params: Any,
        state: Any,
        *,
        return_info: bool = False,
    ) -> tuple[Any, Any] | tuple[Any, Any, GEMInfo]:
        """Improve ``objective`` from ``params``.

        Args:
          objective: ``params -> scalar`` to maximise (``Q + log prior``);
            the posterior must be held fixed inside it.
          params: the incoming parameters (the pytree ``constraints`` describes).
          state: the optimizer state from :meth:`init` or the previous call.
          return_info: also return a :class:`GEMInfo`.

        Returns:
          ``(params, state)`` (and the info): the best parameters visited,
          never worse than ``params``, and the optimizer's state.
        """
        if self.reset:
            state = self.init(params)
        start = unconstrain(self.constraints, params)

        def loss(u: Any) -> Array:
            return -objective(constrain(self.constraints, u))

        value_and_grad = jax.value_and_grad(loss)

        def body(carry, _):
            u, opt_state, best, best_loss = carry
            value, grad = value_and_grad(u)
            better = value < best_loss  # False for NaN
            best = jax.tree.map(lambda new, old: jnp.where(better, new, old), u, best)
            best_loss = jnp.where(better, value, best_loss)
            updates, opt_state = self.optimizer.update(
                grad, opt_state, u, value=value, grad=grad, value_fn=loss
            )
            return (optax.apply_updates(u, updates), opt_state, best, best_loss), value

        dtype = jnp.result_type(*jax.tree.leaves(start))
        carry = (start, state, start, jnp.asarray(jnp.inf, dtype))
        (last, state, best, best_loss), values = lax.scan(body, carry, None, length=self.num_steps)
        last_loss = loss(last)
        better = last_loss < best_loss
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), last, best)
        best_loss = jnp.where(better, last_loss, best_loss)
        # values[0] is the incoming point's objective (through the round trip
        # of the bijections); only strictly better points replace the input.
        accepted = best_loss < values[0]
        proposal = constrain(self.constraints, best)
        new_params = jax.tree.map(
            lambda new, old: jnp.where(accepted, new, old).astype(jnp.result_type(old)),
            proposal,
            params,
        )
        if not return_info:
            return new_params, state
        info = GEMInfo(-values[0], -jnp.where(accepted, best_loss, values[0]), accepted)
        return new_params, state, info
