"""Every model declares its parameters' domains (``model.constraints``), and
the free coordinates they define (:mod:`jaxem._free`) are a minimal,
smooth bijection: a round trip gives the parameters back, there are as many
coordinates as ``num_parameters`` counts (except for the unidentifiable
directions listed below, which a model's count removes), and
``to_free ∘ from_free`` is the identity, Jacobian included.

Float64 (the ``x64`` fixture, as the other reference tests: switching
``jax_enable_x64`` at the top of this module would switch it for every
module the session runs after it)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _free, gem
from tests.families import ADAM, FAMILIES, K, log_joint, log_joint_init

pytestmark = pytest.mark.usefixtures("x64")


#: ``num_free − num_parameters`` where a model's count removes directions
#: its free coordinates keep (every other family: 0).
#: - factor models: the loadings' rotation ``W R``, ``q (q − 1) / 2`` per
#:   component (``q = 1`` in tests/families.py: none);
#: - linear-Gaussian state-space models: the change of state basis, ``S²``,
#:   which num_parameters removes when no parameter of the state side is
#:   fixed.
EXPECTED_DIFFERENCE = {
    "lds": 1,
    "factor-analysis-q2": 1,
    "mixture-of-ppca-q2": K,
    "lds-diag-s2": 4,
}


def _with_prior(params, x):
    prior = jaxem.GaussianPrior().resolve(x, K, "diag")
    return params._replace(components=params.components._replace(prior=prior))


def _fixed_dof(params, x):
    dof = jnp.full_like(params.components.degrees_of_freedom, 4.0)
    return params._replace(components=params.components._replace(degrees_of_freedom=dof))


def _no_intercepts(params, x):
    intercepts = jnp.zeros_like(params.components.intercepts)
    return params._replace(components=params.components._replace(intercepts=intercepts))


def _two_factors(fa):
    """Factor parameters with a second column of loadings (and, for PPCA,
    one noise variance): ``FactorAnalysisParams`` or a mixture's ``FactorParams``."""
    extra = 0.3 * jnp.cos(jnp.arange(fa.loadings.size, dtype=fa.loadings.dtype))
    loadings = jnp.concatenate([fa.loadings, extra.reshape(fa.loadings.shape)], axis=-1)
    return loadings, jnp.mean(fa.noise, axis=-1)


def _ppca(params, x):
    return params._replace(noise=jnp.mean(params.noise))


def _ppca_q2(params, x):
    loadings, noise = _two_factors(params)
    return params._replace(loadings=loadings, noise=noise)


def _mixture_ppca_q2(params, x):
    loadings, noise = _two_factors(params.components)
    return params._replace(components=params.components._replace(loadings=loadings, noise=noise))


def _lds_s2(params, x):
    """Hand-built parameters with ``S = 2`` states (diagonal ``Q`` and ``R``)."""
    s, d = 2, x.shape[-1]
    rng = np.random.default_rng(1)
    return jaxem.models.LinearGaussianSSMParams(
        initial_mean=rng.normal(size=s),
        initial_covariance=np.array([[1.0, 0.3], [0.3, 0.5]]),
        dynamics_weights=0.5 * rng.normal(size=(s, s)),
        dynamics_input_weights=np.zeros((s, 0)),
        dynamics_bias=rng.normal(size=s),
        dynamics_covariance=np.diag(rng.uniform(0.5, 2.0, s)),
        emission_weights=rng.normal(size=(d, s)),
        emission_input_weights=np.zeros((d, 0)),
        emission_bias=rng.normal(size=d),
        emission_covariance=np.diag(rng.uniform(0.5, 2.0, d)),
    )


def _full_covariances(params, x):
    return params._replace(
        dynamics_covariance=np.array([[1.0, -0.2], [-0.2, 0.7]]),
        emission_covariance=np.array([[0.8, 0.1], [0.1, 1.2]]),
    )


