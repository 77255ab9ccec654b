"""Gradient M-step components and mixtures of experts (generalized EM).

Logistic, softmax and Poisson regressions are components whose M-step is a
``jaxem.gem.GradientMStep``: a mixture of logistic regressions is
``Mixture(LogisticRegression(), K)``, and a mixture of experts is a softmax
gate over any conditional component.

References: a numpy weighted-least-squares solve for the linear experts'
closed-form M-step, posteriors written out by hand in numpy, the Fisher
identity (the gradient of the log-likelihood equals the gradient of Q at
θ_old), and synthetic data with known structure.

Compile time dominates on a CPU, so the fits share a few compiled programs
(every fit of one model configuration uses the same data shapes and static
options, ``FIT``), and tests that evaluate model functions put them in one
``jax.jit`` each: run eagerly, every jitted helper inside (einsum, softmax,
random draws) would compile on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxem
from jaxem import (
    LinearRegression,
    LogisticRegression,
    MixtureOfExperts,
    PoissonRegression,
    SoftmaxRegression,
    _driver,
    gem,
)
from jaxem.inference import expected_log_joint
from jaxem.models import MixtureOfExpertsParams, MixtureOfExpertsStats, MixtureParams
from jaxem.models.components import LinearRegressionParams, RegressionParams

THRESHOLD = 0.5  # where the piecewise-linear regression switches regime
SLOPES = (2.0, -1.0)  # below, above the threshold
FIT = dict(num_restarts=3, max_iter=80, tol=1e-7)
ADAM = gem.GradientMStep(optax.adam(0.05), num_steps=10)
ADAM_RESET = gem.GradientMStep(optax.adam(0.05), num_steps=10, reset=True)


def piecewise(seed=0, n=120, dtype=np.float32):
    """``y = 1 + 2x`` below ``x = 0.5``, ``3 − x`` above, noise sd 0.1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, n)
    y = np.where(x < THRESHOLD, 1.0 + SLOPES[0] * x, 3.0 + SLOPES[1] * x)
    y = y + 0.1 * rng.normal(size=n)
    return x[:, None].astype(dtype), y.astype(dtype)


def classes(seed=0, n=120, dtype=np.float32):
    """Three classes whose dependence on ``x₁`` flips with the sign of ``x₀``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    slope = np.where(x[:, 0] < 0, 3.0, -3.0) * x[:, 1]
    logits = np.stack([slope, -slope, np.zeros(n)], axis=1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(probs, axis=1)).sum(1)
    return x.astype(dtype), labels.astype(dtype)


LOGISTIC_TRUTH = dict(
    weights=np.array([0.6, 0.4]),
    coefficients=np.array([[3.0, 0.0], [0.0, -3.0]]),
    intercepts=np.array([0.5, -0.5]),
)


def logistic(seed=0, n=200, dtype=np.float32):
    """Binary labels from a two-component mixture of logistic regressions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    z = rng.choice(2, size=n, p=LOGISTIC_TRUTH["weights"])
    eta = np.sum(x * LOGISTIC_TRUTH["coefficients"][z], axis=1) + LOGISTIC_TRUTH["intercepts"][z]
    labels = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))
    return x.astype(dtype), labels.astype(dtype)


