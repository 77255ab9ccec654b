"""``jaxem.MixtureComponent``: a component that is itself a mixture."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxem
from jaxem.models import MixtureComponentParams


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("covariance_type", ["tied"])
def test_one_mixture_of_mixtures_is_a_mixture(covariance_type):
    """One outer component holding an ``M``-mixture is the ``M``-mixture:
    one EM step from the same parameters agrees to rounding. (Tied: the
    structure shared within an outer component; full, diag and spherical
    agree too, to 1e-14.)"""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(30, 2)) + 4])
    inner = jaxem.Gaussian(covariance_type)
    flat = jaxem.Mixture(inner, 3)
    nested = jaxem.Mixture(jaxem.MixtureComponent(inner, 3), 1)
    # (the inits jitted: run eagerly, every operation compiles on its own)
    start = jax.jit(flat.init)(jax.random.key(0), x)
    lifted = MixtureComponentParams(
        start.weights[None], jax.tree.map(lambda leaf: leaf[None], start.components)
    )
    params, objective = jaxem.em_step(flat, start, x)
    nested_params, nested_objective = jaxem.em_step(
        nested, jax.jit(nested.init)(jax.random.key(0), x)._replace(components=lifted), x
    )
    np.testing.assert_allclose(nested_objective, objective, rtol=1e-12)
    got = nested_params.components
    np.testing.assert_allclose(got.weights[0], params.weights, atol=1e-12)
    np.testing.assert_allclose(got.components.means[0], params.components.means, atol=1e-12)
    np.testing.assert_allclose(
        got.components.covariances[0], params.components.covariances, atol=1e-12
    )


@pytest.mark.usefixtures("x64")
def test_hmm_with_mixture_emissions_is_monotone_and_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 40, 2)) + 3.0 * rng.integers(0, 2, size=(4, 40, 1))
    model = jaxem.HMM(jaxem.MixtureComponent(jaxem.Gaussian("diag"), 2), 3)
    result = jaxem.fit(model, x, key=jax.random.key(1), max_iter=25, tol=0.0)
    history = np.asarray(result.history[0])
    history = history[np.isfinite(history)]
    assert len(history) > 5 and np.all(np.diff(history) > -1e-9)
    emissions = result.params.emissions
    assert emissions.weights.shape == (3, 2) and emissions.components.means.shape == (3, 2, 2)
    np.testing.assert_allclose(np.sum(emissions.weights, axis=1), 1.0)
    # K - 1 + K (K - 1) chain, K (M - 1) weights, K M (D + D) Gaussian.
    assert model.num_parameters(result.params) == 2 + 6 + 3 + 3 * 2 * 4
    draws, states = jax.jit(model.sample, static_argnums=2)(jax.random.key(2), result.params, 16)
    assert draws.shape == (16, 2) and states.shape == (16,)
    assert np.all(np.isfinite(draws))
