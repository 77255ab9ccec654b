"""Observed information and standard errors, by automatic differentiation.

The observed information is the negative Hessian of the observed-data
log-likelihood (plus the log prior, for MAP models) with respect to the
model's *free coordinates* (:mod:`jaxem._free`): one unconstrained, minimal
vector per model (additive log-ratios for a simplex, the log-Cholesky factor
of a covariance matrix, logarithms of positive values), so the Hessian is
square, has no direction along a constraint, and is positive definite at a
strict local maximum of an identifiable model. Standard errors of the
parameters themselves follow by the delta method, ``Cov(θ) = J I⁻¹ Jᵀ`` with
``J = ∂θ/∂u``: a simplex's last weight and both mirrored entries of a
covariance matrix get theirs.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxem import _engine, _free
from jaxem._criteria import _resolved
from jaxem._numerics import num_rows
from jaxem._validation import as_float_array, check_weights

Array = jax.Array

# Hessian-vector products evaluated together (columns of the Hessian per
# vectorised pass): bounds memory to this many gradient evaluations.
_COLUMNS_PER_PASS = 32


def observed_information(model, params: Any, x: Any, weights: Any = None) -> Array:
    """The observed information: the negative Hessian of the log-likelihood
    in free coordinates.

    ``−∇²_u [Σ_i w_i log p(x_i | θ(u)) + log p(θ(u))]`` where ``u`` are the
    free coordinates of ``params`` (:mod:`jaxem.gem` constraints declared by
    ``model.constraints(params)``: a simplex of ``K`` weights has ``K − 1``
    coordinates, a ``D × D`` covariance matrix ``D(D + 1)/2`` (its
    log-Cholesky factor), a positive value its logarithm; leaves declared
    :data:`jaxem.gem.fixed`, such as resolved prior hyperparameters, have
    none). The log prior term is ``model.log_prior`` (zero without a prior),
    so for a MAP model this is the negative Hessian of the log posterior.

    Computed by automatic differentiation of ``model.log_prob`` (exact, not
    Louis' identity): any model whose ``log_prob`` JAX can differentiate
    twice. It costs ``p`` Hessian-vector products (each a few passes over the
    data), evaluated 32 at a time, so the memory is that of about 32
    gradients of the log-likelihood; for ``p`` in the thousands and large
    ``n``, expect minutes.

    Args:
      model: a model of the :class:`~jaxem.Model` contract.
      params: its parameters, usually a fit's (a local maximum).
      x: the data the parameters were fitted to.
      weights: optional per-observation weights ``(n,)``, used as given
        (frequency weights: an integer weight counts as that many copies of
        the row). Unlike :func:`jaxem.fit`, which rescales weights to mean
        one, the information depends on their scale.

    Returns:
      ``(p, p)``, symmetric; positive definite at a strict local maximum of
      an identifiable model. The coordinates are ordered as the leaves of
      ``params``. Jitted with ``model`` static.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(0))
      >>> jaxem.observed_information(model, result.params, x).shape  # 1 + 2·2 + 2·3
      (11, 11)
    """
    model, x, weights = _checked(model, x, weights)
    return _information(model, params, x, weights)


def standard_errors(model, params: Any, x: Any, weights: Any = None) -> Any:
    """Standard errors of every parameter, from the observed information.

    By the delta method: ``Cov(θ) ≈ J I⁻¹ Jᵀ``, with ``I`` the
    :func:`observed_information` in free coordinates ``u`` and ``J = ∂θ/∂u``
    (forward-mode differentiation of the map from free coordinates to the
    parameters); only its diagonal is formed. So every entry of ``params``
    gets its standard error, including those the constraints tie to others
    (a simplex's last weight, the upper triangle of a covariance matrix).

    Standard errors are asymptotic (Wald) approximations, meaningful at a
    local maximum of the log-likelihood (plus log prior) with enough data
    per parameter. The covariance of the free coordinates is the inverse of
    :func:`observed_information`, for functions of the parameters other
    than the parameters themselves.

    Args:
      model: a model of the :class:`~jaxem.Model` contract.
      params: its parameters at a local maximum (e.g. ``jaxem.fit(...).params``).
      x: the data they were fitted to.
      weights: optional per-observation frequency weights, used as given
        (see :func:`observed_information`).

    Returns:
      A pytree shaped like ``params``: the standard error of each entry.
      Leaves the fit does not estimate (declared :data:`jaxem.gem.fixed`,
      such as resolved prior hyperparameters, or integer leaves) get ``0``.
      Every entry is NaN when the information is not positive definite, up
      to rounding (smallest eigenvalue below ``p · eps`` times the largest;
      a Gaussian mixture's is typically well above, e.g. ``1e-5`` for three
      components on Old Faithful, in float32 as in float64): ``params``
      are not a strict local maximum, or the model is not identifiable
      there (e.g. the rotations of a factor model's loadings, or two
      identical mixture components). Jitted with ``model``
      static; usable under ``jax.vmap`` over datasets.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> x = jax.random.poisson(jax.random.key(0), 4.0, (400, 1)).astype(jnp.float32)
      >>> model = jaxem.Mixture(jaxem.Poisson(), num_components=1)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> se = jaxem.standard_errors(model, result.params, x)
      >>> rate = result.params.components.rates[0, 0]
      >>> bool(jnp.allclose(se.components.rates[0, 0], jnp.sqrt(rate / 400), rtol=1e-3))
      True
    """
    model, x, weights = _checked(model, x, weights)
    return _standard_errors(model, params, x, weights)


# ------------------------------------------------------------------ compiled


def _checked(model: Any, x: Any, weights: Any) -> tuple[Any, Any, Any]:
    """The model resolved for concrete data, the data checked, and the
    weights validated but kept at their scale."""
    model = _resolved(model, x)
    x = _engine.as_data(x)
    model.check_data(x)
    if weights is not None:
        check_weights(weights, num_rows(x), _engine.data_dtype(x))  # (raises; rescales)
        weights = jnp.asarray(as_float_array(weights, "weights"), _engine.data_dtype(x))
    return model, jax.tree.map(jnp.asarray, x), weights


def log_posterior(model: Any, params: Any, x: Any, weights: Any) -> Array:
    """``Σ_i w_i log p(x_i | θ) + log p(θ)`` (a scalar)."""
    log_prob = model.log_prob(params, x)
    if weights is not None:
        log_prob = jnp.where(weights > 0, weights * log_prob, 0.0)
    return jnp.sum(log_prob) + model.log_prior(params)


def hessian(fn: Any, u: Array) -> Array:
    """The Hessian of the scalar ``fn`` at ``u``, column by column
    (forward-over-reverse), ``_COLUMNS_PER_PASS`` columns per vectorised pass."""
    size = u.shape[0]
    if size == 0:
        return jnp.zeros((0, 0), u.dtype)
    gradient = jax.grad(fn)
    column = lambda v: jax.jvp(gradient, (u,), (v,))[1]
    columns = jax.lax.map(
        column, jnp.eye(size, dtype=u.dtype), batch_size=min(size, _COLUMNS_PER_PASS)
    )
    return (columns + columns.T) / 2  # (symmetric up to rounding; exactly, now)


def _objective_in_free(model: Any, params: Any, x: Any, weights: Any):
    constraints = model.constraints(params)
    u = _free.to_free(constraints, params)
    to_params = lambda u: _free.from_free(constraints, u, params)
    return u, to_params, lambda u: log_posterior(model, to_params(u), x, weights)


@functools.partial(jax.jit, static_argnums=0)
def _information(model: Any, params: Any, x: Any, weights: Any) -> Array:
    u, _, fn = _objective_in_free(model, params, x, weights)
    return -hessian(fn, u)


@functools.partial(jax.jit, static_argnums=0)
def _standard_errors(model: Any, params: Any, x: Any, weights: Any) -> Any:
    u, to_params, fn = _objective_in_free(model, params, x, weights)
    information = -hessian(fn, u)
    size = u.shape[0]
    constraints = model.constraints(params)
    free_leaves = [_free._is_free(c, leaf) for c, leaf in _free._pairs(constraints, params)]
    leaves, treedef = jax.tree.flatten(params)
    if size == 0:
        return jax.tree.unflatten(treedef, [jnp.zeros(jnp.shape(leaf)) for leaf in leaves])
    # I = V diag(λ) Vᵀ; Var(θ_j) = Σ_k (J V)_jk² / λ_k.
    eigenvalues, vectors = jnp.linalg.eigh(information)
    eps = jnp.finfo(information.dtype).eps
    definite = eigenvalues[0] > size * eps * jnp.maximum(eigenvalues[-1], 0.0)
    definite = definite & jnp.all(jnp.isfinite(eigenvalues))
    safe = jnp.where(definite, eigenvalues, 1.0)

    def flat_free_leaves(u):
        out = jax.tree.leaves(to_params(u))
        return [jnp.ravel(leaf) for leaf, free in zip(out, free_leaves, strict=True) if free]

    # ∂θ/∂u along each eigenvector, by forward mode (p directions).
    directions = jax.vmap(lambda v: jax.jvp(flat_free_leaves, (u,), (v,))[1])(vectors.T)
    errors = []
    index = 0
    for leaf, free in zip(leaves, free_leaves, strict=True):
        dtype = information.dtype
        if not free:
            errors.append(jnp.zeros(jnp.shape(leaf), dtype))
            continue
        along = directions[index]  # (p, size of leaf)
        index += 1
        variance = jnp.sum(jnp.square(along) / safe[:, None], axis=0)
        error = jnp.where(definite, jnp.sqrt(variance), jnp.nan).astype(dtype)
        errors.append(error.reshape(jnp.shape(leaf)))
    return jax.tree.unflatten(treedef, errors)
