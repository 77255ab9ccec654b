"""Bernoulli, Categorical, Poisson and Exponential mixtures against references.

References (float64): scipy.stats log-densities and prior densities, and a
plain numpy EM step (E-step in log space with scipy's logsumexp, closed-form
MLE / MAP M-step written from the textbook formulas). Integer observation
weights must equal repeated rows. Then the EM objective must never decrease,
float32 fits must stay finite, an empty component must stay finite, and bad
input must raise a clear error.

Sizes are tiny and every test reuses the same few compiled programs (one
``em_step`` per model, one ``fit`` per model), to keep the file fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st
from scipy.special import logsumexp

import jaxem
from jaxem import Bernoulli, Categorical, Component, Exponential, Poisson, _driver
from jaxem.models import MixtureParams
from jaxem.models.components import (
    BernoulliParams,
    BernoulliStats,
    CategoricalParams,
    ExponentialParams,
    PoissonParams,
)

N, D, K = 40, 4, 2
KEY = jax.random.key(0)
# float64 comparisons: the jaxem and numpy computations differ only in the
# order of floating-point operations (and the 10 eps added to each count).
RTOL = 1e-10


# --------------------------------------------------------------- the table


def bernoulli_data(rng: np.random.Generator, n: int = N) -> np.ndarray:
    prototypes = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.3, 0.9, 0.7]])
    labels = rng.integers(K, size=n)
    return (rng.random((n, D)) < prototypes[labels]).astype(np.float64)


def categorical_data(rng: np.random.Generator, n: int = N) -> np.ndarray:
    prototypes = np.array([[0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.3, 0.5]])
    labels = rng.integers(K, size=n)
    trials = rng.integers(0, 9, size=n)  # rows of different lengths, some empty
    x = np.stack([rng.multinomial(t, prototypes[k]) for t, k in zip(trials, labels, strict=True)])
    return x.astype(np.float64)


def poisson_data(rng: np.random.Generator, n: int = N) -> np.ndarray:
    rates = np.array([[1.0, 4.0, 0.5, 8.0], [6.0, 1.0, 3.0, 0.2]])
    return rng.poisson(rates[rng.integers(K, size=n)]).astype(np.float64)


def exponential_data(rng: np.random.Generator, n: int = N) -> np.ndarray:
    scales = np.array([[1.0, 0.2, 3.0, 1.0], [0.1, 2.0, 0.5, 5.0]])
    x = rng.exponential(scales[rng.integers(K, size=n)])
    x[0, 1] = 0.0  # the density at 0 is finite: zeros are data
    return x


def bernoulli_logpdf(x, probs):
    return st.bernoulli.logpmf(x[:, None, :], probs[None]).sum(-1)


def categorical_logpdf(x, probs):
    return np.array([[st.multinomial.logpmf(xi, xi.sum(), pk) for pk in probs] for xi in x])


def poisson_logpdf(x, rates):
    return st.poisson.logpmf(x[:, None, :], rates[None]).sum(-1)


def exponential_logpdf(x, rates):
    return st.expon.logpdf(x[:, None, :], scale=1.0 / rates[None]).sum(-1)


def bernoulli_mstep(sum_x, counts, prior):
    a, b = (1.0, 1.0) if prior is None else prior
    return (sum_x + a - 1.0) / (counts[:, None] + a + b - 2.0)


def categorical_mstep(sum_x, counts, prior):
    alpha = 1.0 if prior is None else prior[0]
    pseudo = sum_x + alpha - 1.0
    return pseudo / pseudo.sum(axis=1, keepdims=True)


def poisson_mstep(sum_x, counts, prior):
    shape, rate = (1.0, 0.0) if prior is None else prior
    return (sum_x + shape - 1.0) / (counts[:, None] + rate)


def exponential_mstep(sum_x, counts, prior):
    shape, rate = (1.0, 0.0) if prior is None else prior
    return (counts[:, None] + shape - 1.0) / (sum_x + rate)


def beta_logprior(probs, prior):
    return st.beta.logpdf(probs, *prior).sum()


def dirichlet_logprior(probs, prior):
    return sum(st.dirichlet.logpdf(p, np.full(p.shape, prior[0])) for p in probs)


def gamma_logprior(rates, prior):
    shape, rate = prior
    return st.gamma.logpdf(rates, a=shape, scale=1.0 / rate).sum()


@dataclasses.dataclass(frozen=True)
class Family:
    """One component family, with its references."""

    name: str
    make: Callable  # prior tuple or None -> component
    params: type
    field: str
    data: Callable
    logpdf: Callable
    mstep: Callable
    logprior: Callable
    prior: tuple
    random_params: Callable  # rng -> (K, D) parameter array

    def component(self, with_prior: bool):
        return self.make(self.prior if with_prior else None)

    def model(self, with_prior: bool) -> jaxem.Mixture:
        return jaxem.Mixture(self.component(with_prior), K)

    def wrap(self, weights, values) -> MixtureParams:
        return MixtureParams(jnp.asarray(weights), self.params(jnp.asarray(values)))


FAMILIES = {
    "bernoulli": Family(
        "bernoulli",
        lambda p: Bernoulli() if p is None else Bernoulli(prior_a=p[0], prior_b=p[1]),
        BernoulliParams,
        "probs",
        bernoulli_data,
        bernoulli_logpdf,
        bernoulli_mstep,
        beta_logprior,
        (2.0, 3.5),
        lambda rng: rng.uniform(0.1, 0.9, (K, D)),
    ),
    "categorical": Family(
        "categorical",
        lambda p: Categorical() if p is None else Categorical(prior_concentration=p[0]),
        CategoricalParams,
        "probs",
        categorical_data,
        categorical_logpdf,
        categorical_mstep,
        dirichlet_logprior,
        (1.7,),
        lambda rng: rng.dirichlet(np.full(D, 3.0), size=K),
    ),
    "poisson": Family(
        "poisson",
        lambda p: Poisson() if p is None else Poisson(prior_shape=p[0], prior_rate=p[1]),
        PoissonParams,
        "rates",
        poisson_data,
        poisson_logpdf,
        poisson_mstep,
        gamma_logprior,
        (2.5, 0.5),
        lambda rng: rng.uniform(0.5, 6.0, (K, D)),
    ),
    "exponential": Family(
        "exponential",
        lambda p: Exponential() if p is None else Exponential(prior_shape=p[0], prior_rate=p[1]),
        ExponentialParams,
        "rates",
        exponential_data,
        exponential_logpdf,
        exponential_mstep,
        gamma_logprior,
        (3.0, 2.0),
        lambda rng: rng.uniform(0.3, 4.0, (K, D)),
    ),
}
NAMES = list(FAMILIES)


def problem(name: str, seed: int = 0):
    """Data ``(N, D)``, observation weights ``(N,)`` and starting parameters."""
    family = FAMILIES[name]
    rng = np.random.default_rng(seed)
    x = family.data(rng)
    weights = rng.uniform(0.2, 2.0, N)
    weights[3] = 0.0  # zero weights are allowed
    return x, weights, rng.dirichlet([4.0] * K), family.random_params(rng)


def reference_em_step(family: Family, x, w, mix, values, prior):
    """One weighted EM step in numpy/scipy, and the objective of the input.
    Weights are relative: rescaled to mean one, so a prior weighs against
    the number of rows whatever the weights' scale."""
    w = w * (len(w) / w.sum())
    joint = family.logpdf(x, values) + np.log(mix)
    log_norm = logsumexp(joint, axis=1)
    resp = np.exp(joint - log_norm[:, None]) * w[:, None]
    counts = resp.sum(axis=0)
    new_values = family.mstep(resp.T @ x, counts, prior)
    log_prior = 0.0 if prior is None else family.logprior(values, prior)
    objective = (w @ log_norm + log_prior) / w.sum()
    return counts / counts.sum(), new_values, objective


