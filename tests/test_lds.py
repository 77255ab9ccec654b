"""Linear dynamical systems: the Kalman filter and RTS smoother against
brute-force conditioning of the joint Gaussian of all states and emissions
and against a plain-numpy Kalman/RTS loop (missing coordinates, fully
missing steps, padding), parallel == sequential (float64 and float32),
forward-filtering backward-sampling, the E-step's statistics as the gradient
of the log-likelihood (Fisher's identity) and the M-step as the maximiser of
Q (fixed parameters and diagonal covariances too), one EM step against
dynamax, monotone EM that recovers a simulated system, float32 with a large
offset, imputation, and bad input."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import jaxem
from jaxem import inference
from jaxem.models import LinearGaussianSSMParams
from jaxem.models._lds import emission_frame

S, D, T = 2, 3, 50  # states, emission dimensions, steps
NAMES = ("initial_mean", "initial_covariance", "dynamics_weights", "dynamics_covariance")
NAMES += ("emission_weights", "emission_covariance")


def spd(rng, dim, scale):
    root = rng.normal(size=(dim, dim))
    return scale * (root @ root.T / dim + 0.5 * np.eye(dim))


def random_params(rng, input_dim=0, emission_dim=D):
    """A stable system (the dynamics' singular values at most 0.9)."""
    left, _, right = np.linalg.svd(rng.normal(size=(S, S)))
    return LinearGaussianSSMParams(
        initial_mean=rng.normal(size=S),
        initial_covariance=spd(rng, S, 1.0),
        dynamics_weights=left @ np.diag([0.9, 0.6]) @ right,
        dynamics_input_weights=rng.normal(size=(S, input_dim)),
        dynamics_bias=0.3 * rng.normal(size=S),
        dynamics_covariance=spd(rng, S, 0.3),
        emission_weights=rng.normal(size=(emission_dim, S)),
        emission_input_weights=rng.normal(size=(emission_dim, input_dim)),
        emission_bias=rng.normal(size=emission_dim),
        emission_covariance=spd(rng, emission_dim, 0.3),
    )


def simulate(rng, params, batch, inputs=None):
    """``(values (B, T, D), states (B, T, S))`` by a numpy loop."""
    p = params
    inputs = np.zeros((batch, T, 0)) if inputs is None else inputs
    states = np.empty((batch, T, S))
    for b in range(batch):
        z = rng.multivariate_normal(p.initial_mean, p.initial_covariance)
        for t in range(T):
            if t:
                mean = p.dynamics_weights @ z + p.dynamics_input_weights @ inputs[b, t]
                z = rng.multivariate_normal(mean + p.dynamics_bias, p.dynamics_covariance)
            states[b, t] = z
    means = states @ p.emission_weights.T + inputs @ p.emission_input_weights.T + p.emission_bias
    noise = rng.multivariate_normal(np.zeros(D), p.emission_covariance, size=(batch, T))
    return means + noise, states


def with_gaps(rng, values, fraction=0.15):
    """Values with a fraction of coordinates missing and two fully missing steps."""
    values = values.copy()
    values[rng.random(values.shape) < fraction] = np.nan
    values[:, 10:12] = np.nan
    return values


# --------------------------------------------------------------- references


def joint_gaussian(system, length):
    """Means and covariance of all states ``(L·S,)`` and emissions ``(L·D,)``
    of the first ``length`` steps, by building the linear map from the
    noises."""
    m0, s0, a, q, h, r, c, e = system
    transfer = np.zeros((length * S, length * S))
    for t in range(length):
        for k in range(t + 1):
            transfer[t * S : (t + 1) * S, k * S : (k + 1) * S] = np.linalg.matrix_power(a, t - k)
    noise = np.kron(np.eye(length), q)
    noise[:S, :S] = s0
    shifts = np.concatenate([m0, *c[1:length]])
    state_mean = transfer @ shifts
    state_cov = transfer @ noise @ transfer.T
    big_h = np.kron(np.eye(length), h)
    emission_mean = big_h @ state_mean + e[:length].ravel()
    emission_cov = big_h @ state_cov @ big_h.T + np.kron(np.eye(length), r)
    return state_mean, state_cov, emission_mean, emission_cov, state_cov @ big_h.T


def brute_force(system, y, length):
    """Condition the joint Gaussian on the observed emissions: the log-
    likelihood, the states' posterior mean ``(L, S)`` and covariance ``(L·S,
    L·S)``, and the emissions' conditional mean ``(L, D)`` and covariance."""
    state_mean, state_cov, emission_mean, emission_cov, cross = joint_gaussian(system, length)
    flat = y[:length].ravel()
    o = ~np.isnan(flat)
    solve = lambda b: np.linalg.solve(emission_cov[np.ix_(o, o)], b)
    residual = flat[o] - emission_mean[o]
    log_lik = multivariate_normal(emission_mean[o], emission_cov[np.ix_(o, o)]).logpdf(flat[o])
    mean = state_mean + cross[:, o] @ solve(residual)
    cov = state_cov - cross[:, o] @ solve(cross[:, o].T)
    y_mean = emission_mean + emission_cov[:, o] @ solve(residual)
    y_cov = emission_cov - emission_cov[:, o] @ solve(emission_cov[o])
    return log_lik, mean.reshape(length, S), cov, y_mean.reshape(length, -1), y_cov


def numpy_kalman(system, y, length):
    """The textbook Kalman filter (missing rows dropped) and RTS smoother."""
    m0, s0, a, q, h, r, c, e = system
    means, covs, log_lik = [], [], 0.0
    m, p = m0, s0
    for t in range(length):
        if t:
            m, p = a @ m + c[t], a @ p @ a.T + q
        o = ~np.isnan(y[t])
        if o.any():
            ho, innovation = h[o], h[o] @ p @ h[o].T + r[np.ix_(o, o)]
            gain = p @ ho.T @ np.linalg.inv(innovation)
            residual = y[t, o] - ho @ m - e[t, o]
            log_lik += multivariate_normal(np.zeros(o.sum()), innovation).logpdf(residual)
            m, p = m + gain @ residual, p - gain @ innovation @ gain.T
        means.append(m)
        covs.append(p)
    smoothed, smoothed_covs, cross = list(means), list(covs), [np.zeros((S, S))] * length
    for t in range(length - 2, -1, -1):
        predicted = a @ covs[t] @ a.T + q
        gain = covs[t] @ a.T @ np.linalg.inv(predicted)
        smoothed[t] = means[t] + gain @ (smoothed[t + 1] - a @ means[t] - c[t + 1])
        smoothed_covs[t] = covs[t] + gain @ (smoothed_covs[t + 1] - predicted) @ gain.T
        cross[t + 1] = smoothed_covs[t + 1] @ gain.T
    stack = lambda a: np.stack(a)
    return log_lik, stack(means), stack(covs), stack(smoothed), stack(smoothed_covs), stack(cross)


RNG = np.random.default_rng(0)
TRUTH = random_params(RNG)
# (the model's six arrays, then per-step dynamics and emission offsets)
SYSTEM = (
    *(getattr(TRUTH, name) for name in NAMES),
    RNG.normal(size=(T, S)),
    RNG.normal(size=(T, D)),
)
Y = with_gaps(RNG, simulate(RNG, TRUTH, 1)[0][0][None])[0]
Y[3, 1] = np.nan  # (and partly observed steps)


def smoother(dtype, parallel):
    arrays = [np.asarray(a, dtype) for a in SYSTEM]
    run = jax.jit(
        lambda y, n: inference.kalman_smoother(
            *arrays[:6],
            y,
            dynamics_offsets=arrays[6],
            emission_offsets=arrays[7],
            length=n,
            parallel=parallel,
        )
    )
    return lambda y, n: run(np.asarray(y, dtype), n)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("parallel", [False, True])
def test_smoother_equals_joint_gaussian_conditioning_and_numpy(parallel):
    """Log-likelihood, smoothed means and covariances, lag-one
    cross-covariances: equal to conditioning the joint Gaussian of every
    state and emission on the observed values (1e-9), and the filtered
    moments to a numpy loop that drops missing coordinates; padded steps
    repeat the last valid step and change nothing."""
    run = smoother(np.float64, parallel)
    for length in (T, 17, 1):
        posterior = run(Y, length)
        log_lik, mean, cov, _, _ = brute_force(SYSTEM, Y, length)
        np.testing.assert_allclose(posterior.log_likelihood, log_lik, rtol=1e-10)
        np.testing.assert_allclose(posterior.smoothed_means[:length], mean, atol=1e-9)
        for t in range(length):
            block = cov[t * S : (t + 1) * S, t * S : (t + 1) * S]
            np.testing.assert_allclose(posterior.smoothed_covariances[t], block, atol=1e-9)
            if t:
                lag = cov[t * S : (t + 1) * S, (t - 1) * S : t * S]
                np.testing.assert_allclose(posterior.cross_covariances[t], lag, atol=1e-9)
        reference = numpy_kalman(SYSTEM, Y, length)
        np.testing.assert_allclose(posterior.log_likelihood, reference[0], rtol=1e-10)
        np.testing.assert_allclose(posterior.filtered_means[:length], reference[1], atol=1e-9)
        np.testing.assert_allclose(posterior.filtered_covariances[:length], reference[2], atol=1e-9)
        np.testing.assert_allclose(posterior.smoothed_means[:length], reference[3], atol=1e-9)
        # Padding: whatever it holds, the moments repeat the last valid step's.
        padded = Y.copy()
        padded[length:] = 1e6
        again = run(padded, length)
        for got, want in zip(again, posterior, strict=True):
            np.testing.assert_array_equal(got, want)
        for field in ("filtered_means", "smoothed_means", "smoothed_covariances"):
            values = np.asarray(getattr(posterior, field))
            np.testing.assert_array_equal(
                values[length:], np.repeat(values[length - 1 : length], T - length, 0)
            )
        np.testing.assert_array_equal(posterior.cross_covariances[length:], 0.0)
        np.testing.assert_array_equal(posterior.cross_covariances[0], 0.0)


def test_float32_parallel_and_sequential_are_finite_and_close():
    """float32 (Joseph-form updates, Cholesky solves, symmetrised
    covariances): both algorithms finite and within float32 rounding of a
    float64 numpy loop over 50 steps with gaps."""
    log_lik, means, covs, smoothed, smoothed_covs, cross = numpy_kalman(SYSTEM, Y, T)
    for parallel in (False, True):
        posterior = smoother(np.float32, parallel)(Y, T)
        for leaf in posterior:
            assert leaf.dtype == jnp.float32 and np.all(np.isfinite(leaf))
        np.testing.assert_allclose(posterior.log_likelihood, log_lik, rtol=1e-5)
        np.testing.assert_allclose(posterior.filtered_means, means, atol=2e-4)
        np.testing.assert_allclose(posterior.filtered_covariances, covs, atol=2e-5)
        np.testing.assert_allclose(posterior.smoothed_means, smoothed, atol=2e-4)
        np.testing.assert_allclose(posterior.smoothed_covariances, smoothed_covs, atol=2e-5)
        np.testing.assert_allclose(posterior.cross_covariances, cross, atol=2e-5)


@pytest.mark.usefixtures("x64")
def test_posterior_samples_have_the_smoothed_moments():
    """Forward filtering, backward sampling: the parallel recursion draws the
    same states as the sequential one from the same keys; 1000 draws have
    the smoothed means, covariances and lag-one cross-covariances (within
    Monte Carlo error); padded steps repeat the last valid state."""
    length, num = 17, 1000
    keys = jax.random.split(jax.random.key(0), num)
    arrays = [np.asarray(a) for a in SYSTEM]

    def draw(parallel):
        sample = lambda key: inference.kalman_posterior_sample(
            key,
            *arrays[:6],
            Y,
            dynamics_offsets=arrays[6],
            emission_offsets=arrays[7],
            length=length,
            parallel=parallel,
        )
        return np.asarray(jax.jit(jax.vmap(sample))(keys))

    draws = draw(False)
    np.testing.assert_allclose(draw(True), draws, atol=1e-9)
    np.testing.assert_array_equal(
        draws[:, length:], np.repeat(draws[:, length - 1 : length], T - length, 1)
    )
    _, mean, cov, _, _ = brute_force(SYSTEM, Y, length)
    flat = draws[:, :length].reshape(num, -1)
    std = np.sqrt(np.diag(cov))
    assert np.max(np.abs(flat.mean(0) - mean.ravel()) / std) < 4.5 / np.sqrt(num)
    # (a sample covariance's entries have standard error at most √2 σ_i σ_j / √n)
    error = (np.cov(flat.T) - cov) / np.outer(std, std)
    band = np.abs(np.arange(length * S)[:, None] - np.arange(length * S)[None, :]) < 2 * S
    assert np.max(np.abs(error[band])) < 4.5 * np.sqrt(2.0 / num)


# ------------------------------------------------------------------- model

MODEL = jaxem.LinearGaussianSSM(S, reg_covar=0.0)
B = 32
VALUES = with_gaps(RNG, simulate(RNG, TRUTH, B)[0])
LENGTHS = np.full(B, T)
LENGTHS[[2, 6]] = [31, 12]
DATA = (VALUES, LENGTHS)
HELD_OUT = (simulate(RNG, TRUTH, B)[0], np.full(B, T))
FIT = dict(num_restarts=1, max_iter=25, tol=0.0)
LOG_PROB = jax.jit(MODEL.log_prob)  # (one program for every (32, 50, 3) batch)

_CACHE: dict = {}


def cached(name, build):
    if name not in _CACHE:
        _CACHE[name] = build()
    return _CACHE[name]


def expected_log_joint(params, stats, frame):
    """``Q(θ)`` from the statistics (emission moments about ``d`` and
    divided by ``s``, for ``frame = (d, s)``), up to a constant: three
    Gaussian regressions, written out."""
    centre, scale = frame

    def gaussian(covariance, count, scatter):
        _, log_det = jnp.linalg.slogdet(covariance)
        return -0.5 * (count * log_det + jnp.trace(jnp.linalg.solve(covariance, scatter)))

    def regression(weights, targets, cross, regressors):
        return targets - weights @ cross.T - cross @ weights.T + weights @ regressors @ weights.T

    m = params.initial_mean
    initial = stats.initial_outer - jnp.outer(m, stats.initial_sum)
    initial = initial - jnp.outer(stats.initial_sum, m) + stats.num_sequences * jnp.outer(m, m)
    dynamics = jnp.concatenate(
        [params.dynamics_weights, params.dynamics_input_weights, params.dynamics_bias[:, None]], 1
    )
    emission = jnp.concatenate(
        [
            params.emission_weights,
            params.emission_input_weights,
            (params.emission_bias - centre)[:, None],
        ],
        1,
    )
    emission = emission / scale
    return (
        gaussian(params.initial_covariance, stats.num_sequences, initial)
        + gaussian(
            params.dynamics_covariance,
            stats.num_transitions,
            regression(
                dynamics, stats.dynamics_targets, stats.dynamics_cross, stats.dynamics_regressors
            ),
        )
        + gaussian(
            params.emission_covariance,
            stats.num_emission_steps,
            scale**2
            * regression(
                emission, stats.emission_targets, stats.emission_cross, stats.emission_regressors
            ),
        )
    )


def symmetric_part(tree):
    """Gradients of matrices by their symmetric parts (a covariance is used
    through its symmetric part)."""
    sym = lambda g: 0.5 * (g + g.T) if g.ndim == 2 and g.shape[0] == g.shape[1] else g
    return jax.tree.map(sym, tree)


@pytest.mark.usefixtures("x64")
def test_fit_is_monotone_and_recovers_the_system():
    """EM with gaps and padding never lowers the log-likelihood; the fitted
    system predicts held-out sequences as well as the truth (to 0.02 nats a
    step) and implies the truth's emission autocovariances (A and H are
    identified only up to a change of state basis; these are not)."""
    result = cached("fit64", lambda: jaxem.fit(MODEL, DATA, key=jax.random.key(0), **FIT))
    for trace in np.asarray(result.history):
        assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[1:]))
    assert not np.any(result.decreased) and not np.any(result.nonfinite)
    steps = B * T
    fitted = float(jnp.sum(LOG_PROB(result.params, HELD_OUT))) / steps
    truth = float(jnp.sum(LOG_PROB(TRUTH, HELD_OUT))) / steps
    assert abs(fitted - truth) < 0.02

    def autocovariances(p):
        a, h = np.asarray(p.dynamics_weights), np.asarray(p.emission_weights)
        state = np.asarray(p.dynamics_covariance)
        for _ in range(200):  # the stationary state covariance
            state = a @ state @ a.T + np.asarray(p.dynamics_covariance)
        lags = [h @ np.linalg.matrix_power(a, k) @ state @ h.T for k in range(3)]
        lags[0] = lags[0] + np.asarray(p.emission_covariance)
        return np.stack(lags)

    expected = autocovariances(TRUTH)
    np.testing.assert_allclose(
        autocovariances(result.params), expected, atol=0.25 * np.abs(expected).max()
    )