#: Configurations that change a declaration, as ``name -> (base family,
#: model, params of the base -> params of the model)``: the base family's
#: initial parameters, adapted (no initialisation of their own to compile).
DERIVED = {
    "gmm-full-prior": (
        "gmm-full",
        lambda: jaxem.GaussianMixture(K, prior=jaxem.GaussianMixturePrior()),
        lambda params, x: params._replace(prior=jaxem.GaussianPrior().resolve(x, K, "full")),
    ),
    "mixture-diag-prior": (
        "mixture-gaussian",
        lambda: jaxem.Mixture(jaxem.Gaussian("diag", prior=jaxem.GaussianPrior()), K),
        _with_prior,
    ),
    "student-t-fixed-dof": (
        "student-t",
        lambda: jaxem.Mixture(jaxem.StudentT(fix_degrees_of_freedom=4.0), K),
        _fixed_dof,
    ),
    "linear-regression-no-intercept": (
        "linear-regression",
        lambda: jaxem.Mixture(jaxem.LinearRegression(fit_intercept=False), K),
        _no_intercepts,
    ),
    "ppca": ("factor-analysis", lambda: jaxem.PPCA(1), _ppca),
    "factor-analysis-q2": (
        "factor-analysis",
        lambda: jaxem.FactorAnalysis(2),
        lambda params, x: params._replace(loadings=_two_factors(params)[0]),
    ),
    "mixture-of-ppca-q2": (
        "mixture-of-fa",
        lambda: jaxem.Mixture(jaxem.PPCA(2), K),
        _mixture_ppca_q2,
    ),
    "lds-diag-s2": (
        "lds",
        lambda: jaxem.LinearGaussianSSM(
            state_dim=2, dynamics_covariance_type="diag", emission_covariance_type="diag"
        ),
        _lds_s2,
    ),
    "lds-fixed-s2": (
        "lds",
        lambda: jaxem.LinearGaussianSSM(
            state_dim=2, fixed=("initial_mean", "dynamics_bias", "emission_bias")
        ),
        lambda params, x: _full_covariances(_lds_s2(params, x), x),
    ),
    "log-joint-constrained": (
        "log-joint",
        lambda: jaxem.LogJointModel(
            log_joint, log_joint_init, gradient_step=ADAM, param_constraints=(gem.logits, None)
        ),
        lambda params, x: params,
    ),
}
NAMES = [*FAMILIES, *DERIVED]


@functools.cache
def data(name):
    return FAMILIES[name].data(np.random.default_rng(0))


@functools.cache
def setup(name):
    """``(model, params, constraints)``: the family's initial parameters
    (jitted: one compilation per family)."""
    if name in DERIVED:
        base, make, adapt = DERIVED[name]
        x = data(base)
        model = make().for_data(x)
        params = jax.tree.map(jnp.asarray, adapt(setup(base)[1], x))
        model.check_params(params, x)
    else:
        x = data(name)
        model = FAMILIES[name].make().for_data(x)
        params = jax.jit(model.init)(jax.random.key(0), x)
    return model, params, model.constraints(params)


def assert_same_params(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1.0)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_free_coordinates_round_trip_and_count(name):
    model, params, constraints = setup(name)
    coords = _free.to_free(constraints, params)
    assert coords.ndim == 1 and bool(jnp.all(jnp.isfinite(coords)))
    assert_same_params(_free.from_free(constraints, coords, params), params)
    expected_difference = EXPECTED_DIFFERENCE.get(name, 0)
    size = _free.num_free(constraints, params)
    assert coords.size == size
    assert size - model.num_parameters(params) == expected_difference


@pytest.mark.parametrize("name", ["gmm-full", "hmm", "experts-softmax", "lds-diag-s2"])
def test_free_coordinates_are_a_smooth_minimal_bijection(name):
    """``d to_free(from_free(u)) / du = I`` at the parameters' coordinates:
    no coordinate is lost or duplicated (a simplex's shift, a covariance's
    upper triangle, a softmax's common shift)."""
    _, params, constraints = setup(name)
    u0 = _free.to_free(constraints, params)
    round_trip = lambda u: _free.to_free(constraints, _free.from_free(constraints, u, params))
    jacobian = jax.jit(jax.jacfwd(round_trip))(u0)
    np.testing.assert_allclose(jacobian, np.eye(u0.size), atol=1e-8)


def test_declarations():
    """What a few declarations say, beyond their counts."""
    _, params, constraints = setup("gmm-full-prior")
    assert constraints.weights is gem.simplex and constraints.covariances is gem.positive_definite
    assert constraints.prior is gem.fixed and params.prior is not None
    assert setup("gmm-full")[2].prior is None
    assert setup("student-t-fixed-dof")[2].components.degrees_of_freedom is gem.fixed
    assert setup("student-t")[2].components.degrees_of_freedom is gem.positive
    lds = setup("lds-fixed-s2")[2]
    assert lds.dynamics_bias is gem.fixed and lds.emission_covariance is gem.positive_definite
    assert setup("lds-diag-s2")[2].dynamics_covariance is gem.positive_diagonal
    assert setup("log-joint")[2] is None
