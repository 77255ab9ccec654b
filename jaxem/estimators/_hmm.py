"""Drop-ins for hmmlearn's ``GaussianHMM``, ``GMMHMM``, ``CategoricalHMM`` and ``PoissonHMM``.

The estimators keep hmmlearn's interface (constructor arguments, fitted
attributes, the ``(X, lengths)`` form of concatenated sequences, methods) and
its M-step formulas, priors included, so that from the same initial parameters
in float64 they reproduce hmmlearn's fit. The computation is :func:`jaxem.fit`
on a :class:`jaxem.HMM` whose chain and emission components carry hmmlearn's
update rules (:class:`_HMMLearnChain` and the ``_HMMLearn*`` components
below): sequences are padded into one batch and Baum-Welch runs as one
compiled loop.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from jaxem._driver import fit as _fit
from jaxem.inference._hmm import hmm_smoother
from jaxem.models._hmm import HMM, HMMParams, HMMStats, check_lengths, pad_sequences
from jaxem.models._mixture_component import MixtureComponent, MixtureComponentParams
from jaxem.models.components._categorical import Categorical, CategoricalParams
from jaxem.models.components._checks import clip_rates
from jaxem.models.components._gaussian import (
    COVARIANCE_TYPES,
    Gaussian,
    GaussianParams,
    as_static_tuple,
)
from jaxem.models.components._poisson import Poisson, PoissonParams

Array = jax.Array
DECODER_ALGORITHMS = ("viterbi", "map")
IMPLEMENTATIONS = ("log", "scaling")


# ------------------------------------------------------------- the monitor


class ConvergenceMonitor:
    """hmmlearn's convergence monitor, filled in after the (compiled) fit.

    Attributes:
      tol: the threshold on the gain of the total log-likelihood.
      n_iter: iterations at most.
      verbose: whether progress was printed.
      history: the total log-likelihood of the parameters entering each
        iteration (a ``deque``, as in hmmlearn).
      iter: iterations run.
    """

    _template = "{iter:>10d} {log_prob:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol, n_iter, verbose):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history = deque()
        self.iter = 0

    def __repr__(self):
        fields = sorted(dict(vars(self), history=list(self.history)).items())
        return f"{type(self).__name__}(\n" + "".join(f"    {k}={v},\n" for k, v in fields) + ")"

    def _reset(self):
        self.iter = 0
        self.history.clear()

    def report(self, log_prob):
        """Record one iteration's log-likelihood (printed when ``verbose``)."""
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            line = self._template.format(iter=self.iter + 1, log_prob=log_prob, delta=delta)
            print(line, file=sys.stderr)
        self.history.append(log_prob)
        self.iter += 1

    @property
    def converged(self):
        """hmmlearn's rule: ``n_iter`` reached, or the last gain below ``tol``."""
        return self.iter == self.n_iter or (
            len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol
        )


# ------------------------------------------- hmmlearn's update rules, as parts


def _static(value):
    """A number or array as a hashable constant of a frozen model."""
    return as_static_tuple(value)


def _array(value, dtype):
    return jnp.asarray(value, dtype)


def _per_state(value, dtype, k):
    """A scalar or a per-state ``(K,)`` hyperparameter, as ``(K,)``."""
    return jnp.broadcast_to(_array(value, dtype), (k,))


def _normalize_rows(values: Array) -> Array:
    """Rows scaled to sum to one; a row of zeros becomes uniform (hmmlearn
    leaves it zero, which is no distribution)."""
    total = jnp.sum(values, axis=-1, keepdims=True)
    uniform = jnp.full_like(values, 1.0 / values.shape[-1])
    return jnp.where(total > 0, values / jnp.where(total > 0, total, 1.0), uniform)


@dataclasses.dataclass(frozen=True)
class _HMMLearnChain(HMM):
    """An HMM with hmmlearn's chain M-step: ``max(prior − 1 + counts, 0)``
    normalised, entries that start at zero stay zero, and the ``s``/``t``
    letters of ``params`` choose what is updated. The objective is the
    log-likelihood alone (hmmlearn's monitor), as its priors are not all
    proper densities."""

    startprob_prior: Any = 1.0
    transmat_prior: Any = 1.0
    update: str = "st"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "startprob_prior", _static(self.startprob_prior))
        object.__setattr__(self, "transmat_prior", _static(self.transmat_prior))

    def _maximize_chain(self, stats: HMMStats, params: HMMParams) -> tuple[Array, Array]:
        def update(old, counts, prior):
            new = jnp.maximum(_array(prior, counts.dtype) - 1.0 + counts, 0.0)
            return _normalize_rows(jnp.where(old == 0, 0.0, new))

        initial, transitions = params.initial, params.transitions
        if "s" in self.update:
            initial = update(initial, stats.initial, self.startprob_prior)
        if "t" in self.update:
            transitions = update(transitions, stats.transitions, self.transmat_prior)
        return initial, transitions

    def log_prior(self, params: HMMParams) -> Array:
        return jnp.zeros((), params.initial.dtype)