def test_float32_fits_of_offset_and_degenerate_data():
    """float32 (one compiled fit for every case). Data 1000 away from zero:
    the emission moments are taken about the current bias, so the
    log-likelihood is the float64 fit's on the unshifted data to float32
    rounding. A constant coordinate, duplicated sequences and scales from
    1e-8 to 1e18 (the emission moments in a frame scaled by a power of two:
    sums of squares of 1e18 overflow float32) give finite parameters and
    log-likelihoods, and no flag."""
    reference = cached("fit64", lambda: jaxem.fit(MODEL, DATA, key=jax.random.key(0), **FIT))
    with jax.enable_x64(True):
        reference = float(reference.log_likelihood)
    gaps = np.isnan(VALUES)
    cases = {
        "offset": VALUES + 1000.0,
        "constant coordinate": np.where(gaps, np.nan, VALUES * [0.0, 1.0, 1.0] + [3.0, 0.0, 0.0]),
        "duplicated sequences": np.repeat(VALUES[:1], B, axis=0),
        "scale 1e-8": VALUES * 1e-8,
        "scale 1e8": VALUES * 1e8,
        "scale 1e18": VALUES * 1e18,
    }
    for label, values in cases.items():
        result = jaxem.fit(
            MODEL, (values.astype(np.float32), LENGTHS), key=jax.random.key(0), **FIT
        )
        for leaf in jax.tree.leaves(result.restarts):
            assert leaf.dtype == jnp.float32 and np.all(np.isfinite(leaf)), label
        assert np.all(np.isfinite(np.asarray(result.restart_log_likelihood))), label
        assert not np.any(result.nonfinite) and not np.any(result.decreased), label
        if label == "offset":
            assert abs(float(result.log_likelihood) - reference) < 1e-4 * abs(reference)