def counts(seed=0, n=120, dtype=np.float32):
    """Counts whose log-rate rises with ``x`` below 0 and falls above."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    rate = np.exp(np.where(x < 0, 1.0 + 0.8 * x, 1.0 - 0.8 * x))
    return x[:, None].astype(dtype), rng.poisson(rate).astype(dtype)


# Every GEM block with a first-order (Adam) and a quasi-Newton (L-BFGS, the
# default) optimizer: the gate (L-BFGS in the linear-experts fit, Adam in the
# softmax and Poisson experts' fits), the softmax experts (with an Adam gate,
# one L-BFGS program at a time keeps compile time down), the logistic
# components, and Poisson-regression experts. The logistic Adam fit advances
# its restarts together (vmap); the others one after the other (lax.map), as
# the CPU default chooses.
MODELS = {
    ("linear experts", "lbfgs"): (lambda: MixtureOfExperts(LinearRegression(), 2), piecewise, {}),
    ("softmax experts", "adam"): (
        lambda: MixtureOfExperts(
            SoftmaxRegression(3, step=ADAM_RESET), 2, gate_step=ADAM, gate_l2=0.1
        ),
        classes,
        {},
    ),
    ("softmax experts", "lbfgs"): (
        lambda: MixtureOfExperts(SoftmaxRegression(3), 2, gate_step=ADAM, gate_l2=0.1),
        classes,
        {},
    ),
    ("logistic", "adam"): (
        lambda: jaxem.Mixture(LogisticRegression(step=ADAM), 2),
        logistic,
        {"restart_batch_size": 3},
    ),
    ("logistic", "lbfgs"): (lambda: jaxem.Mixture(LogisticRegression(), 2), logistic, {}),
    ("poisson experts", "lbfgs"): (
        lambda: MixtureOfExperts(PoissonRegression(), 2, gate_step=ADAM),
        counts,
        {},
    ),
}


def fit(name, seed=0, key=0):
    make_model, make_data, options = MODELS[name]
    model = make_model()
    data = make_data(seed)
    return model, data, jaxem.fit(model, data, key=jax.random.key(key), **FIT, **options)


def random_experts_params(model, dim, width=None, seed=0, dtype=np.float64):
    """Parameters drawn at random (cheaper than ``model.init``)."""
    rng = np.random.default_rng(seed)
    k = model.num_experts
    gate = (0.3 * rng.normal(size=(dim, k)).astype(dtype), rng.normal(size=k).astype(dtype))
    if isinstance(model.expert, SoftmaxRegression):
        c = model.expert.num_classes
        experts = RegressionParams(
            rng.normal(size=(k, dim, c)).astype(dtype), rng.normal(size=(k, c)).astype(dtype)
        )
    else:
        tail = () if width is None else (width,)
        experts = LinearRegressionParams(
            rng.normal(size=(k, dim, *tail)).astype(dtype),
            rng.normal(size=(k, *tail)).astype(dtype),
            rng.uniform(0.2, 1.0, (k, *tail)).astype(dtype),
        )
    return jax.tree.map(jnp.asarray, MixtureOfExpertsParams(*gate, experts))


def random_logistic_params(model, dim, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    k = model.num_components
    weights = rng.uniform(0.5, 1.0, k)
    params = MixtureParams(
        (weights / weights.sum()).astype(dtype),
        RegressionParams(rng.normal(size=(k, dim)).astype(dtype), rng.normal(size=k).astype(dtype)),
    )
    return jax.tree.map(jnp.asarray, params)


def responsibilities(model, stats):
    """The weighted responsibilities in a model's statistics."""
    if isinstance(model, MixtureOfExperts):
        return stats.gate.values
    return stats.components.values


# ------------------------------------------------------------ monotone GEM


@pytest.mark.parametrize("name", list(MODELS), ids=lambda name: "-".join(name).replace(" ", "-"))
def test_gem_never_decreases_the_objective(name):
    """log p(y | x) + log p(θ) never decreases, whatever the optimizer.

    Tolerance: in float32 the mean log-likelihood of 120-200 terms is
    rounded to about 1e-7 relative, so a drop larger than 1e-5 (relative,
    at least 1e-5 absolute) is a real decrease, not rounding.
    """
    _, _, result = fit(name)
    assert not np.any(result.decreased)
    assert not np.any(result.nonfinite)
    history = np.asarray(result.history, dtype=np.float64)
    gains = []
    for trace in history:
        trace = trace[np.isfinite(trace)]
        assert trace.size >= 2
        steps = np.diff(trace)
        assert np.all(steps >= -1e-5 * np.maximum(1.0, np.abs(trace[1:]))), steps.min()
        gains.append(trace[-1] - trace[0])
    assert max(gains) > 1e-2  # the fit moved (a restart may start near its optimum)
    assert np.isfinite(float(result.log_likelihood))
    assert result.diagnostics["collapsed"].shape == (FIT["num_restarts"], 2)


