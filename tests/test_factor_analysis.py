"""Factor analysis and probabilistic PCA (jaxem.FactorAnalysis, jaxem.PPCA,
and their component family in mixtures and HMMs) against references.

References, in float64: per-row numpy formulas of Rubin & Thayer (1982) for
one EM step (``E[z_i] = β (x_i − μ)``, ``E[z_i z_iᵀ] = I − β W + E[z_i]
E[z_i]ᵀ``, ``β = Wᵀ Σ⁻¹`` by an explicit inverse); a numpy row loop of the
conditional Gaussian formulas for missing values; scipy's multivariate
normal on each row's observed coordinates; scikit-learn's FactorAnalysis
(another algorithm: alternating SVD updates) run to convergence; the
closed-form maximum-likelihood PPCA of Tipping & Bishop (1999) and
scikit-learn's PCA, which scores data with it. Sizes are tiny and the
compiled programs few (the same shapes and options are reused).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis

import jaxem
from jaxem.models import FactorAnalysisParams
from jaxem.models.components import FactorAnalyzer, FactorParams
from tests.conftest import make_blobs

N, D, Q = 300, 6, 2


def factor_data(seed=0, n=N, dim=D, q=Q, noise=(0.2, 1.0)):
    """Draws from a factor model with well-separated loadings (no Heywood
    case: every feature has noise of its own)."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(dim, q)) * 1.5
    psi = rng.uniform(*noise, size=dim)
    x = rng.normal(size=(n, q)) @ loadings.T + rng.normal(size=(n, dim)) * np.sqrt(psi) + 2.0
    return x


X = factor_data()
WEIGHTS = np.random.default_rng(1).uniform(0.2, 3.0, N)


def with_gaps(x, seed=2, fraction=0.15):
    """``x`` with about ``fraction`` of its values missing (never a whole row)."""
    rng = np.random.default_rng(seed)
    gaps = rng.random(x.shape) < fraction
    gaps[np.all(gaps, axis=1), 0] = False
    return np.where(gaps, np.nan, x)


XM = with_gaps(X)


def random_params(rng, isotropic, dim=D, q=Q):
    """A start away from the data's mean and covariance."""
    return FactorAnalysisParams(
        jnp.asarray(rng.normal(size=dim)),
        jnp.asarray(rng.normal(size=(dim, q))),
        jnp.asarray(rng.uniform(0.5, 2.0) if isotropic else rng.uniform(0.3, 2.0, dim)),
    )


def covariance(params):
    loadings = np.asarray(params.loadings)
    noise = np.broadcast_to(np.asarray(params.noise), loadings.shape[:1])
    return loadings @ loadings.T + np.diag(noise)


def numpy_fa_update(scatter, loadings, noise, isotropic):
    """One factor-analysis EM update on a scatter matrix, by explicit inverses."""
    sigma = loadings @ loadings.T + np.diag(noise)
    beta = loadings.T @ np.linalg.inv(sigma)
    second = np.eye(loadings.shape[1]) - beta @ loadings + beta @ scatter @ beta.T
    new = scatter @ beta.T @ np.linalg.inv(second)
    residual = np.diag(scatter - new @ beta @ scatter)
    return new, (np.mean(residual) if isotropic else residual)


def numpy_em_step(x, w, params, isotropic, inner_steps=1):
    """Weighted EM with the per-row formulas of Rubin & Thayer (1982): the
    mean, then the loadings from E[z_i] and E[z_i z_iᵀ] about it (further
    inner updates on the same scatter, by explicit inverses)."""
    loadings = np.asarray(params.loadings)
    noise = np.broadcast_to(np.asarray(params.noise), loadings.shape[:1])
    mean = np.average(x, axis=0, weights=w)
    beta = loadings.T @ np.linalg.inv(loadings @ loadings.T + np.diag(noise))
    cross = np.zeros_like(loadings)
    second = np.zeros((loadings.shape[1],) * 2)
    scatter = np.zeros((x.shape[1],) * 2)
    for xi, wi in zip(x, w, strict=True):
        centred = xi - mean
        ez = beta @ centred
        ezz = np.eye(loadings.shape[1]) - beta @ loadings + np.outer(ez, ez)
        cross += wi * np.outer(centred, ez)
        second += wi * ezz
        scatter += wi * np.outer(centred, centred)
    new = cross @ np.linalg.inv(second)
    residual = np.diag(scatter - new @ cross.T) / w.sum()
    new_noise = np.mean(residual) if isotropic else residual
    for _ in range(inner_steps - 1):
        per_feature = np.broadcast_to(new_noise, noise.shape)
        new, new_noise = numpy_fa_update(scatter / w.sum(), new, per_feature, isotropic)
    return mean, new, new_noise


