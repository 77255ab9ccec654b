"""Bad input gets a clear ValueError/TypeError, before anything is traced."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _engine
from tests.conftest import make_blobs

X = make_blobs(n=50, dim=2, num_components=2, dtype=np.float32)
MODEL = jaxem.GaussianMixture(2)
KEY = jax.random.key(0)


def with_nan_rows():
    """NaN is a missing value for Gaussian mixtures; a row with nothing
    observed is refused."""
    x = X.copy()
    x[3, 1] = np.nan
    x[7] = np.nan
    x[9] = np.nan
    return x


def with_inf():
    x = X.copy()
    x[10, 0] = -np.inf
    return x


DATA_CASES = [
    (with_nan_rows(), ValueError, r"x has 2 row\(s\) whose every value is missing.*row 7"),
    (with_inf(), ValueError, r"x contains 1 infinite value\(s\).*x\[10, 0\] = -inf"),
    (X[:, 0], ValueError, r"2-D array of shape \(n, D\); got shape \(50,\).*x\[:, None\]"),
    (X[None], ValueError, r"2-D array.*got shape \(1, 50, 2\)"),
    (X[:1], ValueError, r"1 observation\(s\) but num_components=2"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, r"numeric array; got dtype <U1"),
    (X.astype(np.complex64), TypeError, r"real-valued; got dtype complex64"),
    ([[1.0, 2.0], [3.0]], TypeError, r"numeric array"),
    ((X, X), TypeError, r"Gaussian components take one \(n, D\) array x; got tuple"),
]


@pytest.mark.parametrize(("x", "error", "message"), DATA_CASES)
def test_bad_data(x, error, message):
    with pytest.raises(error, match=message):
        jaxem.fit(MODEL, x, key=KEY)


def test_a_list_of_rows_is_one_array_not_a_tuple_of_arrays():
    result = jaxem.fit(MODEL, X.tolist(), key=KEY, max_iter=2)
    assert result.params.means.shape == (2, 2)


class _TupleModel(jaxem.Model):
    """The default data check (finite values): lets the driver's own checks
    of tuple data show."""


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ((), r"x is an empty tuple"),
        ((np.zeros((5, 2)), np.zeros(4)), r"x\[1\] has 4 rows but x\[0\] has 5: every array"),
        ((np.zeros((5, 2)), np.float32(1.0)), r"x\[1\] must have a leading observation axis"),
        (
            (np.zeros((5, 2)), np.array([0.0, np.nan, 1.0, 2.0, 3.0])),
            r"x\[1\] contains 1 non-finite.*x\[1\]\[1\] = nan",
        ),
    ],
)
def test_bad_tuple_data(x, message):
    with pytest.raises(ValueError, match=message):
        _engine.check_data(_TupleModel(), x, None)


def test_tuple_data_weights_are_checked_against_the_rows():
    with pytest.raises(ValueError, match=r"weights must have shape \(n,\) = \(5,\)"):
        _engine.check_data(_TupleModel(), (np.zeros((5, 2)), np.zeros(5)), np.ones(4))
    x, _, valid = _engine.check_data(
        _TupleModel(), (np.zeros((5, 2), np.float32), np.arange(5)), None
    )
    assert [leaf.dtype for leaf in x] == [jnp.float32, jnp.float32]
    assert bool(valid)


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match=r"x has no observations \(shape \(0, 2\)\)"):
        jaxem.fit(MODEL, X[:0], key=KEY)
    with pytest.raises(ValueError, match=r"x has no observations"):
        _engine.check_data(_TupleModel(), (np.zeros((0, 2)), np.zeros(0)), None)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_iter": -1}, ValueError, r"max_iter must be >= 0; got -1"),
        ({"max_iter": 2.5}, TypeError, r"max_iter must be an integer"),
        ({"num_restarts": 0}, ValueError, r"num_restarts must be >= 1; got 0"),
        ({"tol": -1e-3}, ValueError, r"tol must be a finite number >= 0; got -0.001"),
        ({"tol": float("nan")}, ValueError, r"tol must be a finite number >= 0; got nan"),
        ({"tol": jnp.array([1e-3, 1e-3])}, ValueError, r"tol must be a scalar"),
        ({"restart_batch_size": 0}, ValueError, r"restart_batch_size must be >= 1"),
        ({"callback_every": 0}, ValueError, r"callback_every must be >= 1"),
        ({"callback": 3}, TypeError, r"callback must be callable"),
        ({"key": None}, TypeError, r"key is required"),
        ({"key": 0}, TypeError, r"key must be a JAX PRNG key"),
        ({"key": jax.random.split(KEY, 2)}, ValueError, r"single PRNG key; got shape \(2,\)"),
        ({"weights": np.ones(49)}, ValueError, r"weights must have shape \(n,\) = \(50,\)"),
        ({"weights": -np.ones(50)}, ValueError, r"non-negative; 50 are negative.*weights\[0\]"),
        ({"weights": np.zeros(50)}, ValueError, r"weights are all zero"),
        ({"weights": np.r_[np.ones(49), np.nan]}, ValueError, r"weights contains 1 non-finite"),
    ],
)
def test_bad_options(options, error, message):
    arguments = {"key": KEY, **options}
    with pytest.raises(error, match=message):
        jaxem.fit(MODEL, X, **arguments)


def test_missing_key_is_a_type_error():
    with pytest.raises(TypeError, match="key"):
        jaxem.fit(MODEL, X)  # type: ignore[call-arg]


def test_valid_edge_options():
    """tol=0 and max_iter=0 are valid, as in scikit-learn; so is a raw key."""
    result = jaxem.fit(MODEL, X, key=jax.random.PRNGKey(0), tol=0, max_iter=0)
    assert result.history.shape == (1, 0)


GOOD = jaxem.models.GaussianMixtureParams(
    jnp.array([0.5, 0.5]), jnp.zeros((2, 2)), jnp.stack([jnp.eye(2)] * 2)
)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (GOOD._replace(means=jnp.zeros((2, 3))), ValueError, r"params.means must have shape \(2, 2\)"),
        (GOOD._replace(covariances=jnp.eye(2)), ValueError, r"params.covariances must have shape \(2, 2, 2\)"),
        (GOOD._replace(weights=jnp.array([0.7, 0.7])), ValueError, r"sum to 1; got sum 1.4"),
        (GOOD._replace(covariances=-jnp.stack([jnp.eye(2)] * 2)), ValueError, r"positive definite"),
        (GOOD._replace(means=jnp.full((2, 2), jnp.nan)), ValueError, r"params.means contains NaN"),
        ((GOOD.weights, GOOD.means, GOOD.covariances), TypeError, r"GaussianMixtureParams"),
    ],
)  # fmt: skip
def test_bad_parameters(params, error, message):
    with pytest.raises(error, match=message):
        jaxem.fit(MODEL, X, key=KEY, init_params=params)
    with pytest.raises(error, match=message):
        jaxem.em_step(MODEL, params, X)


def test_parameters_for_other_data_are_rejected():
    with pytest.raises(ValueError, match=r"params.means must have shape \(2, 3\)"):
        jaxem.em_step(MODEL, GOOD, np.zeros((10, 3)))


def test_prior_without_hyperparameters_says_how_to_make_them():
    model = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior())
    with pytest.raises(ValueError, match=r"params.prior is None.*resolve"):
        jaxem.fit(model, X, key=KEY, init_params=GOOD)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: jaxem.GaussianMixture(0), ValueError, r"num_components must be >= 1; got 0"),
        (lambda: jaxem.GaussianMixture(2.5), TypeError, r"num_components must be an integer"),
        (lambda: jaxem.GaussianMixture(True), TypeError, r"num_components must be an integer"),
        (lambda: jaxem.GaussianMixture(2, covariance_type="block"), ValueError, r"covariance_type must be one of"),
        (lambda: jaxem.GaussianMixture(2, reg_covar=-1.0), ValueError, r"reg_covar must be a finite number >= 0; got -1.0"),
        (lambda: jaxem.GaussianMixture(2, reg_covar=float("inf")), ValueError, r"reg_covar"),
        (lambda: jaxem.GaussianMixture(2, init_method="kmeans+"), ValueError, r"init_method must be one of"),
        (lambda: jaxem.GaussianMixture(2, block_size=0), ValueError, r"block_size must be a positive integer"),
        (lambda: jaxem.GaussianMixture(2, prior="default"), TypeError, r"prior must be a GaussianMixturePrior"),
        (lambda: jaxem.GaussianMixturePrior(weight_concentration=0.5), ValueError, r"weight_concentration must be >= 1"),
        (lambda: jaxem.GaussianMixturePrior(mean_precision=0.0), ValueError, r"mean_precision must be a finite number > 0; got 0.0"),
        (lambda: jaxem.GaussianMixturePrior(mean_precision="a"), TypeError, r"must be a number"),
    ],
)  # fmt: skip
def test_bad_configuration(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_bad_prior_values_found_at_initialisation():
    model = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior(degrees_of_freedom=0.5))
    with pytest.raises(ValueError, match=r"degrees_of_freedom must be > D - 1 = 1; got 0.5"):
        jaxem.fit(model, X, key=KEY)
    model = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior(scale=[1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"scale for covariance_type='full' must be a number"):
        jaxem.fit(model, X, key=KEY)


def test_models_are_hashable_configuration():
    a = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior(mean=np.array([1.0, 2.0])))
    b = jaxem.GaussianMixture(2, prior=jaxem.GaussianMixturePrior(mean=(1.0, 2.0)))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.num_components = 3  # type: ignore[misc]
