"""A drop-in replacement for ``sklearn.decomposition.FactorAnalysis``."""

from __future__ import annotations

import math
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxem._driver import fit as _fit
from jaxem.estimators._gaussian_mixture import NumericalWarning
from jaxem.estimators._missing import ImputeMixin
from jaxem.models._factor import FactorAnalysis as _Model
from jaxem.models._factor import FactorAnalysisParams

SVD_METHODS = ("randomized", "lapack")
# Factor-analysis updates of the loadings and noise per EM iteration: they
# reuse the iteration's statistics (no pass over the data), and cut the EM
# iterations to scikit-learn's maximum from 60 to 7 (10 updates) or 3 (50) on
# n = 1e5, D = 64, q = 8 (a 2-core x86 machine, float64).
INNER_STEPS = 20
ROTATIONS = (None, "varimax", "quartimax")


def _jit_model_fn(name):
    """A jitted ``model.<name>(params, *args)`` with the model static."""

    def call(model, params, *args):
        return getattr(model, name)(params, *args)

    return jax.jit(call, static_argnums=0)


_log_prob = _jit_model_fn("log_prob")
_transform = _jit_model_fn("transform")
_covariance = _jit_model_fn("covariance")
_precision = _jit_model_fn("precision")
_init_with_noise = jax.jit(
    lambda model, x, noise: model.init_with_noise(x, noise), static_argnums=0
)


def orthomax(loadings, gamma, tol=1e-6, max_iter=100):
    """Loadings ``(D, q)`` rotated to maximise the orthomax criterion
    ``Σ_j [Σ_d L_dj⁴ − (γ / D) (Σ_d L_dj²)²]`` (varimax ``γ = 1``, Kaiser
    1958; quartimax ``γ = 0``), by the singular-value iteration of the
    rotation: ``R ← U Vᵀ`` from the SVD of ``Lᵀ (L R)³ − (γ / D) Lᵀ (L R)
    diag(Σ_d (L R)²)``, until the sum of singular values grows by less than
    a relative ``tol``.

    References:
      Kaiser, H. F. (1958). The varimax criterion for analytic rotation in
      factor analysis. Psychometrika 23, 187-200.
    """
    dim, q = loadings.shape
    rotation = np.eye(q)
    criterion = 0.0
    for _ in range(max_iter):
        rotated = loadings @ rotation
        target = rotated**3 - (gamma / dim) * rotated * np.sum(rotated**2, axis=0)
        left, values, right = np.linalg.svd(loadings.T @ target)
        rotation = left @ right
        previous, criterion = criterion, float(np.sum(values))
        if previous != 0.0 and criterion < previous * (1.0 + tol):
            break
    return loadings @ rotation


