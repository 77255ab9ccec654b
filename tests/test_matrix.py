"""Every model family against bad and degenerate input, in float32 and float64.

- Bad input (non-finite values, wrong rank or container, no rows, fewer rows
  than components, bad weights, values outside the family's domain, bad
  options, bad starting parameters) raises a clear ``ValueError`` or
  ``TypeError`` before anything is compiled.
- Degenerate data (duplicated rows, a constant feature, scales from 1e-8 to
  1e18, integer values, one huge weight, a collapsed component, as many rows
  as components) give finite parameters and truthful flags.
- A fit is invariant to multiplying every observation weight by one
  constant, from 1e-20 to 1e20.

The families are ``tests/families.py``'s (a new family joins by adding one
entry there; one marked ``fits=False`` is checked for bad input only).
Every degenerate case of a family runs through one compiled program (the
same shapes and options; only values change), so the matrix costs a few
compilations per family.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from tests.families import FAMILIES, FITTED, NAMES, K, N, with_value

KEY = jax.random.key(0)
DTYPES = {"float32": np.float32, "float64": np.float64}
FIT = dict(num_restarts=2, max_iter=25, tol=1e-4)


def cast(x: Any, dtype: Any) -> Any:
    return tuple(np.asarray(a, dtype) for a in x) if isinstance(x, tuple) else np.asarray(x, dtype)


def leaves(x: Any) -> list[np.ndarray]:
    return list(x) if isinstance(x, tuple) else [x]


def rows(x: Any, index: Any) -> Any:
    return tuple(a[index] for a in x) if isinstance(x, tuple) else x[index]


_COMPILED = [0]


def _count_compilations(name: str, duration: float, **kwargs: Any) -> None:
    if name.endswith("backend_compile_duration"):
        _COMPILED[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compilations)


@contextlib.contextmanager
def no_compilation():
    """Fail if XLA compiles anything inside the block."""
    before = _COMPILED[0]
    yield
    compiled = _COMPILED[0] - before
    assert not compiled, f"{compiled} program(s) compiled before the error"


def x64_for(dtype: Any):
    return jax.enable_x64(np.dtype(dtype) == np.float64)


# --------------------------------------------------------------- bad input


def bad_cases(family) -> list[tuple[str, Any]]:
    """``(label, case)`` pairs: ``case(x, params) -> (fit arguments,
    error, regex)``, for every kind of bad input."""
    tuple_data = family.tuple_data

    def data(transform, error, regex):
        return lambda x, params: (dict(x=transform(x)), error, regex)

    def option(options, error, regex):
        return lambda x, params: (dict(x=x, **options), error, regex)

    def nan_first(x):
        if tuple_data:
            return with_value((3, 0), np.nan, leaf=0)(x)
        return with_value((3,) + (0,) * (np.ndim(x) - 1), np.nan)(x)

    def inf_row(x):
        if tuple_data:
            return with_value((5,), np.inf, leaf=1)(x)
        return with_value((5,), -np.inf)(x)

    few, few_regex = family.too_few or (lambda x: rows(x, slice(0, 1)), r"1 observation\(s\)")
    container = "tuple, not a list" if tuple_data else "one .*array|take one"
    if family.missing:  # NaN is missing; nothing observed is refused, and inf
        nan_case = ("nan", data(lambda x: np.full_like(x, np.nan), ValueError, "every value is"))
        inf_regex = r"(infinite|non-finite) value\(s\).*= -?inf"
    else:
        nan_case = (
            "nan",
            data(nan_first, ValueError, r"non-finite value\(s\).*\[3, 0(, 0)?\] = nan"),
        )
        inf_regex = r"non-finite value\(s\).*= -?inf"
    cases = [
        nan_case,
        ("inf", data(inf_row, ValueError, inf_regex)),
        ("empty", data(lambda x: rows(x, slice(0, 0)), ValueError, "no observations")),
        ("one row", data(few, ValueError, few_regex)),
        (
            "rank",
            data(
                (lambda x: (x[0][:, 0], x[1])) if tuple_data else (lambda x: x[:, 0]),
                ValueError,
                family.rank_error,
            ),
        ),
        ("text", data(lambda x: np.full((N, 2), "a"), TypeError, "numeric array")),
        (
            "container",
            data(
                (lambda x: list(x)) if tuple_data else (lambda x: (x, x)),
                (TypeError, ValueError),
                family.container_error or container,
            ),
        ),
        (
            "weights negative",
            option(dict(weights=-np.ones(N)), ValueError, "weights must be non-negative"),
        ),
        (
            "weights nan",
            option(dict(weights=np.r_[np.ones(N - 1), np.nan]), ValueError, "weights contains"),
        ),
        ("weights length", option(dict(weights=np.ones(N + 1)), ValueError, r"shape \(n,\)")),
        ("weights zero", option(dict(weights=np.zeros(N)), ValueError, "all zero")),
        ("restarts", option(dict(num_restarts=0), ValueError, "num_restarts must be >= 1")),
        ("max_iter", option(dict(max_iter=-1), ValueError, "max_iter must be >= 0")),
        ("tol", option(dict(tol=np.nan), ValueError, "tol must be a finite number")),
        ("key", option(dict(key=None), TypeError, "key is required")),
        (
            "params nan",
            lambda x, params: (
                dict(x=x, init_params=with_nan(params)),
                ValueError,
                "NaN|nan|non-finite",
            ),
        ),
        (
            "params shape",
            lambda x, params: (
                dict(x=x, init_params=with_extra_axis(params)),
                (ValueError, TypeError),
                "shape|structure",
            ),
        ),
    ]
    for label, transform, regex in family.domain:
        cases.append((label, data(transform, ValueError, regex)))
    return cases


def with_nan(params: Any) -> Any:
    """``params`` with the first floating leaf's first entry NaN."""
    flat, tree = jax.tree.flatten(params)
    flat = [np.array(leaf) for leaf in flat]
    first = next(i for i, leaf in enumerate(flat) if np.issubdtype(leaf.dtype, np.floating))
    flat[first].reshape(-1)[0] = np.nan
    return jax.tree.unflatten(tree, flat)


