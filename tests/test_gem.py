"""jaxem.gem: constraints and the monotone gradient M-step around optax."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxem import gem

pytestmark = pytest.mark.usefixtures("x64")


class Toy(NamedTuple):
    probs: jax.Array
    scale: jax.Array
    cov: jax.Array
    shift: jax.Array


CONSTRAINTS = Toy(gem.simplex, gem.positive, gem.positive_definite, None)


def toy_params():
    return Toy(
        probs=jnp.array([0.2, 0.3, 0.5]),
        scale=jnp.array([0.5, 2.0]),
        cov=jnp.array([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]]),
        shift=jnp.array([1.0, -1.0]),
    )


def toy_objective(params: Toy) -> jax.Array:
    """A smooth concave-ish objective with its maximum inside every domain."""
    target_probs = jnp.array([0.6, 0.3, 0.1])
    target_cov = jnp.array([[1.5, 0.5], [0.5, 1.0]])
    return (
        jnp.sum(target_probs * jnp.log(params.probs))
        - jnp.sum((jnp.log(params.scale) - 1.0) ** 2)
        - jnp.sum((params.cov - target_cov) ** 2)
        - jnp.sum((params.shift - 3.0) ** 2)
    )


@pytest.mark.parametrize(
    "constraint, value",
    [
        (gem.real, np.array([-1.0, 2.0])),
        (gem.positive, np.array([1e-6, 0.3, 40.0])),
        (gem.unit_interval, np.array([1e-4, 0.5, 0.999])),
        (gem.simplex, np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])),
        (gem.positive_definite, np.array([[4.0, 1.0], [1.0, 3.0]])),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_constraints_round_trip(constraint, value):
    np.testing.assert_allclose(
        constraint.forward(constraint.inverse(jnp.asarray(value))), value, rtol=1e-9, atol=1e-12
    )


def test_constraints_map_any_reals_into_their_domains():
    u = jax.random.normal(jax.random.key(0), (5, 3, 3)) * 4.0
    probs = gem.simplex.forward(u)
    np.testing.assert_allclose(jnp.sum(probs, axis=-1), 1.0, rtol=1e-12)
    assert bool(jnp.all(probs > 0))
    assert bool(jnp.all(gem.positive.forward(u) > 0))
    inside = gem.unit_interval.forward(u)
    assert bool(jnp.all((inside > 0) & (inside < 1)))
    matrices = gem.positive_definite.forward(u)
    np.testing.assert_allclose(matrices, jnp.swapaxes(matrices, -1, -2))
    assert bool(jnp.all(jnp.linalg.eigvalsh(matrices) > 0))


def test_constraint_pytree_prefix_and_none():
    params = toy_params()
    free = gem.unconstrain(CONSTRAINTS, params)
    np.testing.assert_allclose(free.shift, params.shift)  # None: unconstrained
    back = gem.constrain(CONSTRAINTS, free)
    for got, want in zip(back, params, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # One constraint for a whole subtree.
    pair = (jnp.array([1.0, 2.0]), jnp.array([3.0]))
    np.testing.assert_allclose(
        gem.unconstrain(gem.positive, pair)[1], gem.positive.inverse(pair[1])
    )


@pytest.mark.parametrize(
    "optimizer",
    [optax.adam(0.05), optax.sgd(0.01, momentum=0.9), optax.lbfgs()],
    ids=["adam", "sgd-momentum", "lbfgs"],
)
def test_gradient_m_step_improves_and_carries_state(optimizer):
    step = gem.GradientMStep(optimizer, num_steps=30, constraints=CONSTRAINTS)
    params = toy_params()
    state = step.init(params)
    update = jax.jit(lambda p, s: step.update(toy_objective, p, s, return_info=True))
    values = [float(toy_objective(params))]
    for _ in range(5):
        params, state, info = update(params, state)
        values.append(float(toy_objective(params)))
        assert float(info.objective_after) >= float(info.objective_before)
    assert np.all(np.diff(values) >= 0), values
    assert values[-1] > values[0] + 1.0
    np.testing.assert_allclose(jnp.sum(params.probs), 1.0, rtol=1e-12)
    assert bool(jnp.all(jnp.linalg.eigvalsh(params.cov) > 0))
    # The optimizer state moved on (warm start across M-steps).
    fresh = jax.tree.leaves(step.init(params))
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state), fresh, strict=True))


def test_lbfgs_reaches_the_maximum():
    step = gem.GradientMStep(optax.lbfgs(), num_steps=50, constraints=CONSTRAINTS)
    params, _ = jax.jit(lambda p, s: step.update(toy_objective, p, s))(
        toy_params(), step.init(toy_params())
    )
    np.testing.assert_allclose(params.probs, [0.6, 0.3, 0.1], atol=1e-5)
    np.testing.assert_allclose(params.scale, [np.e, np.e], rtol=1e-5)
    np.testing.assert_allclose(params.cov[0], [[1.5, 0.5], [0.5, 1.0]], atol=1e-5)
    np.testing.assert_allclose(params.shift, [3.0, 3.0], atol=1e-6)


def test_a_step_that_only_makes_things_worse_is_rejected():
    """Plain gradient steps far too large overshoot every time: the step
    returns the incoming parameters unchanged (bit for bit)."""
    step = gem.GradientMStep(optax.sgd(1e3), num_steps=5)
    x0 = jnp.array([0.9, -1.1])
    objective = lambda x: -jnp.sum(x**2)
    new, _, info = step.update(objective, x0, step.init(x0), return_info=True)
    np.testing.assert_array_equal(new, x0)
    assert not bool(info.accepted)
    assert float(info.objective_after) == float(info.objective_before)


def test_non_finite_proposals_are_rejected():
    step = gem.GradientMStep(optax.sgd(1.0), num_steps=3, constraints=gem.positive)
    x0 = jnp.array([1.0])
    objective = lambda x: jnp.where(x[0] > 1.0, jnp.nan, -jnp.sum((x - 1.0) ** 2)) - x[0]
    new, _ = step.update(objective, x0, step.init(x0))
    assert bool(jnp.all(jnp.isfinite(new)))
    assert float(objective(new)) >= float(objective(x0))


def test_reset_starts_the_optimizer_afresh():
    objective = lambda x: -jnp.sum((x - 2.0) ** 2)
    x0 = jnp.array([0.0, 1.0])
    warm = gem.GradientMStep(optax.adam(0.1), num_steps=4)
    reset = gem.GradientMStep(optax.adam(0.1), num_steps=4, reset=True)
    x1, state = warm.update(objective, x0, warm.init(x0))
    carried, _ = warm.update(objective, x1, state)
    fresh, _ = warm.update(objective, x1, warm.init(x1))
    restarted, _ = reset.update(objective, x1, state)
    np.testing.assert_allclose(restarted, fresh, rtol=1e-12)
    assert not np.allclose(carried, fresh)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"optimizer": "adam"}, TypeError, "optax.GradientTransformation"),
        (
            {"optimizer": optax.adam(0.1), "num_steps": 0},
            ValueError,
            "num_steps must be an integer >= 1",
        ),
        (
            {"optimizer": optax.adam(0.1), "constraints": {"a": "positive"}},
            TypeError,
            "constraints must be a pytree",
        ),
    ],
)
def test_bad_configuration(kwargs, error, match):
    with pytest.raises(error, match=match):
        gem.GradientMStep(**kwargs)