class FactorAnalysis(ImputeMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Factor analysis fitted by jaxem's EM, with scikit-learn's interface.

    A drop-in for :class:`sklearn.decomposition.FactorAnalysis`: the same
    constructor arguments, fitted attributes, methods and warnings. All
    computation is :func:`jaxem.fit` and :class:`jaxem.FactorAnalysis` (EM,
    Rubin & Thayer 1982; each iteration makes 20 updates of the loadings and
    noise on its statistics, which cost no pass over the data) instead of
    scikit-learn's alternating SVD updates: both maximise the same
    likelihood, so they reach the same covariance ``components_ᵀ components_
    + diag(noise_variance_)`` (the loadings only up to a rotation).
    Convergence is scikit-learn's: the total log-likelihood grew by less than
    ``tol``. The fit runs in the input's dtype (float32 input in float32;
    anything else in float64, which scikit-learn uses for everything): with
    many rows, that rule asks for changes of the mean log-likelihood below
    float32's resolution, so a float32 fit stops where rounding hides the
    change (about 1e-6 of the log-likelihood from the maximum). ``svd_method``
    and ``iterated_power`` are accepted for compatibility and unused (EM
    needs no SVD). NaN in ``X`` is a missing value (EM on the incomplete
    data) unless ``allow_missing=False``.

    Parameters:
      n_components: number of factors ``q >= 1`` (``None``: the number of
        features).
      tol: convergence threshold on the change of the total log-likelihood.
      copy: accepted for compatibility (``X`` is never modified).
      max_iter: EM iterations at most, ``>= 1``.
      noise_variance_init: initial noise variances ``(n_features,)``; the
        initial loadings are then those of maximum likelihood for them.
        ``None``: the closed-form probabilistic PCA of the data covariance.
      svd_method, iterated_power: accepted for compatibility; unused.
      rotation: ``None``, ``"varimax"`` or ``"quartimax"``: an orthogonal
        rotation of the fitted components (it changes neither the covariance
        nor the likelihood).
      random_state: seed (int), ``numpy.random.RandomState`` or ``None``, for
        the perturbation of the initial loadings.
      allow_missing: jaxem extension: NaN in ``X`` is a missing value (at
        random): EM on the incomplete data, densities and factor posteriors
        of the observed coordinates, and :meth:`impute` (the default).
        ``False`` refuses NaN with scikit-learn's ``ValueError``.

    Attributes:
      components_: loadings ``(n_components, n_features)``.
      noise_variance_: ``(n_features,)``.
      mean_: ``(n_features,)``.
      loglike_: the total log-likelihood at every iteration (a list).
      n_iter_: EM iterations run.
      n_features_in_, feature_names_in_: as in scikit-learn.

    Examples:
      >>> import numpy as np, jaxem.estimators
      >>> rng = np.random.default_rng(0)
      >>> x = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(500, 5))
      >>> fa = jaxem.estimators.FactorAnalysis(n_components=2, random_state=0).fit(x)
      >>> fa.components_.shape, fa.transform(x).shape
      ((2, 5), (500, 2))

    References:
      Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor
      analysis. Psychometrika 47, 69-76.
    """

    def __init__(
        self,
        n_components=None,
        *,
        tol=1e-2,
        copy=True,
        max_iter=1000,
        noise_variance_init=None,
        svd_method="randomized",
        iterated_power=3,
        rotation=None,
        random_state=0,
        allow_missing=True,
    ):
        self.n_components = n_components
        self.tol = tol
        self.copy = copy
        self.max_iter = max_iter
        self.noise_variance_init = noise_variance_init
        self.svd_method = svd_method
        self.iterated_power = iterated_power
        self.rotation = rotation
        self.random_state = random_state
        self.allow_missing = allow_missing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = bool(self.allow_missing)
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ---------------------------------------------------------------- checks

    def _check_hyperparameters(self):
        def integer(name, minimum, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"The '{name}' parameter must be an int; got {value!r}.")
            if value < minimum:
                raise ValueError(f"The '{name}' parameter must be >= {minimum}; got {value}.")

        integer("n_components", 1, allow_none=True)
        integer("max_iter", 1)
        integer("iterated_power", 0)
        tol = self.tol
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
            raise ValueError(f"The 'tol' parameter must be a float; got {tol!r}.")
        if not (tol >= 0 and math.isfinite(tol)):
            raise ValueError(f"The 'tol' parameter must be >= 0; got {tol}.")
        if self.svd_method not in SVD_METHODS:
            raise ValueError(
                f"The 'svd_method' parameter must be one of {SVD_METHODS}; got {self.svd_method!r}."
            )
        if self.rotation not in ROTATIONS:
            raise ValueError(
                f"The 'rotation' parameter must be one of {ROTATIONS}; got {self.rotation!r}."
            )
        for name in ("copy", "allow_missing"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(
                    f"The '{name}' parameter must be a bool; got {getattr(self, name)!r}."
                )

    def _validate(self, X, reset):
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2 if reset else 1,
            # (NaN passes to the model when missing values are allowed; it
            # refuses inf itself, and rows with nothing observed)
            ensure_all_finite=(False if reset else "allow-nan") if self.allow_missing else True,
        )

    # ------------------------------------------------------------------ fit

    def _model(self, num_factors=None):
        q = self.components_.shape[0] if num_factors is None else num_factors
        return _Model(num_factors=q, num_inner_steps=INNER_STEPS)

    def _params(self):
        """The fitted (and rotated) parameters as jax arrays."""
        return FactorAnalysisParams(
            jnp.asarray(self.mean_),
            jnp.asarray(self.components_.T),
            jnp.asarray(self.noise_variance_),
        )

    def fit(self, X, y=None):
        """Fit the factor model to ``X`` by EM.

        Returns:
          self.
        """
        self._check_hyperparameters()
        X = self._validate(X, reset=True)
        n, dim = X.shape
        q = dim if self.n_components is None else self.n_components
        if q > dim:
            raise ValueError(
                f"n_components={q} must be at most the number of features, {dim}: a factor "
                "model has at most as many factors as features"
            )
        noise = None
        if self.noise_variance_init is not None:
            noise = np.asarray(self.noise_variance_init, dtype=X.dtype)
            if noise.shape != (dim,):
                raise ValueError(
                    f"noise_variance_init dimension does not match the number of features: "
                    f"{noise.shape} != ({dim},)"
                )
            if not np.all(np.isfinite(noise)) or np.any(noise <= 0):
                raise ValueError("noise_variance_init must be finite and positive")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with jax.enable_x64(X.dtype == np.float64):
            model = self._model(q)
            x = jnp.asarray(X)
            model.check_data(x)  # (before anything compiles)
            init_params = None if noise is None else _init_with_noise(model, x, jnp.asarray(noise))
            result = _fit(
                model,
                x,
                key=jax.random.key(seed),
                max_iter=self.max_iter,
                # scikit-learn's test is on the total log-likelihood
                tol=self.tol / n,
                init_params=init_params,
            )
            result = jax.device_get(result)
        params = result.params
        loadings = np.asarray(params.loadings, dtype=X.dtype)
        if self.rotation is not None:
            gamma = 1.0 if self.rotation == "varimax" else 0.0
            loadings = orthomax(loadings.astype(np.float64), gamma).astype(X.dtype)
        self.components_ = np.ascontiguousarray(loadings.T)
        self.noise_variance_ = np.asarray(params.noise, dtype=X.dtype)
        self.mean_ = np.asarray(params.mean, dtype=X.dtype)
        self.n_iter_ = int(result.num_iter[0])
        self.loglike_ = (np.asarray(result.history[0][: self.n_iter_], float) * n).tolist()
        if bool(result.nonfinite[0]):
            warnings.warn(
                "A non-finite value appeared during EM; the parameters are those of the last "
                "finite iteration. Consider float64 input or scaling the data.",
                NumericalWarning,
                stacklevel=2,
            )
        elif not bool(result.converged[0]):
            warnings.warn(
                "FactorAnalysis did not converge. You might want to increase the number of "
                "iterations.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    # -------------------------------------------------------------- inference

    def _apply(self, fn, X):
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        dtype = self.mean_.dtype
        with jax.enable_x64(dtype == np.float64):
            x = jnp.asarray(X, dtype=dtype)
            # (whether X holds missing values, read off once: one code path compiled)
            return np.asarray(fn(self._model().for_data(x), self._params(), x))

    def transform(self, X):
        """The posterior means of the factors, ``E[z | x]``,
        ``(n_samples, n_components)`` (of the observed coordinates of rows
        with missing values)."""
        return self._apply(_transform, X)

    def score_samples(self, X):
        """Log-likelihood of each row of ``X``, ``(n_samples,)``."""
        return self._apply(_log_prob, X)

    def score(self, X, y=None):
        """Mean log-likelihood of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def get_covariance(self):
        """The model's data covariance ``components_ᵀ components_ +
        diag(noise_variance_)``, ``(n_features, n_features)``."""
        check_is_fitted(self)
        return self._matrix(_covariance)

    def get_precision(self):
        """The model's data precision (inverse covariance), by the Woodbury
        identity, ``(n_features, n_features)``."""
        check_is_fitted(self)
        return self._matrix(_precision)

    def _matrix(self, fn):
        dtype = self.mean_.dtype
        with jax.enable_x64(dtype == np.float64):
            return np.asarray(fn(self._model(), self._params()))

    @property
    def _n_features_out(self):
        """Number of transformed output features."""
        return self.components_.shape[0]
