"""Chunked, sharded and streamed EM equal full-batch EM, for every model.

The mesh tests use the eight CPU devices that tests/conftest.py asks XLA
for (``--xla_force_host_platform_device_count=8``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import jaxem
from jaxem import _driver, _streaming, gem
from tests.conftest import make_blobs

# tests/conftest.py asks for eight CPU devices; on other set-ups (a single
# accelerator) the mesh tests cannot build their meshes.
eight_devices = pytest.mark.skipif(
    len(jax.devices()) < 8, reason="needs 8 devices (XLA_FLAGS host device count)"
)

N = 203  # rows: not a multiple of the chunks (37) or of the shards (4, 8)
ADAM = gem.GradientMStep(optax.adam(0.05), num_steps=3)


def continuous(rng):
    return make_blobs(seed=int(rng.integers(100)), n=N, num_components=2)


def incomplete(rng):
    """Continuous data with a sixth of the values missing (NaN): chunks and
    shards with and without missing values."""
    x = continuous(rng)
    gone = rng.random(x.shape) < 0.17
    gone[:, 0] &= ~np.all(gone, axis=1)  # (something observed in every row)
    gone[:40] = False  # (a chunk with nothing missing)
    return np.where(gone, np.nan, x)


def counts(rng):
    rates = np.array([[1.0, 4.0, 0.5], [6.0, 1.0, 3.0]])
    return rng.poisson(rates[rng.integers(2, size=N)]).astype(np.float64)


def regression(rng):
    inputs = rng.normal(size=(N, 2))
    slopes = np.array([[1.0, -2.0], [-1.0, 0.5]])[rng.integers(2, size=N)]
    return inputs, np.sum(inputs * slopes, axis=1) + 0.1 * rng.normal(size=N)


def classification(rng):
    inputs = rng.normal(size=(N, 2))
    return inputs, (inputs[:, 0] + 0.3 * rng.normal(size=N) > 0).astype(np.float64)


def poisson_log_joint(params, x):
    """A Poisson mixture given only as a log-joint, ``(n, K)``."""
    log_rates = params["log_rates"]  # (K, D)
    log_lik = (
        x @ log_rates.T
        - jnp.sum(jnp.exp(log_rates), axis=1)
        - jnp.sum(jax.scipy.special.gammaln(x + 1.0), axis=1, keepdims=True)
    )
    return jax.nn.log_softmax(params["logits"]) + log_lik


def poisson_init(key, x):
    rows = jax.random.choice(key, x.shape[0], (2,), replace=False)
    return {"logits": jnp.zeros(2, x.dtype), "log_rates": jnp.log(x[rows] + 0.5)}


# One model of each kind of statistics and data: additive statistics of an
# array (gmm-full), of an array with missing values (gmm-missing, and
# factor-analysis: not a mixture), of a tuple (regression); statistics kept
# per observation, of an array (log-joint) and of a tuple (logistic); both
# kinds at once (linear-experts). Every family of a kind takes the same path
# here: splitting rows and adding statistics is jaxem._stats's, whatever the
# pytree (other covariance types and components, e.g. diag, Poisson and
# Student-t mixtures, add leaves of other shapes the same way).
MODELS = {
    "gmm-full": (lambda: jaxem.GaussianMixture(2), continuous),
    "gmm-missing": (lambda: jaxem.GaussianMixture(2), incomplete),
    "factor-analysis": (lambda: jaxem.FactorAnalysis(1), incomplete),
    "regression": (lambda: jaxem.Mixture(jaxem.LinearRegression(), 2), regression),
    "log-joint": (lambda: jaxem.LogJointModel(poisson_log_joint, poisson_init, ADAM), counts),
    "linear-experts": (
        lambda: jaxem.MixtureOfExperts(jaxem.LinearRegression(), 2, gate_step=ADAM),
        regression,
    ),
    "logistic": (lambda: jaxem.Mixture(jaxem.LogisticRegression(step=ADAM), 2), classification),
}

# Models whose statistics are (partly) kept per observation: gradient M-steps.
PER_OBSERVATION = {"log-joint", "linear-experts", "logistic"}


# Chunked EM on one device too, for one model of each kind of statistics
# (added, concatenated) and each kind of data (array, tuple of arrays).
CHUNKED_ON_ONE_DEVICE = {"gmm-full", "gmm-missing", "regression", "log-joint", "linear-experts"}


def assert_same_fit(result, expected, rtol=1e-8):
    np.testing.assert_allclose(
        result.restart_log_likelihood, expected.restart_log_likelihood, rtol=rtol
    )
    np.testing.assert_allclose(result.history, expected.history, rtol=rtol)
    np.testing.assert_array_equal(result.num_iter, expected.num_iter)
    for got, want in zip(
        jax.tree.leaves(result.restarts), jax.tree.leaves(expected.restarts), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-10)


def device(x):
    return jax.tree.map(jnp.asarray, x)


@eight_devices
@pytest.mark.parametrize("name", list(MODELS))
def test_chunked_sharded_and_streamed_fits_equal_the_full_batch_fit(name, x64):
    make_model, make_data = MODELS[name]
    model, x = make_model(), make_data(np.random.default_rng(0))
    options = dict(key=jax.random.key(0), num_restarts=2, max_iter=4, tol=0.0)
    full = jaxem.fit(model, device(x), **options)
    assert bool(jnp.all(jnp.isfinite(full.restart_log_likelihood)))

    if name in CHUNKED_ON_ONE_DEVICE:
        chunked = jaxem.fit(model, device(x), chunk_size=37, **options)
        assert_same_fit(chunked, full)

    # Restarts split over one mesh axis, observations over the other, and
    # each device works through its 51 rows in chunks of 16: chunked and
    # sharded EM at once (a compile per variant is what makes this test slow).
    mesh = jax.make_mesh((2, 4), ("restarts", "data"))
    sharded = jaxem.fit(
        model, device(x), chunk_size=16, mesh=mesh, restart_axis="restarts", **options
    )
    assert_same_fit(sharded, full)

    if name in PER_OBSERVATION:
        with pytest.raises(ValueError, match="cannot stream from the host"):
            jaxem.fit(model, x, chunk_size=37, stream=True, **options)
        return
    init = jax.jit(jax.vmap(lambda k: model.init(k, device(x))))
    starts = init(jaxem.restart_keys(jax.random.key(0), 2))
    streamed = jaxem.fit(model, x, chunk_size=37, stream=True, init_params=starts, **options)
    assert_same_fit(streamed, full)


@eight_devices
def test_data_mesh_pads_uneven_rows_and_honours_weights(x64):
    """Weighted rows, padded to a multiple of eight shards. (Unweighted
    uneven rows are padded in every sharded fit of the test above, and a
    data-only mesh is also test_a_global_array_split_over_the_users_mesh's.)"""
    x = make_blobs(seed=3, n=N)
    weights = np.random.default_rng(1).uniform(0.2, 2.0, size=N)
    model = jaxem.GaussianMixture(3)
    options = dict(key=jax.random.key(1), num_restarts=3, max_iter=50, tol=1e-6)
    full = jaxem.fit(model, x, weights=weights, **options)
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jaxem.fit(model, x, weights=weights, mesh=mesh, **options)
    assert_same_fit(sharded, full)


@eight_devices
def test_a_global_array_split_over_the_users_mesh(x64):
    """As on many hosts: each process contributes its rows to one global array."""
    x = make_blobs(seed=3, n=200)
    mesh = jax.make_mesh((8,), ("data",))  # (axes typed Explicit by default)
    split = NamedSharding(mesh, PartitionSpec("data"))
    global_x = jax.make_array_from_process_local_data(split, x)
    model = jaxem.GaussianMixture(2, covariance_type="diag")
    options = dict(key=jax.random.key(1), num_restarts=2, max_iter=30, tol=1e-6)
    assert_same_fit(
        jaxem.fit(model, global_x, mesh=mesh, **options), jaxem.fit(model, x, **options)
    )


def test_memory_mapped_file_streams_to_the_same_fit(tmp_path, x64):
    x = make_blobs(seed=4, n=500)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    model = jaxem.GaussianMixture(3, covariance_type="diag")
    options = dict(key=jax.random.key(2), num_restarts=2, max_iter=200, tol=1e-4)
    # A chunk as large as the data: the first chunk is all of it, so even the
    # initialisation is the in-memory fit's.
    whole = jaxem.fit(model, mapped, chunk_size=500, stream=True, **options)
    assert_same_fit(whole, jaxem.fit(model, jnp.asarray(x), **options))
    assert bool(whole.converged.all())
    # Smaller chunks: initialised from the first chunk, still a converged fit.
    chunked = jaxem.fit(model, mapped, chunk_size=128, stream=True, **options)
    assert bool(chunked.converged.all())
    np.testing.assert_allclose(chunked.log_likelihood, whole.log_likelihood, rtol=1e-3)


def test_a_function_returning_chunks_streams(x64):
    x = make_blobs(seed=5, n=300)
    model = jaxem.GaussianMixture(3)
    start = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x))
    passes = []

    def chunks():
        passes.append(1)
        for i in range(0, 300, 64):  # the last chunk is shorter
            yield x[i : i + 64]

    streamed = jaxem.fit(
        model, chunks, stream=True, key=jax.random.key(0), init_params=start, tol=1e-8
    )
    full = jaxem.fit(model, jnp.asarray(x), key=jax.random.key(0), init_params=start, tol=1e-8)
    assert_same_fit(streamed, full)
    # one pass for the first chunk, then one per E-step
    assert len(passes) == 1 + int(full.num_iter[0]) + 1


