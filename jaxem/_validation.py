"""Eager input checks with messages that name the problem and the value.

Shape and type checks work on tracers too (they run at trace time); value
checks (NaN, inf, negative weights) need concrete arrays and are skipped
under a user's ``jit``/``vmap``, where the driver reports them as flags on
the result instead.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def is_concrete(value: Any) -> bool:
    """True when ``value`` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(value, jax.core.Tracer)


def as_float_array(value: Any, name: str) -> Any:
    """``value`` as a floating array, keeping float32/float64.

    A JAX array stays a JAX array (on its device); anything else becomes a
    numpy array on the host, so that value checks run there without compiling
    anything (the driver moves the data to the device after its checks).
    Integers and booleans become the default float type; half precision is
    promoted to float32 (Cholesky factors and log-sums need it); float64
    becomes float32 unless JAX's 64-bit mode is on.

    Raises:
      TypeError: for non-numeric or complex data.
    """
    if isinstance(value, jax.Array):
        array = value
    else:
        # A list is read as one array (rows of numbers, as numpy reads it);
        # several arrays, such as (inputs, targets), go in a tuple.
        hint = (
            "; data made of several arrays, such as (inputs, targets), go in a tuple, not a list"
            if isinstance(value, list)
            else ""
        )
        try:
            host = np.asarray(value)
        except Exception as error:  # e.g. ragged nested lists
            raise TypeError(
                f"{name} must be a numeric array; got {type(value).__name__}{hint}"
            ) from error
        if host.dtype == object or not (
            np.issubdtype(host.dtype, np.number) or np.issubdtype(host.dtype, np.bool_)
        ):
            raise TypeError(f"{name} must be a numeric array; got dtype {host.dtype}{hint}")
        array = host
    dtype = np.dtype(array.dtype)
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued; got dtype {dtype}")
    if not np.issubdtype(dtype, np.floating) or dtype.itemsize < 4:
        dtype = np.float32 if np.issubdtype(dtype, np.floating) else jnp.result_type(float)
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if isinstance(array, jax.Array):
        return array if array.dtype == dtype else array.astype(dtype)
    return np.asarray(array, dtype=dtype)


def to_device(value: Any) -> Array:
    """``value`` on the default device: a JAX array as it is, anything else
    transferred (``jax.device_put``, which compiles nothing, unlike
    ``jnp.asarray`` on a host array)."""
    return value if isinstance(value, jax.Array) else jax.device_put(np.asarray(value))


def _xp(array: Any) -> Any:
    """numpy for host arrays, jax.numpy for device arrays and tracers."""
    return np if isinstance(array, (np.ndarray, np.generic)) else jnp