@pytest.mark.usefixtures("x64")
def test_statistics_are_the_gradient_and_the_m_step_maximises_q():
    """Fisher's identity with gaps and padding: the gradient of log p(y | θ)
    (the Kalman filter, differentiated) equals the gradient of Q(·, θ) built
    from the E-step's statistics, at θ; the M-step's parameters make Q's
    gradient vanish (the closed form is Q's maximiser), also with fixed
    parameters and diagonal covariances (in the free directions); the
    statistics, moved to other parameters' emission bias, give the same
    M-step; and the E-step's log-likelihood is ``log_prob``'s."""
    params = jax.tree.map(jnp.asarray, random_params(np.random.default_rng(3)))
    stats, total = jax.jit(MODEL.e_step)(params, DATA)
    np.testing.assert_allclose(total, jnp.sum(LOG_PROB(params, DATA)), rtol=1e-12)
    frame = emission_frame(params)
    assert float(frame[1]) > 1.0  # (the statistics' frame is scaled: Q says how)
    q = lambda p, s: expected_log_joint(p, s, frame)
    score = jax.jit(jax.grad(q))
    likelihood = jax.grad(lambda p: jnp.sum(MODEL.log_prob(p, DATA)))
    got, want = symmetric_part(score(params, stats)), symmetric_part(jax.jit(likelihood)(params))
    for name in LinearGaussianSSMParams._fields:
        scale = np.abs(np.asarray(getattr(want, name))).max(initial=1.0)
        np.testing.assert_allclose(
            getattr(got, name), getattr(want, name), atol=1e-8 * scale, err_msg=name
        )

    gradient_at = lambda model: symmetric_part(
        score(jax.jit(model.m_step)(stats, params)[0], stats)
    )
    for name, g in gradient_at(MODEL)._asdict().items():
        np.testing.assert_allclose(
            g, 0.0, atol=1e-8 * float(stats.num_emission_steps), err_msg=name
        )
    constrained = jaxem.LinearGaussianSSM(
        S,
        fixed=("dynamics_bias", "emission_weights", "initial_mean"),
        dynamics_covariance_type="diag",
        emission_covariance_type="diag",
        reg_covar=0.0,
    )
    new = jax.jit(constrained.m_step)(stats, params)[0]
    for name in constrained.fixed:
        np.testing.assert_array_equal(getattr(new, name), getattr(params, name))
    for name in ("dynamics_covariance", "emission_covariance"):
        matrix = np.asarray(getattr(new, name))
        np.testing.assert_array_equal(matrix, np.diag(np.diag(matrix)))
    for name, g in gradient_at(constrained)._asdict().items():
        g = np.asarray(g)
        if name in constrained.fixed:
            continue
        if name in ("dynamics_covariance", "emission_covariance"):
            g = np.diag(g)
        np.testing.assert_allclose(
            g, 0.0, atol=1e-8 * float(stats.num_emission_steps), err_msg=name
        )

    other = params._replace(emission_bias=params.emission_bias + jnp.array([5.0, -3.0, 1.0]))
    moved = jax.jit(MODEL.shift_stats)(stats, params, other)
    m_step = jax.jit(MODEL.m_step)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9),
        m_step(moved, other)[0],
        m_step(stats, params)[0],
    )