@dataclasses.dataclass(frozen=True)
class _HMMLearnGaussianRule(Gaussian):
    """What hmmlearn's two Gaussian M-steps share: the normal prior's mean
    update ``(λ m₀ + Σ r x) / (λ + N)`` (with ``m`` in ``update``), and the
    scatter plus the prior's ``λ (μ − m₀)(μ − m₀)ᵀ``, in data units, from
    the moments about the centres of the parameters they were computed under."""

    means_prior: Any = 0.0
    means_weight: Any = 0.0
    covars_prior: Any = 0.0
    covars_weight: Any = 0.0
    update: str = "mc"

    def __post_init__(self):
        super().__post_init__()
        for name in ("means_prior", "means_weight", "covars_prior", "covars_weight"):
            object.__setattr__(self, name, _static(getattr(self, name)))

    def _moments(self, stats, counts, params, about_new_means: bool):
        """``(means, scatter + λ (μ − m₀)(μ − m₀)ᵀ)``: the scatter about the
        new means, or about the old ones (hmmlearn's GMMHMM)."""
        cov = self.covariance
        k, dim = params.means.shape
        dtype = params.means.dtype
        centres, scale = self._frame(params)
        prior_mean = jnp.broadcast_to(_array(self.means_prior, dtype), (k, dim))
        weight = _per_state(self.means_weight, dtype, k)
        means = params.means
        if "m" in self.update:
            totals = counts[:, None] * centres + scale * stats.sum_x  # Σ r x, in data units
            means = (weight[:, None] * prior_mean + totals) / (weight + counts)[:, None]
        about = (means if about_new_means else params.means) - centres
        shift = about / scale
        correction = (
            cov.scale_by(counts, cov.outer(shift, shift))
            - cov.outer(stats.sum_x, shift)
            - cov.outer(shift, stats.sum_x)
        )
        scatter = jnp.square(scale) * cov.finish_scatter(stats.sum_xx + cov.pool(correction))
        offset = means - prior_mean
        return means, scatter + cov.pool(cov.scale_by(weight, cov.outer(offset, offset)))


@dataclasses.dataclass(frozen=True)
class _HMMLearnGaussian(_HMMLearnGaussianRule):
    """Gaussian emissions with hmmlearn's GaussianHMM M-step (Huang, Acero
    and Hon 2001): covariances ``(Ψ + S + λ (μ − m₀)(μ − m₀)ᵀ) / (max(ν − a,
    0) + N)`` with ``S`` the scatter about the new means and ``a = D``
    (full, tied) or ``1`` (diag, spherical; the denominator at least
    ``1e-5``), and ``Ψ`` hmmlearn's ``covars_prior`` added as given."""

    covars_prior: Any = 1e-2
    covars_weight: Any = 1.0

    def maximize(self, stats, counts, params, m_step_state=()):
        means, numerator = self._moments(stats, counts, params, about_new_means=True)
        if "c" not in self.update:
            return GaussianParams(means, params.covariances, None), m_step_state
        k, dim = params.means.shape
        dtype = params.means.dtype
        psi = _array(self.covars_prior, dtype)
        nu = _per_state(self.covars_weight, dtype, k)
        kind = self.covariance_type
        if kind == "full":
            numerator = numerator + jnp.broadcast_to(psi, (k, dim, dim))
            covariances = numerator / (jnp.maximum(nu - dim, 0.0) + counts)[:, None, None]
        elif kind == "tied":
            numerator = numerator + jnp.broadcast_to(psi, (dim, dim))
            covariances = numerator / (jnp.maximum(nu[0] - dim, 0.0) + jnp.sum(counts))
        else:
            denominator = jnp.maximum(jnp.maximum(nu - 1.0, 0.0) + counts, 1e-5)
            if kind == "diag":
                numerator = numerator + jnp.broadcast_to(psi, (k, dim))
                covariances = numerator / denominator[:, None]
            else:  # spherical: the mean over features of the diag update
                psi = psi[:, None] if psi.ndim == 1 else psi  # (per state)
                psi = jnp.sum(jnp.broadcast_to(psi, (k, dim)), axis=1)
                covariances = (numerator + psi) / (dim * denominator)
        covariances = self.covariance.regularize(covariances, 0.0)
        return GaussianParams(means, covariances, None), m_step_state


@dataclasses.dataclass(frozen=True)
class _HMMLearnCategorical(Categorical):
    """Categorical emissions (one-hot symbols) with hmmlearn's M-step:
    ``max(prior − 1 + counts, 0)`` normalised, floored at ``√tiny`` (a zero
    probability would make ``0 · log 0`` in the one-hot product)."""

    emissionprob_prior: Any = 1.0
    update: str = "e"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "emissionprob_prior", _static(self.emissionprob_prior))

    def maximize(self, stats, counts, params, m_step_state=()):
        if "e" not in self.update:
            return params, m_step_state
        prior = _array(self.emissionprob_prior, stats.sum_x.dtype)
        probs = _normalize_rows(jnp.maximum(prior - 1.0 + stats.sum_x, 0.0))
        floor = float(np.sqrt(np.finfo(probs.dtype).tiny))
        probs = jnp.maximum(probs, floor)
        return CategoricalParams(probs / jnp.sum(probs, axis=1, keepdims=True)), m_step_state


@dataclasses.dataclass(frozen=True)
class _HMMLearnPoisson(Poisson):
    """Poisson emissions with hmmlearn's M-step ``(α + n ȳ_k) / (β + n)``,
    ``ȳ_k`` the state's mean count and ``n`` the total occupancy of all
    states (hmmlearn's formula), clipped to ``[√tiny, 1/√tiny]``."""

    lambdas_prior: Any = 0.0
    lambdas_weight: Any = 0.0
    update: str = "l"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "lambdas_prior", _static(self.lambdas_prior))
        object.__setattr__(self, "lambdas_weight", _static(self.lambdas_weight))

    def maximize(self, stats, counts, params, m_step_state=()):
        if "l" not in self.update:
            return params, m_step_state
        dtype = stats.sum_x.dtype
        total = jnp.sum(counts)
        mean = stats.sum_x / counts[:, None]
        alpha, beta = _array(self.lambdas_prior, dtype), _array(self.lambdas_weight, dtype)
        rates = (alpha + total * mean) / (beta + total)
        return PoissonParams(clip_rates(rates)), m_step_state


