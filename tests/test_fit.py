"""The EM driver: restarts as a batch axis, compile-once, vmap over datasets,
result semantics, progress callbacks, and value flags."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _driver, _engine
from tests.conftest import make_blobs

K = 3


def assert_trees_close(a, b, rtol=1e-12, atol=1e-12):
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(leaf_a), np.asarray(leaf_b), rtol=rtol, atol=atol)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("restart_batch_size", [1, 2, 4])
def test_batched_restarts_equal_separate_fits(restart_batch_size):
    """One fit of R restarts returns what R separate fits with the same keys do."""
    x = make_blobs(seed=2, n=200, separation=2.5)
    model = jaxem.GaussianMixture(K, init_method="random")
    key = jax.random.key(7)
    batched = jaxem.fit(
        model,
        x,
        key=key,
        num_restarts=4,
        max_iter=300,
        tol=1e-8,
        restart_batch_size=restart_batch_size,
    )
    # Restarts converge after different numbers of iterations (the masking matters).
    assert len(set(np.asarray(batched.num_iter).tolist())) > 1
    for r, restart_key in enumerate(jaxem.restart_keys(key, 4)):
        alone = jaxem.fit(model, x, key=restart_key, max_iter=300, tol=1e-8)
        assert int(alone.num_iter[0]) == int(batched.num_iter[r])
        assert bool(alone.converged[0]) == bool(batched.converged[r])
        assert_trees_close(jax.tree.map(lambda leaf, r=r: leaf[r], batched.restarts), alone.params)
        np.testing.assert_allclose(batched.history[r], alone.history[0], rtol=1e-12)


def test_second_fit_with_new_values_does_not_recompile():
    model = jaxem.GaussianMixture(2)
    x = make_blobs(n=120, num_components=2, dtype=np.float32)
    jaxem.fit(model, x, key=jax.random.key(0), num_restarts=2)
    compiled = _driver._jitted_fit._cache_size()
    # New data values, key, tolerance and weights values: same program.
    for seed in range(3):
        y = make_blobs(seed=seed + 10, n=120, num_components=2, dtype=np.float32)
        jaxem.fit(model, y, key=jax.random.key(seed), num_restarts=2, tol=10.0 ** -(seed + 2))
    assert _driver._jitted_fit._cache_size() == compiled
    # An equal model built again is the same static configuration.
    jaxem.fit(jaxem.GaussianMixture(2), x, key=jax.random.key(9), num_restarts=2)
    assert _driver._jitted_fit._cache_size() == compiled
    # em_step likewise.
    params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x))
    jaxem.em_step(model, params, x)
    stepped = _driver._jitted_em_step._cache_size()
    jaxem.em_step(model, jax.tree.map(lambda a: a * 1.0, params), x + 1.0)
    assert _driver._jitted_em_step._cache_size() == stepped


@pytest.mark.usefixtures("x64")
def test_fit_under_vmap_over_datasets():
    """Many equally-shaped datasets in one call equal one fit each."""
    model = jaxem.GaussianMixture(2, covariance_type="diag", init_method="random_from_data")
    xs = jnp.stack([jnp.asarray(make_blobs(seed=s, n=80, num_components=2)) for s in range(3)])
    keys = jax.random.split(jax.random.key(0), 3)
    fit_one = lambda x, key: jaxem.fit(model, x, key=key, num_restarts=2, max_iter=200, tol=1e-6)
    batched = jax.vmap(fit_one)(xs, keys)
    assert batched.params.means.shape == (3, 2, 2)
    assert batched.history.shape == (3, 2, 200)
    for i in range(3):
        alone = fit_one(xs[i], keys[i])
        # Every restart; the best one is chosen among them (dataset 1's two
        # restarts reach one optimum, tied up to rounding, which vmap may
        # reorder, so the choice between them is not compared).
        assert_trees_close(
            jax.tree.map(lambda leaf, i=i: leaf[i], batched.restarts), alone.restarts
        )
        np.testing.assert_allclose(
            batched.restart_log_likelihood[i], alone.restart_log_likelihood, rtol=1e-12
        )
        np.testing.assert_array_equal(batched.num_iter[i], alone.num_iter)
    assert not np.any(batched.invalid_input)


def test_fit_inside_user_jit_reports_bad_values_as_flags():
    model = jaxem.GaussianMixture(2, covariance_type="spherical", init_method="random")
    x = jnp.asarray(make_blobs(n=60, num_components=2, dtype=np.float32))
    run = jax.jit(lambda x: jaxem.fit(model, x, key=jax.random.key(0), max_iter=20))
    good = run(x)
    assert not bool(good.invalid_input)
    bad = run(x.at[5, 1].set(jnp.inf))
    assert bool(bad.invalid_input)
    # (NaN is a missing value; a row with nothing observed is invalid)
    assert not bool(run(x.at[5, 1].set(jnp.nan)).invalid_input)
    assert bool(run(x.at[5].set(jnp.nan)).invalid_input)
    # Shape problems still raise at trace time.
    with pytest.raises(ValueError, match="2-D"):
        run(x[:, 0])
    # Non-finite starting parameters become a flag too (eagerly they raise).
    start = jax.jit(model.init)(jax.random.key(1), x)
    continued = jax.jit(
        lambda p: jaxem.fit(model, x, key=jax.random.key(0), max_iter=20, init_params=p)
    )
    assert not bool(continued(start).invalid_input)
    assert bool(continued(start._replace(means=start.means.at[0, 0].set(jnp.nan))).invalid_input)


def test_result_semantics():
    x = make_blobs(seed=4, n=150, separation=2.0, dtype=np.float32)
    model = jaxem.GaussianMixture(K, init_method="random")
    result = jaxem.fit(model, x, key=jax.random.key(1), num_restarts=5, max_iter=40, tol=1e-4)
    history = np.asarray(result.history)
    num_iter = np.asarray(result.num_iter)
    assert history.shape == (5, 40)
    for r in range(5):
        assert np.all(np.isfinite(history[r, : num_iter[r]]))
        assert np.all(np.isnan(history[r, num_iter[r] :]))
        if result.converged[r]:
            assert abs(history[r, num_iter[r] - 1] - history[r, num_iter[r] - 2]) < 1e-4
    best = int(result.best_restart)
    assert float(result.log_likelihood) == np.max(result.restart_log_likelihood)
    assert_trees_close(result.params, jax.tree.map(lambda leaf: leaf[best], result.restarts))
    np.testing.assert_allclose(
        result.log_likelihood,
        np.mean(jax.jit(model.log_prob)(result.params, jnp.asarray(x))),
        rtol=1e-5,
    )
    assert result.diagnostics["collapsed"].shape == (5, K)


def test_max_iter_zero_returns_the_initialisation():
    x = make_blobs(n=100, dtype=np.float32)
    model = jaxem.GaussianMixture(K)
    params = jax.jit(model.init)(jax.random.key(3), jnp.asarray(x))
    result = jaxem.fit(model, x, key=jax.random.key(3), max_iter=0)
    assert result.history.shape == (1, 0)
    assert int(result.num_iter[0]) == 0 and not bool(result.converged[0])
    assert_trees_close(result.params, params, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        result.log_likelihood, jnp.mean(jax.jit(model.log_prob)(params, jnp.asarray(x))), rtol=1e-5
    )


@pytest.mark.usefixtures("x64")
def test_init_params_single_or_one_per_restart():
    x = jnp.asarray(make_blobs(n=100))
    model = jaxem.GaussianMixture(K, init_method="random")
    keys = jaxem.restart_keys(jax.random.key(0), 3)
    starts = jax.jit(jax.vmap(lambda k: model.init(k, x)))(keys)
    per_restart = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=3, init_params=starts)
    generated = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=3)
    assert_trees_close(per_restart.restarts, generated.restarts, rtol=1e-9, atol=1e-9)
    single = jax.tree.map(lambda leaf: leaf[1], starts)
    shared = jaxem.fit(model, x, key=jax.random.key(5), num_restarts=3, init_params=single)
    np.testing.assert_allclose(shared.restarts.means[0], shared.restarts.means[2])


def test_callback_reports_progress_without_changing_the_result():
    # (the shapes and options of test_result_semantics: the plain fit reuses
    # its compiled program)
    x = make_blobs(n=150, dtype=np.float32)
    model = jaxem.GaussianMixture(K, init_method="random")
    seen = []
    result = jaxem.fit(
        model, x, key=jax.random.key(2), num_restarts=5, max_iter=40, tol=0.0,
        callback=seen.append, callback_every=10,
    )  # fmt: skip
    jax.effects_barrier()
    iterations = [int(info.iteration) for info in seen]
    assert iterations == [0, 10, 20, 30, 40]
    assert all(isinstance(info, jaxem.EMInfo) for info in seen)
    np.testing.assert_array_equal(seen[-1].num_iter, result.num_iter)
    plain = jaxem.fit(model, x, key=jax.random.key(2), num_restarts=5, max_iter=40, tol=0.0)
    assert_trees_close(result.params, plain.params, rtol=0, atol=0)


@pytest.mark.usefixtures("x64")
def test_em_step_composes_with_jit_vmap_and_grad():
    x = jnp.asarray(make_blobs(n=80))
    model = jaxem.GaussianMixture(K, covariance_type="diag", reg_covar=0.0)
    params = jax.jit(model.init)(jax.random.key(0), x)

    # The model functions are plain JAX: differentiate the log-likelihood...
    grad = jax.jit(jax.grad(lambda p: jnp.sum(model.log_prob(p, x))))
    g = grad(params)
    assert g.means.shape == (K, 2) and np.all(np.isfinite(g.means))
    # ...at a fixed point of EM the gradient vanishes (Fisher identity, M-step).
    fitted = jaxem.fit(model, x, key=jax.random.key(0), max_iter=5000, tol=1e-14).params
    g = grad(fitted)
    np.testing.assert_allclose(g.means / x.shape[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(g.covariances / x.shape[0], 0.0, atol=1e-6)
    # ...and vmap one EM step over a batch of parameter sets.
    batch = jax.jit(jax.vmap(lambda k: model.init(k, x)))(jax.random.split(jax.random.key(1), 4))
    stepped, _, objective = jax.jit(
        jax.vmap(lambda p: _driver._em_step(model, p, (), x, None, None))
    )(batch)
    assert objective.shape == (4,)
    assert stepped.means.shape == (4, K, 2)


# One covariance type with Cholesky factors and one without: every type's
# float32 fits (clean and degenerate data) are in tests/test_matrix.py.
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_fit_is_finite(covariance_type):
    x = make_blobs(seed=5, n=400, dim=4, num_components=4, dtype=np.float32)
    model = jaxem.GaussianMixture(4, covariance_type=covariance_type)
    result = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=3)
    assert result.params.means.dtype == jnp.float32
    for leaf in jax.tree.leaves(result.restarts):
        assert np.all(np.isfinite(leaf))
    assert np.all(result.converged)
    assert not np.any(result.nonfinite | result.decreased)


@dataclasses.dataclass(frozen=True)
class ExplodingMixture(jaxem.GaussianMixture):
    """A model whose second M-step returns NaN (the first moves the weights
    away from the uniform start)."""

    def m_step(self, stats, params, m_step_state=None):
        new, m_step_state = super().m_step(stats, params, m_step_state)
        poison = jnp.where(params.weights[0] == 0.5, 1.0, jnp.nan)
        return new._replace(means=new.means * poison), m_step_state


def test_nonfinite_parameters_stop_the_restart_and_keep_the_last_finite_ones():
    x = make_blobs(n=100, num_components=2, dtype=np.float32)
    model = ExplodingMixture(2)
    start = jaxem.models.GaussianMixtureParams(
        jnp.array([0.5, 0.5]), jnp.asarray(x[:2]), jnp.stack([jnp.eye(2)] * 2)
    )
    first, _ = jaxem.em_step(jaxem.GaussianMixture(2), start, x)
    result = jaxem.fit(model, x, key=jax.random.key(0), init_params=start, max_iter=50)
    assert bool(result.nonfinite[0]) and not bool(result.converged[0])
    assert int(result.num_iter[0]) == 2
    assert_trees_close(result.params, first, rtol=1e-6, atol=1e-6)
    assert np.isfinite(result.log_likelihood)


def test_auto_restart_batch_size():
    """The automatic choice is a static option, by backend, dtype and size."""
    model = jaxem.GaussianMixture(8)
    mid = jnp.zeros((20_000, 2), jnp.float32)  # n·params = 1.1e6
    on_cpu = jax.default_backend() == "cpu"
    assert _engine.auto_restart_batch_size(model, mid, 8) == 8
    assert _engine.auto_restart_batch_size(model, mid, 1) == 1
    big = jnp.zeros((200_000, 16), jnp.float32)
    assert _engine.auto_restart_batch_size(model, big, 8) == (1 if on_cpu else 8)
    with jax.enable_x64(True):
        mid64 = jnp.zeros((20_000, 2), jnp.float64)
        assert _engine.auto_restart_batch_size(model, mid64, 8) == (1 if on_cpu else 8)