@pytest.mark.usefixtures("x64")
def test_impute_equals_joint_gaussian_conditioning():
    """Conditional means of the missing values given the observed ones (the
    joint Gaussian of each sequence, conditioned), observed values and
    padding unchanged; 1000 draws with those means and variances."""
    params = TRUTH
    filled = np.asarray(jax.jit(MODEL.impute)(params, DATA))
    chosen = np.array([0, 2, 6])
    draws = jax.jit(jax.vmap(MODEL.impute, (None, None, 0)))(
        params, (VALUES[chosen], LENGTHS[chosen]), jax.random.split(jax.random.key(1), 1000)
    )
    draws = np.asarray(draws)
    missing = np.isnan(VALUES)
    np.testing.assert_array_equal(filled[~missing], VALUES[~missing])
    seen = ~missing[chosen]
    np.testing.assert_array_equal(
        draws[:, seen], np.broadcast_to(VALUES[chosen][seen], draws[:, seen].shape)
    )
    system = tuple(getattr(params, name) for name in NAMES)
    system += (
        np.broadcast_to(params.dynamics_bias, (T, S)),
        np.broadcast_to(params.emission_bias, (T, D)),
    )
    for i, b in enumerate(chosen):
        length = LENGTHS[b]
        _, _, _, y_mean, y_cov = brute_force(system, VALUES[b], length)
        gaps = missing[b, :length]
        np.testing.assert_allclose(filled[b, :length][gaps], y_mean[gaps], atol=1e-9)
        np.testing.assert_array_equal(filled[b, length:], VALUES[b, length:])  # (padding: NaN kept)
        sd = np.sqrt(np.diag(y_cov).reshape(length, D)[gaps])
        sample = draws[:, i, :length][:, gaps]
        assert np.max(np.abs(sample.mean(0) - y_mean[gaps]) / sd) < 4.5 / np.sqrt(1000)
        ratio = sample.std(0) / sd
        assert 0.8 < ratio.min() and ratio.max() < 1.2