def conditional_moments(xi, mean, sigma):
    """One row's ``E[x | x_o]`` and conditional covariance (zero on the
    observed coordinates), and ``log N(x_o | μ_o, Σ_oo)`` from scipy."""
    o = ~np.isnan(xi)
    m = ~o
    gain = sigma[np.ix_(m, o)] @ np.linalg.inv(sigma[np.ix_(o, o)])
    filled = xi.copy()
    filled[m] = mean[m] + gain @ (xi[o] - mean[o])
    spread = np.zeros_like(sigma)
    spread[np.ix_(m, m)] = sigma[np.ix_(m, m)] - gain @ sigma[np.ix_(o, m)]
    log_density = st.multivariate_normal(mean[o], sigma[np.ix_(o, o)]).logpdf(xi[o])
    return filled, spread, log_density


MODELS = {
    "fa": jaxem.FactorAnalysis(Q),
    "ppca": jaxem.PPCA(Q),
    "fa-3-inner": jaxem.FactorAnalysis(Q, num_inner_steps=3),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(MODELS))
def test_one_em_step_is_rubin_thayer(name):
    """A weighted EM step from a random start equals the per-row numpy
    formulas (and, with more inner steps, further updates on the same
    scatter); the log-likelihood it reports is scipy's, weighted."""
    model = MODELS[name]
    rng = np.random.default_rng(3)
    params = random_params(rng, model.isotropic)
    new, value = jaxem.em_step(model, params, X, weights=WEIGHTS)
    mean, loadings, noise = numpy_em_step(
        X, WEIGHTS, params, model.isotropic, model.num_inner_steps
    )
    np.testing.assert_allclose(new.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(new.loadings, loadings, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(new.noise, noise, rtol=1e-9)
    log_density = st.multivariate_normal(np.asarray(params.mean), covariance(params)).logpdf(X)
    np.testing.assert_allclose(value, np.average(log_density, weights=WEIGHTS), rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_missing_values_one_em_step_densities_posterior_and_imputation():
    """NaN is a missing value: one EM step equals a numpy row loop of the
    conditional Gaussian formulas (conditional means in the moments, and
    conditional covariances in the scatter); per-row log-densities are
    scipy's on the observed coordinates with covariance W Wᵀ + Ψ; the factor
    posterior is the joint Gaussian's conditional given the observed
    coordinates; imputation fills the conditional means."""
    model = MODELS["fa"]
    params = random_params(np.random.default_rng(4), False)
    new, value = jaxem.em_step(model, params, XM, weights=WEIGHTS)

    mu, sigma = np.asarray(params.mean), covariance(params)
    loadings = np.asarray(params.loadings)
    rows = [conditional_moments(xi, mu, sigma) for xi in XM]
    filled = np.stack([r[0] for r in rows])
    log_density = np.array([r[2] for r in rows])
    mean = np.average(filled, axis=0, weights=WEIGHTS)
    scatter = (
        sum(
            w * (np.outer(f - mean, f - mean) + r[1])
            for w, f, r in zip(WEIGHTS, filled, rows, strict=True)
        )
        / WEIGHTS.sum()
    )
    expected_loadings, expected_noise = numpy_fa_update(
        scatter, loadings, np.asarray(params.noise), False
    )
    np.testing.assert_allclose(new.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(new.loadings, expected_loadings, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(new.noise, expected_noise, rtol=1e-9)
    np.testing.assert_allclose(value, np.average(log_density, weights=WEIGHTS), rtol=1e-12)

    evaluate = jax.jit(
        lambda p, x: (model.log_prob(p, x), model.factor_posterior(p, x), model.impute(p, x))
    )
    densities, (means, covariances), imputed = evaluate(params, XM)
    np.testing.assert_allclose(densities, log_density, rtol=1e-12)
    np.testing.assert_allclose(imputed, filled, rtol=1e-12)
    for xi, got_mean, got_cov in zip(XM, np.asarray(means), np.asarray(covariances), strict=True):
        o = ~np.isnan(xi)
        gain = loadings[o].T @ np.linalg.inv(sigma[np.ix_(o, o)])  # W_oᵀ Σ_oo⁻¹
        np.testing.assert_allclose(got_mean, gain @ (xi[o] - mu[o]), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_cov, np.eye(Q) - gain @ loadings[o], rtol=1e-9, atol=1e-12)
    # complete rows: the same program's other branch
    densities, (means, covariances), imputed = evaluate(params, X)
    np.testing.assert_allclose(densities, st.multivariate_normal(mu, sigma).logpdf(X), rtol=1e-12)
    gain = loadings.T @ np.linalg.inv(sigma)
    np.testing.assert_allclose(means, (X - mu) @ gain.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(covariances[17], np.eye(Q) - gain @ loadings, rtol=1e-9)
    np.testing.assert_array_equal(imputed, X)


def assert_converged(result):
    """EM ran to its fixed point: the last iterations changed nothing
    representable, and none decreased the log-likelihood."""
    history = result.history[0][: result.num_iter[0]]
    assert abs(history[-1] - history[-2]) < 1e-13
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))


@pytest.fixture(scope="module")
def fitted():
    """Both models fitted to their fixed point (one compiled program each;
    EM for factor analysis converges slowly, linearly)."""
    with jax.enable_x64(True):
        return {
            name: jax.device_get(
                jaxem.fit(MODELS[name], X, key=jax.random.key(0), max_iter=3000, tol=0.0)
            )
            for name in ("fa", "ppca")
        }


@pytest.mark.usefixtures("x64")
def test_fit_reaches_sklearns_maximum(fitted):
    """At convergence the log-likelihood is scikit-learn's (its algorithm is
    another one: alternating SVD updates, stopped at its own tolerance), and
    so is the covariance W Wᵀ + Ψ (the loadings are defined up to a rotation,
    the reconstruction W E[z|x] is not); the precision is its inverse. EM
    increased the log-likelihood at every iteration."""
    result = fitted["fa"]
    assert_converged(result)
    reference = SklearnFactorAnalysis(Q, tol=1e-12, max_iter=20000, svd_method="lapack").fit(X)
    np.testing.assert_allclose(result.log_likelihood, reference.score(X), rtol=1e-10)
    np.testing.assert_allclose(covariance(result.params), reference.get_covariance(), atol=1e-5)
    model = MODELS["fa"]
    factors, precision = jax.jit(lambda p: (model.transform(p, X), model.precision(p)))(
        result.params
    )
    reconstruction = np.asarray(factors) @ np.asarray(result.params.loadings).T
    np.testing.assert_allclose(
        reconstruction, reference.transform(X) @ reference.components_, atol=1e-4
    )
    np.testing.assert_allclose(precision, np.linalg.inv(covariance(result.params)), atol=1e-10)


@pytest.mark.usefixtures("x64")
def test_ppca_is_the_closed_form_maximum(fitted):
    """EM for PPCA reaches Tipping & Bishop's closed form: the top-q
    eigenvectors of the covariance scaled by (λ − σ²)^(1/2), σ² the mean of the
    other eigenvalues; scikit-learn's PCA scores data with the same form
    (from its covariance with n − 1 in the denominator)."""
    result = fitted["ppca"]
    assert_converged(result)
    centred = X - X.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / N)
    sigma2 = values[: D - Q].mean()
    top = vectors[:, D - Q :]
    closed = top @ np.diag(values[D - Q :] - sigma2) @ top.T + sigma2 * np.eye(D)
    np.testing.assert_allclose(covariance(result.params), closed, atol=1e-10)
    np.testing.assert_allclose(result.params.noise, sigma2, rtol=1e-10)
    log_lik = st.multivariate_normal(X.mean(axis=0), closed).logpdf(X).mean()
    np.testing.assert_allclose(result.log_likelihood, log_lik, rtol=1e-10)
    pca = PCA(n_components=Q).fit(X)
    np.testing.assert_allclose(closed, pca.get_covariance() * (N - 1) / N, rtol=1e-10, atol=1e-12)
    assert result.log_likelihood >= pca.score(X)


def monotone(result, tolerance):
    history = np.asarray(result.history)[:, : int(np.min(result.num_iter))]
    assert np.all(np.isfinite(history))
    assert np.all(np.diff(history, axis=1) >= -tolerance * np.abs(history[:, 1:])), np.min(
        np.diff(history, axis=1)
    )


@pytest.mark.usefixtures("x64")
def test_mixtures_of_factor_analysers_are_monotone():
    """A latent structure given a factor model is built from its component
    family. Mixtures of factor analysers (with missing values) and of PPCA:
    the log-likelihood never decreases (two restarts each, from random
    responsibilities; the AECM step is a generalised EM step)."""
    blobs = make_blobs(seed=5, n=240, dim=4, num_components=3)
    options = dict(key=jax.random.key(1), num_restarts=2, max_iter=40, tol=0.0)
    mixture = jaxem.Mixture(jaxem.FactorAnalysis(1), 3, init_method="random")
    assert mixture.component == FactorAnalyzer(1)
    monotone(jax.device_get(jaxem.fit(mixture, with_gaps(blobs, fraction=0.1), **options)), 1e-12)
    mixture = jaxem.Mixture(jaxem.PPCA(2, num_inner_steps=2), 3, init_method="random")
    assert mixture.component == FactorAnalyzer(2, isotropic=True, num_inner_steps=2)
    monotone(jax.device_get(jaxem.fit(mixture, blobs, **options)), 1e-12)
    hmm = jaxem.HMM(jaxem.PPCA(1), 2)
    assert hmm.emission == FactorAnalyzer(1, isotropic=True)
    inner = jaxem.MixtureComponent(jaxem.FactorAnalysis(1), 2)
    assert inner.component == FactorAnalyzer(1)


@pytest.mark.usefixtures("x64")
def test_chunked_and_shifted_statistics():
    """Statistics are additive: an EM step over chunks of the rows (with
    missing values) is the step over all of them; statistics computed under
    one set of parameters and shifted to another (online EM's running
    statistics) are those computed under it (complete data)."""
    model = MODELS["fa"]
    rng = np.random.default_rng(6)
    first, second = random_params(rng, False), random_params(rng, False)
    full = jaxem.em_step(model, first, XM, weights=WEIGHTS)
    chunked = jaxem.em_step(model, first, XM, weights=WEIGHTS, chunk_size=64)
    for got, want in zip(jax.tree.leaves(chunked), jax.tree.leaves(full), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)

    shifted, direct = jax.jit(
        lambda a, b: (model.shift_stats(model.e_step(a, X)[0], a, b), model.e_step(b, X)[0])
    )(first, second)
    for got, want in zip(shifted, direct, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


def test_float32_degenerate_data_stay_finite():
    """Float32, one compiled program: tiny and huge scales, a constant
    feature, duplicated rows, integer values, missing values, and a feature
    that is an exact combination of two others (the likelihood is unbounded:
    their noise goes to the floor) give finite parameters, positive noise and
    a finite log-likelihood; and no decrease but where the covariance is as
    singular as the floor lets it be (float32 then evaluates the
    log-likelihood to a few digits only). (Mixtures of factor analysers meet the degenerate cases in
    tests/test_matrix.py.)"""
    n, dim = 40, 4
    base = factor_data(seed=7, n=n, dim=dim).astype(np.float32)
    collinear = base.copy()
    collinear[:, 3] = 2.0 * collinear[:, 0] - collinear[:, 1]
    constant = base.copy()
    constant[:, 2] = 3.0
    cases = {
        "plain": base,
        "scale 1e-8": base * 1e-8,
        "scale 1e18": base * 1e18,
        "constant feature": constant,
        "duplicates": np.repeat(base[:1], n, axis=0),
        "integers": np.round(base),
        "collinear": collinear,
        "missing": with_gaps(base, seed=8).astype(np.float32),
    }
    # (the missing-value code for every case: one program, and the masked
    # code meets the degenerate data; the complete-data code meets them in
    # the mixture-of-fa family of tests/test_matrix.py)
    model = jaxem.FactorAnalysis(2, missing=True)
    noise = {}
    for label, x in cases.items():
        result = jax.device_get(jaxem.fit(model, x, key=jax.random.key(0), max_iter=50))
        for leaf in jax.tree.leaves(result.params):
            assert np.all(np.isfinite(leaf)) and leaf.dtype == np.float32, label
        assert np.isfinite(result.log_likelihood), label
        assert not result.nonfinite[0], label
        assert label == "collinear" or not result.decreased[0], label
        assert np.all(result.params.noise > 0), label
        noise[label] = result.params.noise
    floor = 1e-6 * np.var(collinear, axis=0)
    assert np.all(noise["collinear"][[0, 1, 3]] < 10 * floor[[0, 1, 3]])


def test_init_sampling_checks_and_counts():
    """Restarts start apart; draws have the model's covariance; the free
    parameters are counted up to rotation; whether data hold missing values
    is read off them (or NaN refused with missing=False); bad parameters and
    data raise."""
    model = jaxem.FactorAnalysis(2)
    x = jnp.asarray(X, jnp.float32)
    init = jax.jit(model.init)
    a, b = init(jax.random.key(0), x), init(jax.random.key(1), x)
    assert not np.allclose(a.loadings, b.loadings)
    np.testing.assert_allclose(a.mean, X.mean(axis=0), rtol=1e-5)
    draws = jax.jit(model.sample, static_argnums=2)(jax.random.key(2), a, 20000)
    np.testing.assert_allclose(
        np.cov(np.asarray(draws).T), covariance(a), atol=0.1 * np.abs(covariance(a)).max()
    )
    assert model.num_parameters(a) == D + D * 2 - 1 + D
    assert jaxem.PPCA(2).num_parameters(a._replace(noise=jnp.ones(()))) == D + D * 2 - 1 + 1
    three = FactorParams(*(jnp.concatenate([leaf] * 3) for leaf in model._expand(a)))
    assert FactorAnalyzer(2).num_parameters(three) == 3 * (D + D * 2 - 1 + D)
    with pytest.raises(ValueError, match="noise must be positive"):
        model.check_params(a._replace(noise=a.noise.at[1].set(-1.0)), x)
    with pytest.raises(ValueError, match=r"loadings must have shape \(6, 2\)"):
        model.check_params(a._replace(loadings=a.loadings[:, :1]), x)
    with pytest.raises(ValueError, match="num_factors=7 exceeds"):
        jaxem.FactorAnalysis(7).check_data(x)
    with pytest.raises(ValueError, match="every value is missing"):
        model.check_data(np.where(np.arange(N)[:, None] == 4, np.nan, X))
    assert model.for_data(X).missing is False and model.for_data(XM).missing is True
    with pytest.raises(ValueError, match=r"non-finite value\(s\)"):
        jaxem.FactorAnalysis(2, missing=False).check_data(XM)
    with pytest.raises(ValueError, match="num_factors must be >= 1"):
        jaxem.PPCA(0)
    with pytest.raises(TypeError, match="num_factors must be an integer"):
        jaxem.Mixture(jaxem.FactorAnalysis(1.5), 2)
