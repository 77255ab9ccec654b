"""A drop-in replacement for ``sklearn.mixture.GaussianMixture``."""

from __future__ import annotations

import math
import numbers
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxem._driver import fit as _fit
from jaxem._engine import restart_keys
from jaxem.estimators._missing import ImputeMixin
from jaxem.models._gaussian_mixture import GaussianMixture as _Model
from jaxem.models._gaussian_mixture import GaussianMixtureParams, GaussianMixturePrior
from jaxem.models._mixture import INIT_METHODS
from jaxem.models.components._gaussian import COVARIANCE_TYPES


class ComponentCollapseWarning(UserWarning):
    """A fitted mixture component holds (almost) no data."""


class NumericalWarning(UserWarning):
    """EM met a non-finite value or a decrease of the objective."""


def _jit_model_fn(name):
    """A jitted ``model.<name>(params, x)`` with the model static."""

    def call(model, params, x):
        return getattr(model, name)(params, x)

    return jax.jit(call, static_argnums=0)


_log_prob = _jit_model_fn("log_prob")
_posterior = _jit_model_fn("posterior")
_initial_params = jax.jit(
    lambda model, keys, x: jax.vmap(lambda key: model.init(key, x))(keys), static_argnums=0
)
_sample = jax.jit(lambda model, key, params, n: model.sample(key, params, n), static_argnums=(0, 3))


# Progress printing for ``verbose``: module-level functions, so the callback
# passed to ``jaxem.fit`` is the same object every time (no recompilation).
_progress_clock = {"start": 0.0, "last": 0.0}


def _print_progress(info):
    print(f"  Iteration {int(info.iteration)}\t lower bounds {np.round(info.log_likelihood, 5)}")


def _print_progress_timed(info):
    now = time.perf_counter()
    lapse, _progress_clock["last"] = now - _progress_clock["last"], now
    print(
        f"  Iteration {int(info.iteration)}\t time lapse {lapse:.5f}s\t "
        f"lower bounds {np.round(info.log_likelihood, 5)}"
    )


def _best_initialization(result, max_iter):
    """scikit-learn's choice among initialisations: the highest lower bound
    (the objective at the start of the last iteration), the first on ties;
    with ``max_iter=0`` (no lower bound), the best final objective."""
    if max_iter == 0:
        return int(result.best_restart)
    num_iter = np.asarray(result.num_iter)
    history = np.asarray(result.history)
    bounds = np.where(
        num_iter > 0, history[np.arange(len(num_iter)), np.maximum(num_iter - 1, 0)], -np.inf
    )
    bounds = np.where(np.isfinite(bounds), bounds, -np.inf)
    return int(np.argmax(bounds))


def _precision_to_covariance(precisions, covariance_type):
    """Covariances from precisions (via Cholesky factors), in numpy."""
    precisions = np.asarray(precisions)
    if covariance_type in ("diag", "spherical"):
        return 1.0 / precisions
    matrices = precisions.reshape((-1, *precisions.shape[-2:]))
    eye = np.eye(matrices.shape[-1], dtype=matrices.dtype)
    factors_inv = np.stack([np.linalg.solve(np.linalg.cholesky(p), eye) for p in matrices])
    covariances = np.swapaxes(factors_inv, -1, -2) @ factors_inv
    return covariances.reshape(precisions.shape)


