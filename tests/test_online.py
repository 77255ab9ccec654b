"""Online (stochastic) EM: ``online_em``'s ``init``/``step`` and ``fit_online``.

References: batch EM (``jaxem.fit``, and ``jaxem.em_step``: with ``ρ = 1``
and one batch holding all the data, an online step *is* an EM step), the
running-statistics recursion written out in numpy with posteriors from
scipy, and separate fits for batched restarts. The statistics-shift hooks
online EM relies on (``shift_stats``: statistics taken about the parameters
move with them) are checked against the M-step they must leave unchanged.

Compile time dominates on a CPU (a ``fit_online`` program takes seconds to
compile, a step eagerly as long), so every sequence of steps runs in one
jitted ``lax.scan`` (:func:`run_steps`), whose constant step size and data-set
size are traced arguments, and the data are small.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

import jaxem
from jaxem import OnlineEMState, _online, fit_online, gem, online_em, polynomial_step_size
from tests.conftest import make_blobs

K = 3
ADAM = gem.GradientMStep(optax.adam(0.05), num_steps=5)


def assert_trees_close(a, b, rtol=1e-10, atol=1e-10):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        leaf_a, leaf_b = np.asarray(leaf_a), np.asarray(leaf_b)
        if rtol == atol == 0 or not np.issubdtype(leaf_a.dtype, np.floating):
            np.testing.assert_array_equal(leaf_a, leaf_b)
        else:
            np.testing.assert_allclose(leaf_a, leaf_b, rtol=rtol, atol=atol)


def at(tree, index):
    return jax.tree.map(lambda leaf: leaf[index], tree)


@functools.partial(jax.jit, static_argnames=("model", "schedule", "average", "average_start"))
def run_steps(
    model,
    params,
    batches,
    weights=None,
    step_size=None,
    num_observations=None,
    *,
    schedule=None,
    average=False,
    average_start=0,
):
    """``online_em`` steps over stacked ``batches`` (leading axis: steps), from
    ``init(params, batches[0])``: every state after a step, and every batch
    log-likelihood. ``step_size``: a traced constant, or ``schedule``."""
    method = online_em(
        model,
        step_size=schedule if step_size is None else step_size,
        num_observations=num_observations,
        average=average,
        average_start=average_start,
    )

    def body(state, batch):
        x_batch, w_batch = batch
        state, log_lik = method.step(state, x_batch, w_batch)
        return state, (state, log_lik)

    state = method.init(params, at(batches, 0))
    _, (states, log_liks) = jax.lax.scan(body, state, (batches, weights))
    return states, log_liks


def poisson_data(seed=5, shape=(3, 20)):
    """Counts from two well-separated Poisson clusters, ``(*shape, 2)``."""
    rng = np.random.default_rng(seed)
    rates = np.where(rng.uniform(size=(*shape, 1)) < 0.5, 2.0, 9.0)
    return rng.poisson(rates, (*shape, 2)).astype(np.float64)


POISSON = jaxem.Mixture(jaxem.Poisson(), 2, init_method="random_from_data")
POISSON_START = (np.array([0.5, 0.5]), np.array([[1.0, 1.5], [6.0, 8.0]]))


def poisson_params(dtype=np.float64):
    weights, rates = POISSON_START
    return jaxem.models.MixtureParams(
        jnp.asarray(weights, dtype),
        jaxem.models.components.PoissonParams(jnp.asarray(rates, dtype)),
    )


def logistic_data(seed=0, n=200, dtype=np.float64):
    """Binary labels from a two-component mixture of logistic regressions."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n, 2))
    z = rng.choice(2, size=n, p=[0.6, 0.4])
    coefficients = np.array([[3.0, 0.0], [0.0, -3.0]])
    eta = np.sum(inputs * coefficients[z], axis=1) + np.array([0.5, -0.5])[z]
    labels = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))
    return inputs.astype(dtype), labels.astype(dtype)


# ------------------------------------------------------- against batch EM


