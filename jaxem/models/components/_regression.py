"""What conditional components share: data given as ``(inputs, targets)``.

Conditional components (linear, logistic, softmax and Poisson regressions)
model targets given inputs; they do not model the inputs. Their data are a
tuple ``(inputs (n, P), targets)`` with one row per observation in both.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._validation import check_finite_data, is_concrete

Array = jax.Array


def split_data(x: Any, family: str, targets: str) -> tuple[Array, Array]:
    """``(inputs, targets)`` from the data, with clear errors otherwise.

    Args:
      x: the data.
      family: the component's name, for messages.
      targets: the targets' expected shape, for messages (e.g. ``"(n,)"``).

    Raises:
      TypeError: ``x`` is not a tuple of two arrays.
      ValueError: a tuple of another length.
    """
    if not isinstance(x, (tuple, list)):
        shape = getattr(x, "shape", None)
        described = (
            f"a single array of shape {tuple(shape)}" if shape is not None else (type(x).__name__)
        )
        raise TypeError(
            f"{family} components take data as a tuple (inputs, targets) with inputs (n, P) "
            f"and targets {targets}; got {described}"
        )
    if len(x) != 2:
        raise ValueError(
            f"{family} components take data as a tuple (inputs, targets) of 2 arrays; got {len(x)}"
        )
    inputs, target_values = x
    for name, value in (("inputs", inputs), ("targets", target_values)):
        if not hasattr(value, "ndim"):
            raise TypeError(f"{name} must be an array; got {type(value).__name__}")
    return inputs, target_values


def check_inputs(inputs: Array, need_columns: bool = True) -> None:
    """Raise unless ``inputs`` are ``(n, P)`` (with ``P >= 1`` when needed)."""
    if inputs.ndim != 2:
        hint = " (for one input, reshape with inputs[:, None])" if inputs.ndim == 1 else ""
        raise ValueError(
            f"inputs (x[0]) must be a 2-D array of shape (n, P); got shape "
            f"{tuple(inputs.shape)}{hint}"
        )
    if need_columns and inputs.shape[1] < 1:
        raise ValueError(f"inputs (x[0]) need at least one column; got shape {tuple(inputs.shape)}")


def check_rows(inputs: Array, targets: Array) -> None:
    """Raise unless the targets have one row per input row."""
    if targets.ndim == 0 or targets.shape[0] != inputs.shape[0]:
        rows = "a scalar" if targets.ndim == 0 else f"{targets.shape[0]} rows"
        raise ValueError(
            f"targets (x[1]) have {rows} but inputs (x[0]) have {inputs.shape[0]}: one target "
            "per observation is needed"
        )


def check_vector_targets(targets: Array, what: str) -> None:
    """Raise unless the targets have shape ``(n,)``."""
    if targets.ndim != 1:
        raise ValueError(f"{what} (x[1]) must have shape (n,); got shape {tuple(targets.shape)}")


def check_labels(targets: Array, allowed: int, what: str) -> Array:
    """Raise unless concrete ``targets`` are integers in ``0 .. allowed − 1``;
    return whether they are (traced under a user's ``jit``)."""
    if not is_concrete(targets):
        finite = jnp.isfinite(targets)
        integral = finite & (targets == jnp.round(jnp.where(finite, targets, 0.0)))
        return jnp.all(integral & (targets >= 0) & (targets < allowed))
    values = np.asarray(targets)
    finite = np.isfinite(values)
    integral = finite & (values == np.round(np.where(finite, values, 0.0)))
    bad = np.flatnonzero(~integral)
    if bad.size:
        raise ValueError(
            f"{what} must be integers; {bad.size} are not, the first is "
            f"targets[{bad[0]}] = {values[bad[0]]}"
        )
    bad = np.flatnonzero((values < 0) | (values >= allowed))
    if bad.size:
        raise ValueError(
            f"{what} must lie in 0..{allowed - 1}; {bad.size} do not, the first is "
            f"targets[{bad[0]}] = {values[bad[0]]:g}"
        )
    return True


def check_regression_data(x: Any, family: str, targets: str) -> tuple[Array, Array, Array]:
    """The checks every conditional component makes: a pair of arrays with
    ``(n, P)`` inputs, targets with ``n`` rows, and (when concrete) finite
    values. Returns ``(inputs, targets, finite)``."""
    inputs, target_values = split_data(x, family, targets)
    check_inputs(inputs)
    check_rows(inputs, target_values)
    return inputs, target_values, check_finite_data((inputs, target_values))


def targets_matrix(targets: Array) -> Array:
    """Targets as ``(n, T)``."""
    return targets[:, None] if targets.ndim == 1 else targets


def input_moments(inputs: Array, weights: Array | None) -> tuple[Array, Array]:
    """Weighted mean and variance per input column (variance 1 for constant
    columns)."""
    w = jnp.ones(inputs.shape[0], inputs.dtype) if weights is None else weights
    total = jnp.sum(w)
    mean = (w @ inputs) / total
    variance = (w @ jnp.square(inputs - mean)) / total
    return mean, jnp.where(variance > 0, variance, jnp.ones_like(variance))