# --------------------------------------------------- references, float64


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", NAMES)
def test_weighted_em_step_matches_numpy(name, with_prior):
    family = FAMILIES[name]
    x, w, mix, values = problem(name)
    prior = family.prior if with_prior else None
    new, objective = jaxem.em_step(family.model(with_prior), family.wrap(mix, values), x, w)
    ref_mix, ref_values, ref_objective = reference_em_step(family, x, w, mix, values, prior)
    np.testing.assert_allclose(new.weights, ref_mix, rtol=RTOL)
    np.testing.assert_allclose(getattr(new.components, family.field), ref_values, rtol=RTOL)
    np.testing.assert_allclose(objective, ref_objective, rtol=RTOL)
    assert isinstance(new.components, family.params)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_integer_weights_equal_repeated_rows(name):
    """Maximum likelihood: integer weights are repeated rows. (With a prior
    weights are relative, and a prior weighs against the number of rows, so
    there repeated rows count for more against the prior.)"""
    family = FAMILIES[name]
    x, _, mix, values = problem(name)
    counts = np.random.default_rng(1).integers(0, 4, N)
    counts[0] = 1
    model, params = family.model(False), family.wrap(mix, values)
    weighted, weighted_objective = jaxem.em_step(model, params, x, counts.astype(float))
    repeated, repeated_objective = jaxem.em_step(model, params, np.repeat(x, counts, axis=0))
    np.testing.assert_allclose(weighted.weights, repeated.weights, rtol=RTOL)
    np.testing.assert_allclose(
        getattr(weighted.components, family.field),
        getattr(repeated.components, family.field),
        rtol=RTOL,
    )
    np.testing.assert_allclose(weighted_objective, repeated_objective, rtol=RTOL)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_log_likelihoods_match_scipy(name):
    family = FAMILIES[name]
    x, _, mix, values = problem(name)
    component = family.component(False)
    params = family.wrap(mix, values)
    expected = family.logpdf(x, values)
    got = component.log_likelihoods(component.prepare(params.components), jnp.asarray(x))
    assert got.shape == (N, K)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-12)
    mixture = family.model(False)
    joint = expected + np.log(mix)
    np.testing.assert_allclose(mixture.log_prob(params, x), logsumexp(joint, axis=1), rtol=RTOL)
    posterior = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(mixture.posterior(params, x), posterior, rtol=1e-9, atol=1e-14)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_log_prior_matches_scipy(name):
    family = FAMILIES[name]
    _, _, mix, values = problem(name)
    params = family.wrap(mix, values)
    with_prior = family.component(True).log_prior(params.components)
    np.testing.assert_allclose(with_prior, family.logprior(values, family.prior), rtol=RTOL)
    assert float(family.component(False).log_prior(params.components)) == 0.0
    # The mixture adds the (flat) weight prior.
    np.testing.assert_allclose(family.model(True).log_prior(params), with_prior, rtol=RTOL)