def test_online_em_reaches_the_batch_log_likelihood():
    """Five epochs of minibatches of 100 on 4000 well-separated points reach
    batch EM's mean log-likelihood within 0.5% of its magnitude, with and
    without Polyak averaging (the minibatch noise left by ``ρ_t ≈ t^−0.6``
    after 200 steps is far smaller). Float32 throughout. Every fit starts
    from the same k-means initialisation (``model.init`` with the key the
    fits would use; compiled once for the three fits)."""
    x = make_blobs(seed=1, n=4000, num_components=K, separation=8.0, dtype=np.float32)
    model = jaxem.GaussianMixture(K)
    start = jax.jit(model.init)(jax.random.key(0), x)
    batch = jaxem.fit(model, x, key=jax.random.key(0), tol=1e-6, init_params=start)
    batch = float(batch.log_likelihood)
    for average in (False, True):
        result = fit_online(
            model,
            x,
            key=jax.random.key(0),
            batch_size=100,
            num_epochs=5,
            average=average,
            init_params=start,
        )
        assert abs(float(result.log_likelihood) - batch) <= 5e-3 * abs(batch)
        assert result.history.shape == (1, 5) and result.num_steps == 5 * 40
        assert not np.any(result.nonfinite)
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))
        assert result.params.weights.dtype == jnp.float32
        # Progressive validation approaches the fitted objective.
        assert abs(float(result.history[0, -1]) - batch) <= 1e-2 * abs(batch)


@pytest.mark.usefixtures("x64")
def test_one_step_with_rho_one_on_all_the_data_is_an_em_step():
    """``ρ = 1`` and one batch holding all the data: the running statistics
    are the data's (scaled by ``N / n = 1``), so the step is
    ``jaxem.em_step``, prior included (float64, 1e-10: the same operations;
    ``fit_online`` sums the rows in a shuffled order). The batch
    log-likelihood is em_step's objective without the prior term."""
    x = make_blobs(seed=2, n=300, num_components=K)
    model = jaxem.GaussianMixture(K, prior=jaxem.GaussianMixturePrior())
    resp = np.random.default_rng(0).dirichlet(np.ones(K), x.shape[0])
    params = jax.jit(model.from_responsibilities)(x, resp)
    expected, objective = jaxem.em_step(model, params, x)
    log_prior = float(jax.jit(model.log_prior)(params)) / x.shape[0]  # (eagerly: op by op)

    states, log_liks = run_steps(model, params, x[None], step_size=1.0, num_observations=300)
    assert_trees_close(at(states.params, 0), expected)
    np.testing.assert_allclose(float(log_liks[0]) + log_prior, float(objective), rtol=1e-12)
    assert int(states.count[0]) == 1 and not bool(states.nonfinite[0])

    result = fit_online(
        model,
        x,
        key=jax.random.key(0),
        batch_size=x.shape[0],
        num_epochs=1,
        step_size=1.0,
        init_params=params,
    )
    assert_trees_close(result.params, expected)
    np.testing.assert_allclose(result.history[0, 0] + log_prior, float(objective), rtol=1e-12)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("family", ["gaussian-prior", "logistic-gem"])
