"""Checks and numerics shared by the component families: data of shape
``(n, D)`` and its domain, parameters of shape ``(K, D)``, and prior
hyperparameters given as static numbers.

Value checks raise only on concrete arrays (eagerly, before anything is
traced); under a user's ``jit``/``vmap`` only shapes raise, and the data
checks return a traced boolean flag instead (the driver reports it as
``invalid_input``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._validation import (
    check_finite_data,
    check_finite_values,
    check_missing_data,
    check_number,
    is_concrete,
)

Array = jax.Array


# --------------------------------------------------------------------- data


def check_matrix_data(x: Any, family: str, missing: bool = False) -> Array:
    """Raise unless ``x`` is one array of shape ``(n, D)`` with ``D >= 1``
    and (when concrete) finite values, or with ``missing``, values that are
    finite or NaN (missing) with something observed in every row; return
    whether its values are valid.

    Raises:
      TypeError: ``x`` is not an array (e.g. a tuple of arrays).
      ValueError: ``x`` is not 2-D, has no features, or holds NaN (unless
        ``missing``) or inf, or (with ``missing``) a row with nothing observed.
    """
    if isinstance(x, (tuple, list)) or not hasattr(x, "ndim"):
        raise TypeError(f"{family} components take one (n, D) array x; got {type(x).__name__}")
    if x.ndim != 2:
        hint = " (for one feature, reshape with x[:, None])" if x.ndim == 1 else ""
        raise ValueError(f"x must be a 2-D array of shape (n, D); got shape {tuple(x.shape)}{hint}")
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one feature; got shape {tuple(x.shape)}")
    return check_missing_data(x) if missing else check_finite_data(x)


def fill_missing(x: Array, weights: Array | None = None) -> Array:
    """``x`` with each missing (NaN) entry replaced by its column's
    (weighted) mean over the observed entries (``0`` for a column with
    nothing observed): a starting point for initialisations, not an
    estimate."""
    observed = ~jnp.isnan(x)
    w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
    mass = w @ observed.astype(x.dtype)
    filled = jnp.where(observed, x, 0.0)
    means = (w @ filled) / jnp.where(mass > 0, mass, 1.0)
    return jnp.where(observed, x, means)


def check_data_values(
    x: Any,
    bad_fn: Callable[[Array], Array],
    family: str,
    requirement: str,
    description: str,
    name: str = "x",
) -> Array:
    """Raise ``ValueError`` if ``bad_fn(x)`` flags any finite entry of a
    concrete ``x``, naming how many and the first (NaN and inf are left to
    the finiteness check, which says so by name). Returns a scalar boolean:
    no entry is flagged (traced under a user's ``jit``)."""
    if not is_concrete(x):
        return ~jnp.any(jnp.isfinite(x) & bad_fn(x))
    if x.size == 0:
        return True
    if isinstance(x, jax.Array):
        # (checked on the device, eagerly even inside a user's jit; the values
        # move to the host only to name a problem)
        with jax.ensure_compile_time_eval():
            if not bool(jnp.any(jnp.isfinite(x) & bad_fn(x))):
                return True
    host = np.asarray(x)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(host) & bad_fn(host)
    if not np.any(bad):
        return True
    where = np.argwhere(bad)
    first = tuple(int(i) for i in where[0])
    value = host[first]
    index = ", ".join(str(i) for i in first)
    raise ValueError(
        f"{family} data must be {requirement}; {name} has {len(where)} {description} value(s), "
        f"the first is {name}[{index}] = {value}"
    )


def check_count_data(x: Any, family: str, name: str = "x") -> Array:
    """Raise ``ValueError`` for negative or non-integer entries of a concrete
    ``x``; return whether there are none."""
    requirement = "non-negative integer counts"
    valid = check_data_values(x, lambda a: a < 0, family, requirement, "negative", name)
    return valid & check_data_values(
        x, lambda a: a != a.round(), family, requirement, "non-integer", name
    )


# ----------------------------------------------------------- initialisation


def guarded_counts(counts: Array, num_observations: Array | float) -> Array:
    """Total responsibilities with ``10 eps`` of an average observation's
    weight added (scikit-learn adds ``10 eps`` to unit-weight counts), so an
    empty component divides by a positive number, whatever the scale of the
    observation weights."""
    average = jnp.sum(counts) / jnp.maximum(jnp.asarray(num_observations, counts.dtype), 1.0)
    return counts + 10.0 * jnp.finfo(counts.dtype).eps * average


def maximize_responsibilities(component: Any, x: Array, resp: Array, weights: Array | None) -> Any:
    """A closed-form component's parameters from unweighted responsibilities
    ``(n, K)``: its statistics (which need no old parameters) and its M-step,
    with the counts guarded as :meth:`jaxem.Mixture.m_step` guards them."""
    weighted = resp if weights is None else resp * weights[:, None]
    counts = guarded_counts(jnp.sum(weighted, axis=0), x.shape[0])
    params, _ = component.maximize(component.statistics(x, weighted, None), counts, None, ())
    return params


# --------------------------------------------------------------- parameters


def check_params_type(params: Any, expected: type) -> None:
    if not isinstance(params, expected):
        raise TypeError(f"params must be a {expected.__name__}; got {type(params).__name__}")


def check_param_shape(value: Any, name: str, num_components: int, x: Any) -> None:
    """Raise ``ValueError`` unless ``value`` has shape ``(K, D)``."""
    shape = (num_components, x.shape[-1])
    got = tuple(jnp.shape(value))
    if got != shape:
        raise ValueError(
            f"params.{name} must have shape (K, D) = {shape} for num_components="
            f"{num_components} and D={x.shape[-1]}; got {got}"
        )


def check_param_fields(params: Any, expected: dict[str, tuple[int, ...]], context: str) -> bool:
    """Raise ``ValueError`` for a field of ``params`` whose shape is not the
    expected one (the message ends with "for {context}"), or, when every
    field is concrete, that holds NaN or inf. Returns whether the fields are
    concrete (so value checks of the family's own can follow)."""
    for name, shape in expected.items():
        got = tuple(jnp.shape(getattr(params, name)))
        if got != shape:
            raise ValueError(f"params.{name} must have shape {shape} for {context}; got {got}")
    if not all(is_concrete(leaf) for leaf in params):
        return False
    for name in expected:
        check_finite_values(getattr(params, name), f"params.{name}")
    return True


def check_param_values(
    value: Any, name: str, valid_fn: Callable[[np.ndarray], np.ndarray], requirement: str
) -> None:
    """For a concrete ``value``: raise ``ValueError`` if it holds NaN or inf,
    or entries where ``valid_fn`` is false (naming how many and the first)."""
    if not is_concrete(value):
        return
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"params.{name} contains NaN or inf")
    where = np.argwhere(~valid_fn(array))
    if where.size:
        first = tuple(int(i) for i in where[0])
        index = ", ".join(str(i) for i in first)
        raise ValueError(
            f"params.{name} must be {requirement}; {len(where)} value(s) are not, "
            f"the first is params.{name}[{index}] = {array[first]}"
        )