@pytest.mark.usefixtures("x64")
def test_flat_priors_have_their_constant_densities():
    """``Beta(1, 1)`` is 0; ``Dirichlet(1)`` on D categories is ``log (D-1)!``;
    and the MAP step with a flat prior is the MLE step."""
    probs = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(D), size=K))
    assert float(Bernoulli(prior_a=1, prior_b=1).log_prior(BernoulliParams(probs))) == 0.0
    np.testing.assert_allclose(
        Categorical(prior_concentration=1).log_prior(CategoricalParams(probs)),
        K * np.log(6.0),
        rtol=RTOL,
    )
    stats = BernoulliStats(probs * 7.0)
    counts = jnp.asarray([9.0, 10.0])
    flat, _ = Bernoulli(prior_a=1, prior_b=1).maximize(stats, counts, None, ())
    np.testing.assert_allclose(flat.probs, Bernoulli().maximize(stats, counts, None, ())[0].probs)


# ----------------------------------------------- monotone, finite, empty


def assert_monotone(result, rtol):
    history = np.asarray(result.history[0])
    history = history[np.isfinite(history)]
    assert history.size >= 10
    assert np.all(np.diff(history) >= -rtol * np.abs(history[1:]))
    assert history[-1] > history[0]  # it moved
    assert not bool(result.decreased[0])
    assert not bool(result.nonfinite[0])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_map_objective_never_decreases(name):
    """30 MAP iterations of ``fit`` in float64: ``history`` (mean
    log-likelihood plus log prior / n) never decreases by more than rounding.
    (MLE is checked in float32 below; in float64 its steps equal the numpy
    reference above.)"""
    family = FAMILIES[name]
    x, _, mix, values = problem(name, seed=2)
    start = family.wrap(mix, values)
    result = jaxem.fit(family.model(True), x, key=KEY, max_iter=30, tol=0.0, init_params=start)
    assert_monotone(result, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_mle_fit_is_finite_and_monotone(name):
    """30 MLE iterations in float32, on data with a feature that is always 0
    (whose maximum-likelihood parameter is on the boundary): the clipped
    parameters keep every log-likelihood finite, and the objective never
    decreases by more than float32 rounding (``history`` entries are float32
    means of ~``D`` terms each: 1e-5 relative). The categorical family starts
    from the default k-means initialisation (through ``features``); the
    others start from given parameters, which compiles faster
    (``initialize`` is checked on its own below)."""
    family = FAMILIES[name]
    x, _, mix, values = problem(name, seed=3)
    x = x.astype(np.float32)
    x[:, -1] = 0.0
    model = family.model(False)
    start = None if name == "categorical" else family.wrap(mix, values.astype(np.float32))
    result = jaxem.fit(model, x, key=KEY, max_iter=30, tol=0.0, init_params=start)
    assert_monotone(result, rtol=1e-5)
    values = getattr(result.params.components, family.field)
    assert values.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(values)))
    assert np.isfinite(float(result.log_likelihood))
    assert bool(jnp.all(jnp.isfinite(model.log_prob(result.params, x))))