def test_statistics_are_scaled_to_num_observations(family):
    """A weighted batch of ``n`` rows scaled to ``N = 2n`` observations
    weighs against the prior as that batch twice over (weights are relative,
    whatever their sum): with ``ρ = 1`` the step is ``jaxem.em_step`` on the
    data concatenated with itself. For a Gaussian mixture with a prior
    (scaled additive statistics) and a GEM mixture of logistic regressions
    with a Gaussian prior on its coefficients (scaled per-observation
    responsibilities, hence the minibatch ``Q`` the Adam steps climb).
    Float64, 1e-10. A second step exercises the average (of the parameters;
    the M-step state rides beside them, the latest one)."""
    rng = np.random.default_rng(0)
    if family == "gaussian-prior":
        data = make_blobs(seed=4, n=120, num_components=K)
        model = jaxem.GaussianMixture(K, prior=jaxem.GaussianMixturePrior())
        resp = rng.dirichlet(np.ones(K), data.shape[0])
        params = jax.jit(model.from_responsibilities)(data, resp)
    else:
        data = logistic_data(n=60)
        model = jaxem.Mixture(jaxem.LogisticRegression(step=ADAM, l2=1.0), 2)
        params = jax.jit(model.init)(jax.random.key(1), data)
    n = jax.tree.leaves(data)[0].shape[0]
    weights = rng.uniform(0.2, 2.0, n)
    twice = jax.tree.map(lambda a: np.concatenate([a, a]), data)
    expected, _ = jaxem.em_step(model, params, twice, np.concatenate([weights, weights]))

    batches = jax.tree.map(lambda a: np.stack([a, a]), data)
    states, _ = run_steps(
        model,
        params,
        batches,
        np.stack([weights, weights]),
        step_size=1.0,
        num_observations=2 * n,
        average=True,
    )
    assert_trees_close(at(states.params, 0), expected)
    mean = jax.tree.map(lambda a: (a[0] + a[1]) / 2, states.params)
    assert_trees_close(at(states.averaged, 1), mean, rtol=1e-12, atol=1e-12)
    if family == "logistic-gem":  # Adam's count: two M-steps of num_steps updates
        np.testing.assert_array_equal(states.m_step_state[0].count, [5, 10])
    else:  # without N each minibatch counts as its rows, whatever the weights' scale
        small = np.stack([weights, weights]) * 1e-6
        plain, _ = run_steps(model, params, batches, np.stack([weights, weights]), 1.0)
        scaled, _ = run_steps(model, params, batches, small, 1.0)
        assert_trees_close(scaled.params, plain.params, rtol=1e-10, atol=1e-12)
        expected, _ = jaxem.em_step(model, params, data, weights * 1e-3)
        assert_trees_close(at(plain.params, 0), expected)


# ------------------------------------------------- the recursion by hand


@pytest.mark.usefixtures("x64")
def test_running_statistics_follow_the_recursion_poisson():
    """Three steps on a two-component Poisson mixture against numpy:
    responsibilities from scipy's Poisson pmf, statistics scaled by ``N / b``,
    ``s ← (1 − ρ) s + ρ ŝ`` with ``ρ = 1`` first and ``ρ = (count + 1)^−0.7``
    after (``count`` the steps taken), and the closed-form M-step; the Polyak
    average is the mean of the iterates. Float64; 1e-10 covers the M-step's
    ``10 eps`` guard on the counts."""
    batches, total = poisson_data(), 200.0
    states, log_liks = run_steps(
        POISSON,
        poisson_params(),
        batches,
        num_observations=total,
        schedule=polynomial_step_size(exponent=0.7, offset=1.0),
        average=True,
    )
    weights, rates = POISSON_START
    iterates = []
    for t, batch in enumerate(batches):
        log_joint = np.log(weights) + stats.poisson.logpmf(batch[:, None, :], rates).sum(-1)
        log_norm = special.logsumexp(log_joint, axis=1)
        resp = np.exp(log_joint - log_norm[:, None])
        scale = total / batch.shape[0]
        batch_counts, batch_sum_x = scale * resp.sum(0), scale * resp.T @ batch
        if t == 0:
            counts, sum_x = batch_counts, batch_sum_x
        else:
            rho = (t + 1.0) ** -0.7
            counts = (1 - rho) * counts + rho * batch_counts
            sum_x = (1 - rho) * sum_x + rho * batch_sum_x
        weights, rates = counts / counts.sum(), sum_x / counts[:, None]
        iterates.append(rates)

        state = at(states, t)
        np.testing.assert_allclose(float(log_liks[t]), log_norm.mean(), rtol=1e-12)
        np.testing.assert_allclose(state.stats.counts, counts, rtol=1e-10)
        np.testing.assert_allclose(state.stats.components.sum_x, sum_x, rtol=1e-10)
        np.testing.assert_allclose(state.params.weights, weights, rtol=1e-10)
        np.testing.assert_allclose(state.params.components.rates, rates, rtol=1e-10)
        np.testing.assert_allclose(
            state.averaged.components.rates, np.mean(iterates, axis=0), rtol=1e-10
        )
        assert int(state.count) == t + 1


