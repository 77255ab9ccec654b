"""k-means++ seeding and Lloyd iterations, on the device, for initialisation.

Pure functions for one dataset; no Python loops over points or iterations.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def _squared_distances_to(x: Array, points: Array) -> Array:
    """``(m, n)`` squared distances from each of ``m`` points to every row of ``x``.

    Differences are taken directly (no ``|x|² − 2x·c + |c|²`` expansion), so
    data far from the origin keeps its precision; one point at a time.
    """
    return lax.map(lambda point: jnp.sum(jnp.square(x - point), axis=-1), points)


def kmeans_plusplus(
    key: Array, x: Array, num_clusters: int, weights: Array | None = None
) -> tuple[Array, Array]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

    Each new centre is the best (lowest weighted potential) of
    ``2 + floor(log K)`` candidates drawn with probability proportional to
    ``w_i · d(x_i)²``, as scikit-learn does. Where every remaining distance is
    zero (duplicated data), candidates are drawn by weight alone.

    Args:
      key: PRNG key.
      x: data, ``(n, D)``.
      num_clusters: ``K``.
      weights: optional ``(n,)`` non-negative observation weights.

    Returns:
      ``(centres (K, D), indices (K,))``: the seeds and their rows in ``x``.
    """
    n = x.shape[0]
    w = jnp.ones(n, x.dtype) if weights is None else weights
    num_trials = 2 + int(math.log(num_clusters))
    # All random numbers in one draw; each pick is an inverse-CDF lookup.
    # (A draw per pick, or a constant probability vector, costs seconds of
    # XLA compile time for large n.)
    uniforms = jax.random.uniform(key, (num_clusters, num_trials), x.dtype)

    def draw(masses: Array, u: Array) -> Array:
        cumulative = jnp.cumsum(masses)
        picks = jnp.searchsorted(cumulative, u * cumulative[-1], side="right")
        return jnp.minimum(picks, n - 1)

    first = draw(w, uniforms[0, :1])[0]
    indices = jnp.zeros((num_clusters,), jnp.int32).at[0].set(first.astype(jnp.int32))
    closest = _squared_distances_to(x, x[first][None])[0]

    def add_centre(i, carry):
        indices, closest = carry
        potential = w * closest
        # All remaining distances zero (duplicated data): draw by weight alone.
        masses = jnp.where(jnp.sum(potential) > 0, potential, w)
        candidates = draw(masses, uniforms[i])
        distances = jnp.minimum(closest, _squared_distances_to(x, x[candidates]))
        best = jnp.argmin(distances @ w)
        indices = indices.at[i].set(candidates[best].astype(jnp.int32))
        return indices, distances[best]

    indices, _ = lax.fori_loop(1, num_clusters, add_centre, (indices, closest))
    return x[indices], indices


def assign(x: Array, centres: Array, reference: Array) -> Array:
    """Index of the nearest centre for each row, ``(n,)``.

    Distances use the matrix-product expansion about ``reference`` (a point
    near the data, e.g. its mean), so only the spread of the data around it
    limits the precision.
    """
    xc = x - reference
    cc = centres - reference
    scores = jnp.sum(cc * cc, axis=1) - 2.0 * (xc @ cc.T)
    return jnp.argmin(scores, axis=1)


def lloyd(
    x: Array,
    centres: Array,
    weights: Array | None = None,
    max_iter: int = 100,
) -> tuple[Array, Array]:
    """Lloyd iterations until the assignment stops changing (or ``max_iter``).

    An empty cluster keeps its previous centre.

    Returns:
      ``(centres (K, D), labels (n,))``.
    """
    num_clusters = centres.shape[0]
    w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
    reference = (w @ x) / jnp.sum(w)

    def update(centres, labels):
        one_hot = jax.nn.one_hot(labels, num_clusters, dtype=x.dtype) * w[:, None]
        counts = jnp.sum(one_hot, axis=0)
        sums = one_hot.T @ (x - reference)
        moved = reference + sums / jnp.where(counts > 0, counts, 1)[:, None]
        return jnp.where((counts > 0)[:, None], moved, centres)

    def cond(carry):
        _, _, changed, iteration = carry
        return changed & (iteration < max_iter)

    def body(carry):
        centres, labels, _, iteration = carry
        centres = update(centres, labels)
        new_labels = assign(x, centres, reference)
        return centres, new_labels, jnp.any(new_labels != labels), iteration + 1

    labels = assign(x, centres, reference)
    centres, labels, _, _ = lax.while_loop(cond, body, (centres, labels, jnp.asarray(True), 0))
    return centres, labels
