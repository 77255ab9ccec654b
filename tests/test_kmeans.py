"""The device k-means++ seeding and Lloyd iterations used for initialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans

from jaxem import _kmeans
from tests.conftest import make_blobs


def inertia(x, centres):
    return float(np.min(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1).sum())


def test_seeds_are_distinct_rows():
    x = make_blobs(n=200, dim=2, num_components=4, dtype=np.float32)
    centres, indices = _kmeans.kmeans_plusplus(jax.random.key(0), jnp.asarray(x), 4)
    assert len(set(np.asarray(indices).tolist())) == 4
    np.testing.assert_array_equal(np.asarray(centres), x[np.asarray(indices)])


def test_zero_weight_rows_are_never_seeds():
    x = make_blobs(n=100, dim=2, num_components=3, dtype=np.float32)
    weights = np.zeros(100, np.float32)
    weights[50:] = 1.0
    for seed in range(5):
        _, indices = _kmeans.kmeans_plusplus(
            jax.random.key(seed), jnp.asarray(x), 3, jnp.asarray(weights)
        )
        assert np.all(np.asarray(indices) >= 50)


def test_duplicated_data_does_not_break_seeding():
    x = jnp.ones((30, 2))
    centres, indices = _kmeans.kmeans_plusplus(jax.random.key(0), x, 3)
    assert np.all(np.isfinite(centres)) and np.all((0 <= indices) & (indices < 30))
    centres, _ = _kmeans.lloyd(x, centres)
    assert np.all(np.isfinite(centres))


def test_lloyd_reaches_sklearn_kmeans_inertia():
    x = make_blobs(seed=3, n=500, dim=3, num_components=5, separation=5.0)
    with jax.enable_x64(True):
        seeds, _ = _kmeans.kmeans_plusplus(jax.random.key(1), jnp.asarray(x), 5)
        centres, labels = _kmeans.lloyd(jnp.asarray(x), seeds)
        centres = np.asarray(centres)
    reference = KMeans(5, n_init=10, random_state=0).fit(x)
    assert inertia(x, centres) <= reference.inertia_ * (1 + 1e-9)
    # Labels are the nearest centres.
    np.testing.assert_array_equal(
        np.asarray(labels), np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    )