@pytest.mark.usefixtures("x64")
def test_average_starts_after_average_start_steps():
    """With ``average_start = 1`` the average follows the parameters for the
    first two steps, then is the mean of the iterates after steps 2 and 3."""
    batches = poisson_data()
    schedule = polynomial_step_size(exponent=0.7, offset=1.0)
    plain, _ = run_steps(
        POISSON, poisson_params(), batches, num_observations=200.0, schedule=schedule
    )
    late, _ = run_steps(
        POISSON,
        poisson_params(),
        batches,
        num_observations=200.0,
        schedule=schedule,
        average=True,
        average_start=1,
    )
    rates = [at(plain, t).params.components.rates for t in range(3)]
    for t in range(2):
        np.testing.assert_allclose(at(late, t).averaged.components.rates, rates[t], rtol=1e-12)
    np.testing.assert_allclose(
        at(late, 2).averaged.components.rates, (rates[1] + rates[2]) / 2, rtol=1e-12
    )


@pytest.mark.usefixtures("x64")
def test_running_statistics_follow_the_recursion_gaussian():
    """Gaussian statistics are moments about the current means, which move
    every step; ``shift_stats`` re-expresses the running ones, so they stay
    the running average of the raw moments ``(Σr, Σrx, Σrxxᵀ)``. Three steps
    of a full-covariance mixture against numpy with scipy's densities
    (float64; 1e-9 for the raw second moments' cancellation)."""
    batches = make_blobs(seed=6, n=150, num_components=2).reshape(3, 50, 2)
    model = jaxem.GaussianMixture(2, reg_covar=1e-6)
    weights, means = np.array([0.4, 0.6]), batches[0, :2].copy()
    covs = np.stack([np.cov(batches[0].T)] * 2)
    params = jaxem.models.GaussianMixtureParams(*(jnp.asarray(a) for a in (weights, means, covs)))
    states, _ = run_steps(
        model,
        params,
        batches,
        num_observations=500,
        schedule=lambda count: 0.5 * (count + 0.0) ** -0.5,
    )
    for t, batch in enumerate(batches):
        log_joint = np.log(weights) + np.stack(
            [
                stats.multivariate_normal(m, c).logpdf(batch)
                for m, c in zip(means, covs, strict=True)
            ],
            axis=1,
        )
        resp = np.exp(log_joint - special.logsumexp(log_joint, axis=1)[:, None])
        scale = 500 / batch.shape[0]
        moments = (
            scale * resp.sum(0),
            scale * resp.T @ batch,
            scale * np.einsum("nk,nd,ne->kde", resp, batch, batch),
        )
        rho = 1.0 if t == 0 else 0.5 / np.sqrt(t)
        if t == 0:
            running = moments
        else:
            running = [(1 - rho) * a + rho * b for a, b in zip(running, moments, strict=True)]
        s0, s1, s2 = running
        weights, means = s0 / s0.sum(), s1 / s0[:, None]
        covs = s2 / s0[:, None, None] - np.einsum("kd,ke->kde", means, means) + 1e-6 * np.eye(2)

        params = at(states.params, t)
        np.testing.assert_allclose(params.weights, weights, rtol=1e-10)
        np.testing.assert_allclose(params.means, means, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(params.covariances, covs, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------- GEM models


def test_gem_model_improves_and_stays_finite():
    """A mixture of logistic regressions with Adam M-steps (stochastic
    gradient ascent on the minibatch ``Q``) improves on its initial
    objective by a clear margin and stays finite. Float32."""
    data = logistic_data(n=400, dtype=np.float32)
    model = jaxem.Mixture(jaxem.LogisticRegression(step=ADAM), 2)
    start = jax.jit(model.init)(jax.random.key(2), data)
    start_objective = float(jax.jit(model.e_step)(start, data)[1]) / 400
    result = fit_online(
        model,
        data,
        key=jax.random.key(2),
        batch_size=50,
        num_epochs=4,
        init_params=start,
        average=True,
    )
    assert not np.any(result.nonfinite)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))
    assert float(result.log_likelihood) > start_objective + 0.05
    assert np.all(np.isfinite(result.history))