def check_finite(array: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``array`` holds NaN or inf.

    The message says how many values are non-finite and where the first is.
    Host arrays are checked on the host; device arrays on their device.
    """
    if not is_concrete(array) or array.size == 0:
        return
    xp = _xp(array)
    # (eagerly even while a user's jit traces around a concrete array)
    with jax.ensure_compile_time_eval():
        if bool(xp.all(xp.isfinite(array))):
            return
    bad = np.argwhere(~np.isfinite(np.asarray(array)))
    first = tuple(int(i) for i in bad[0])
    value = np.asarray(array)[first]
    where = ", ".join(str(i) for i in first)
    raise ValueError(
        f"{name} contains {len(bad)} non-finite value(s) (NaN or inf) out of {array.size}; "
        f"the first is {name}[{where}] = {value}"
    )


def check_finite_data(x: Any) -> Array:
    """Raise ``ValueError`` if concrete data hold NaN or inf (how many, and
    where the first is); return a scalar boolean, whether every value is
    finite (traced under a user's ``jit``, where nothing is raised).

    Args:
      x: an array, or a tuple of arrays (named ``x[0]``, ``x[1]``, ...).
    """
    leaves = list(x) if isinstance(x, tuple) else [x]
    names = [f"x[{i}]" for i in range(len(leaves))] if isinstance(x, tuple) else ["x"]
    valid = True
    for leaf, name in zip(leaves, names, strict=True):
        check_finite(leaf, name)
        if not is_concrete(leaf):
            valid = valid & jnp.all(jnp.isfinite(leaf))
    return valid


def holds_nan(x: Any) -> bool:
    """Whether a concrete array whose values passed the data checks (no inf)
    holds a NaN: whether any value is not finite, checked where it lives (a
    device array on its device, by the same program as the finiteness
    check, so nothing new compiles)."""
    if x.size == 0:
        return False
    xp = _xp(x)
    with jax.ensure_compile_time_eval():
        return not bool(xp.all(xp.isfinite(x)))


def check_missing_data(x: Any, name: str = "x") -> Array:
    """Data whose NaN entries are missing values: raise ``ValueError`` if a
    concrete ``x`` holds inf (how many, where the first is) or a row whose
    every entry is missing (a row with nothing observed carries no
    information and has no density); return a scalar boolean, whether the
    values are valid (traced under a user's ``jit``, where nothing is
    raised)."""
    if not is_concrete(x):
        rows = jnp.reshape(x, (x.shape[0], -1))
        return ~jnp.any(jnp.isinf(rows)) & ~jnp.any(jnp.all(jnp.isnan(rows), axis=1))
    if x.size == 0:
        return True
    xp = _xp(x)
    with jax.ensure_compile_time_eval():
        if bool(xp.all(xp.isfinite(x))):
            return True
        rows = xp.reshape(x, (x.shape[0], -1))
        clean = not bool(xp.any(xp.isinf(rows))) and not bool(
            xp.any(xp.all(xp.isnan(rows), axis=1))
        )
    if clean:
        return True
    host = np.asarray(x)
    infinite = np.argwhere(np.isinf(host))
    if len(infinite):
        first = tuple(int(i) for i in infinite[0])
        where = ", ".join(str(i) for i in first)
        raise ValueError(
            f"{name} contains {len(infinite)} infinite value(s) out of {host.size}; the first is "
            f"{name}[{where}] = {host[first]} (NaN marks a missing value; inf is refused)"
        )
    empty = np.flatnonzero(np.all(np.isnan(host.reshape(host.shape[0], -1)), axis=1))
    raise ValueError(
        f"{name} has {len(empty)} row(s) whose every value is missing (NaN), the first is "
        f"row {int(empty[0])}: a row with nothing observed carries no information; drop it"
    )


def check_weights(weights: Any, num_rows: int, dtype: Any) -> Any:
    """Per-observation weights as an ``(n,)`` array of ``dtype``, rescaled to
    mean one (numpy for host input, as :func:`as_float_array`).

    Weights are relative: multiplying all of them by one constant changes
    nothing, and a prior weighs against ``n`` observations whatever their
    scale. The rescaling divides by the largest weight first, so weights of
    any representable size (1e-30, 1e30) neither underflow nor overflow; host
    weights are rescaled in float64 before the cast to ``dtype``.

    Raises:
      ValueError: wrong shape, non-finite or negative values, or all zero.
    """
    weights = as_float_array(weights, "weights")
    if weights.ndim != 1 or weights.shape[0] != num_rows:
        raise ValueError(
            f"weights must have shape (n,) = ({num_rows},), one per observation; "
            f"got shape {tuple(weights.shape)}"
        )
    check_finite(weights, "weights")
    if not is_concrete(weights):
        return mean_one(weights.astype(dtype), jnp)
    host = np.asarray(weights)
    negative = np.flatnonzero(host < 0)
    if negative.size:
        raise ValueError(
            f"weights must be non-negative; {negative.size} are negative, "
            f"the first is weights[{negative[0]}] = {float(host[negative[0]])}"
        )
    if not np.any(host > 0):
        raise ValueError("weights are all zero; at least one observation needs weight > 0")
    return mean_one(host.astype(np.float64), np).astype(dtype)


def mean_one(weights: Any, xp: Any) -> Any:
    """Non-negative ``weights`` (not all zero) divided by their mean, with
    ``xp`` numpy or ``jax.numpy``. (Traced weights that are all zero, which
    only a flag can refuse, stay zero rather than NaN.)"""
    relative = weights / xp.maximum(xp.max(weights), xp.finfo(weights.dtype).tiny)
    total = xp.maximum(xp.sum(relative), xp.finfo(weights.dtype).tiny)
    return relative * (weights.shape[0] / total)


def check_finite_values(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete (small) ``value``, such as a
    parameter, holds NaN or inf; checked on the host."""
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"{name} contains NaN or inf")


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (a static option)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    *,
    inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """A static real option (configuration) as a Python float.

    A scalar array counts as its number; a traced scalar (a hyperparameter
    being differentiated, see :func:`jaxem.fixed_point`) is returned as it
    is, unchecked.

    Raises:
      TypeError: not a real number (booleans included), or ``None`` when
        ``allow_none`` is false.
      ValueError: not finite, or below ``minimum`` (or equal to it when not
        ``inclusive``).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, jax.core.Tracer) and value.ndim == 0:
        return value
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0:  # (a scalar array)
        if jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer):
            value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a number or None" if allow_none else "a number"
        raise TypeError(f"{name} must be {kind}; got {value!r}")
    value = float(value)
    ok = True if minimum is None else (value >= minimum if inclusive else value > minimum)
    if not (ok and math.isfinite(value)):
        bound = "" if minimum is None else (f" >= {minimum:g}" if inclusive else f" > {minimum:g}")
        raise ValueError(f"{name} must be a finite number{bound}; got {value}")
    return value


def check_nonnegative_float(value: Any, name: str) -> Any:
    """A finite, non-negative real option (a Python number or scalar array)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    if isinstance(value, numbers.Real):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        return float(value)
    array = jnp.asarray(value)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {tuple(array.shape)}")
    if is_concrete(array):
        scalar = float(array)
        if not np.isfinite(scalar) or scalar < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {scalar}")
    return array


def check_key(key: Any) -> Array:
    """A JAX PRNG key: a typed key array or a raw ``uint32[2]`` key."""
    if key is None:
        raise TypeError("key is required: pass key=jax.random.key(seed)")
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise ValueError(f"key must be a single PRNG key; got shape {tuple(key.shape)}")
        return key
    array = jnp.asarray(key)
    if array.dtype == jnp.uint32 and array.shape == (2,):
        return jax.random.wrap_key_data(array)
    raise TypeError(
        "key must be a JAX PRNG key from jax.random.key(seed) (or jax.random.PRNGKey); "
        f"got {type(key).__name__} with shape {getattr(array, 'shape', None)}"
    )