# ------------------------------------------------------------------- priors


def check_prior_number(
    owner: str, name: str, value: Any, minimum: float, inclusive: bool
) -> float | None:
    """A prior hyperparameter as a float (``None`` stays ``None``): see
    :func:`jaxem._validation.check_number`."""
    return check_number(value, f"{owner}.{name}", minimum, inclusive=inclusive, allow_none=True)


def check_prior_pair(owner: str, names: tuple[str, str], values: tuple[Any, Any]) -> None:
    """Raise ``ValueError`` unless both or neither of two hyperparameters are set."""
    if (values[0] is None) != (values[1] is None):
        given, missing = names if values[1] is None else names[::-1]
        raise ValueError(
            f"{owner}: {given} is set but {missing} is None; give both {names[0]} and "
            f"{names[1]} for a prior, or neither for maximum likelihood"
        )


def gamma_log_density(values: Array, shape: float, rate: float) -> Array:
    """``Σ log Gamma(values | shape, rate)`` (rate parametrisation), a scalar."""
    log_normalizer = shape * math.log(rate) - math.lgamma(shape)
    return jnp.sum(log_normalizer + (shape - 1.0) * jnp.log(values) - rate * values)


def clip_rates(rates: Array) -> Array:
    """Rates clipped to ``[√tiny, 1/√tiny]`` of their dtype (about ``1e-19``
    to ``1e19`` in float32), so that ``log λ`` and ``λ x`` stay finite.

    Clipping a concave one-dimensional objective's maximiser to an interval
    gives the maximiser over that interval, so EM stays monotone.
    """
    floor = math.sqrt(float(jnp.finfo(rates.dtype).tiny))
    return jnp.clip(rates, floor, 1.0 / floor)