# ------------------------------------------------------------- restarts


@pytest.mark.usefixtures("x64")
def test_batched_restarts_equal_separate_fits_and_do_not_recompile():
    """One fit of R = 3 restarts (vmapped) returns what three fits with the
    split keys return: the same initialisations and the same shuffles
    (float64, 1e-10; ``vmap`` may reorder reductions). New data values, keys,
    a new constant step size or data-set size do not recompile."""
    x = poisson_data(seed=8, shape=(200,))
    options = dict(batch_size=40, num_epochs=2, step_size=0.5, num_observations=200)
    key = jax.random.key(11)
    batched = fit_online(POISSON, x, key=key, num_restarts=3, restart_batch_size=3, **options)
    assert batched.history.shape == (3, 2) and batched.nonfinite.shape == (3,)
    for r, restart_key in enumerate(jaxem.restart_keys(key, 3)):
        alone = fit_online(POISSON, x, key=restart_key, **options)
        assert_trees_close(at(batched.restarts, r), alone.params)
        np.testing.assert_allclose(batched.history[r], alone.history[0], rtol=1e-10)
        np.testing.assert_allclose(
            batched.restart_log_likelihood[r], alone.log_likelihood, rtol=1e-10
        )
    best = int(batched.best_restart)
    assert float(batched.log_likelihood) == np.max(batched.restart_log_likelihood)
    assert_trees_close(batched.params, at(batched.restarts, best), 0, 0)

    compiled = _online._jitted_fit_online._cache_size()
    options |= dict(step_size=0.25, num_observations=1e3)
    fit_online(POISSON, x[::-1] + 1.0, key=jax.random.key(3), **options)
    assert _online._jitted_fit_online._cache_size() == compiled


def test_init_and_step_compile_once():
    """Jitted ``init`` and ``step`` trace once for every batch of one shape:
    the state's structure is fixed by ``init``'s example batch."""
    x = poisson_data(seed=12, shape=(4, 25)).astype(np.float32)
    method = online_em(POISSON, num_observations=100)
    traces = []

    def counted_step(state, batch):
        traces.append(None)
        return method.step(state, batch)

    step = jax.jit(counted_step)
    state = jax.jit(method.init)(poisson_params(np.float32), x[0])
    for batch in x:
        state, _ = step(state, batch)
    assert len(traces) == 1 and step._cache_size() == 1
    assert isinstance(state, OnlineEMState) and int(state.count) == 4


# ------------------------------------------------------------ step sizes


def test_polynomial_step_size_values():
    schedule = polynomial_step_size()
    for t in (1, 5, 100):
        np.testing.assert_allclose(float(schedule(t)), (t + 2.0) ** -0.6, rtol=1e-6)
    np.testing.assert_allclose(float(polynomial_step_size(1.0, 0.0)(4)), 0.25)
    assert polynomial_step_size(0.7, 1.0) == polynomial_step_size(0.7, 1.0)  # one compilation


@pytest.mark.usefixtures("x64")
def test_step_size_accepts_optax_schedules_and_clips_to_one():
    """An optax schedule is called with the step count and clipped into
    ``(0, 1]``: a linear schedule from 2 down to 1 is the constant 1."""
    batches = poisson_data(seed=9)
    reference, _ = run_steps(POISSON, poisson_params(), batches, step_size=1.0)
    schedule = optax.linear_schedule(init_value=2.0, end_value=1.0, transition_steps=10)
    clipped, _ = run_steps(POISSON, poisson_params(), batches, schedule=schedule)
    assert_trees_close(clipped, reference, 1e-13, 1e-13)  # (two programs)
    # A smaller step weighs the first batch's statistics longer.
    default, _ = run_steps(POISSON, poisson_params(), batches, step_size=0.3)
    assert not np.allclose(
        default.params.components.rates[-1], reference.params.components.rates[-1]
    )