def test_streamed_and_chunked_fits_compile_once():
    model = jaxem.GaussianMixture(2, covariance_type="diag")
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(2, 150, 3)).astype(np.float32)
    jaxem.fit(model, first, key=jax.random.key(0), chunk_size=64, stream=True, max_iter=3)
    compiled = _streaming._jitted_chunk_e_step._cache_size()
    jaxem.fit(
        model, second, key=jax.random.key(1), chunk_size=64, stream=True, max_iter=5, tol=1e-2
    )
    assert _streaming._jitted_chunk_e_step._cache_size() == compiled

    jaxem.fit(model, jnp.asarray(first), key=jax.random.key(0), chunk_size=64)
    compiled = _driver._jitted_fit._cache_size()
    jaxem.fit(model, jnp.asarray(second), key=jax.random.key(1), chunk_size=64, tol=1e-2)
    assert _driver._jitted_fit._cache_size() == compiled


def test_em_step_in_chunks_equals_em_step(x64):
    x = jnp.asarray(make_blobs(seed=6, n=N))
    model = jaxem.GaussianMixture(3, covariance_type="tied")
    params = jax.jit(model.init)(jax.random.key(0), x)
    expected, expected_log_lik = jaxem.em_step(model, params, x)
    got, log_lik = jaxem.em_step(model, params, x, chunk_size=50)
    np.testing.assert_allclose(log_lik, expected_log_lik, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_bad_chunk_size(chunk_size):
    x = jnp.asarray(make_blobs(n=50))
    with pytest.raises((ValueError, TypeError), match="chunk_size"):
        jaxem.fit(jaxem.GaussianMixture(2), x, key=jax.random.key(0), chunk_size=chunk_size)


def test_bad_streams_name_the_chunk():
    x = make_blobs(n=300)
    model = jaxem.GaussianMixture(2)
    key = jax.random.key(0)
    bad = x.copy()
    bad[250, 1] = -np.inf  # (NaN is a missing value for Gaussian mixtures)
    with pytest.raises(
        ValueError, match=r"chunk 2 \(rows 200:300\), indices within the chunk: .*x\[50, 1\] = -inf"
    ):
        jaxem.fit(model, bad, key=key, chunk_size=100, stream=True)

    def wrong_features():
        yield x[:100]
        yield x[100:200, :1]

    with pytest.raises(ValueError, match=r"chunk 1 \(rows 100:200\).*same number of features"):
        jaxem.fit(model, wrong_features, key=key, stream=True)

    def nan_later():
        yield x[:100]
        yield np.full((50, 2), np.inf)

    with pytest.raises(ValueError, match=r"chunk 1 \(rows 100:150\).*100 infinite"):
        jaxem.fit(model, nan_later, key=key, stream=True)

    with pytest.raises(TypeError, match="iterator, which can be read only once"):
        jaxem.fit(model, iter([x[:100], x[100:]]), key=key, stream=True)
    with pytest.raises(TypeError, match="pass stream=True"):
        jaxem.fit(model, nan_later, key=key)
    with pytest.raises(ValueError, match="weights cannot be given with a stream"):
        jaxem.fit(model, lambda: iter([x]), key=key, weights=np.ones(300), stream=True)
    with pytest.raises(ValueError, match="yielded no data"):
        jaxem.fit(model, lambda: iter([]), key=key, stream=True)
    with pytest.raises(ValueError, match="needs chunk_size"):
        jaxem.fit(model, x, key=key, stream=True)
    with pytest.raises(TypeError, match="x is a JAX array"):
        jaxem.fit(model, jnp.asarray(x), key=key, chunk_size=100, stream=True)
    # the model's own checks run on every chunk, and say which one
    counts_model = jaxem.Mixture(jaxem.Poisson(), 2)
    negative = np.abs(np.round(x))
    negative[210, 0] = -1.0
    with pytest.raises(ValueError, match=r"chunk 2 \(rows 200:300\).*x\[10, 0\] = -1.0"):
        jaxem.fit(counts_model, negative, key=key, chunk_size=100, stream=True)


@eight_devices
def test_bad_mesh_options():
    x = jnp.asarray(make_blobs(n=64))
    model = jaxem.GaussianMixture(2)
    key = jax.random.key(0)
    mesh = jax.make_mesh((2, 4), ("restarts", "data"))
    with pytest.raises(ValueError, match="multiple of the size of the restart axis"):
        jaxem.fit(model, x, key=key, num_restarts=3, mesh=mesh, restart_axis="restarts")
    with pytest.raises(ValueError, match="'batch' is not an axis of the mesh"):
        jaxem.fit(model, x, key=key, mesh=mesh, restart_axis="batch")
    with pytest.raises(ValueError, match="cannot split both"):
        jaxem.fit(
            model,
            x,
            key=key,
            num_restarts=2,
            mesh=mesh,
            restart_axis="restarts",
            data_axes=("restarts",),
        )
    with pytest.raises(ValueError, match="need a mesh"):
        jaxem.fit(model, x, key=key, data_axes="data")
    with pytest.raises(TypeError, match=r"jax\.sharding\.Mesh"):
        jaxem.fit(model, x, key=key, mesh="data")
    with pytest.raises(ValueError, match="mesh does not apply with stream=True"):
        jaxem.fit(model, lambda: iter([np.asarray(x)]), key=key, mesh=mesh, stream=True)