# --------------------------------------------------------- the mathematics


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "model, make_data",
    [
        (
            MixtureOfExperts(LinearRegression(), 3, gate_l2=0.3),
            lambda: piecewise(1, 40, np.float64),
        ),
        (MixtureOfExperts(SoftmaxRegression(3), 2), lambda: classes(1, 40, np.float64)),
        (jaxem.Mixture(LogisticRegression(), 2), lambda: logistic(1, 40, np.float64)),
    ],
    ids=["linear-experts", "softmax-experts", "logistic"],
)
def test_fisher_identity(model, make_data):
    """At θ_old, ∇ Σ_i log p(y_i | x_i, θ) = ∇_θ Q(θ, θ_old): the M-step's
    objective has the likelihood's gradient, so a GEM step that increases Q
    increases the likelihood. Exact up to float64 rounding."""
    data = tuple(jnp.asarray(a) for a in make_data())
    dim = data[0].shape[1]
    if isinstance(model, MixtureOfExperts):
        params = random_experts_params(model, dim)
    else:
        params = random_logistic_params(model, dim)

    @jax.jit
    def gradients(params):
        stats, _ = model.e_step(params, data)
        resp = responsibilities(model, stats)
        log_likelihood = lambda theta: jnp.sum(model.log_prob(theta, data))
        q = lambda theta: expected_log_joint(resp, model.log_joint(theta, data))
        own = model.expected_log_joint(params, data, params)  # (the contract's Q(θ, θ))
        return jax.grad(log_likelihood)(params), jax.grad(q)(params), q(params), own

    grad_ll, grad_q, q_value, expected = gradients(params)
    assert (
        max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad_ll)) > 1e-3
    )  # not stationary
    for a, b in zip(jax.tree.leaves(grad_ll), jax.tree.leaves(grad_q), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(q_value), float(expected))  # the model's own Q


def softmax(logits, axis):
    logits = logits - logits.max(axis=axis, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=axis, keepdims=True)


def normal_pdf(y, mean, variance):
    return np.exp(-0.5 * (y - mean) ** 2 / variance) / np.sqrt(2 * np.pi * variance)


@pytest.mark.usefixtures("x64")
def test_posteriors_equal_bayes_rule_in_numpy():
    """Responsibilities (and the summed log-likelihood) equal Bayes' rule
    written out in numpy: gate (or weight) × expert likelihood, normalised."""
    linear = MixtureOfExperts(LinearRegression(), 3)
    classifier = MixtureOfExperts(SoftmaxRegression(3), 2)
    mixture = jaxem.Mixture(LogisticRegression(), 2)
    cases = [
        (linear, random_experts_params(linear, 1), piecewise(2, 30, np.float64)),
        (classifier, random_experts_params(classifier, 2), classes(2, 30, np.float64)),
        (mixture, random_logistic_params(mixture, 2), logistic(2, 30, np.float64)),
    ]
    weights = np.random.default_rng(0).uniform(0.5, 2.0, 30)

    @jax.jit
    def evaluate(params_tuple, data_tuple):
        out = []
        for (model, _, _), params, data in zip(cases, params_tuple, data_tuple, strict=True):
            stats, total = model.e_step(params, data, weights)
            out.append((responsibilities(model, stats), total, model.posterior(params, data)))
        return out

    results = evaluate(tuple(c[1] for c in cases), tuple(c[2] for c in cases))
    joints = []
    (x, y), params = cases[0][2], cases[0][1]
    gate = softmax(x @ np.asarray(params.gate_weights) + np.asarray(params.gate_bias), axis=1)
    experts = params.experts
    means = x @ np.asarray(experts.coefficients).T + np.asarray(experts.intercepts)  # (n, K)
    joints.append(gate * normal_pdf(y[:, None], means, np.asarray(experts.variances)))

    (x, labels), params = cases[1][2], cases[1][1]
    gate = softmax(x @ np.asarray(params.gate_weights) + np.asarray(params.gate_bias), axis=1)
    logits = np.einsum("np,kpc->nkc", x, params.experts.coefficients) + np.asarray(
        params.experts.intercepts
    )
    joints.append(gate * softmax(logits, axis=2)[np.arange(30), :, labels.astype(int)])

    (x, labels), params = cases[2][2], cases[2][1]
    components = params.components
    eta = x @ np.asarray(components.coefficients).T + np.asarray(components.intercepts)
    p1 = 1.0 / (1.0 + np.exp(-eta))
    joints.append(np.asarray(params.weights) * np.where(labels[:, None] == 1.0, p1, 1.0 - p1))

    for (resp, total, posterior), joint in zip(results, joints, strict=True):
        expected = joint / joint.sum(1, keepdims=True)
        np.testing.assert_allclose(resp, weights[:, None] * expected, rtol=1e-10)
        np.testing.assert_allclose(total, np.sum(weights * np.log(joint.sum(1))), rtol=1e-10)
        np.testing.assert_allclose(posterior, expected, rtol=1e-10)