# ------------------------------------------------------------- dynamax

# (parallel in time: the model's E-step through lax.associative_scan)
INPUT_MODEL = jaxem.LinearGaussianSSM(S, input_dim=1, reg_covar=0.0, parallel=True)


@pytest.mark.usefixtures("x64")
def test_one_em_step_equals_dynamax():
    """One EM step with inputs, three sequences, from the same parameters,
    parallel in time: dynamax's (float64; its solves add 1e-9 to diagonals, hence 1e-7). Its
    initial covariance pools the sequences' first states as
    ``(Σ E[z zᵀ] − (Σ E z)(Σ E z)ᵀ) / N``, which is the MLE only for one
    sequence; ours is checked against the MLE from its statistics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (tensorflow-probability on import)
        lgssm = pytest.importorskip("dynamax.linear_gaussian_ssm")
        inference_module = pytest.importorskip("dynamax.linear_gaussian_ssm.inference")
    rng = np.random.default_rng(5)
    params = random_params(rng, input_dim=1)
    inputs = rng.normal(size=(3, T, 1))
    values = simulate(rng, params, 3, inputs)[0]
    new, objective = jaxem.em_step(INPUT_MODEL, params, (values, inputs), weights=np.ones(3))

    p = inference_module
    reference = p.ParamsLGSSM(
        initial=p.ParamsLGSSMInitial(mean=params.initial_mean, cov=params.initial_covariance),
        dynamics=p.ParamsLGSSMDynamics(
            weights=params.dynamics_weights,
            bias=params.dynamics_bias,
            input_weights=params.dynamics_input_weights,
            cov=params.dynamics_covariance,
        ),
        emissions=p.ParamsLGSSMEmissions(
            weights=params.emission_weights,
            bias=params.emission_bias,
            input_weights=params.emission_input_weights,
            cov=params.emission_covariance,
        ),
    )
    model = lgssm.LinearGaussianSSM(S, D, input_dim=1)
    _, props = model.initialize(jax.random.key(0))
    stats, log_liks = jax.jit(jax.vmap(lambda y, u: model.e_step(reference, y, u)))(values, inputs)
    expected, _ = jax.jit(lambda s: model.m_step(reference, props, s, None))(stats)
    np.testing.assert_allclose(float(objective) * 3, np.sum(log_liks), rtol=1e-9)
    pairs = {
        "initial_mean": expected.initial.mean,
        "dynamics_weights": expected.dynamics.weights,
        "dynamics_input_weights": expected.dynamics.input_weights,
        "dynamics_bias": expected.dynamics.bias,
        "dynamics_covariance": expected.dynamics.cov,
        "emission_weights": expected.emissions.weights,
        "emission_input_weights": expected.emissions.input_weights,
        "emission_bias": expected.emissions.bias,
        "emission_covariance": expected.emissions.cov,
    }
    for name, want in pairs.items():
        np.testing.assert_allclose(getattr(new, name), want, rtol=1e-7, atol=1e-8, err_msg=name)
    first, outer, count = (np.sum(np.asarray(s), axis=0) for s in stats[0])
    mean = first / count
    np.testing.assert_allclose(
        new.initial_covariance, outer / count - np.outer(mean, mean), rtol=1e-7
    )

    # Weights are repeated sequences.
    weighted, weighted_objective = jaxem.em_step(
        INPUT_MODEL, params, (values, inputs), weights=np.array([2.0, 0.0, 1.0])
    )
    index = np.array([0, 0, 2])
    repeated, repeated_objective = jaxem.em_step(
        INPUT_MODEL, params, (values[index], inputs[index]), weights=np.ones(3)
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), weighted, repeated
    )
    np.testing.assert_allclose(weighted_objective, repeated_objective, rtol=1e-12)


# -------------------------------------------------------------- bad input


def test_bad_input_is_named():
    x = VALUES.copy()
    x[2, 5, 1] = np.inf
    with pytest.raises(
        ValueError, match=r"x contains 1 non-finite value\(s\) other than NaN.*x\[2, 5, 1\] = inf"
    ):
        MODEL.check_data(x)
    x[2, 5, 1] = 0.0
    MODEL.check_data((x, np.full(B, 5)))  # (gaps allowed)
    with pytest.raises(ValueError, match=r"every value is missing"):
        MODEL.check_data(np.full((2, 4, 3), np.nan))
    with pytest.raises(ValueError, match=r"needs at least one transition"):
        MODEL.check_data(x[:, :1])
    with pytest.raises(ValueError, match=r"\(B, T, D\).*x\[\.\.\., None\]"):
        MODEL.check_data(x[..., 0])
    inputs = np.zeros((B, T, 1))
    inputs[1, 3, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"inputs \(x\[1\]\) contain 1 non-finite.*x\[1\]\[1, 3, 0\]"
    ):
        INPUT_MODEL.check_data((x, inputs))
    with pytest.raises(ValueError, match=r"inputs \(x\[1\]\) must have shape \(B, T, P\)"):
        INPUT_MODEL.check_data((x, inputs[..., 0]))
    with pytest.raises(TypeError, match=r"input_dim=1"):
        INPUT_MODEL.check_data(x)
    with pytest.raises(TypeError, match=r"inputs \(T, P=1\)"):
        INPUT_MODEL.sample(jax.random.key(0), TRUTH, 10)
    bad = TRUTH._replace(dynamics_covariance=-np.eye(S))
    with pytest.raises(ValueError, match=r"params.dynamics_covariance must be positive definite"):
        MODEL.check_params(bad, x)
    with pytest.raises(ValueError, match=r"params.emission_weights must have shape \(3, 2\)"):
        MODEL.check_params(TRUTH._replace(emission_weights=np.ones((2, 2))), x)
    with pytest.raises(ValueError, match=r"fixed names unknown parameters \['bias'\]"):
        jaxem.LinearGaussianSSM(S, fixed=("bias",))
    with pytest.raises(ValueError, match=r"emission_covariance_type must be one of"):
        jaxem.LinearGaussianSSM(S, emission_covariance_type="spherical")
    with pytest.raises(ValueError, match=r"state_dim must be a positive integer"):
        jaxem.LinearGaussianSSM(0)


def test_counts():
    """BIC's n counts valid steps with an observed value; the parameters
    count free entries less the change of state basis."""
    observed = (~np.isnan(VALUES)).any(-1) & (np.arange(T)[None] < LENGTHS[:, None])
    assert int(MODEL.num_observations(DATA)) == observed.sum()
    # 2 + 3 + 4 + 2 + 3 (initial, dynamics) + 6 + 3 + 6 (emissions) − 4 (basis)
    assert MODEL.num_parameters(TRUTH) == 25
    fixed = jaxem.LinearGaussianSSM(S, fixed=("emission_weights",), emission_covariance_type="diag")
    assert fixed.num_parameters(TRUTH) == 29 - 6 - 3