def with_extra_axis(params: Any) -> Any:
    flat, tree = jax.tree.flatten(params)
    flat = [np.array(leaf) for leaf in flat]
    flat[-1] = flat[-1][..., None]
    return jax.tree.unflatten(tree, flat)


_PARAMS: dict = {}


def valid_params(name: str, dtype: Any) -> Any:
    """One restart's initial parameters, for the family's data (seed 0).

    Compiled once per family, in float32 and outside the no-compilation
    checks; float64 gets the same values cast (the bad-input checks need
    valid parameters of the right dtype, not a second compiled ``init``).
    """
    if name not in _PARAMS:
        family = FAMILIES[name]
        with jax.enable_x64(False):
            x = cast(family.data(np.random.default_rng(0)), np.float32)
            params = jax.jit(family.make().init)(KEY, jax.tree.map(jnp.asarray, x))
            _PARAMS[name] = jax.device_get(params)
    return jax.tree.map(
        lambda a: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a, _PARAMS[name]
    )


BAD = [
    pytest.param(name, dtype, label, case, id=f"{name}-{dtype}-{label}")
    for name in NAMES
    for dtype in DTYPES
    for label, case in bad_cases(FAMILIES[name])
]


@pytest.mark.parametrize(("name", "dtype", "label", "case"), BAD)
def test_bad_input_raises_a_clear_error_before_compiling(name, dtype, label, case):
    family = FAMILIES[name]
    with x64_for(DTYPES[dtype]):
        x = cast(family.data(np.random.default_rng(0)), DTYPES[dtype])
        params = valid_params(name, DTYPES[dtype])
        arguments, error, regex = case(x, params)
        arguments = {"key": KEY, **arguments}
        model = family.make()
        with no_compilation(), pytest.raises(error, match=regex):
            jaxem.fit(model, **arguments)


# ----------------------------------------------------------- degenerate data


def degenerate_cases(family, x: Any) -> dict[str, tuple[Any, np.ndarray, float]]:
    """``label -> (data, weights, the data's scale)``, all of the shapes of ``x``."""
    ones = np.ones(N)
    heavy = ones.copy()
    heavy[0] = 1e6
    cases = {"plain": (x, ones, 1.0), "one heavy weight": (x, heavy, 1.0)}
    cases["duplicates"] = (rows(x, np.zeros(N, int)), ones, 1.0)
    if family.continuous:
        first = leaves(x)[0]
        constant = first.copy()
        constant[..., 0] = 3.0
        constant = (constant, *leaves(x)[1:]) if family.tuple_data else constant
        cases["constant feature"] = (constant, ones, 1.0)
        cases["integer values"] = (jax.tree.map(np.round, x), ones, 1.0)
        for scale in (1e-8, 1e8, 1e18):
            cases[f"scale {scale:g}"] = (jax.tree.map(lambda a, s=scale: a * s, x), ones, scale)
    return cases


def assert_finite_fit(result, label: str) -> None:
    for leaf in jax.tree.leaves(result.restarts):
        assert np.all(np.isfinite(np.asarray(leaf, float))), f"{label}: non-finite parameters"
    assert np.all(np.isfinite(np.asarray(result.restart_log_likelihood))), label
    assert not np.any(result.nonfinite), f"{label}: flagged non-finite"
    assert not np.any(result.invalid_input), label


def assert_flagged_fit(result, label: str) -> None:
    """Finite parameters, and a non-finite log-likelihood flagged as such."""
    for leaf in jax.tree.leaves(result.restarts):
        assert np.all(np.isfinite(np.asarray(leaf, float))), f"{label}: non-finite parameters"
    finite = np.isfinite(np.asarray(result.restart_log_likelihood))
    np.testing.assert_array_equal(np.asarray(result.nonfinite), ~finite, err_msg=label)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", FITTED)