# ------------------------------------------------------------ the estimators


def _bucket(size: int) -> int:
    """The next power of two: one compiled program per size class."""
    return 1 << max(int(size) - 1, 0).bit_length()


def _jit(name):
    """A jitted ``model.<name>(params, x)`` with the model static."""
    return jax.jit(lambda model, params, x: getattr(model, name)(params, x), static_argnums=0)


_log_prob = _jit("log_prob")
# (per-sequence log-likelihoods and posterior marginals from one smoother pass)
_smooth = jax.jit(
    lambda model, params, x: model._over_sequences(hmm_smoother, params, x)[0][:2],
    static_argnums=0,
)
_viterbi = _jit("most_likely_states")
_sample = jax.jit(lambda model, key, params, n: model.sample(key, params, n), static_argnums=(0, 3))


def _print_progress(info):
    value = float(np.ravel(info.log_likelihood)[0])
    print(f"{int(info.iteration):>10d} {value:>16.8f}", file=sys.stderr)


class _BaseHMM(BaseEstimator):
    """What the hmmlearn drop-ins share: the chain, the data, fit and inference."""

    _emission_letters = ""

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="st",
        init_params="st",
        implementation="log",
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation

    # ------------------------------------------------------ subclass parts

    def _emission(self):
        """The emission component, with hmmlearn's update rule."""
        raise NotImplementedError

    def _emission_params(self, dtype):
        """The emission parameters from the fitted attributes."""
        raise NotImplementedError

    def _store_emission(self, emissions, dtype):
        raise NotImplementedError

    def _init_emission(self, X, lengths):
        raise NotImplementedError

    def _check_emission(self):
        raise NotImplementedError

    def _validate_X(self, X, fitting):
        """``X`` as a 2-D numpy array the emission family takes."""
        raise NotImplementedError

    def _check_width(self, X, resets):
        """``X``, unless its number of features differs from the model's and
        this call does not re-initialise them (``resets``)."""
        dim = getattr(self, "n_features", None)
        if not resets and dim is not None and X.shape[1] != dim:
            raise ValueError(f"X has {X.shape[1]} features but the model has {dim}")
        return X

    def _values(self, X, dtype):
        """The rows of ``X`` as the emission family's data."""
        return np.asarray(X, dtype=dtype)

    def _outputs(self, draws):
        """Sampled emission rows in hmmlearn's form."""
        return np.asarray(draws)

    # -------------------------------------------------------------- checks

    def _check_hyperparameters(self):
        k = self.n_components
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_components must be a positive integer; got {k!r}")
        n = self.n_iter
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n_iter must be a non-negative integer; got {n!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real):
            raise ValueError(f"tol must be a number; got {self.tol!r}")
        if self.algorithm not in DECODER_ALGORITHMS:
            raise ValueError(f"Unknown decoder {self.algorithm!r}: use one of {DECODER_ALGORITHMS}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {IMPLEMENTATIONS}; got {self.implementation!r}"
            )
        for name in ("params", "init_params"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string of parameter letters; got {value!r}")

    def _needs_init(self, code, name):
        return code in self.init_params or not hasattr(self, name)

    def _check(self):
        """hmmlearn's checks of the current parameters, with clear messages."""
        k = self.n_components
        self.startprob_ = np.asarray(self.startprob_, dtype=float)
        self.transmat_ = np.asarray(self.transmat_, dtype=float)
        if self.startprob_.shape != (k,):
            raise ValueError(
                f"startprob_ must have length n_components = {k}; got shape {self.startprob_.shape}"
            )
        if self.transmat_.shape != (k, k):
            raise ValueError(
                f"transmat_ must have shape (n_components, n_components) = ({k}, {k}); "
                f"got {self.transmat_.shape}"
            )
        for name in ("startprob_", "transmat_"):
            value = getattr(self, name)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or inf")
            if np.any(value < 0):
                raise ValueError(f"{name} must be non-negative; its minimum is {value.min():.6g}")
            sums = value.sum(axis=-1)
            if not np.allclose(sums, 1):
                raise ValueError(
                    f"{name} must sum to 1 (got {sums:.4f})"
                    if sums.ndim == 0
                    else f"{name} rows must sum to 1 (got row sums of {sums})"
                )
        self._check_emission()

    # ---------------------------------------------------------------- data

    def _batch(self, X, lengths, dtype):
        """``(values (B, T', ...), lengths (B,))`` with ``T'`` a power of two
        (padding never changes a result)."""
        values, lengths = pad_sequences(self._values(X, dtype), lengths)
        width = _bucket(values.shape[1])
        pad = [(0, 0), (0, width - values.shape[1])] + [(0, 0)] * (values.ndim - 2)
        values = np.pad(values, pad, mode="edge")
        return jnp.asarray(values), jnp.asarray(lengths, jnp.int32)

    @staticmethod
    def _unpad(per_step, lengths):
        """``(B, T', ...)`` per-step results as hmmlearn's concatenated rows."""
        per_step = np.asarray(per_step)
        return np.concatenate([per_step[b, :n] for b, n in enumerate(lengths)])

    def _prepare(self, X, lengths, fitting=False):
        X = self._validate_X(X, fitting)
        if lengths is None:
            lengths = [X.shape[0]]
        lengths = check_lengths(lengths, X.shape[0])
        return X, lengths

    def _dtype(self):
        return getattr(self, "_fit_dtype", np.float64)

    # ----------------------------------------------------------------- fit

    def _model(self):
        return _HMMLearnChain(
            self._emission(),
            self.n_components,
            init_method="kmeans",
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            update=self.params,
        )

    def _params(self, dtype):
        return HMMParams(
            jnp.asarray(self.startprob_, dtype),
            jnp.asarray(self.transmat_, dtype),
            self._emission_params(dtype),
        )

    def _init(self, X, lengths):
        k = self.n_components
        rng = check_random_state(self.random_state)
        init = 1.0 / k
        if self._needs_init("s", "startprob_"):
            self.startprob_ = rng.dirichlet(np.full(k, init))
        if self._needs_init("t", "transmat_"):
            self.transmat_ = rng.dirichlet(np.full(k, init), size=k)
        self._init_emission(X, lengths)

    def fit(self, X, lengths=None):
        """Estimate the parameters by Baum-Welch (one compiled loop).

        Args:
          X: ``(n_samples, n_features)``, the sequences one after another.
          lengths: the sequences' lengths, summing to ``n_samples`` (``None``:
            one sequence).

        Returns:
          self.
        """
        self._check_hyperparameters()
        X, lengths = self._prepare(X, lengths, fitting=True)
        self._fit_dtype = np.float32 if X.dtype == np.float32 else np.float64
        dtype = self._fit_dtype
        self._init(X, lengths)
        self._check()
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        num_sequences = len(lengths)
        if self.verbose:
            print(
                "iteration, mean log-likelihood per sequence (monitor_.history holds the totals)",
                file=sys.stderr,
            )
        with jax.enable_x64(dtype == np.float64):
            model = self._model()
            x = self._batch(X, lengths, dtype)
            params = jax.tree.map(lambda leaf: leaf[None], self._params(dtype))
            result = _fit(
                model,
                x,
                key=jax.random.key(0),
                init_params=params,
                max_iter=self.n_iter,
                # (jaxem's objective is the mean per sequence; hmmlearn's the total)
                tol=float(self.tol) / num_sequences,
                callback=_print_progress if self.verbose else None,
                stop_on_decrease=True,  # (hmmlearn's rule)
            )
            result = jax.device_get(result)
        fitted = jax.tree.map(lambda leaf: np.asarray(leaf[0]), result.restarts)
        self.startprob_ = np.asarray(fitted.initial, dtype)
        self.transmat_ = np.asarray(fitted.transitions, dtype)
        self._store_emission(fitted.emissions, dtype)
        iterations = int(result.num_iter[0])
        history = np.asarray(result.history[0][:iterations], dtype=float) * num_sequences
        verbose, self.monitor_.verbose = self.monitor_.verbose, False
        for value in history:
            self.monitor_.report(float(value))
        self.monitor_.verbose = verbose
        return self

    # ----------------------------------------------------------- inference

    def _run(self, fn, X, lengths):
        check_is_fitted(self, "startprob_")
        self._check()
        X, lengths = self._prepare(X, lengths)
        dtype = self._dtype()
        with jax.enable_x64(dtype == np.float64):
            x = self._batch(X, lengths, dtype)
            out = fn(self._model(), self._params(dtype), x)
            return jax.device_get(out), lengths

    def score_samples(self, X, lengths=None):
        """The total log-likelihood of ``X`` and the posterior state
        probabilities of its rows, ``(n_samples, n_components)``."""
        (log_prob, posteriors), lengths = self._run(_smooth, X, lengths)
        return float(np.sum(log_prob)), self._unpad(posteriors, lengths)

    def score(self, X, lengths=None):
        """The total log-likelihood of ``X`` (all its sequences)."""
        log_prob, _ = self._run(_log_prob, X, lengths)
        return float(np.sum(log_prob))

    def decode(self, X, lengths=None, algorithm=None):
        """The most likely states: ``(log probability, states (n_samples,))``.

        ``"viterbi"``: the most probable path and its log-joint; ``"map"``:
        each row's most probable state, and the sum of their log posterior
        probabilities' maxima as hmmlearn computes it.
        """
        algorithm = algorithm or self.algorithm
        if algorithm not in DECODER_ALGORITHMS:
            raise ValueError(f"Unknown decoder {algorithm!r}")
        if algorithm == "viterbi":
            (paths, log_joint), lengths = self._run(_viterbi, X, lengths)
            return float(np.sum(log_joint)), self._unpad(paths, lengths).astype(int)
        _, posteriors = self.score_samples(X, lengths)
        return float(np.max(posteriors, axis=1).sum()), np.argmax(posteriors, axis=1)

    def predict(self, X, lengths=None):
        """The most likely state of each row (``algorithm``'s decoding)."""
        return self.decode(X, lengths)[1]

    def predict_proba(self, X, lengths=None):
        """Posterior state probabilities, ``(n_samples, n_components)``."""
        return self.score_samples(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """One sequence of ``n_samples`` steps: ``(X, states (n_samples,))``,
        starting in ``currstate`` when given."""
        check_is_fitted(self, "startprob_")
        self._check()
        integral = isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool)
        if not integral or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
        rng = check_random_state(self.random_state if random_state is None else random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        dtype = self._dtype()
        with jax.enable_x64(dtype == np.float64):
            params = self._params(dtype)
            if currstate is not None:
                if not 0 <= int(currstate) < self.n_components:
                    raise ValueError(f"currstate must be a state in 0..{self.n_components - 1}")
                params = params._replace(
                    initial=jax.nn.one_hot(int(currstate), self.n_components, dtype=dtype)
                )
            # (a prefix of a longer chain is a chain: one program per size class)
            draws, states = _sample(self._model(), jax.random.key(seed), params, _bucket(n_samples))
            draws, states = jax.device_get((draws, states))
        return self._outputs(draws[:n_samples]), np.asarray(states[:n_samples], dtype=int)

    def _n_parameters(self):
        dtype = self._dtype()
        with jax.enable_x64(dtype == np.float64):
            return self._model().num_parameters(self._params(dtype))

    def aic(self, X, lengths=None):
        """Akaike information criterion ``−2 log L + 2 p`` (lower is better)."""
        return -2.0 * self.score(X, lengths) + 2.0 * self._n_parameters()

    def bic(self, X, lengths=None):
        """Bayesian information criterion ``−2 log L + p log n`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X, lengths) + self._n_parameters() * np.log(n)

    def get_stationary_distribution(self):
        """The stationary distribution of the fitted chain."""
        check_is_fitted(self, "transmat_")
        values, vectors = np.linalg.eig(self.transmat_.T)
        vector = np.real(vectors[:, np.argmax(np.real(values))])
        return vector / vector.sum()


# ----------------------------------------------------------------- Gaussian


def _full_covariances(covars, covariance_type, k, dim):
    """hmmlearn's ``covars_``: every state's full matrix, ``(K, D, D)``."""
    covars = np.asarray(covars)
    if covariance_type == "full":
        return covars
    if covariance_type == "tied":
        return np.tile(covars, (k, 1, 1))
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in covars])
    return covars[:, None, None] * np.eye(dim)


def _check_covariances(covars, covariance_type, k, dim=None):
    """Shapes and values of covariances in ``covariance_type``'s layout."""
    covars = np.asarray(covars, dtype=float)
    if dim is None:
        dim = covars.shape[-1] if covariance_type != "spherical" else 1
    shape = {"spherical": (k,), "diag": (k, dim), "full": (k, dim, dim), "tied": (dim, dim)}[
        covariance_type
    ]
    if covars.shape != shape:
        raise ValueError(f"{covariance_type!r} covars must have shape {shape}; got {covars.shape}")
    if not np.all(np.isfinite(covars)):
        raise ValueError("covars contains NaN or inf")
    if covariance_type in ("spherical", "diag"):
        if np.any(covars <= 0):
            raise ValueError(f"{covariance_type!r} covars must be positive")
        return covars
    matrices = covars.reshape((-1, dim, dim))
    for i, matrix in enumerate(matrices):
        if not np.allclose(matrix, matrix.T):
            raise ValueError(f"covars of state {i} must be symmetric")
        if np.linalg.eigvalsh(matrix)[0] <= 0:
            raise ValueError(f"covars of state {i} must be positive definite")
    return covars


class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions, fitted by jaxem, with
    hmmlearn's interface.

    A drop-in for :class:`hmmlearn.hmm.GaussianHMM`: the same constructor
    arguments, attributes and methods, hmmlearn's initialisation (k-means
    means, the data covariance plus ``min_covar``, Dirichlet(1/K) start and
    transition probabilities, all from ``random_state``) and its M-step,
    priors included; from the same parameters in float64 it reproduces
    hmmlearn's fit. Baum-Welch runs as one compiled loop over all the
    sequences at once (:class:`jaxem.HMM`), in float32 for float32 input and
    float64 otherwise. Forward-backward always runs in log space with
    normalised messages; ``implementation`` is accepted for compatibility.

    Parameters:
      n_components: number of states.
      covariance_type: ``"spherical"``, ``"diag"`` (default), ``"full"`` or ``"tied"``.
      min_covar: added to the data covariance's diagonal for the initial covariances.
      startprob_prior, transmat_prior: Dirichlet concentrations on the start
        probabilities and on each transition row (``1``: none).
      means_prior, means_weight: mean ``m₀`` and weight ``λ`` of the normal prior on the means.
      covars_prior, covars_weight: hmmlearn's covariance prior: ``covars_prior``
        is added to the scatter, ``covars_weight`` to the denominator as
        ``max(covars_weight − a, 0)`` (``a`` is ``D`` for full and tied, ``1``
        for diag and spherical).
      algorithm: ``"viterbi"`` or ``"map"``, for :meth:`decode` and :meth:`predict`.
      random_state: seed, ``numpy.random.RandomState`` or ``None``.
      n_iter: Baum-Welch iterations at most.
      tol: threshold on the gain of the total log-likelihood.
      verbose: print each iteration's log-likelihood to stderr.
      params, init_params: letters of the parameters updated by the fit and
        initialised before it: ``s`` start, ``t`` transitions, ``m`` means, ``c`` covariances.
      implementation: ``"log"`` or ``"scaling"`` (the same computation here).

    Attributes:
      startprob_, transmat_, means_: the parameters.
      covars_: every state's full covariance matrix ``(K, D, D)``, as
        hmmlearn returns them (set them in ``covariance_type``'s shape).
      n_features: the dimension of the emissions.
      monitor_: the :class:`ConvergenceMonitor` of the last fit.

    Examples:
      >>> import numpy as np
      >>> from jaxem.estimators import GaussianHMM
      >>> X = np.concatenate([np.zeros((50, 1)), np.full((50, 1), 5.0)])
      >>> X = X + np.random.default_rng(0).normal(size=X.shape)
      >>> model = GaussianHMM(n_components=2, random_state=0).fit(X, lengths=[60, 40])
      >>> np.sort(model.means_.ravel()).round(0)
      array([0., 5.])
    """

    _emission_letters = "mc"

    def __init__(
        self,
        n_components=1,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stmc",
        init_params="stmc",
        implementation="log",
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    @property
    def covars_(self):
        """Every state's full covariance matrix, ``(n_components, D, D)``."""
        return _full_covariances(
            self._covars_, self.covariance_type, self.n_components, self.n_features
        )

    @covars_.setter
    def covars_(self, covars):
        self._covars_ = np.array(covars, copy=True)

    def _check_hyperparameters(self):
        super()._check_hyperparameters()
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {self.covariance_type!r}"
            )

    def _validate_X(self, X, fitting):
        X = check_array(X, dtype=[np.float64, np.float32])
        return self._check_width(X, fitting and "m" in self.init_params)

    def _init_emission(self, X, lengths):
        from sklearn.cluster import KMeans

        self.n_features = X.shape[1]
        if self._needs_init("m", "means_"):
            kmeans = KMeans(n_clusters=self.n_components, random_state=self.random_state, n_init=10)
            self.means_ = kmeans.fit(X).cluster_centers_
        if self._needs_init("c", "covars_"):
            cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(X.shape[1])
            k = self.n_components
            self._covars_ = {
                "spherical": np.full(k, cv.mean()),
                "tied": cv,
                "diag": np.tile(np.diag(cv), (k, 1)),
                "full": np.tile(cv, (k, 1, 1)),
            }[self.covariance_type]

    def _check_emission(self):
        self.means_ = np.asarray(self.means_)
        k = self.n_components
        if self.means_.ndim != 2 or self.means_.shape[0] != k:
            raise ValueError(
                f"means_ must have shape (n_components, n_features); got {self.means_.shape}"
            )
        self.n_features = self.means_.shape[1]
        if not np.all(np.isfinite(self.means_)):
            raise ValueError("means_ contains NaN or inf")
        _check_covariances(self._covars_, self.covariance_type, k, self.n_features)

    def _emission(self):
        return _HMMLearnGaussian(
            self.covariance_type,
            reg_covar=0.0,
            means_prior=self.means_prior,
            means_weight=self.means_weight,
            covars_prior=self.covars_prior,
            covars_weight=self.covars_weight,
            update=self.params,
        )

    def _emission_params(self, dtype):
        return GaussianParams(jnp.asarray(self.means_, dtype), jnp.asarray(self._covars_, dtype))

    def _store_emission(self, emissions, dtype):
        self.means_ = np.asarray(emissions.means, dtype)
        self._covars_ = np.asarray(emissions.covariances, dtype)


# -------------------------------------------------------------- categorical


def _check_integers(X, what):
    """A 2-D array of non-negative integers (integral floats accepted)."""
    X = check_array(X, dtype=None)
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{what} must be integers; got dtype {X.dtype}")
    if not np.issubdtype(X.dtype, np.integer):
        if not np.all(X == np.round(X)):
            bad = tuple(int(i) for i in np.argwhere(X != np.round(X))[0])
            raise ValueError(f"{what} must be integers; X[{bad}] = {X[bad]}")
    if X.size and X.min() < 0:
        bad = tuple(int(i) for i in np.argwhere(X < 0)[0])
        raise ValueError(f"{what} must be non-negative; X[{bad}] = {X[bad]}")
    return X


class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions, fitted by jaxem, with
    hmmlearn's interface (a drop-in for :class:`hmmlearn.hmm.CategoricalHMM`).

    ``X`` holds one integer symbol per row, ``(n_samples, 1)``. hmmlearn's
    initialisation (random emission probabilities and Dirichlet(1/K) start
    and transition probabilities from ``random_state``, drawn as hmmlearn
    draws them) and M-step, priors included. Parameters as
    :class:`GaussianHMM`'s, with ``emissionprob_prior`` (Dirichlet
    concentrations on each state's emission probabilities), ``n_features``
    (the number of symbols; ``None``: the largest symbol plus one) and the
    letter ``e`` (emission probabilities) in ``params``/``init_params``.

    Attributes:
      startprob_, transmat_: the chain.
      emissionprob_: ``(n_components, n_features)``.
      monitor_: the :class:`ConvergenceMonitor` of the last fit.
    """

    _emission_letters = "e"

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        *,
        emissionprob_prior=1.0,
        n_features=None,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        implementation="log",
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _validate_X(self, X, fitting):
        X = _check_integers(X, "Symbols")
        if X.shape[1] != 1:
            raise ValueError(
                f"X must hold one integer symbol per row, shape (n_samples, 1); got {X.shape}"
            )
        if self.n_features is not None and X.max() > self.n_features - 1:
            raise ValueError(
                f"Largest symbol is {X.max()} but the model only emits symbols up to "
                f"{self.n_features - 1}"
            )
        if fitting and self.n_features is None:
            self.n_features = int(X.max()) + 1
        return X

    def _values(self, X, dtype):
        return np.eye(self.n_features, dtype=dtype)[np.asarray(X)[:, 0].astype(int)]

    def _outputs(self, draws):
        return np.argmax(np.asarray(draws), axis=1)[:, None]

    def _init_emission(self, X, lengths):
        if self._needs_init("e", "emissionprob_"):
            rng = check_random_state(self.random_state)
            probs = rng.rand(self.n_components, self.n_features)
            self.emissionprob_ = probs / probs.sum(axis=1, keepdims=True)

    def _check_emission(self):
        probs = np.atleast_2d(np.asarray(self.emissionprob_, dtype=float))
        if self.n_features is None:
            self.n_features = probs.shape[1]
        shape = (self.n_components, self.n_features)
        if probs.shape != shape:
            raise ValueError(f"emissionprob_ must have shape {shape}; got {probs.shape}")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError("emissionprob_ must be non-negative and finite")
        if not np.allclose(probs.sum(axis=1), 1):
            raise ValueError(f"emissionprob_ rows must sum to 1 (got row sums of {probs.sum(1)})")
        self.emissionprob_ = probs

    def _emission(self):
        return _HMMLearnCategorical(emissionprob_prior=self.emissionprob_prior, update=self.params)

    def _emission_params(self, dtype):
        return CategoricalParams(jnp.asarray(self.emissionprob_, dtype))

    def _store_emission(self, emissions, dtype):
        self.emissionprob_ = np.asarray(emissions.probs, dtype)


# ------------------------------------------------------------------ Poisson


class PoissonHMM(_BaseHMM):
    """Hidden Markov model with Poisson emissions, fitted by jaxem, with
    hmmlearn's interface (a drop-in for :class:`hmmlearn.hmm.PoissonHMM`).

    ``X`` holds non-negative integer counts ``(n_samples, n_features)``.
    hmmlearn's initialisation (rates drawn from a gamma distribution with the
    data's mean and variance, from ``random_state``) and M-step, with
    ``lambdas_prior`` and ``lambdas_weight`` (its gamma prior) and the letter
    ``l`` (rates) in ``params``/``init_params``; other parameters as
    :class:`GaussianHMM`'s.

    Attributes:
      startprob_, transmat_: the chain.
      lambdas_: the rates, ``(n_components, n_features)``.
      monitor_: the :class:`ConvergenceMonitor` of the last fit.
    """

    _emission_letters = "l"

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        lambdas_prior=0.0,
        lambdas_weight=0.0,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stl",
        init_params="stl",
        implementation="log",
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _validate_X(self, X, fitting):
        return self._check_width(_check_integers(X, "Counts"), fitting)

    def _outputs(self, draws):
        return np.asarray(draws).astype(int)

    def _init_emission(self, X, lengths):
        self.n_features = X.shape[1]
        if self._needs_init("l", "lambdas_"):
            rng = check_random_state(self.random_state)
            mean, var = X.mean(), X.var()
            self.lambdas_ = rng.gamma(
                shape=mean**2 / var, scale=var / mean, size=(self.n_components, self.n_features)
            )

    def _check_emission(self):
        rates = np.atleast_2d(np.asarray(self.lambdas_, dtype=float))
        dim = getattr(self, "n_features", rates.shape[1])
        if rates.shape != (self.n_components, dim):
            raise ValueError(
                f"lambdas_ must have shape (n_components, n_features) = "
                f"({self.n_components}, {dim}); got {rates.shape}"
            )
        if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
            raise ValueError("lambdas_ must be positive and finite")
        self.lambdas_, self.n_features = rates, dim

    def _emission(self):
        return _HMMLearnPoisson(
            lambdas_prior=self.lambdas_prior, lambdas_weight=self.lambdas_weight, update=self.params
        )

    def _emission_params(self, dtype):
        return PoissonParams(jnp.asarray(self.lambdas_, dtype))

    def _store_emission(self, emissions, dtype):
        self.lambdas_ = np.asarray(emissions.rates, dtype)


# ------------------------------------------------------------------- GMMHMM


@dataclasses.dataclass(frozen=True)
class _HMMLearnMixtureGaussian(_HMMLearnGaussianRule):
    """One state's Gaussian mixture components with hmmlearn's GMMHMM
    M-step: covariances from the scatter about the means the statistics were
    computed under (hmmlearn accumulates it about the old means), the prior
    terms and hmmlearn's denominators; ``covars_prior``/``covars_weight``
    are resolved numbers."""

    def maximize(self, stats, counts, params, m_step_state=()):
        means, numerator = self._moments(stats, counts, params, about_new_means=False)
        if "c" not in self.update:
            return GaussianParams(means, params.covariances, None), m_step_state
        m, dim = params.means.shape
        dtype = params.means.dtype
        psi, nu = _array(self.covars_prior, dtype), _array(self.covars_weight, dtype)
        kind = self.covariance_type
        if kind == "full":
            numerator = numerator + jnp.swapaxes(jnp.broadcast_to(psi, (m, dim, dim)), -1, -2)
            covariances = numerator / (counts + nu + dim + 2.0)[:, None, None]
        elif kind == "tied":
            numerator = numerator + jnp.broadcast_to(psi, (dim, dim)).T
            covariances = numerator / (jnp.sum(counts) + m + nu + dim + 1.0)
        elif kind == "diag":
            numerator = numerator + 2.0 * jnp.broadcast_to(nu, (m, dim))
            covariances = numerator / (counts[:, None] + 1.0 + 2.0 * (psi + 1.0))
        else:
            numerator = numerator + 2.0 * jnp.broadcast_to(nu, (m,))
            covariances = numerator / (dim * (counts + 1.0) + 2.0 * (psi + 1.0))
        covariances = self.covariance.regularize(covariances, 0.0)
        return GaussianParams(means, covariances, None), m_step_state


class GMMHMM(_BaseHMM):
    """Hidden Markov model whose states emit from Gaussian mixtures, fitted by
    jaxem, with hmmlearn's interface (a drop-in for :class:`hmmlearn.hmm.GMMHMM`).

    The model is ``jaxem.HMM(jaxem.MixtureComponent(Gaussian, n_mix), K)``
    with hmmlearn's initialisation (k-means on the data, then k-means within
    each cluster, from ``random_state``) and M-step, priors included (their
    defaults resolved per ``covariance_type`` as hmmlearn does). Like
    hmmlearn's, the covariance update uses the scatter about the means of
    the previous iteration, so it is a generalised-EM step; the exact EM
    step is :class:`jaxem.MixtureComponent` with :class:`jaxem.Gaussian`.
    Priors are numbers (the same for every state and mixture component).
    Parameters as :class:`GaussianHMM`'s, with ``n_mix``, ``weights_prior``
    and the letter ``w`` (mixture weights) in ``params``/``init_params``.

    Attributes:
      startprob_, transmat_: the chain.
      weights_: ``(n_components, n_mix)``.
      means_: ``(n_components, n_mix, n_features)``.
      covars_: ``(n_components, n_mix)`` spherical, ``(n_components, n_mix,
        n_features)`` diag, ``(n_components, n_mix, n_features, n_features)``
        full, ``(n_components, n_features, n_features)`` tied (one matrix per
        state, shared by its mixture components).
      monitor_: the :class:`ConvergenceMonitor` of the last fit.
    """

    _emission_letters = "mcw"

    def __init__(
        self,
        n_components=1,
        n_mix=1,
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        weights_prior=1.0,
        means_prior=0.0,
        means_weight=0.0,
        covars_prior=None,
        covars_weight=None,
        algorithm="viterbi",
        covariance_type="diag",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stmcw",
        init_params="stmcw",
        implementation="log",
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.covariance_type = covariance_type

    def _check_hyperparameters(self):
        super()._check_hyperparameters()
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {self.covariance_type!r}"
            )
        m = self.n_mix
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"n_mix must be a positive integer; got {m!r}")
        for name in ("weights_prior", "means_weight", "covars_prior", "covars_weight"):
            value = getattr(self, name)
            if value is not None and np.ndim(value) != 0:
                raise NotImplementedError(
                    f"{name} must be a number here (the same for every state and mixture "
                    f"component); got an array of shape {np.shape(value)}"
                )
        if float(self.weights_prior) < 1.0:
            raise ValueError(f"weights_prior must be >= 1; got {self.weights_prior}")

    def _resolved_covar_priors(self):
        """hmmlearn's defaults of ``covars_prior`` and ``covars_weight``."""
        dim, m = self.n_features, self.n_mix
        prior, weight = {
            "full": (0.0, -(1.0 + dim + 1.0)),
            "tied": (0.0, -(m + dim + 1.0)),
            "diag": (-1.5, 0.0),
            "spherical": (-(m + 2.0) / 2.0, 0.0),
        }[self.covariance_type]
        prior = prior if self.covars_prior is None else self.covars_prior
        weight = weight if self.covars_weight is None else self.covars_weight
        return prior, weight

    def _validate_X(self, X, fitting):
        X = check_array(X, dtype=[np.float64, np.float32])
        return self._check_width(X, fitting and "m" in self.init_params)

    def _init_emission(self, X, lengths):
        from sklearn.cluster import KMeans

        k, m = self.n_components, self.n_mix
        self.n_features = dim = X.shape[1]
        cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(dim)
        main = KMeans(n_clusters=k, random_state=self.random_state, n_init=10)
        labels = main.fit_predict(X)
        centre = np.mean(main.cluster_centers_, axis=0)
        means = []
        for label in range(k):
            cluster = X[labels == label]
            if cluster.shape[0] >= m:
                inner = KMeans(n_clusters=m, random_state=self.random_state, n_init=10)
                means.append(inner.fit(cluster).cluster_centers_)
            else:  # (hmmlearn draws these from numpy's global generator)
                means.append(np.random.multivariate_normal(centre, cov=cv, size=m))  # noqa: NPY002
        if self._needs_init("w", "weights_"):
            self.weights_ = np.full((k, m), 1.0 / m)
        if self._needs_init("m", "means_"):
            self.means_ = np.stack(means)
        if self._needs_init("c", "covars_"):
            self.covars_ = {
                "tied": np.tile(cv, (k, 1, 1)),
                "full": np.tile(cv, (k, m, 1, 1)),
                "diag": np.tile(np.diag(cv), (k, m, 1)),
                "spherical": np.full((k, m), cv.mean()),
            }[self.covariance_type]

    def _check_emission(self):
        k, m = self.n_components, self.n_mix
        self.weights_ = np.asarray(self.weights_, dtype=float)
        self.means_ = np.asarray(self.means_, dtype=float)
        if self.weights_.shape != (k, m):
            raise ValueError(f"weights_ must have shape (n_components, n_mix) = ({k}, {m})")
        if not np.allclose(self.weights_.sum(axis=1), 1) or np.any(self.weights_ < 0):
            raise ValueError("weights_ rows must be non-negative and sum to 1")
        if self.means_.ndim != 3 or self.means_.shape[:2] != (k, m):
            raise ValueError("means_ must have shape (n_components, n_mix, n_features)")
        self.n_features = dim = self.means_.shape[2]
        if not np.all(np.isfinite(self.means_)):
            raise ValueError("means_ contains NaN or inf")
        covars = np.asarray(self.covars_, dtype=float)
        if self.covariance_type == "tied":
            _check_covariances(covars, "full", k, dim)
        else:
            for state in covars:
                _check_covariances(state, self.covariance_type, m, dim)
        self.covars_ = covars

    def _emission(self):
        prior, weight = self._resolved_covar_priors()
        inner = _HMMLearnMixtureGaussian(
            self.covariance_type,
            reg_covar=0.0,
            means_prior=self.means_prior,
            means_weight=self.means_weight,
            covars_prior=prior,
            covars_weight=weight,
            update=self.params,
        )
        return _HMMLearnMixture(inner, self.n_mix, float(self.weights_prior), update=self.params)

    def _emission_params(self, dtype):
        return MixtureComponentParams(
            jnp.asarray(self.weights_, dtype),
            GaussianParams(jnp.asarray(self.means_, dtype), jnp.asarray(self.covars_, dtype)),
        )

    def _store_emission(self, emissions, dtype):
        self.weights_ = np.asarray(emissions.weights, dtype)
        self.means_ = np.asarray(emissions.components.means, dtype)
        self.covars_ = np.asarray(emissions.components.covariances, dtype)


@dataclasses.dataclass(frozen=True)
class _HMMLearnMixture(MixtureComponent):
    """A Gaussian mixture per state whose weights update only with ``w``."""

    update: str = "w"

    def _maximize_weights(self, counts, weights):
        if "w" not in self.update:
            return weights
        return super()._maximize_weights(counts, weights)