# ----------------------------------------------------------- state rules


@pytest.mark.usefixtures("x64")
def test_nonfinite_and_empty_batches_leave_the_parameters():
    """A batch holding inf (``step`` does not validate) has a non-finite
    log-likelihood: the step is skipped and flagged. A batch of zero total
    weight changes nothing and scores NaN. Without an example batch ``init``
    leaves the statistics ``None``, and the first step fills them."""
    batches = poisson_data(seed=10)
    batches[1, 3, 1] = np.inf
    weights = np.ones((3, 20))
    weights[2] = 0.0
    states, log_liks = run_steps(
        POISSON, poisson_params(), batches, weights, step_size=0.5, num_observations=600
    )
    first = at(states, 0)
    assert np.isfinite(log_liks[0]) and not np.isfinite(log_liks[1]) and np.isnan(log_liks[2])
    np.testing.assert_array_equal(states.nonfinite, [False, True, True])
    np.testing.assert_array_equal(states.count, [1, 1, 1])
    for t in (1, 2):
        assert_trees_close(at(states.params, t), first.params, 0, 0)
        assert_trees_close(at(states.stats, t), first.stats, 0, 0)

    method = online_em(POISSON, step_size=0.5, num_observations=600)
    lazy = method.init(poisson_params())
    assert lazy.stats is None
    lazy, _ = jax.jit(method.step)(lazy, batches[0], weights[0])
    assert_trees_close(lazy, first, 1e-13, 1e-13)  # (two programs)


# ----------------------------------------------- the statistics shift hook


SHIFT_MODELS = {
    **{
        name: jaxem.GaussianMixture(K, covariance_type=name)
        for name in ("full", "tied", "diag", "spherical")
    },
    "gaussian-prior": jaxem.GaussianMixture(K, prior=jaxem.GaussianMixturePrior()),
    "student-t": jaxem.Mixture(jaxem.StudentT(), K),
    "regression": jaxem.Mixture(jaxem.LinearRegression(), K),
    "ridge": jaxem.Mixture(jaxem.LinearRegression(coefficient_precision=2.0), K),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(SHIFT_MODELS))
def test_shifted_statistics_give_the_same_m_step(name):
    """``m_step(shift_stats(s, a, b), b) = m_step(s, a)`` for parameters
    ``b`` far from ``a`` (the locations and degrees of freedom moved by 0.5):
    statistics moved to other parameters describe the same data, and moving
    them back restores them. Float64; the Student-t ``ν`` solve starts from
    the parameters' ``ν``, hence 1e-8 there."""
    rng = np.random.default_rng(14)
    model = SHIFT_MODELS[name]
    if name in ("regression", "ridge"):
        inputs = rng.normal(size=(150, 2))
        targets = inputs @ np.array([[1.0, 0.5], [-2.0, 1.0]]) + 0.3 * rng.normal(size=(150, 2))
        data = (inputs, targets[:, 0] if name == "regression" else targets)
    else:
        data = make_blobs(seed=14, n=150, dim=3, num_components=K)
    resp = rng.dirichlet(np.ones(K), 150)

    @jax.jit
    def check(data, resp):
        a = model.from_responsibilities(data, resp)
        s, _ = model.e_step(a, data)
        b = moved_locations(model.m_step(s, a)[0])
        shifted = model.shift_stats(s, a, b)
        return (
            model.m_step(s, a)[0],
            model.m_step(shifted, b)[0],
            model.shift_stats(shifted, b, a),
            s,
        )

    expected, moved, back, original = check(data, resp)
    tolerance = 1e-8 if name == "student-t" else 1e-10
    assert_trees_close(moved, expected, rtol=tolerance, atol=tolerance)
    assert_trees_close(back, original)


