"""Differentiating through a fit: implicit differentiation at the EM fixed point.

A converged EM fit is a fixed point ``u* = F(u*; x, w, η)`` of the EM map in
free coordinates (:mod:`jaxem._free`), ``F = to_free ∘ M ∘ E ∘ from_free``,
where ``η`` stands for everything else the map reads: hyperparameters of the
model, and the leaves of the parameters the fit holds fixed (resolved prior
hyperparameters). By the implicit function theorem,
``du*/dη = (I − ∂F/∂u)⁻¹ ∂F/∂η``, so a reverse-mode pass needs one linear
solve with the transpose, ``(I − ∂F/∂u)ᵀ λ = ū``, and one vector-Jacobian
product of ``F`` at ``λ``. Nothing is computed in the forward pass: the
parameters come from the (undifferentiated) EM loop, and everything happens
in the backward pass. The loop's iterations are never differentiated, so
memory does not grow with the number of iterations, and the gradient is that
of the exact fixed point (accurate to the fit's convergence).

``∂F/∂u`` is the EM map's rate matrix; ``I − ∂F/∂u`` is invertible at a
strict local maximum where EM converges linearly (spectral radius below one).
For ``p <= 1000`` free parameters it is materialised (``p`` forward-mode
passes of the EM map, 32 at a time) and solved densely; above that, solved
matrix-free by GMRES with vector-Jacobian products.

The EM map is differentiated as written (closed-form M-steps, including
regularisation such as ``reg_covar`` that makes the fixed point differ from a
stationary point of the likelihood). A model with a gradient M-step (an
M-step state, :mod:`jaxem.gem`) runs a few optimizer steps from a state
that need not be smooth at the fixed point; for those the map is
``u + ∇_u objective`` instead, whose fixed points are the same stationary
points and whose derivatives give the implicit function theorem for
``∇ objective = 0`` (second derivatives of the log-likelihood).

Limits: the backward pass differentiates the model's E- and M-steps in
reverse mode, so a closed-form M-step holding a ``while_loop`` cannot be
differentiated this way; forward mode (``jax.jvp``, ``jax.jacfwd``) is not
defined (a custom VJP; ``jax.vmap`` is); values the model resolves from the
data at initialisation (data-driven prior hyperparameters) are fixed leaves
of the parameters, so the gradient with respect to the data does not follow
them; and where the model is not identifiable (a factor model's rotations)
``I − ∂F/∂u`` is singular: only derivatives of identifiable quantities are
meaningful there, and they rest on the solver's handling of a singular
system.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _engine, _free
from jaxem._engine import Plan
from jaxem._model import as_model

Array = jax.Array

# Largest number of free parameters for which the EM map's Jacobian is
# materialised; above it the adjoint system is solved by GMRES.
DENSE_LIMIT = 1000
_COLUMNS_PER_PASS = 32
_GMRES_TOL = 1e-10


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What the backward pass needs besides arrays (static, hashable: the
    backward pass is jitted with it): the model, or a function ``build(η)``
    returning it (compared by identity), and how its E-step is distributed."""

    model: Any
    build: Callable[[Any], Any] | None
    plan: Plan

    def model_for(self, hyper: Any) -> Any:
        return as_model(self.model if self.build is None else self.build(hyper))


def _add(a: Any, b: Any) -> Any:
    def add(x, y):
        if getattr(x, "dtype", None) == jax.dtypes.float0:
            return x
        return x + y

    return jax.tree.map(add, a, b)


def _clean(cotangent: Any, like: Any) -> Any:
    """``cotangent`` with ``float0`` zeros where ``like`` has integer leaves."""

    def fix(c, leaf):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            return c
        return np.zeros(jnp.shape(leaf), jax.dtypes.float0)

    return jax.tree.map(fix, cotangent, like)