def far_parameters(name: str, values: np.ndarray) -> np.ndarray:
    """Component 1 moved so far from every observation that it gets exactly
    zero responsibility."""
    far = values.copy()
    if name == "bernoulli":
        far[1] = 1e-300  # every row has two ones (see the data below)
    elif name == "categorical":
        far[1] = [1e-300, 1e-300, 1e-300, 1.0]  # the data never use the last category
    elif name == "poisson":
        far[1] = 1e4
    else:
        far[1] = 1e-300
    return far


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", NAMES)
def test_empty_component_stays_finite(name, with_prior):
    family = FAMILIES[name]
    x, w, mix, values = problem(name)
    if name == "bernoulli":
        x[:, :2] = 1.0
    elif name == "categorical":
        x[:, 0] += x[:, -1] + 2.0
        x[:, -1] = 0.0
    model = family.model(with_prior)
    params = family.wrap(mix, far_parameters(name, values))
    assert float(model.posterior(params, x)[:, 1].max()) == 0.0  # really empty
    objectives = []
    for step in range(4):
        params, objective = jaxem.em_step(model, params, x, w)
        if step == 0:
            compiled = _driver._jitted_em_step._cache_size()
        objectives.append(float(objective))
        for leaf in jax.tree.leaves(params):
            assert bool(jnp.all(jnp.isfinite(leaf)))
    assert np.all(np.isfinite(objectives))
    assert np.all(np.diff(objectives) >= -1e-12 * np.abs(objectives[1:]))
    assert _driver._jitted_em_step._cache_size() == compiled  # new values: no recompilation
    assert float(params.weights[1]) < 1e-12
    assert bool(jnp.all(jnp.isfinite(model.log_prob(params, x))))


# ------------------------------------------------------------ the rest


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", NAMES)
def test_initialize_is_the_m_step_from_responsibilities(name, with_prior):
    """``initialize(x, resp, weights)`` (how every ``init_method`` ends) is
    the reference M-step from the weighted responsibilities."""
    family = FAMILIES[name]
    x, w, _, _ = problem(name)
    resp = np.random.default_rng(4).dirichlet(np.ones(K), size=N)
    prior = family.prior if with_prior else None
    got = family.component(with_prior).initialize(jnp.asarray(x), jnp.asarray(resp), jnp.asarray(w))
    weighted = resp * w[:, None]
    expected = family.mstep(weighted.T @ x, weighted.sum(0), prior)
    np.testing.assert_allclose(getattr(got, family.field), expected, rtol=RTOL)