def _precisions_cholesky(covariances, covariance_type):
    """scikit-learn's ``precisions_cholesky_`` (``L⁻ᵀ`` with ``Σ = L Lᵀ``)."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / np.sqrt(covariances)
    matrices = covariances.reshape((-1, *covariances.shape[-2:]))
    eye = np.eye(matrices.shape[-1], dtype=matrices.dtype)
    factors = np.stack([np.linalg.solve(np.linalg.cholesky(c), eye).T for c in matrices])
    return factors.reshape(covariances.shape)


class GaussianMixture(ImputeMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by jaxem, with scikit-learn's interface.

    A drop-in for :class:`sklearn.mixture.GaussianMixture`: the same
    constructor arguments, fitted attributes, methods, warnings and errors. All
    computation is :func:`jaxem.fit` and :class:`jaxem.GaussianMixture`: the
    ``n_init`` restarts run as one compiled batch. The fit runs in the input's
    dtype: float32 input in float32; anything else (float64, integers) in
    float64, as scikit-learn does. Given the same initial parameters
    (``weights_init``, ``means_init``, ``precisions_init``) in float64, it
    reproduces scikit-learn's fit. The random initialisations use JAX's
    generator, so they differ from scikit-learn's for the same
    ``random_state``.

    Parameters:
      n_components: number of mixture components.
      covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
      tol: convergence threshold on the change of the mean log-likelihood.
      reg_covar: non-negative regularisation added to the covariances' diagonal.
      max_iter: EM iterations at most (``0`` keeps the initialisation).
      n_init: number of initialisations; the best is kept.
      init_params: ``"kmeans"``, ``"k-means++"``, ``"random"`` or
        ``"random_from_data"``.
      weights_init: initial weights ``(n_components,)``.
      means_init: initial means ``(n_components, n_features)``.
      precisions_init: initial precisions (inverse covariances) in the shape
        of ``covariance_type``.
      random_state: seed (int), ``numpy.random.RandomState`` or ``None``.
      warm_start: start each ``fit`` from the previous solution.
      verbose: ``0`` silent, ``1`` iterations, ``2`` with timings.
      verbose_interval: iterations between progress lines.
      prior: jaxem extension: a :class:`jaxem.GaussianMixturePrior` for MAP
        estimation (``lower_bound_`` then includes ``log p(θ) / n``).
      allow_missing: jaxem extension: NaN in ``X`` is a missing value (at
        random): EM on the incomplete data, densities of the observed
        coordinates, and :meth:`impute` (the default). ``False`` refuses NaN
        with scikit-learn's ``ValueError``, as scikit-learn does.

    Attributes:
      weights_, means_, covariances_, precisions_, precisions_cholesky_: the
        fitted parameters, as in scikit-learn.
      converged_: whether the best initialisation converged.
      n_iter_: EM iterations of the best initialisation.
      lower_bound_: the objective at the start of its last iteration.
      lower_bounds_: the objective at every iteration (a list).
      n_features_in_, feature_names_in_: as in scikit-learn.

    Examples:
      >>> import jaxem.estimators
      >>> x = jaxem.load_faithful()
      >>> gm = jaxem.estimators.GaussianMixture(n_components=2, random_state=0).fit(x)
      >>> gm.means_.round(1)[gm.means_[:, 0].argsort()]
      array([[ 2. , 54.5],
             [ 4.3, 80. ]])
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        prior=None,
        allow_missing=True,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior
        self.allow_missing = allow_missing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = bool(self.allow_missing)
        return tags

    def _finite(self):
        """``validate_data``'s ``ensure_all_finite``: NaN passes to the model
        when missing values are allowed (which refuses inf itself)."""
        return False if self.allow_missing else True

    # ---------------------------------------------------------------- checks

    def _check_hyperparameters(self):
        def integer(name, minimum):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"The '{name}' parameter must be an int; got {value!r}.")
            if value < minimum:
                raise ValueError(f"The '{name}' parameter must be >= {minimum}; got {value}.")

        def real(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"The '{name}' parameter must be a float; got {value!r}.")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"The '{name}' parameter must be >= 0; got {value}.")

        integer("n_components", 1)
        integer("max_iter", 0)
        integer("n_init", 1)
        integer("verbose_interval", 1)
        integer("verbose", 0)
        real("tol")
        real("reg_covar")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"The 'covariance_type' parameter must be one of {COVARIANCE_TYPES}; "
                f"got {self.covariance_type!r}."
            )
        if self.init_params not in INIT_METHODS:
            raise ValueError(
                f"The 'init_params' parameter must be one of {INIT_METHODS}; "
                f"got {self.init_params!r}."
            )
        if self.prior is not None and not isinstance(self.prior, GaussianMixturePrior):
            raise ValueError(
                f"The 'prior' parameter must be a jaxem.GaussianMixturePrior or None; "
                f"got {self.prior!r}."
            )

    def _check_initial_parameters(self, n_features, dtype):
        """Validate and convert ``*_init`` (scikit-learn's rules and messages)."""
        k = self.n_components
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=dtype)
            if weights.shape != (k,):
                raise ValueError(
                    f"The parameter 'weights' should have the shape of ({k},), "
                    f"but got {weights.shape}"
                )
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max "
                    f"value {weights.max():.5f}, min value {weights.min():.5f}"
                )
            if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got "
                    f"sum(weights) = {weights.sum():.5f}"
                )
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=dtype)
            if means.shape != (k, n_features):
                raise ValueError(
                    f"The parameter 'means' should have the shape of ({k}, {n_features}), "
                    f"but got {means.shape}"
                )
        if self.precisions_init is not None:
            precisions = np.asarray(self.precisions_init, dtype=dtype)
            shape = {
                "full": (k, n_features, n_features),
                "tied": (n_features, n_features),
                "diag": (k, n_features),
                "spherical": (k,),
            }[self.covariance_type]
            if precisions.shape != shape:
                raise ValueError(
                    f"The parameter '{self.covariance_type} precision' should have the "
                    f"shape of {shape}, but got {precisions.shape}"
                )
            if self.covariance_type in ("diag", "spherical"):
                if np.any(precisions <= 0):
                    raise ValueError(f"'{self.covariance_type} precision' should be positive")
            else:
                matrices = precisions.reshape((-1, n_features, n_features))
                symmetric = np.allclose(matrices, np.swapaxes(matrices, -1, -2))
                if not symmetric or np.any(np.linalg.eigvalsh(matrices)[:, 0] <= 0):
                    raise ValueError(
                        f"'{self.covariance_type} precision' should be symmetric, positive-definite"
                    )
        for name, value in (("weights_init", weights), ("means_init", means)):
            if value is not None and not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or inf")
        return weights, means, precisions

    # ------------------------------------------------------------------ fit

    def _model(self):
        return _Model(
            num_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=float(self.reg_covar),
            init_method=self.init_params,
            prior=self.prior,
        )

    def _params(self):
        """The fitted parameters as a ``GaussianMixtureParams`` of jax arrays."""
        prior = getattr(self, "_prior_params", None)
        return GaussianMixtureParams(
            jnp.asarray(self.weights_),
            jnp.asarray(self.means_),
            jnp.asarray(self.covariances_),
            None if prior is None else jax.tree.map(jnp.asarray, prior),
        )

    def fit(self, X, y=None):
        """Estimate the parameters with EM (``n_init`` restarts in one batch).

        Returns:
          self.
        """
        self._fit(X)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of each row of ``X``."""
        return self._fit(X).predict(X)

    def _fit(self, X):
        self._check_hyperparameters()
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2,
            ensure_all_finite=self._finite(),
        )
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        weights, means, precisions = self._check_initial_parameters(X.shape[1], X.dtype)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        with jax.enable_x64(X.dtype == np.float64):
            model = self._model()
            x = jnp.asarray(X)
            key = jax.random.key(seed)
            if not do_init:
                init_params = self._params()
            elif weights is None and means is None and precisions is None:
                init_params = None
            else:
                base = _initial_params(model, restart_keys(key, n_init), x)
                given = {
                    "weights": weights,
                    "means": means,
                    "covariances": None
                    if precisions is None
                    else _precision_to_covariance(precisions, self.covariance_type),
                }
                init_params = base._replace(
                    **{
                        name: jnp.broadcast_to(jnp.asarray(value), getattr(base, name).shape)
                        for name, value in given.items()
                        if value is not None
                    }
                )
            if self.verbose:
                _progress_clock["start"] = _progress_clock["last"] = time.perf_counter()
                print(f"Initializations 0..{n_init - 1} (one batch)")
            # A warm start continues the previous fit: its last lower bound
            # is what the first iteration's is compared with (scikit-learn's
            # convergence test), so a converged model stops at once.
            previous = None
            if not do_init and np.isfinite(self.lower_bound_):
                previous = self.lower_bound_
            result = _fit(
                model,
                x,
                key=key,
                num_restarts=n_init,
                max_iter=self.max_iter,
                tol=self.tol,
                init_params=init_params,
                previous_log_likelihood=previous,
                callback=None
                if not self.verbose
                else (_print_progress if self.verbose == 1 else _print_progress_timed),
                callback_every=self.verbose_interval,
            )
            result = jax.device_get(result)
        self._store(result, X.dtype)
        return self

    def _store(self, result, dtype):
        best = _best_initialization(result, self.max_iter)
        params = jax.tree.map(lambda leaf: leaf[best], result.restarts)
        if bool(np.any(result.diagnostics["singular"][best])):
            raise ValueError(
                "Fitting the mixture model failed because some components have ill-defined "
                "empirical covariance (for instance caused by singleton or collapsed samples). "
                "Try to decrease the number of components, increase reg_covar, or scale the "
                "input data."
            )
        if not np.isfinite(result.restart_log_likelihood[best]):
            raise ValueError(
                "Fitting the mixture model failed: the log-likelihood is not finite for any "
                "initialization. Check the data for extreme values, increase reg_covar, or "
                "scale the input data."
            )
        self.weights_ = np.asarray(params.weights, dtype=dtype)
        self.means_ = np.asarray(params.means, dtype=dtype)
        self.covariances_ = np.asarray(params.covariances, dtype=dtype)
        self._prior_params = params.prior
        self.precisions_cholesky_ = _precisions_cholesky(self.covariances_, self.covariance_type)
        if self.covariance_type in ("full", "tied"):
            chol = self.precisions_cholesky_
            self.precisions_ = chol @ np.swapaxes(chol, -1, -2)
        else:
            self.precisions_ = self.precisions_cholesky_**2
        self.converged_ = bool(result.converged[best])
        self.n_iter_ = int(result.num_iter[best])
        history = np.asarray(result.history[best][: self.n_iter_], dtype=float)
        self.lower_bounds_ = history.tolist()
        self.lower_bound_ = float(history[-1]) if self.n_iter_ else -np.inf
        if self.verbose:
            state = "converged" if self.converged_ else "did not converge"
            print(f"Initialization {best} {state}. lower bound {self.lower_bound_:.5f}.")

        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        collapsed = np.flatnonzero(np.asarray(result.diagnostics.get("collapsed", [False])[best]))
        if collapsed.size:
            warnings.warn(
                f"Component(s) {collapsed.tolist()} of the fitted mixture hold almost no data "
                "(total responsibility below a thousandth of an observation); their "
                "covariance is reg_covar. Consider fewer components.",
                ComponentCollapseWarning,
                stacklevel=3,
            )
        if bool(result.nonfinite[best]):
            warnings.warn(
                "A non-finite value appeared during EM; the parameters are those of the last "
                "finite iteration. Consider float64 input, a larger reg_covar, or scaling.",
                NumericalWarning,
                stacklevel=3,
            )
        if bool(result.decreased[best]):
            warnings.warn(
                "The log-likelihood decreased between EM iterations by more than 1e-5 "
                "(relative). EM is monotone, so this signals numerical trouble, or a "
                "reg_covar large against the data's variances (it changes the objective). "
                "Consider float64 input, scaling the data, or a smaller reg_covar.",
                NumericalWarning,
                stacklevel=3,
            )

    # -------------------------------------------------------------- inference

    def _apply(self, fn, X):
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            reset=False,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan" if self.allow_missing else True,
        )
        dtype = self.means_.dtype
        with jax.enable_x64(dtype == np.float64):
            x = jnp.asarray(X, dtype=dtype)
            # (the model resolved on the data: complete data take the
            # complete-data program, with no branch on NaN)
            out = fn(self._model().for_data(x), self._params(), x)
            return np.asarray(out)

    def score_samples(self, X):
        """Log-likelihood of each row of ``X``, ``(n_samples,)``."""
        return self._apply(_log_prob, X)

    def score(self, X, y=None):
        """Mean log-likelihood of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """Posterior probability of each component, ``(n_samples, n_components)``."""
        return self._apply(_posterior, X)

    def predict(self, X):
        """Most probable component of each row, ``(n_samples,)``."""
        return self.predict_proba(X).argmax(axis=1)

    def sample(self, n_samples=1):
        """Draw ``(X (n_samples, n_features), y (n_samples,))``, sorted by component."""
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}.")
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        dtype = self.means_.dtype
        # Draw a power-of-two number of rows and keep the first n_samples
        # (rows are independent draws): one compiled program per size class,
        # not one per n_samples.
        size = 1 << (int(n_samples) - 1).bit_length()
        with jax.enable_x64(dtype == np.float64):
            draws, labels = _sample(self._model(), jax.random.key(seed), self._params(), size)
            draws, labels = np.asarray(draws)[:n_samples], np.asarray(labels)[:n_samples]
        order = np.argsort(labels, kind="stable")
        return draws[order], labels[order]

    def _n_parameters(self):
        check_is_fitted(self)
        return self._model().num_parameters(self._params())

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + 2.0 * self._n_parameters()