def _backward(spec: _Spec, residuals: Any, cotangents: Any) -> tuple:
    params, x, weights, hyper = residuals
    params_bar, objective_bar = cotangents
    model = spec.model_for(hyper)
    constraints = model.constraints(params)
    u = _free.to_free(constraints, params)
    objective_bar = jnp.asarray(objective_bar, u.dtype)
    plan = spec.plan

    def theta(u, params):
        return _free.from_free(constraints, u, params)

    def objective(u, params, x, weights, hyper):
        model = spec.model_for(hyper)
        current = theta(u, params)
        weight = _engine.total_weight(x, weights)
        return _engine.objective(model, current, x, weights, weight, plan)

    def em_step(u, params, x, weights, hyper):
        """The EM map in free coordinates, and the objective at ``u`` (one
        E-step for both)."""
        model = spec.model_for(hyper)
        stats, value = objective(u, params, x, weights, hyper)
        current = theta(u, params)
        new, _ = _engine.m_step(model, stats, current, model.init_m_step_state(current), x)
        return _free.to_free(constraints, new), value

    def ascent_step(u, params, x, weights, hyper):
        """A gradient M-step's fixed points are the objective's stationary
        points: the map ``u + ∇_u objective`` has the same, and its
        derivatives give the implicit function theorem for ``∇ objective = 0``
        (a few optimizer steps from a fresh state need not be smooth at the
        fixed point, so they are not differentiated)."""
        value_of = lambda u: objective(u, params, x, weights, hyper)[1]
        value, gradient = jax.value_and_grad(value_of)(u)
        return u + gradient, value

    gradient_m_step = bool(jax.tree.leaves(model.init_m_step_state(params)))
    step = ascent_step if gradient_m_step else em_step
    rest = (params, x, weights, hyper)
    on_u = lambda u: step(u, *rest)

    # Cotangent of u* from the parameters (and of the fixed leaves, directly).
    _, theta_vjp = jax.vjp(theta, u, params)
    u_bar, params_direct = theta_vjp(params_bar)

    # The adjoint λ of (I − ∂F/∂u)ᵀ λ = ū + L̄ ∂L/∂u (the objective at u*
    # depends on the data through u* too).
    size = u.shape[0]
    if size == 0:
        adjoint = u_bar
    elif size <= DENSE_LIMIT:
        column = lambda v: jax.jvp(on_u, (u,), (v,))[1]
        rows, gradient = jax.lax.map(
            column, jnp.eye(size, dtype=u.dtype), batch_size=min(size, _COLUMNS_PER_PASS)
        )  # rows[i] = ∂F/∂u · e_i: the rows of (∂F/∂u)ᵀ; gradient[i] = ∂L/∂u_i
        system = jnp.eye(size, dtype=u.dtype) - rows
        adjoint = jnp.linalg.solve(system, u_bar + objective_bar * gradient)
    else:
        _, vjp_u = jax.vjp(on_u, u)
        zero = jnp.zeros_like(objective_bar)
        (gradient,) = vjp_u((jnp.zeros_like(u), objective_bar))
        operator = lambda v: v - vjp_u((v, zero))[0]
        adjoint, _ = jax.scipy.sparse.linalg.gmres(
            operator, u_bar + gradient, tol=_GMRES_TOL, restart=50, maxiter=20
        )
    # Cotangents of everything else: F's at λ, and the objective's direct ones.
    _, vjp_rest = jax.vjp(lambda *rest: step(u, *rest), *rest)
    params_map, x_bar, weights_bar, hyper_bar = vjp_rest((adjoint, objective_bar))
    return (
        _clean(_add(params_direct, params_map), params),
        jnp.zeros_like(objective_bar),
        x_bar,
        weights_bar,
        _clean(hyper_bar, hyper),
    )


_jitted_backward = jax.jit(_backward, static_argnums=0)


def _differentiable(spec: _Spec) -> Callable:
    """The identity on ``(params, objective)``, whose backward pass applies
    the implicit function theorem at the fixed point ``params``."""

    @jax.custom_vjp
    def solution(params, objective, x, weights, hyper):
        return params, objective

    def forward(params, objective, x, weights, hyper):
        return (params, objective), (params, x, weights, hyper)

    def backward(residuals, cotangents):
        return _jitted_backward(spec, residuals, cotangents)

    solution.defvjp(forward, backward)
    return solution


def attach(model: Any, params: Any, log_likelihood: Any, x: Any, weights: Any, plan: Plan):
    """``(params, log_likelihood)`` of a converged fit, unchanged in value,
    differentiable with respect to ``x`` and ``weights`` through the EM fixed
    point (``jaxem.fit``'s hook: ``x`` and ``weights`` as the fit ran on them,
    weights already rescaled)."""
    spec = _Spec(model, None, plan)
    return _differentiable(spec)(params, log_likelihood, x, weights, None)