def moved_locations(params):
    """``params`` with their locations (means, coefficients, intercepts) and
    degrees of freedom moved by 0.5 (not the weights, scales or prior)."""
    names = ("means", "coefficients", "intercepts", "degrees_of_freedom")
    inner = getattr(params, "components", params)
    moved = {
        name: getattr(inner, name) + 0.5 for name in names if getattr(inner, name, None) is not None
    }
    if hasattr(params, "components"):
        return params._replace(components=inner._replace(**moved))
    return params._replace(**moved)


# ------------------------------------------------------------- bad input


BAD = [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1; got 0"),
    (
        dict(batch_size=61),
        ValueError,
        r"batch_size must be at most the number of observations n = 60; got 61",
    ),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
    (dict(num_epochs=0), ValueError, "num_epochs must be >= 1; got 0"),
    (dict(num_restarts=0), ValueError, "num_restarts must be >= 1; got 0"),
    (dict(step_size=1.5), ValueError, r"step_size must lie in \(0, 1\].*got 1.5"),
    (dict(step_size=0.0), ValueError, r"step_size must lie in \(0, 1\].*got 0.0"),
    (dict(step_size="fast"), TypeError, "step_size must be a number in"),
    (dict(step_size=True), TypeError, "step_size must be a number in"),
    (dict(num_observations=0), ValueError, "num_observations must be a finite number > 0; got 0"),
    (dict(num_observations=-5.0), ValueError, "num_observations must be a finite number > 0"),
    (dict(average="yes"), TypeError, "average must be True or False; got 'yes'"),
    (dict(key=None), TypeError, "key is required"),
    (dict(key=3), TypeError, "key must be a JAX PRNG key"),
    (dict(restart_batch_size=0), ValueError, "restart_batch_size must be >= 1"),
    (
        dict(
            init_params=jaxem.models.GaussianMixtureParams(
                np.ones(3) / 3, np.zeros((3, 2)), np.ones((3, 2, 2))
            )
        ),
        ValueError,
        "weights must have shape",
    ),
]


@pytest.mark.parametrize("options, error, match", BAD, ids=[str(o)[:40] for o, _, _ in BAD])
def test_bad_options_raise_before_tracing(options, error, match):
    x = make_blobs(seed=15, n=60, num_components=2)
    arguments = dict(key=jax.random.key(0), batch_size=10) | options
    with pytest.raises(error, match=match):
        fit_online(jaxem.GaussianMixture(2), x, **arguments)


def test_bad_data_and_schedules_raise():
    x = make_blobs(seed=15, n=60, num_components=2)
    x[7, 1] = np.inf  # (NaN is a missing value for Gaussian mixtures)
    with pytest.raises(ValueError, match=r"x contains 1 infinite value.*x\[7, 1\]"):
        fit_online(jaxem.GaussianMixture(2), x, key=jax.random.key(0), batch_size=10)
    with pytest.raises(ValueError, match=r"exponent must lie in \(0.5, 1\].*got 0.4"):
        polynomial_step_size(exponent=0.4)
    with pytest.raises(ValueError, match=r"exponent must lie in \(0.5, 1\].*got 1.5"):
        polynomial_step_size(exponent=1.5)
    with pytest.raises(ValueError, match="offset must be a finite number >= 0; got -1"):
        polynomial_step_size(offset=-1)
    with pytest.raises(TypeError, match="exponent must be a real number"):
        polynomial_step_size(exponent="0.6")
    with pytest.raises(ValueError, match=r"step_size must lie in \(0, 1\].*got 2.0"):
        online_em(jaxem.GaussianMixture(2), step_size=2.0)
    with pytest.raises(ValueError, match="num_observations must be a finite number > 0"):
        online_em(jaxem.GaussianMixture(2), num_observations=-1)
    with pytest.raises(TypeError, match="average must be True or False"):
        online_em(jaxem.GaussianMixture(2), average=1)
