"""SQUAREM: squared extrapolation for EM (Varadhan & Roland 2008).

EM converges linearly, at a rate set by the fraction of missing information;
near the optimum of a problem with overlapping components it can take
thousands of iterations. SQUAREM treats the EM map ``F`` as a fixed-point
iteration and, from two EM steps ``θ₁ = F(θ₀)``, ``θ₂ = F(θ₁)``, takes one
extrapolated step of length ``α``

    r = θ₁ − θ₀,   v = θ₂ − 2θ₁ + θ₀,   α = ‖r‖ / ‖v‖   (scheme S3),
    θ' = θ₀ + 2α r + α² v,

followed by one stabilising EM step ``θ'' = F(θ')``. ``α = 1`` gives
``θ₂`` (two plain EM steps).

Here the extrapolation runs in the model's free coordinates
(``model.constraints`` and :mod:`jaxem._free`: log-ratios for the simplex,
Cholesky factors with a log diagonal for covariances, logarithms for
positive values), so an extrapolated point is always a valid parameter, and
it works for every model of the contract. Safeguards, as in the SQUAREM
package: ``α`` is at least 1 and at most ``step_max``, which starts at 1,
grows fourfold each time a step of that length is accepted, and shrinks
fourfold when one fails; a step is accepted only if the objective (the
log-likelihood plus log prior) at ``θ''`` is finite and not below that at
``θ₀``; otherwise the iteration returns ``θ₂``, the plain EM result. So an
accelerated fit is monotone like EM. An iteration takes three M-steps and
four E-steps (the last E-step's statistics start the next iteration).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxem import _engine, _free, _stats
from jaxem._engine import EMState
from jaxem._numerics import tree_all_finite

Array = jax.Array

#: Factor by which ``step_max`` grows after an accepted step of that length,
#: and shrinks after a rejected one (the SQUAREM package's ``mstep``).
STEP_FACTOR = 4.0


def extrapolate(model, params0, params1, params2, step_max):
    """The S3 extrapolation from three successive EM iterates.

    Returns:
      ``(params, alpha)``: the extrapolated parameters (fixed values and
      structure from ``params2``) and the step length used, in
      ``[1, step_max]`` (``1`` when the iterates do not move).
    """
    constraints = model.constraints(params0)
    u0, u1, u2 = (_free.to_free(constraints, p) for p in (params0, params1, params2))
    r = u1 - u0
    v = u2 - 2.0 * u1 + u0
    ratio = jnp.sqrt(jnp.sum(r * r) / jnp.sum(v * v))
    alpha = jnp.where(jnp.isfinite(ratio), ratio, 1.0)
    alpha = jnp.clip(alpha, 1.0, step_max).astype(step_max.dtype)
    coords = u0 + 2.0 * alpha * r + alpha**2 * v
    return _free.from_free(constraints, coords, params2), alpha


def iterate(
    model,
    state: EMState,
    x,
    weights,
    weight,
    tol,
    decrease_tol,
    max_iter,
    plan,
    stop_on_decrease: bool = False,
) -> EMState:
    """One masked SQUAREM iteration of one restart (``_engine.iterate``'s
    counterpart; the first iteration only evaluates the starting point)."""

    def evaluate(params, m_step_state):
        stats, value = _engine.objective(model, params, x, weights, weight, plan)
        return params, m_step_state, stats, value

    def em_map(params, stats, m_step_state):
        params, m_step_state = _engine.m_step(model, stats, params, m_step_state, x)
        return evaluate(params, m_step_state)

    def first(state: EMState) -> EMState:
        _, _, stats, value = evaluate(state.params, state.m_step_state)
        return _engine.accept(
            state, state.params, state.m_step_state, stats, value, tol, decrease_tol,
            max_iter, stop_on_decrease, m_steps=0,
        )  # fmt: skip

    def cycle(state: EMState) -> EMState:
        params0 = state.params
        params1, ms1, stats1, _ = em_map(params0, state.stats, state.m_step_state)
        params2, ms2, stats2, value2 = em_map(params1, stats1, ms1)
        plain = (params2, ms2, stats2, value2)

        def accelerated(alpha_and_params):
            _, extrapolated = alpha_and_params
            _, _, stats_e, _ = evaluate(extrapolated, ms2)
            return em_map(extrapolated, stats_e, ms2)

        extrapolated, alpha = extrapolate(model, params0, params1, params2, state.step_max)
        moved = alpha > 1.0 + 1e-2
        params, m_step_state, stats, value = lax.cond(
            moved, accelerated, lambda _: plain, (alpha, extrapolated)
        )
        good = jnp.isfinite(value) & tree_all_finite(params) & (value >= state.log_likelihood)
        take = lambda new, old: jnp.where(good, new, old)
        params = jax.tree.map(take, params, params2)
        m_step_state = jax.tree.map(take, m_step_state, ms2)
        stats = jax.tree.map(take, _stats.detach(stats), _stats.detach(stats2))
        value = jnp.where(good, value, value2)
        at_max = alpha >= state.step_max
        step_max = jnp.where(
            at_max,
            jnp.where(
                good, state.step_max * STEP_FACTOR, jnp.maximum(1.0, state.step_max / STEP_FACTOR)
            ),
            state.step_max,
        )
        new = _engine.accept(
            state, params, m_step_state, stats, value, tol, decrease_tol, max_iter,
            stop_on_decrease, m_steps=jnp.where(moved, 3, 2),
        )  # fmt: skip
        return new._replace(step_max=step_max.astype(state.step_max.dtype))

    def advance(state: EMState) -> EMState:
        return lax.cond(state.evaluated, cycle, first, state)

    return lax.cond(_engine.stopped(state, max_iter), lambda s: s, advance, state)