def fixed_point(
    model: Any,
    params: Any,
    x: Any,
    weights: Any = None,
    *,
    hyperparameters: Any = None,
) -> Any:
    """A fit's parameters as a differentiable function of the data, the
    weights and the hyperparameters (implicit differentiation at the EM fixed
    point).

    Returns ``params`` unchanged in value. Under ``jax.grad`` (or ``jax.vjp``),
    their derivative is that of the EM fixed point ``θ*(x, w, η)`` through
    the implicit function theorem (see :func:`jaxem.fit`, whose result is
    differentiable the same way): with respect to ``x``, ``weights``,
    ``hyperparameters``, and the leaves of ``params`` the fit holds fixed
    (declared :data:`jaxem.gem.fixed` by ``model.constraints``, such as a
    :class:`~jaxem.GaussianMixture`'s resolved prior hyperparameters
    ``params.prior``: replace one with a traced value to differentiate with
    respect to it). The derivative with respect to the estimated leaves of
    the input ``params`` is zero: a fixed point does not depend on where EM
    started.

    ``jaxem.fit`` takes the model as static configuration, so a continuous
    hyperparameter of the model (``reg_covar``, a prior's strength) cannot be
    traced there. Here it can: fit with a concrete value, then pass ``model``
    as a function ``hyperparameters -> Model`` and the value as
    ``hyperparameters``; the backward pass rebuilds the model from traced
    values (so the model must accept them: it is never hashed or jitted with
    them).

    Args:
      model: a :class:`~jaxem.Model`, or with ``hyperparameters`` a callable
        returning one.
      params: parameters at a fixed point of EM for ``x`` (a converged
        ``jaxem.fit(...).params``; the derivative is as accurate as the
        fit's convergence: use a small ``tol``).
      x: the data they were fitted to.
      weights: the observation weights the fit was given (rescaled to mean
        one here, as :func:`jaxem.fit` does).
      hyperparameters: a pytree of arrays, ``model``'s argument.

    Returns:
      ``params``, differentiable in reverse mode (``jax.grad``, ``jax.vjp``;
      also under ``jax.vmap``). Forward mode (``jax.jvp``, ``jax.jacfwd``)
      is not defined (a custom VJP).

    Examples:
      Learn the covariance regularisation of a Gaussian mixture by gradient
      ascent on held-out log-likelihood (each step refits, warm-started):

      >>> import jax, jax.numpy as jnp, jaxem
      >>> centres = jnp.repeat(jnp.array([[-2.0], [2.0]]), 20, axis=0)
      >>> x = centres + 0.3 * jax.random.normal(jax.random.key(1), (40, 1))
      >>> held_out = centres + 0.3 * jax.random.normal(jax.random.key(2), (40, 1))
      >>> make = lambda r: jaxem.GaussianMixture(2, "spherical", reg_covar=r)
      >>> def held_out_log_lik(log_r, params):
      ...     r = jnp.exp(log_r)
      ...     params = jaxem.fixed_point(make, params, x, hyperparameters=r)
      ...     return jnp.mean(make(r).log_prob(params, held_out))
      >>> value_and_grad = jax.jit(jax.value_and_grad(held_out_log_lik))
      >>> log_r = jnp.log(0.5)
      >>> params = jaxem.fit(make(0.5), x, key=jax.random.key(0), tol=1e-6).params
      >>> before, _ = value_and_grad(log_r, params)
      >>> for _ in range(3):
      ...     log_r = log_r + value_and_grad(log_r, params)[1]  # a gradient step
      ...     params = jaxem.fit(make(jnp.exp(log_r)), x, key=jax.random.key(0),
      ...                        init_params=params, tol=1e-6).params
      >>> after, _ = value_and_grad(log_r, params)
      >>> bool(after > before + 0.1)
      True
    """
    if hyperparameters is None:
        built = as_model(model)
    else:
        if not callable(model):
            raise TypeError(
                "with hyperparameters, model must be a callable hyperparameters -> Model; "
                f"got {type(model).__name__}"
            )
        built = as_model(model(hyperparameters))
    x, weights, _ = _engine.check_data(built, x, weights)
    params = _engine.cast_floats(params, _engine.data_dtype(x))
    built.check_params(params, x)
    if hyperparameters is None:
        spec = _Spec(_engine.for_data(built, x), None, Plan())
    else:
        spec = _Spec(None, model, Plan())
    objective = jnp.zeros((), _engine.data_dtype(x))
    params, _ = _differentiable(spec)(params, objective, x, weights, hyperparameters)
    return params
