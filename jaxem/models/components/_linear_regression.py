"""Linear-regression components (a mixture of linear regressions, or
"clusterwise regression") for :class:`jaxem.Mixture`.

The data are pairs ``(inputs, targets)``; component ``k`` says
``y | x, z = k ~ N(x W_k + b_k, diag(σ²_k))``, and the mixing weights do not
depend on ``x`` (for input-dependent weights one wants a mixture of experts).
The M-step is a weighted least-squares (or ridge) solve per component, in
closed form, with the statistics taken about the current predictions so that
float32 stays accurate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln

from jaxem import gem
from jaxem._numerics import (
    LOG_2PI,
    cholesky_with_jitter,
    default_block_size,
    frame_scale,
    symmetrize,
)
from jaxem._stats import reduce_over_rows
from jaxem._validation import check_finite_data, check_number
from jaxem.models.components._checks import check_param_fields, guarded_counts
from jaxem.models.components._component import Component
from jaxem.models.components._regression import (
    check_inputs,
    check_rows,
    split_data,
    targets_matrix,
)

Array = jax.Array


class LinearRegressionParams(NamedTuple):
    """Parameters of ``K`` linear-regression components.

    For ``P`` inputs and targets of shape ``(n,)`` (one target) the shapes
    drop the target axis; for targets ``(n, T)`` they keep it.

    Attributes:
      coefficients: ``W_k``, ``(K, P)`` for one target, ``(K, P, T)`` for
        ``T``; the prediction of component ``k`` is ``inputs @ W_k + b_k``.
      intercepts: ``b_k``, ``(K,)`` or ``(K, T)``; zeros when the component
        has ``fit_intercept=False``.
      variances: noise variances ``σ²_k`` (one per target), ``(K,)`` or
        ``(K, T)``.
    """

    coefficients: Array
    intercepts: Array
    variances: Array


class LinearRegressionStats(NamedTuple):
    """Additive statistics of ``K`` linear-regression components.

    With the design row ``x̃ = [x, 1]`` (``P' = P + 1``; ``x̃ = x``, ``P' = P``
    without an intercept, the intercept last) and the residuals
    ``e_ik = y_i − ŷ_ik`` of the parameters the statistics were computed
    under (so nothing like ``Σ y² − ...`` cancels in the M-step):

    Attributes:
      gram: ``Σ_i r_ik x̃_i x̃_iᵀ``, ``(K, P', P')``.
      cross: ``Σ_i r_ik x̃_i e_ikᵀ``, ``(K, P', T)``.
      sum_squares: ``Σ_i r_ik e_ik²`` per target, ``(K, T)``.
    """

    gram: Array
    cross: Array
    sum_squares: Array


@dataclasses.dataclass(frozen=True)
class LinearRegression(Component):
    """Linear-regression components, for a mixture of linear regressions
    with :class:`jaxem.Mixture`.

    The data are a tuple ``(inputs, targets)`` with ``inputs`` ``(n, P)`` and
    ``targets`` ``(n,)`` or ``(n, T)``. Component ``k`` models
    ``y_t = x W_k[:, t] + b_kt + ε_t`` with independent ``ε_t ~ N(0, σ²_kt)``
    (a variance per component and target). The mixing weights do not depend
    on the inputs, and the inputs are not modelled: ``log_prob`` is
    ``log p(y | x)``.

    The M-step is, per component, the weighted least-squares fit with the
    responsibilities as weights (``r``-weighted ridge regression with
    ``coefficient_precision > 0``), then the weighted mean squared residual
    as the variance, all from additive statistics about the current
    predictions: new coefficients are ``old + solve(Σ r x̃x̃ᵀ, Σ r x̃ e)`` and
    the new residual sum of squares is ``Σ r e² − 2 Δᵀ Σ r x̃ e + Δᵀ (Σ r x̃x̃ᵀ) Δ``,
    which does not cancel near convergence (where ``Δ → 0``). The solve is a
    Cholesky solve; a design that is singular in the working precision (for
    instance an empty component, or fewer observations than coefficients)
    gets diagonal jitter, so the M-step is always finite. The inputs' Gram
    matrix is not centred: in float32, inputs whose mean is large compared
    with their spread should be standardised first (as for any least squares
    in single precision).

    Args:
      fit_intercept: fit ``b_k``; ``False`` holds the intercepts at zero.
      reg_covar: a floor on the variances (in squared target units), as
        :class:`jaxem.Gaussian`'s ``reg_covar`` keeps covariances away from
        singular. A floor rather than an addition keeps each M-step the exact
        maximiser over the allowed variances, so EM stays monotone.
      coefficient_precision: ``λ ≥ 0``. With ``λ > 0``, a conjugate Gaussian
        prior ``W_k[:, t] ~ N(0, σ²_kt / λ · I)`` on the coefficients (not the
        intercepts): the coefficients are the ridge estimates with penalty
        ``λ |W|²`` (scikit-learn's ``Ridge(alpha=λ)`` on the weighted data),
        and the MAP variance is ``(RSS + λ |W|²) / (N_k + P)``.
      variance_prior: ``(a, b)``, both ``> 0``: an inverse-gamma
        ``IG(shape a, scale b)`` prior on every variance, which adds ``2b`` to
        the numerator and ``2(a + 1)`` to the denominator of the variance
        update (keeps a component with few observations from collapsing);
        ``None`` for no prior.

    Raises:
      TypeError: from :meth:`sample`: the model is conditional on inputs; use
        :meth:`sample_targets`.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> inputs = jax.random.uniform(jax.random.key(0), (400, 1), minval=-1.0, maxval=1.0)
      >>> noise = 0.1 * jax.random.normal(jax.random.key(1), (400,))
      >>> lines = jnp.where(jnp.arange(400) % 2 == 0, 2.0 * inputs[:, 0] + 3.0, -inputs[:, 0] - 3.0)
      >>> model = jaxem.Mixture(jaxem.LinearRegression(), num_components=2)
      >>> result = jaxem.fit(model, (inputs, lines + noise), key=jax.random.key(2), num_restarts=4)
      >>> result.params.components.coefficients.shape
      (2, 1)
      >>> sorted(round(float(b)) for b in result.params.components.intercepts)
      [-3, 3]

      Drawing targets for given inputs (labels do not depend on inputs):

      >>> params = result.params
      >>> labels = jax.random.categorical(jax.random.key(3), jnp.log(params.weights), shape=(400,))
      >>> component = model.component
      >>> component.sample_targets(jax.random.key(4), params.components, inputs, labels).shape
      (400,)

    References:
      DeSarbo, W. S. and Cron, W. L. (1988). A maximum likelihood methodology
      for clusterwise linear regression. Journal of Classification 5, 249-282.
    """

    fit_intercept: bool = True
    reg_covar: float = 1e-6
    coefficient_precision: float = 0.0
    variance_prior: tuple[float, float] | None = None

    def __post_init__(self):
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be True or False; got {self.fit_intercept!r}")
        object.__setattr__(self, "fit_intercept", bool(self.fit_intercept))
        for name in ("reg_covar", "coefficient_precision"):
            object.__setattr__(self, name, check_number(getattr(self, name), name, 0.0))
        prior = self.variance_prior
        if prior is not None:
            try:
                shape, scale = (float(v) for v in prior)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    "variance_prior must be a pair (shape, scale) of numbers or None; "
                    f"got {prior!r}"
                ) from error
            if not (shape > 0 and scale > 0 and math.isfinite(shape) and math.isfinite(scale)):
                raise ValueError(
                    f"variance_prior (shape, scale) must both be finite and > 0; got {prior!r}"
                )
            object.__setattr__(self, "variance_prior", (shape, scale))

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a pair
        ``(inputs (n, P), targets (n,) or (n, T))`` (finite, when concrete);
        return whether its values are finite."""
        inputs, targets = split_data(x, "LinearRegression", "(n,) or (n, T)")
        check_inputs(inputs, need_columns=False)
        if targets.ndim not in (1, 2):
            raise ValueError(
                f"targets (x[1]) must have shape (n,) or (n, T); got shape {tuple(targets.shape)}"
            )
        if targets.ndim == 2 and targets.shape[1] < 1:
            raise ValueError(f"targets must have at least one column; got {tuple(targets.shape)}")
        if inputs.shape[1] < 1 and not self.fit_intercept:
            raise ValueError(
                "inputs have no columns and fit_intercept=False: there is nothing to fit; "
                f"got inputs of shape {tuple(inputs.shape)}"
            )
        check_rows(inputs, targets)
        return check_finite_data((inputs, targets))

    def _shapes(self, x: Any, num_components: int) -> dict[str, tuple[int, ...]]:
        inputs, targets = x
        k, p = num_components, inputs.shape[-1]
        if targets.ndim == 1:
            return {"coefficients": (k, p), "intercepts": (k,), "variances": (k,)}
        t = targets.shape[-1]
        return {"coefficients": (k, p, t), "intercepts": (k, t), "variances": (k, t)}

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong structure or shape; for concrete
        arrays also for non-finite values, non-positive variances, and
        non-zero intercepts with ``fit_intercept=False``."""
        if not isinstance(params, LinearRegressionParams):
            raise TypeError(f"params must be a LinearRegressionParams; got {type(params).__name__}")
        described = "one target" if x[1].ndim == 1 else f"T={x[1].shape[-1]} targets"
        context = f"num_components={num_components}, P={x[0].shape[-1]} inputs and {described}"
        if not check_param_fields(params, self._shapes(x, num_components), context):
            return
        if np.any(np.asarray(params.variances) <= 0):
            raise ValueError("params.variances must be positive")
        if not self.fit_intercept and np.any(np.asarray(params.intercepts) != 0):
            raise ValueError("params.intercepts must be zero when fit_intercept=False")

    def features(self, x: Any) -> Array:
        """``[inputs, targets]``, ``(n, P + T)``: the points k-means seeds from."""
        inputs, targets = x
        return jnp.concatenate([inputs, targets_matrix(targets)], axis=1)

    def block_rows(self, x: Any, num_components: int) -> int:
        """Rows per E-step block (a block holds ``(rows, K, P' + 2T)``
        temporaries)."""
        inputs, targets = x
        width = inputs.shape[1] + 1
        targets_width = 1 if targets.ndim == 1 else targets.shape[1]
        return default_block_size(inputs.shape[0], num_components * (width + 2 * targets_width))

    # ------------------------------------------------------------- internals

    def _design(self, inputs: Array) -> Array:
        """``x̃``: the inputs, with a column of ones last when fitting an
        intercept, ``(rows, P')``."""
        if not self.fit_intercept:
            return inputs
        return jnp.concatenate([inputs, jnp.ones((inputs.shape[0], 1), inputs.dtype)], axis=1)

    def _stacked(self, params: LinearRegressionParams) -> Array:
        """Coefficients (and intercepts, last) as ``(K, P', T)``."""
        k, p = params.coefficients.shape[:2]
        weights = params.coefficients.reshape(k, p, -1)
        if not self.fit_intercept:
            return weights
        return jnp.concatenate([weights, params.intercepts.reshape(k, 1, -1)], axis=1)

    def _unstack(self, stacked: Array, variances: Array, like: LinearRegressionParams):
        """``(K, P', T)`` coefficients and ``(K, T)`` variances back in the
        parameters' shapes (the target axis dropped for one target)."""
        p = like.coefficients.shape[1]
        coefficients = stacked[:, :p, :].reshape(like.coefficients.shape)
        if self.fit_intercept:
            intercepts = stacked[:, p, :].reshape(like.intercepts.shape)
        else:
            intercepts = jnp.zeros_like(like.intercepts)
        return LinearRegressionParams(
            coefficients, intercepts, variances.reshape(like.variances.shape)
        )

    def _residuals(self, design: Array, targets: Array, stacked: Array) -> Array:
        """``y − x̃ B_k`` for every component, ``(rows, K, T)``."""
        k, width, t = stacked.shape
        all_coefficients = jnp.transpose(stacked, (1, 0, 2)).reshape(width, k * t)
        predictions = (design @ all_coefficients).reshape(design.shape[0], k, t)
        return targets_matrix(targets)[:, None, :] - predictions

    # ---------------------------------------------------------- log densities

    def prepare(self, params: LinearRegressionParams) -> dict[str, Array]:
        """Per-parameter quantities the log-densities need, once per call."""
        k = params.variances.shape[0]
        variances = params.variances.reshape(k, -1)
        return {
            "stacked": self._stacked(params),
            "precisions": 1.0 / variances,
            "const": -0.5 * jnp.sum(LOG_2PI + jnp.log(variances), axis=1),
        }

    def log_likelihoods(self, prepared: dict[str, Array], x: Any) -> Array:
        """``log N(y_i | x_i W_k + b_k, diag(σ²_k))`` for a block, ``(rows, K)``."""
        inputs, targets = x
        residuals = self._residuals(self._design(inputs), targets, prepared["stacked"])
        return prepared["const"] - 0.5 * jnp.sum(
            jnp.square(residuals) * prepared["precisions"], axis=-1
        )

    def predict(self, params: LinearRegressionParams, inputs: Array) -> Array:
        """Every component's prediction ``inputs @ W_k + b_k``: ``(n, K)`` for
        one target, ``(n, K, T)`` for ``T``."""
        stacked = self._stacked(params)
        k, width, t = stacked.shape
        all_coefficients = jnp.transpose(stacked, (1, 0, 2)).reshape(width, k * t)
        predictions = (self._design(inputs) @ all_coefficients).reshape(inputs.shape[0], k, t)
        return predictions[..., 0] if params.coefficients.ndim == 2 else predictions

    # ------------------------------------------------------------ statistics

    def _frame(self, params: LinearRegressionParams) -> Array:
        """The scale the residuals are measured in: a power of two ``>= 1``
        at least the largest noise standard deviation (so sums of squared
        residuals of targets of size 1e18 do not overflow float32; exact, and
        ``1`` for targets of unit size)."""
        return frame_scale(jnp.sqrt(jnp.max(params.variances)))

    def _moments(self, x: Any, resp: Array, stacked: Array, frame: Array) -> LinearRegressionStats:
        inputs, targets = x
        design = self._design(inputs)
        residuals = self._residuals(design, targets, stacked) / frame  # (rows, K, T)
        return LinearRegressionStats(
            gram=jnp.einsum("rk,rp,rq->kpq", resp, design, design),
            cross=jnp.einsum("rp,rkt->kpt", design, resp[:, :, None] * residuals),
            sum_squares=jnp.einsum("rk,rkt->kt", resp, jnp.square(residuals)),
        )

    def statistics(
        self, x: Any, resp: Array, params: LinearRegressionParams
    ) -> LinearRegressionStats:
        """Moments of a block about the predictions of ``params``, from
        weighted responsibilities ``(rows, K)`` (residuals in the frame of the
        noise's size)."""
        return self._moments(x, resp, self._stacked(params), self._frame(params))

    def shift_statistics(
        self,
        stats: LinearRegressionStats,
        counts: Array,
        from_params: LinearRegressionParams,
        to_params: LinearRegressionParams,
    ) -> LinearRegressionStats:
        """Moments about the residuals of ``from_params`` re-expressed about
        those of ``to_params`` (exact): with ``Δ = B_to − B_from`` the residuals
        become ``e − x̃Δ``, so ``Σ r x̃ e`` becomes ``Σ r x̃ e − G Δ`` and
        ``Σ r e²`` becomes ``Σ r e² − 2 Δᵀ Σ r x̃ e + Δᵀ G Δ`` (``G = Σ r x̃x̃ᵀ``,
        unchanged).

        Args:
          stats: statistics computed under ``from_params``.
          counts: the components' total responsibilities (not needed).
          from_params: the parameters the statistics were computed under.
          to_params: the parameters to express them about.
        """
        del counts
        frame_to = self._frame(to_params)
        ratio = self._frame(from_params) / frame_to
        # Δ in the new frame's units; the statistics moved to that frame.
        delta = (self._stacked(to_params) - self._stacked(from_params)) / frame_to  # (K, P', T)
        gram = stats.gram
        cross = ratio * stats.cross
        moved = jnp.einsum("kpq,kqt->kpt", gram, delta)
        sum_squares = (
            jnp.square(ratio) * stats.sum_squares
            - 2.0 * jnp.sum(delta * cross, axis=1)
            + jnp.sum(delta * moved, axis=1)
        )
        return LinearRegressionStats(gram, cross - moved, sum_squares)

    def maximize(
        self,
        stats: LinearRegressionStats,
        counts: Array,
        params: LinearRegressionParams,
        m_step_state: Any = (),
    ) -> tuple[LinearRegressionParams, Any]:
        """Closed-form coefficients and variances (MLE, or the posterior mode
        with a prior).

        Always finite: a singular design (an empty component, too few
        observations) gets jitter in the Cholesky solve, and the variances
        are at least ``reg_covar`` (and at least ``10 eps`` times the pooled
        residual variance, so ``reg_covar = 0`` stays finite too).
        """
        frame = self._frame(params)
        return self._maximize(stats, counts, self._stacked(params), params, frame), m_step_state

    def _maximize(
        self,
        stats: LinearRegressionStats,
        counts: Array,
        old: Array,
        like: LinearRegressionParams,
        frame: Array,
    ) -> LinearRegressionParams:
        """The closed form, in the statistics' frame (residuals in units of
        ``frame``), scaled back."""
        dtype = stats.gram.dtype
        width = stats.gram.shape[-1]
        num_inputs = like.coefficients.shape[1]
        precision = self.coefficient_precision
        # Ridge penalty λ|W|² on the coefficients, not on the intercept:
        # (G + λJ) Δ = Σ r x̃ e − λ J B_old.
        penalised = jnp.asarray(
            [1.0] * num_inputs + [0.0] * (width - num_inputs), dtype
        )  # J's diagonal, (P',)
        matrix = stats.gram
        rhs = stats.cross
        if precision > 0:
            matrix = matrix + precision * jnp.diag(penalised)
            rhs = rhs - precision * penalised[:, None] * (old / frame)
        factors, _ = cholesky_with_jitter(symmetrize(matrix))
        half = solve_triangular(factors, rhs, lower=True)
        delta = solve_triangular(factors, half, lower=True, trans="T")
        delta = jnp.where(jnp.isfinite(delta), delta, 0.0)  # (in the frame)
        new = old + frame * delta
        # Σ r (e − x̃Δ)² = Σ r e² − 2 Δᵀ Σ r x̃ e + Δᵀ G Δ, per target.
        explained = 2.0 * jnp.sum(delta * stats.cross, axis=1) - jnp.einsum(
            "kpt,kpq,kqt->kt", delta, stats.gram, delta
        )
        residual = jnp.maximum(stats.sum_squares - explained, 0.0)  # (K, T)
        numerator = residual
        denominator = jnp.broadcast_to(counts[:, None], residual.shape)
        squared = jnp.square(frame)
        if precision > 0:
            coefficients = new[:, :num_inputs] / frame
            numerator = numerator + precision * jnp.sum(jnp.square(coefficients), axis=1)
            denominator = denominator + num_inputs
        if self.variance_prior is not None:
            shape, scale = self.variance_prior
            numerator = numerator + 2.0 * scale / squared
            denominator = denominator + 2.0 * (shape + 1.0)
        variances = squared * (numerator / denominator)
        pooled = squared * (
            jnp.sum(residual, axis=0) / jnp.maximum(jnp.sum(counts), jnp.finfo(dtype).tiny)
        )  # (the frame's square last: alone it may be near the largest float)
        floor = jnp.maximum(
            jnp.maximum(self.reg_covar, 10.0 * jnp.finfo(dtype).eps * pooled),
            jnp.finfo(dtype).tiny,
        )
        variances = jnp.maximum(variances, floor)
        return self._unstack(new, variances, like)

    def initialize(
        self, x: Any, resp: Array, weights: Array | None = None
    ) -> LinearRegressionParams:
        """Weighted least-squares fits from responsibilities ``(n, K)`` alone:
        one solve from zero coefficients, then one more about its predictions
        (so the variances come from residuals, without cancellation)."""
        inputs, targets = x
        k, p = resp.shape[1], inputs.shape[1]
        dtype = inputs.dtype
        weighted = resp if weights is None else resp * weights[:, None]
        counts = guarded_counts(jnp.sum(weighted, axis=0), inputs.shape[0])
        if targets.ndim == 1:
            like = LinearRegressionParams(
                jnp.zeros((k, p), dtype), jnp.zeros((k,), dtype), jnp.ones((k,), dtype)
            )
        else:
            t = targets.shape[1]
            like = LinearRegressionParams(
                jnp.zeros((k, p, t), dtype), jnp.zeros((k, t), dtype), jnp.ones((k, t), dtype)
            )
        rows = self.block_rows(x, k)
        stacked = self._stacked(like)
        frame = frame_scale(jnp.max(jnp.abs(targets)))  # (the first residuals are the targets)
        for _ in range(2):
            stats = reduce_over_rows(
                lambda xb, rb, stacked=stacked: self._moments(xb, rb, stacked, frame),
                (x, weighted),
                rows,
            )
            like = self._maximize(stats, counts, stacked, like, frame)
            stacked = self._stacked(like)
        return like

    # ------------------------------------------------------------ the rest

    def log_prior(self, params: LinearRegressionParams) -> Array:
        """``log p(W, σ²)``: the ridge prior ``N(0, σ²/λ · I)`` on each
        coefficient column (when ``coefficient_precision > 0``) and the
        inverse-gamma prior on the variances (when set); ``0.0`` without
        either."""
        dtype = params.variances.dtype
        total = jnp.zeros((), dtype)
        k, p = params.coefficients.shape[:2]
        variances = params.variances.reshape(k, -1)  # (K, T)
        log_variances = jnp.log(variances)
        precision = self.coefficient_precision
        if precision > 0:
            squares = jnp.sum(jnp.square(params.coefficients.reshape(k, p, -1)), axis=1)
            total = total + jnp.sum(
                -0.5 * p * (LOG_2PI - math.log(precision) + log_variances)
                - 0.5 * precision * squares / variances
            )
        if self.variance_prior is not None:
            shape, scale = self.variance_prior
            total = total + jnp.sum(
                shape * math.log(scale)
                - gammaln(jnp.asarray(shape, dtype))
                - (shape + 1.0) * log_variances
                - scale / variances
            )
        return total

    def sample(self, key: Array, params: LinearRegressionParams, labels: Array) -> Any:
        """Not available: the model is conditional on inputs it does not model.

        Raises:
          TypeError: always; draw labels from the weights and call
            :meth:`sample_targets` with inputs of your choice.
        """
        raise TypeError(
            "LinearRegression components model targets given inputs, and cannot draw "
            "inputs: draw labels = jax.random.categorical(key, jnp.log(params.weights), "
            "shape=(n,)) and call model.component.sample_targets(key, "
            "params.components, inputs, labels)"
        )

    def sample_targets(
        self,
        key: Array,
        params: LinearRegressionParams,
        inputs: Array,
        labels: Array,
    ) -> Array:
        """Targets drawn from component ``labels[i]`` at ``inputs[i]``.

        Args:
          key: PRNG key.
          params: the components' parameters.
          inputs: ``(n, P)``.
          labels: ``(n,)`` integer component indices.

        Returns:
          ``(n,)`` for one target, ``(n, T)`` for ``T``.
        """
        predictions = self.predict(params, inputs)  # (n, K) or (n, K, T)
        rows = jnp.arange(inputs.shape[0])
        means = predictions[rows, labels]
        scales = jnp.sqrt(params.variances[labels])
        noise = jax.random.normal(key, means.shape, means.dtype)
        return means + scales * noise

    def constraints(self, params: LinearRegressionParams) -> LinearRegressionParams:
        """Real coefficients, real intercepts (fixed at zero with
        ``fit_intercept=False``) and positive variances."""
        intercepts = gem.real if self.fit_intercept else gem.fixed
        return LinearRegressionParams(gem.real, intercepts, gem.positive)

    def num_parameters(self, params: LinearRegressionParams) -> int:
        """Per component and target: ``P`` coefficients, an intercept when
        fitted, and a variance."""
        k, p = params.coefficients.shape[:2]
        t = 1 if params.coefficients.ndim == 2 else params.coefficients.shape[2]
        return int(k * t * (p + int(self.fit_intercept) + 1))