def test_degenerate_data_and_weight_scales(name, dtype):
    """Every degenerate case gives finite parameters (every restart) and no
    false flag; multiplying all weights by 1e-20, 1e-6 or 1e20 gives the
    same fit. Data beyond what the family's log-densities can represent in
    float32 give a truthful non-finite flag instead. One compiled program
    serves every case of the family."""
    family = FAMILIES[name]
    numpy_dtype = DTYPES[dtype]
    with x64_for(numpy_dtype):
        model = family.make()
        x = cast(family.data(np.random.default_rng(0)), numpy_dtype)
        results = {}
        for label, (data, weights, scale) in degenerate_cases(family, x).items():
            data = cast(data, numpy_dtype)
            result = jax.device_get(jaxem.fit(model, data, key=KEY, weights=weights, **FIT))
            if dtype == "float32" and scale > family.float32_scale:
                assert_flagged_fit(result, label)
            else:
                assert_finite_fit(result, label)
            results[label] = result
        plain = results["plain"]
        rtol, atol = (1e-3, 1e-4) if dtype == "float32" else (1e-7, 1e-9)
        for scale in (1e-20, 1e-6, 1e20):
            scaled = jax.device_get(jaxem.fit(model, x, key=KEY, weights=np.full(N, scale), **FIT))
            assert_finite_fit(scaled, f"weights x {scale:g}")
            np.testing.assert_allclose(
                scaled.restart_log_likelihood, plain.restart_log_likelihood, rtol=rtol, atol=atol
            )
            np.testing.assert_array_equal(scaled.num_iter, plain.num_iter)
            for got, want in zip(
                jax.tree.leaves(scaled.restarts), jax.tree.leaves(plain.restarts), strict=True
            ):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def collapse(params: Any) -> Any:
    """``params`` with component 1 given no mass: its mixing weight 0, or a
    gate (or logit) that never chooses it."""
    if hasattr(params, "weights"):
        return params._replace(weights=np.array([1.0, 0.0], params.weights.dtype))
    if hasattr(params, "transition_bias"):  # never enters state 1, whatever the inputs
        dtype = params.initial.dtype
        return params._replace(
            initial=np.array([1.0, 0.0], dtype),
            transition_weights=np.zeros_like(params.transition_weights),
            transition_bias=np.array([[0.0, -1e3]] * 2, dtype),
        )
    if hasattr(params, "transitions"):  # a chain that never enters state 1
        dtype = params.initial.dtype
        return params._replace(
            initial=np.array([1.0, 0.0], dtype), transitions=np.array([[1.0, 0.0]] * 2, dtype)
        )
    if hasattr(params, "gate_bias"):
        zeros = np.zeros_like(params.gate_weights)
        return params._replace(
            gate_weights=zeros, gate_bias=np.array([0.0, -50.0], params.gate_bias.dtype)
        )
    logits, rest = params
    return (np.array([0.0, -50.0], logits.dtype), rest)


# The collapsed-component test runs for one family of each way to collapse
# (mixture weights, gates, HMM transitions, log-joint logits) and each
# component whose fit from no mass is tested nowhere else. The others':
# gmm-tied and gmm-spherical share the Gaussian component of gmm-full and
# gmm-diag (and tests/test_degenerate.py empties a full one); bernoulli,
# categorical and exponential components are emptied in
# tests/test_components.py (test_empty_component_stays_finite, MLE and MAP;
# poisson stays here for the mixture of simple components).
COVERED_ELSEWHERE = {"gmm-tied", "gmm-spherical", "bernoulli", "categorical", "exponential"}
COLLAPSED = [name for name in FITTED if name not in COVERED_ELSEWHERE]


@pytest.mark.parametrize("name", COLLAPSED)
def test_collapsed_component_and_as_many_rows_as_components(name):
    """Float32. A component with no mass is flagged collapsed (and the other
    is not); a fit started there stays finite and its flags are the truth:
    set exactly where the posterior at the returned parameters gives a
    component less than a thousandth of an observation (EM may revive the
    component, as it should when that raises the likelihood). A fit on ``K``
    rows is finite."""
    family = FAMILIES[name]
    x = cast(family.data(np.random.default_rng(1)), np.float32)
    model = family.make().for_data(x)  # (resolved on the data, as fit does)
    start = collapse(valid_params(name, np.float32))
    result = jax.device_get(jaxem.fit(model, x, key=KEY, init_params=start, **FIT))
    assert_finite_fit(result, "collapsed")

    @jax.jit
    def flags_and_masses(start, restarts):
        """The flags at the start; each restart's posterior mass per
        component at the fit (summed over every axis but the restarts' and
        the states'). One compiled program."""
        flags = model.diagnose(model.e_step(start, x)[0], start)
        posterior = jax.vmap(model.posterior, (0, None))(restarts, x)
        return flags, jnp.sum(posterior, axis=tuple(range(1, posterior.ndim - 1)))

    flags, masses = flags_and_masses(start, result.restarts)
    np.testing.assert_array_equal(flags["collapsed"], [False, True])
    np.testing.assert_array_equal(result.diagnostics["collapsed"], np.asarray(masses) < 1e-3)

    few = rows(x, np.arange(K))  # (rows 0 and 1 come from different clusters)
    result = jax.device_get(jaxem.fit(model, few, key=KEY, **FIT))
    assert_finite_fit(result, "n = K")