@pytest.mark.parametrize("name", NAMES)
def test_contract_sampling_and_parameter_counts(name):
    family = FAMILIES[name]
    component = family.component(True)
    assert isinstance(component, Component)
    assert hash(component) == hash(family.component(True))  # static configuration
    _, _, mix, values = problem(name)
    params = family.wrap(mix, values.astype(np.float32))
    labels = jnp.arange(4000) % K
    draws = np.asarray(component.sample(jax.random.key(1), params.components, labels))
    assert draws.shape == (4000, D)
    assert draws.dtype == np.float32
    first = draws[::2]  # component 0
    if name == "bernoulli":
        assert set(np.unique(draws)) <= {0.0, 1.0}
        mean, expected = first.mean(0), values[0]
    elif name == "categorical":
        np.testing.assert_array_equal(draws.sum(1), 1.0)  # one-hot: one trial
        mean, expected = first.mean(0), values[0]
    elif name == "poisson":
        np.testing.assert_array_equal(draws, np.round(draws))
        mean, expected = first.mean(0), values[0]
    else:
        assert draws.min() >= 0
        mean, expected = first.mean(0), 1.0 / values[0]
    np.testing.assert_allclose(mean, expected, rtol=0.1, atol=0.03)
    free = K * (D - 1) if name == "categorical" else K * D
    assert family.model(True).num_parameters(params) == K - 1 + free


# --------------------------------------------------------------- bad input


def with_value(name, index, value):
    x = problem(name)[0].copy()
    x[index] = value
    return x


BAD_DATA = [
    (
        "bernoulli",
        with_value("bernoulli", (2, 1), 0.5),
        ValueError,
        r"Bernoulli data must be binary \(0 or 1\); x has 1 non-binary value\(s\), the first is x\[2, 1\] = 0.5",
    ),
    ("bernoulli", with_value("bernoulli", (5, 0), 2.0), ValueError, r"non-binary.*x\[5, 0\] = 2.0"),
    (
        "bernoulli",
        with_value("bernoulli", (1, 1), np.nan),
        ValueError,
        r"x contains 1 non-finite value\(s\).*x\[1, 1\] = nan",
    ),
    (
        "poisson",
        with_value("poisson", (1, 0), -1.0),
        ValueError,
        r"Poisson data must be non-negative integer counts; x has 1 negative value\(s\), the first is x\[1, 0\] = -1.0",
    ),
    (
        "poisson",
        with_value("poisson", (3, 2), 2.5),
        ValueError,
        r"integer counts; x has 1 non-integer value\(s\), the first is x\[3, 2\] = 2.5",
    ),
    (
        "categorical",
        with_value("categorical", (0, 3), -2.0),
        ValueError,
        r"Categorical data .* negative value\(s\), the first is x\[0, 3\] = -2.0",
    ),
    (
        "categorical",
        with_value("categorical", (4, 1), 0.25),
        ValueError,
        r"Categorical data .* non-integer value\(s\), the first is x\[4, 1\] = 0.25",
    ),
    (
        "exponential",
        with_value("exponential", (6, 2), -0.5),
        ValueError,
        r"Exponential data must be non-negative; x has 1 negative value\(s\), the first is x\[6, 2\] = -0.5",
    ),
    (
        "exponential",
        problem("exponential")[0][:, 0],
        ValueError,
        r"2-D array of shape \(n, D\); got shape \(40,\)",
    ),
    ("poisson", problem("poisson")[0][None], ValueError, r"2-D array.*got shape \(1, 40, 4\)"),
    ("poisson", np.zeros((N, 0)), ValueError, r"at least one feature; got shape \(40, 0\)"),
    (
        "bernoulli",
        (problem("bernoulli")[0], problem("bernoulli")[0]),
        TypeError,
        r"Bernoulli components take one \(n, D\) array x; got tuple",
    ),
]


@pytest.mark.parametrize(("name", "x", "error", "message"), BAD_DATA)
def test_bad_data(name, x, error, message):
    with pytest.raises(error, match=message):
        jaxem.fit(FAMILIES[name].model(False), x, key=KEY)


def test_value_checks_skip_tracers():
    """Under a user's jit only shapes are checked (values become flags)."""
    x = with_value("poisson", (1, 0), -1.0)
    jax.eval_shape(lambda a: Poisson().check_data(a, K), x)
    with pytest.raises(ValueError, match="2-D array"):
        jax.eval_shape(lambda a: Poisson().check_data(a, K), x[:, 0])