def weighted_least_squares_reference(x, y, resp):
    """Per component and output: minimise Σ r (y − x w − b)² by a numpy
    solve of the normal equations; the variance is the weighted mean squared
    residual."""
    n, dim = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    weights, biases, variances = [], [], []
    for k in range(resp.shape[1]):
        r = resp[:, k]
        beta = np.linalg.solve(design.T @ (r[:, None] * design), design.T @ (r[:, None] * y))
        residual = y - design @ beta
        weights.append(beta[:dim])
        biases.append(beta[dim])
        variances.append(r @ residual**2 / r.sum())
    return np.array(weights), np.array(biases), np.array(variances)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("num_targets", [None, 2])
def test_linear_experts_m_step_is_weighted_least_squares(num_targets):
    """The experts' M-step (the linear-regression component's closed form)
    from given responsibilities equals a numpy weighted least-squares solve,
    and the gate's gradient step never lowers its part of Q."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 3)) + 5.0  # off-centre inputs: the intercept matters
    y = rng.normal(size=(50,) if num_targets is None else (50, num_targets))
    expert = LinearRegression(reg_covar=0.0)
    model = MixtureOfExperts(expert, 3, gate_step=gem.GradientMStep(optax.sgd(1e-3), 1))
    data = (jnp.asarray(x), jnp.asarray(y))
    params = random_experts_params(model, 3, num_targets)
    # Responsibilities with observation weights folded in, as the E-step makes them.
    resp = jnp.asarray(rng.dirichlet(np.ones(3), size=50) * rng.uniform(0.5, 2.0, (50, 1)))

    @jax.jit
    def step(params, resp):
        stats = MixtureOfExpertsStats(
            jnp.sum(resp, axis=0),
            jaxem.PerObservation(resp, data),
            expert.statistics(data, resp, params.experts),
            jnp.asarray(50.0),
        )
        new, _ = model.m_step(stats, params)
        gate_q = lambda p: expected_log_joint(resp, model.gate_log_probabilities(p, data[0]))
        return new, gate_q(params), gate_q(new)

    new, before, after = step(params, resp)
    y2 = y[:, None] if y.ndim == 1 else y
    weights, bias, variances = weighted_least_squares_reference(x, y2, np.asarray(resp))
    experts = new.experts
    np.testing.assert_allclose(
        experts.coefficients, weights.reshape(experts.coefficients.shape), rtol=1e-8, atol=1e-10
    )
    shape = experts.intercepts.shape
    np.testing.assert_allclose(experts.intercepts, bias.reshape(shape), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(experts.variances, variances.reshape(shape), rtol=1e-8)
    assert float(after) >= float(before)


# ------------------------------------------------------------- recovery


def test_piecewise_linear_regression_is_recovered():
    """Two regimes split at x = 0.5: the experts' slopes are the regimes'
    (within 0.05; the noise sd is 0.1 over 60 points per regime, so the
    slopes' standard errors are about 0.01) and the gate switches at the
    threshold (within 0.2)."""
    model, (x, _), result = fit(("linear experts", "lbfgs"))
    params = result.params
    slopes = np.asarray(params.experts.coefficients[:, 0])
    order = np.argsort(-slopes)  # slope 2 first
    np.testing.assert_allclose(slopes[order], SLOPES, atol=0.05)
    grid = np.linspace(-3.0, 3.0, 601)[:, None].astype(np.float32)
    predict = jax.jit(
        lambda params: (model.gate_probabilities(params, grid), model.predict(params, x))
    )
    gate, mean = (np.asarray(a) for a in predict(params))
    chosen = gate.argmax(1)
    switches = np.flatnonzero(np.diff(chosen))
    assert switches.size == 1
    assert abs(grid[switches[0], 0] - THRESHOLD) < 0.2
    assert chosen[0] == order[0]  # the slope-2 expert owns the left
    truth = np.where(x[:, 0] < THRESHOLD, 1.0 + 2.0 * x[:, 0], 3.0 - x[:, 0])
    far = np.abs(x[:, 0] - THRESHOLD) > 0.3
    assert np.max(np.abs(mean - truth)[far]) < 0.1


def test_mixture_of_logistic_regressions_reaches_the_truths_likelihood():
    """The fitted log-likelihood is at least the true parameters' (less 0.01
    per observation): the maximum-likelihood fit of 200 points lies above
    the truth by about (number of parameters / 2) / n ≈ 0.02."""
    model, data, result = fit(("logistic", "lbfgs"))
    truth = MixtureParams(
        jnp.asarray(LOGISTIC_TRUTH["weights"], jnp.float32),
        RegressionParams(
            *(
                jnp.asarray(LOGISTIC_TRUTH[name], jnp.float32)
                for name in ("coefficients", "intercepts")
            )
        ),
    )
    true_log_lik = float(jax.jit(lambda p: jnp.mean(model.log_prob(p, data)))(truth))
    assert true_log_lik - 0.01 < float(result.log_likelihood) < true_log_lik + 0.1


# ------------------------------------------- optimizer state, compilation


def test_m_step_state_is_carried_beside_the_parameters():
    """The GEM optimizer's state is the driver's, not the parameters': Adam's
    step count grows by ``num_steps`` per EM iteration (warm start) across a
    fit and through ``em_step``, and a step with ``reset=True`` starts afresh
    at every M-step. The parameters hold model parameters only."""
    model, data, result = fit(("logistic", "adam"))
    best = int(result.best_restart)
    assert isinstance(result.params.components, RegressionParams)
    count = int(result.m_step_state[0].count)
    assert count == ADAM.num_steps * int(result.num_iter[best])
    _, state, _ = jaxem.em_step(model, result.params, data, m_step_state=result.m_step_state)
    assert int(state[0].count) == count + ADAM.num_steps
    assert not np.allclose(state[0].mu[0], result.m_step_state[0].mu[0])
    # Without a state, em_step starts a fresh one (and returns two values).
    assert len(jaxem.em_step(model, result.params, data)) == 2

    # The softmax experts' step resets (ADAM_RESET), the gate's does not.
    _, _, result = fit(("softmax experts", "adam"))
    best = int(result.best_restart)
    num_iter = int(result.num_iter[best])
    assert num_iter > 1
    assert int(result.m_step_state.gate[0].count) == ADAM.num_steps * num_iter
    assert int(result.m_step_state.experts[0].count) == ADAM_RESET.num_steps


def test_second_fit_with_new_data_does_not_recompile():
    fit(("linear experts", "lbfgs"))
    compiled = _driver._jitted_fit._cache_size()
    for seed in (5, 6):
        _, _, result = fit(("linear experts", "lbfgs"), seed=seed, key=seed)
        assert np.isfinite(float(result.log_likelihood))
    # An equal model built again (the default optimizer is one shared object).
    assert MixtureOfExperts(LinearRegression(), 2) == MixtureOfExperts(LinearRegression(), 2)
    jaxem.fit(
        MixtureOfExperts(LinearRegression(), 2),
        piecewise(7),
        key=jax.random.key(7),
        **{**FIT, "tol": 1e-3},
    )
    assert _driver._jitted_fit._cache_size() == compiled


# --------------------------------------------------------- the contract


def test_predict_sample_and_parameter_counts():
    x, _ = piecewise(0, 20)
    xc, _ = classes(0, 20)
    linear = MixtureOfExperts(LinearRegression(), 3)
    classifier = MixtureOfExperts(SoftmaxRegression(4), 2)
    mixture = jaxem.Mixture(LogisticRegression(), 3)
    cases = [
        (linear, random_experts_params(linear, 1, dtype=np.float32), x),
        (linear, random_experts_params(linear, 1, width=2, dtype=np.float32), x),
        (classifier, random_experts_params(classifier, 2, dtype=np.float32), xc),
        (mixture, random_logistic_params(mixture, 2, dtype=np.float32), xc),
    ]

    @jax.jit
    def evaluate(params_tuple, key):
        return [
            (model.predict(params, inputs), model.sample_targets(key, params, inputs)[0])
            for (model, _, inputs), params in zip(cases, params_tuple, strict=True)
        ]

    results = evaluate(tuple(c[1] for c in cases), jax.random.key(1))
    (mean, drawn), (mean2, drawn2), (probs, classes_drawn), (p1, labels) = results
    assert mean.shape == drawn.shape == (20,)
    assert mean2.shape == drawn2.shape == (20, 2)
    params = cases[0][1]
    gate = np.asarray(linear.gate_probabilities(params, x))
    experts = x @ np.asarray(params.experts.coefficients).T + np.asarray(params.experts.intercepts)
    np.testing.assert_allclose(mean, np.sum(gate * experts, axis=1), rtol=1e-5, atol=1e-6)
    assert probs.shape == (20, 4)
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-6)
    assert classes_drawn.dtype == jnp.int32 and set(np.unique(classes_drawn)) <= {0, 1, 2, 3}
    assert p1.shape == (20,) and np.all((p1 > 0) & (p1 < 1))
    assert labels.dtype == jnp.int32 and set(np.unique(labels)) <= {0, 1}
    # Free parameters: gate (P+1)(K-1); linear experts K(P+2)T; softmax
    # experts K(P+1)(C-1); logistic K-1 weights and K(P+1) coefficients.
    counts = [model.num_parameters(params) for model, params, _ in cases]
    assert counts == [2 * 2 + 3 * 3, 2 * 2 + 3 * 3 * 2, 3 * 1 + 2 * 3 * 3, 2 + 3 * 3]
    for model, params, _ in (cases[0], cases[3]):
        with pytest.raises(TypeError, match=r"sample_targets\(key, params, inputs\)"):
            model.sample(jax.random.key(0), params, 10)
    # Both initialisations give parameters of one structure and shapes.
    shapes = [
        jax.eval_shape(
            MixtureOfExperts(LinearRegression(), 3, init_method=method).init,
            jax.random.key(0),
            (x, x[:, 0]),
        )
        for method in ("gate", "random")
    ]
    assert shapes[0] == shapes[1]


# ------------------------------------------------------------- bad input

X, Y = piecewise(0, 20)
C = classes(0, 20)
L = logistic(0, 20)
LINEAR = MixtureOfExperts(LinearRegression(), 2)
SOFTMAX = MixtureOfExperts(SoftmaxRegression(3), 2)
LOGISTIC = jaxem.Mixture(LogisticRegression(), 2)


@pytest.mark.parametrize(
    "model, data, error, match",
    [
        (LINEAR, (X, Y[:15]), ValueError, r"x\[1\] has 15 rows but x\[0\] has 20"),
        (LINEAR, X, TypeError, r"tuple \(inputs, targets\)"),
        (LINEAR, (X, Y, Y), ValueError, "of 2 arrays; got 3"),
        (LINEAR, [X, Y], TypeError, "go in a tuple, not a list"),
        (LINEAR, (X[:, 0], Y), ValueError, r"inputs \(x\[0\]\) must be a 2-D array.*inputs\[:, None\]"),
        (LINEAR, (X, Y[:, None, None]), ValueError, r"shape \(n,\) or \(n, T\)"),
        (MixtureOfExperts(LinearRegression(), 30), (X, Y), ValueError, "20 observation.*num_experts=30"),
        (SOFTMAX, (C[0], C[1] + 0.5), ValueError, r"must be integers.*targets\[0\] = "),
        (SOFTMAX, (C[0], C[1] + 1.0), ValueError, r"must lie in 0..2.*= 3"),
        (SOFTMAX, (C[0], C[1] - 1.0), ValueError, r"must lie in 0..2.*= -1"),
        (SOFTMAX, (C[0], C[1][:, None]), ValueError, r"class labels \(x\[1\]\) must have shape \(n,\)"),
        (LOGISTIC, (L[0], L[1] * 2.0), ValueError, r"\(0 or 1\) must lie in 0..1.*= 2"),
        (LOGISTIC, (L[0], L[1] - 0.5), ValueError, "must be integers"),
        (LOGISTIC, (L[0], L[1][:, None]), ValueError, r"labels \(x\[1\]\) must have shape \(n,\)"),
        (
            MixtureOfExperts(PoissonRegression(), 2),
            (X, Y),
            ValueError,
            r"PoissonRegression data must be non-negative integer counts; targets has",
        ),
    ],
)  # fmt: skip
def test_bad_data(model, data, error, match):
    with pytest.raises(error, match=match):
        jaxem.fit(model, data, key=jax.random.key(0))


def test_bad_params():
    params = random_experts_params(LINEAR, 1, dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"params.gate_weights must have shape \(1, 2\).*got \(2, 2\)"
    ):
        jaxem.em_step(LINEAR, params._replace(gate_weights=jnp.zeros((2, 2))), (X, Y))
    with pytest.raises(
        ValueError,
        match=r"params.coefficients must have shape \(2, 1, 2\) for num_components=2, P=1 inputs and T=2 targets; got \(2, 1\)",
    ):
        jaxem.em_step(LINEAR, params, (X, np.stack([Y, Y], axis=1)))
    experts = params.experts
    with pytest.raises(ValueError, match=r"params.variances must be positive"):
        jaxem.em_step(
            LINEAR, params._replace(experts=experts._replace(variances=-experts.variances)), (X, Y)
        )
    with pytest.raises(ValueError, match=r"params.gate_bias contains NaN"):
        jaxem.em_step(LINEAR, params._replace(gate_bias=jnp.full(2, jnp.nan)), (X, Y))
    with pytest.raises(TypeError, match="must be a MixtureOfExpertsParams"):
        jaxem.em_step(LINEAR, tuple(params), (X, Y))
    params = random_logistic_params(LOGISTIC, 2, dtype=np.float32)
    components = params.components
    with pytest.raises(ValueError, match=r"params.coefficients must have shape \(2, 2\)"):
        jaxem.em_step(
            LOGISTIC,
            params._replace(components=components._replace(coefficients=jnp.zeros((3, 2)))),
            L,
        )
    with pytest.raises(ValueError, match=r"params.intercepts contains NaN or inf"):
        jaxem.em_step(
            LOGISTIC,
            params._replace(components=components._replace(intercepts=jnp.full(2, jnp.inf))),
            L,
        )
    with pytest.raises(ValueError, match="sum to 1"):
        jaxem.em_step(LOGISTIC, params._replace(weights=jnp.array([0.9, 0.9])), L)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MixtureOfExperts(LinearRegression(), 0), ValueError, "num_experts must be >= 1"),
        (lambda: MixtureOfExperts(LinearRegression(), 2.0), TypeError, "num_experts must be an integer"),
        (lambda: MixtureOfExperts("linear", 2), TypeError, "must implement the jaxem.Component contract"),
        (lambda: SoftmaxRegression(), TypeError, "num_classes"),
        (lambda: SoftmaxRegression(1), ValueError, "num_classes must be >= 2"),
        (lambda: SoftmaxRegression(3, step=optax.adam(0.1)), TypeError, "step must be a jaxem.gem.GradientMStep"),
        (
            lambda: MixtureOfExperts(LinearRegression(), 2, gate_step=optax.adam(0.1)),
            TypeError,
            "gate_step must be a jaxem.gem.GradientMStep",
        ),
        (lambda: MixtureOfExperts(LinearRegression(), 2, gate_l2=-1.0), ValueError, "gate_l2 must be a finite number >= 0"),
        (lambda: MixtureOfExperts(LinearRegression(), 2, init_method="kmeans"), ValueError, "init_method must be one of"),
        (lambda: LogisticRegression(l2=float("nan")), ValueError, "l2 must be a finite number"),
        (lambda: PoissonRegression(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
    ],
)  # fmt: skip
def test_bad_configuration(make, error, match):
    with pytest.raises(error, match=match):
        make()