BAD_PARAMS = [
    (
        "bernoulli",
        np.full((3, D), 0.5),
        ValueError,
        r"params.probs must have shape \(K, D\) = \(2, 4\) for num_components=2 and D=4; got \(3, 4\)",
    ),
    (
        "poisson",
        np.ones((K, D + 1)),
        ValueError,
        r"params.rates must have shape \(K, D\) = \(2, 4\).*got \(2, 5\)",
    ),
    (
        "bernoulli",
        np.array([[0.5, 1.0, 0.5, 0.5], [0.5] * 4]),
        ValueError,
        r"params.probs must be in the open interval \(0, 1\); 1 value\(s\) are not, the first is params.probs\[0, 1\] = 1.0",
    ),
    (
        "poisson",
        np.array([[1.0, 2.0, 0.0, 1.0], [1.0] * 4]),
        ValueError,
        r"params.rates must be positive; .* params.rates\[0, 2\] = 0.0",
    ),
    (
        "exponential",
        np.array([[1.0] * 4, [1.0, np.nan, 1.0, 1.0]]),
        ValueError,
        r"params.rates contains NaN or inf",
    ),
    (
        "categorical",
        np.array([[0.25] * 4, [0.5, 0.2, 0.2, 0.2]]),
        ValueError,
        r"every row of params.probs must sum to 1; 1 row\(s\) do not, the first is row 1, which sums to 1.1",
    ),
    (
        "categorical",
        np.array([[0.25] * 4, [0.5, 0.5, 0.0, 0.0]]),
        ValueError,
        r"params.probs must be positive.*params.probs\[1, 2\] = 0.0",
    ),
]


@pytest.mark.parametrize(("name", "values", "error", "message"), BAD_PARAMS)
def test_bad_params(name, values, error, message):
    family = FAMILIES[name]
    x = problem(name)[0].astype(np.float32)
    with pytest.raises(error, match=message):
        jaxem.em_step(family.model(False), family.wrap(np.full(K, 0.5), values), x)


def test_params_of_another_family_are_rejected():
    x = problem("poisson")[0].astype(np.float32)
    params = MixtureParams(jnp.full(K, 0.5), BernoulliParams(jnp.full((K, D), 0.5)))
    with pytest.raises(TypeError, match="params must be a PoissonParams; got BernoulliParams"):
        jaxem.Mixture(Poisson(), K).check_params(params, x)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: Bernoulli(prior_a=0.5, prior_b=2.0),
            ValueError,
            r"Bernoulli.prior_a must be a finite number >= 1; got 0.5",
        ),
        (
            lambda: Bernoulli(prior_a=2.0),
            ValueError,
            r"Bernoulli: prior_a is set but prior_b is None",
        ),
        (lambda: Bernoulli(prior_b=2.0), ValueError, r"prior_b is set but prior_a is None"),
        (
            lambda: Bernoulli(prior_a=True, prior_b=2.0),
            TypeError,
            r"Bernoulli.prior_a must be a number or None; got True",
        ),
        (
            lambda: Categorical(prior_concentration=0.9),
            ValueError,
            r"Categorical.prior_concentration must be a finite number >= 1; got 0.9",
        ),
        (
            lambda: Categorical(prior_concentration="2"),
            TypeError,
            r"prior_concentration must be a number or None; got '2'",
        ),
        (
            lambda: Poisson(prior_shape=2.0, prior_rate=0.0),
            ValueError,
            r"Poisson.prior_rate must be a finite number > 0; got 0.0",
        ),
        (
            lambda: Poisson(prior_shape=0.5, prior_rate=1.0),
            ValueError,
            r"Poisson.prior_shape must be a finite number >= 1; got 0.5",
        ),
        (
            lambda: Exponential(prior_shape=2.0, prior_rate=float("inf")),
            ValueError,
            r"Exponential.prior_rate must be a finite number > 0; got inf",
        ),
        (
            lambda: Exponential(prior_rate=1.0),
            ValueError,
            r"prior_rate is set but prior_shape is None",
        ),
    ],
)
def test_bad_configuration(make, error, message):
    with pytest.raises(error, match=message):
        make()
