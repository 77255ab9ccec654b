"""Mixtures of experts and mixtures of logistic regressions, fitted by
generalized EM.

Both are conditional models of targets ``y`` given inputs ``x`` with a
discrete latent ``z`` (which expert, or which regression, produced ``y``).
Data are a tuple ``(inputs, targets)`` of arrays with a common leading axis:
``inputs`` ``(n, P)`` and targets ``(n,)`` (or ``(n, T)`` for linear experts).
The E-step is the gradient of the log-normaliser of the ``(n, K)`` log-joint
(:func:`jaxem.models._log_joint.e_step_from_log_joint`); the statistics are
the responsibilities. The M-steps are ECM: every block with a closed form
(linear experts, mixing weights) takes it, and the others (the softmax gate,
softmax experts, logistic coefficients) take a :class:`jaxem.gem.GradientMStep`
that never lowers ``Q + log prior``.

The GEM optimizer's state (Adam moments, L-BFGS curvature pairs) lives in the
parameters pytree, in the ``optimizer_state`` field, so :func:`jaxem.fit` and
:func:`jaxem.em_step` carry it from one EM iteration to the next (a warm
start) and batch it over restarts like any other leaf. It is not a fitted
parameter: :meth:`num_parameters` ignores it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import solve_triangular

from jaxem import gem
from jaxem._numerics import (
    LOG_2PI,
    cholesky_with_jitter,
    default_block_size,
    log_normalize,
    num_rows,
    sum_over_blocks,
    tree_all_finite,
)
from jaxem._validation import is_concrete
from jaxem.models._log_joint import e_step_from_log_joint, expected_log_joint

Array = jax.Array
Data = tuple[Array, Array]  # (inputs (n, P), targets (n,) or (n, T))

EXPERT_TYPES = ("linear", "softmax")
INIT_METHODS = ("gate", "random")


# ------------------------------------------------------------------ pytrees


class MixtureOfExpertsOptimizerState(NamedTuple):
    """The GEM optimizer states a :class:`MixtureOfExperts` carries across EM
    iterations (not fitted parameters).

    Attributes:
      gate: the gate step's optimizer state.
      experts: the expert step's optimizer state (softmax experts); ``()``
        for linear experts, which are fitted in closed form.
    """

    gate: Any
    experts: Any = ()


class MixtureOfExpertsParams(NamedTuple):
    """Parameters of a :class:`MixtureOfExperts` with ``K`` experts on ``P``
    inputs.

    Attributes:
      gate_weights: ``(P, K)``; the gate is ``softmax(x @ gate_weights + gate_bias)``.
      gate_bias: ``(K,)``.
      expert_weights: linear experts: ``(K, P)`` for targets ``(n,)``,
        ``(K, P, T)`` for targets ``(n, T)``; softmax experts: ``(K, P, C)``.
      expert_bias: linear: ``(K,)`` or ``(K, T)``; softmax: ``(K, C)``.
      expert_variances: linear experts' noise variances ``σ²``, ``(K,)`` or
        ``(K, T)`` (one per output); ``None`` for softmax experts.
      optimizer_state: a :class:`MixtureOfExpertsOptimizerState` (warm start;
        not fitted).
    """

    gate_weights: Array
    gate_bias: Array
    expert_weights: Array
    expert_bias: Array
    expert_variances: Array | None
    optimizer_state: MixtureOfExpertsOptimizerState


class MixtureOfExpertsStats(NamedTuple):
    """What the M-step of a :class:`MixtureOfExperts` needs.

    Attributes:
      responsibilities: ``w_i p(z_i = k | x_i, y_i, θ_old)``, ``(n, K)``
        (observation weights included). They concatenate (not add) across
        blocks of observations.
    """

    responsibilities: Array


class MixtureOfLogisticRegressionsParams(NamedTuple):
    """Parameters of a :class:`MixtureOfLogisticRegressions` with ``K``
    components on ``P`` inputs.

    Attributes:
      weights: mixing proportions ``(K,)``, on the simplex.
      coefficients: ``(K, P)``; ``p(y = 1 | x, k) = sigmoid(x @ coefficients[k] + intercepts[k])``.
      intercepts: ``(K,)``.
      optimizer_state: the coefficient step's optimizer state (warm start;
        not fitted).
    """

    weights: Array
    coefficients: Array
    intercepts: Array
    optimizer_state: Any


class MixtureOfLogisticRegressionsStats(NamedTuple):
    """What the M-step of a :class:`MixtureOfLogisticRegressions` needs.

    Attributes:
      responsibilities: ``w_i p(z_i = k | x_i, y_i, θ_old)``, ``(n, K)``
        (observation weights included).
    """

    responsibilities: Array


# --------------------------------------------------------- default M-steps


@functools.cache
def default_gate_step() -> gem.GradientMStep:
    """The gate's default GEM step: 5 L-BFGS updates (zoom line search) per
    EM iteration. One shared object, so equal models compare equal and
    compile once."""
    return gem.GradientMStep(optax.lbfgs(), num_steps=5)


@functools.cache
def default_expert_step() -> gem.GradientMStep:
    """The default GEM step of softmax experts and logistic regressions:
    5 L-BFGS updates per EM iteration (one shared object)."""
    return gem.GradientMStep(optax.lbfgs(), num_steps=5)


# ------------------------------------------------------------ option checks


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def _check_nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return float(value)


def _check_step(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, gem.GradientMStep):
        raise TypeError(f"{name} must be a jaxem.gem.GradientMStep or None; got {value!r}")


# -------------------------------------------------------------- data checks


def split_data(x: Any, targets_name: str = "targets") -> Data:
    """``(inputs, targets)`` from the data, raising ``TypeError`` for anything
    but a pair of arrays."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        got = f"a sequence of {len(x)}" if isinstance(x, (tuple, list)) else type(x).__name__
        raise TypeError(
            f"x must be a tuple (inputs (n, P), {targets_name}) of two arrays with one row "
            f"per observation; got {got}"
        )
    inputs, targets = x
    for name, value in (("inputs", inputs), (targets_name, targets)):
        if not hasattr(value, "ndim"):
            raise TypeError(f"x's {name} must be an array; got {type(value).__name__}")
    return inputs, targets


def _check_inputs(inputs: Array, num_latent: int, latent_name: str) -> None:
    if inputs.ndim != 2:
        hint = " (for one input, reshape with inputs[:, None])" if inputs.ndim == 1 else ""
        raise ValueError(
            f"inputs (x[0]) must be a 2-D array of shape (n, P); got shape "
            f"{tuple(inputs.shape)}{hint}"
        )
    if inputs.shape[1] < 1:
        raise ValueError(f"inputs (x[0]) need at least one column; got shape {tuple(inputs.shape)}")
    n = inputs.shape[0]
    if n < num_latent:
        raise ValueError(
            f"x has {n} observation(s) but {latent_name}={num_latent}: need at least as many "
            "observations as components"
        )


def _check_rows(inputs: Array, targets: Array) -> None:
    if targets.ndim == 0 or targets.shape[0] != inputs.shape[0]:
        rows = "a scalar" if targets.ndim == 0 else f"{targets.shape[0]} rows"
        raise ValueError(
            f"targets (x[1]) have {rows} but inputs (x[0]) have {inputs.shape[0]}: one target "
            "per observation is needed"
        )


def _check_labels(targets: Array, allowed: int, what: str) -> None:
    """Raise unless concrete ``targets`` are integers in ``0 .. allowed − 1``."""
    if not is_concrete(targets):
        return
    values = np.asarray(targets)
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite | (values != np.round(np.where(finite, values, 0.0))))
    if bad.size:
        raise ValueError(
            f"{what} must be integers; {bad.size} are not, the first is "
            f"targets[{bad[0]}] = {values[bad[0]]}"
        )
    bad = np.flatnonzero((values < 0) | (values >= allowed))
    if bad.size:
        raise ValueError(
            f"{what} must lie in 0..{allowed - 1}; {bad.size} do not, the first is "
            f"targets[{bad[0]}] = {values[bad[0]]:g}"
        )


def _check_shape(value: Any, expected: tuple[int, ...], name: str, why: str) -> None:
    shape = tuple(jnp.shape(value))
    if shape != expected:
        raise ValueError(f"params.{name} must have shape {expected} ({why}); got {shape}")


def _check_positive(value: Any, name: str) -> None:
    if value is None or not is_concrete(value):
        return
    array = np.asarray(value)
    bad = np.flatnonzero(~(array > 0) | ~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"params.{name} must be finite and positive; {bad.size} are not, the first is "
            f"{array.ravel()[bad[0]]}"
        )


# ---------------------------------------------------------------- numerics


def _gaussian_log_prior(value: Array, precision: float) -> Array:
    """``Σ log N(v | 0, 1 / precision)`` over the entries (``0`` for no prior)."""
    if precision == 0.0:
        return jnp.zeros((), value.dtype)
    size = value.size
    return (
        -0.5 * precision * jnp.sum(jnp.square(value)) + 0.5 * size * (math.log(precision) - LOG_2PI)
    ).astype(value.dtype)


def _input_moments(inputs: Array, weights: Array | None) -> tuple[Array, Array]:
    """Weighted mean and variance per input column (variance 1 for constant
    columns)."""
    w = jnp.ones(inputs.shape[0], inputs.dtype) if weights is None else weights
    total = jnp.sum(w)
    mean = (w @ inputs) / total
    variance = (w @ jnp.square(inputs - mean)) / total
    return mean, jnp.where(variance > 0, variance, jnp.ones_like(variance))


def anchored_gate(
    key: Array, inputs: Array, num_experts: int, weights: Array | None = None
) -> tuple[Array, Array]:
    """A random gate that splits the inputs among ``K`` anchor observations.

    The gate logits ``−‖(x − a_k) / s‖² / 2`` (``a_k`` random distinct
    observations, ``s`` the inputs' standard deviations) are linear in ``x``
    up to a term shared by all experts, so ``softmax(x V + c)`` with these
    ``V`` and ``c`` is a soft nearest-anchor partition of the input space.

    Returns:
      ``(gate_weights (P, K), gate_bias (K,))``.
    """
    n = inputs.shape[0]
    mean, variance = _input_moments(inputs, weights)
    p = None if weights is None else weights / jnp.sum(weights)
    anchors = inputs[jax.random.choice(key, n, (num_experts,), replace=False, p=p)]  # (K, P)
    direction = (anchors - mean) / variance  # (K, P)
    bias = -direction @ mean - 0.5 * jnp.sum(direction * (anchors - mean), axis=1)
    return direction.T, bias


def weighted_least_squares(
    inputs: Array,
    targets: Array,
    resp: Array,
    variances: Array | None = None,
    l2: float = 0.0,
    reg_covar: float = 0.0,
) -> tuple[Array, Array, Array]:
    """``K`` weighted linear regressions in closed form (each with an
    unpenalised intercept).

    For each component ``k`` and output ``t``, minimises
    ``Σ_i r_ik (y_it − x_i w_kt − b_kt)² / σ²_kt + l2 ‖w_kt‖²`` with the given
    variances ``σ²`` (the ridge term is the Gaussian prior
    ``w ~ N(0, I / l2)``), then sets the variances to the weighted mean
    squared residuals plus ``reg_covar``. Regressions are solved about each
    component's weighted input mean (no ``XᵀX`` of raw inputs, so float32
    stays accurate), over row blocks that bound temporary memory, with
    Cholesky factors that get jitter when the inputs are collinear under the
    weights, so the result is always finite (an empty component gets zero
    weights, the bias shrunk to 0 and the variance ``reg_covar``).

    Args:
      inputs: ``(n, P)``.
      targets: ``(n, T)``.
      resp: weighted responsibilities ``(n, K)``.
      variances: current ``σ²`` ``(K, T)`` (needed only when ``l2 > 0``).
      l2: precision of the Gaussian prior on the weights.
      reg_covar: added to the variances.

    Returns:
      ``(weights (K, P, T), bias (K, T), variances (K, T))``.
    """
    dtype = inputs.dtype
    (n, dim), width, k = inputs.shape, targets.shape[1], resp.shape[1]
    counts = jnp.sum(resp, axis=0) + 10.0 * jnp.finfo(dtype).eps  # (K,)
    mean_x = (resp.T @ inputs) / counts[:, None]  # (K, P)
    mean_y = (resp.T @ targets) / counts[:, None]  # (K, T)
    # Row blocks bound the (K, rows, P) temporaries of the centred moments.
    block_rows = default_block_size(n, k * (dim + width))

    def centred(x_block: Array, y_block: Array) -> tuple[Array, Array]:
        return x_block[None] - mean_x[:, None], y_block[None] - mean_y[:, None]  # (K, rows, ·)

    def moments(x_block: Array, y_block: Array, r_block: Array) -> tuple[Array, Array]:
        centred_x, centred_y = centred(x_block, y_block)
        weighted_x = r_block.T[:, :, None] * centred_x
        return (
            jnp.einsum("knp,knq->kpq", weighted_x, centred_x),  # (K, P, P)
            jnp.einsum("knp,knt->kpt", weighted_x, centred_y),  # (K, P, T)
        )

    scatter, cross = sum_over_blocks(moments, (inputs, targets, resp), block_rows)
    eye = jnp.eye(dim, dtype=dtype)
    if l2 > 0.0:
        # One system per output: the ridge scales with that output's variance.
        gram = scatter[:, None] + (l2 * variances)[:, :, None, None] * eye  # (K, T, P, P)
        rhs = jnp.swapaxes(cross, 1, 2)[..., None]  # (K, T, P, 1)
    else:
        gram, rhs = scatter, cross  # (K, P, P), (K, P, T)
    factors, _ = cholesky_with_jitter(gram)
    half = solve_triangular(factors, rhs, lower=True)
    solution = solve_triangular(jnp.swapaxes(factors, -1, -2), half, lower=False)
    weights = jnp.swapaxes(solution[..., 0], 1, 2) if l2 > 0.0 else solution  # (K, P, T)
    bias = mean_y - jnp.einsum("kp,kpt->kt", mean_x, weights)

    def squares(x_block: Array, y_block: Array, r_block: Array) -> Array:
        centred_x, centred_y = centred(x_block, y_block)
        residual = centred_y - jnp.einsum("knp,kpt->knt", centred_x, weights)
        return jnp.einsum("nk,knt->kt", r_block, jnp.square(residual))  # (K, T)

    residual_squares = sum_over_blocks(squares, (inputs, targets, resp), block_rows)
    return weights, bias, residual_squares / counts[:, None] + reg_covar


def _targets_matrix(targets: Array) -> Array:
    return targets[:, None] if targets.ndim == 1 else targets


# ------------------------------------------------------------ the experts


@dataclasses.dataclass(frozen=True)
class MixtureOfExperts:
    """A mixture of experts (Jacobs et al. 1991) with a softmax gate, fitted by
    generalized EM.

    The gate chooses an expert given the inputs,
    ``g_k(x) = softmax(x V + c)_k``, and the chosen expert models the target:

    - ``expert="linear"``: linear-Gaussian regression,
      ``y | x, k ~ N(x W_k + b_k, diag(σ²_k))``, targets ``(n,)`` or ``(n, T)``.
      The experts' M-step is weighted least squares in closed form; the gate
      takes gradient steps (ECM).
    - ``expert="softmax"``: multinomial logistic classifiers,
      ``p(y = c | x, k) = softmax(x B_k + d_k)_c``, targets ``(n,)`` holding
      class labels ``0 .. C − 1`` (as integers or integer-valued floats). The
      gate and the experts take gradient steps.

    Data are ``x = (inputs (n, P), targets)``. The E-step gives the
    responsibilities ``p(z_i = k | x_i, y_i)`` from the log-joint
    ``log g_k(x_i) + log p(y_i | x_i, k)``. Each gradient M-step is a
    :class:`jaxem.gem.GradientMStep`: any optax optimizer, a fixed number of
    updates per EM iteration, never lowering ``Q + log prior``, its state
    carried in ``params.optimizer_state`` from one EM iteration to the next
    (``reset=True`` in the step starts afresh each time).

    The model is conditional: it has no distribution over inputs, so
    :meth:`sample` is replaced by :meth:`sample_targets`.

    Args:
      num_experts: ``K >= 1``.
      expert: ``"linear"`` or ``"softmax"``.
      num_classes: ``C >= 2`` for softmax experts; ``None`` for linear ones.
      gate_step: the gate's GEM step (``None``: 5 L-BFGS updates,
        :func:`default_gate_step`).
      expert_step: the softmax experts' GEM step (``None``: 5 L-BFGS
        updates); must be ``None`` for linear experts (closed form).
      gate_l2: precision of a Gaussian prior ``N(0, 1 / gate_l2)`` on each
        gate weight (MAP; ``0``: no prior). The gate bias is not penalised.
      expert_l2: precision of a Gaussian prior ``N(0, 1 / expert_l2)`` on
        each expert weight (``0``: none); the expert biases are not
        penalised. Linear experts then solve a ridge regression with the
        previous variances and update the variances after it (ECM).
      reg_covar: added to the linear experts' variances after each M-step
        (keeps an expert that fits a few points exactly finite).
      init_method: ``"gate"`` (a random soft partition of the inputs among
        ``K`` random anchor observations, see :func:`anchored_gate`; the
        experts are fitted to that partition) or ``"random"`` (a near-uniform
        gate; linear experts fitted to random responsibilities, softmax
        experts with random weights).

    Examples:
      Two regimes of a piecewise-linear function, split at ``x = 0``:

      >>> import jax, jax.numpy as jnp, jaxem
      >>> u = jnp.linspace(-2.0, 2.0, 200)
      >>> noise = 0.05 * jax.random.normal(jax.random.key(0), (200,))
      >>> targets = jnp.where(u < 0, 1.0 + 2.0 * u, 1.0 - u) + noise
      >>> inputs = u[:, None]
      >>> model = jaxem.MixtureOfExperts(num_experts=2)
      >>> result = jaxem.fit(model, (inputs, targets), key=jax.random.key(1), num_restarts=4)
      >>> sorted(round(float(w), 1) for w in result.params.expert_weights[:, 0])
      [-1.0, 2.0]
      >>> model.gate_probabilities(result.params, inputs).shape
      (200, 2)

    References:
      Jacobs, R. A., Jordan, M. I., Nowlan, S. J. and Hinton, G. E. (1991).
      Adaptive mixtures of local experts. Neural Computation 3, 79-87.
      Jordan, M. I. and Jacobs, R. A. (1994). Hierarchical mixtures of experts
      and the EM algorithm. Neural Computation 6, 181-214.
    """

    num_experts: int
    expert: str = "linear"
    num_classes: int | None = None
    gate_step: gem.GradientMStep | None = None
    expert_step: gem.GradientMStep | None = None
    gate_l2: float = 0.0
    expert_l2: float = 0.0
    reg_covar: float = 1e-6
    init_method: str = "gate"

    m_step_uses_data: ClassVar[bool] = True
    stats_per_observation: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "num_experts", _check_count(self.num_experts, "num_experts", 1))
        if self.expert not in EXPERT_TYPES:
            raise ValueError(f"expert must be one of {EXPERT_TYPES}; got {self.expert!r}")
        if self.expert == "softmax":
            if self.num_classes is None:
                raise ValueError(
                    "expert='softmax' needs num_classes (the number of classes C >= 2)"
                )
            object.__setattr__(
                self, "num_classes", _check_count(self.num_classes, "num_classes", 2)
            )
        elif self.num_classes is not None:
            raise ValueError(
                f"num_classes is for expert='softmax'; linear experts take num_classes=None "
                f"(got {self.num_classes!r})"
            )
        _check_step(self.gate_step, "gate_step")
        _check_step(self.expert_step, "expert_step")
        if self.gate_step is None:
            object.__setattr__(self, "gate_step", default_gate_step())
        if self.expert == "linear" and self.expert_step is not None:
            raise ValueError(
                "expert_step is for expert='softmax'; linear experts are fitted in closed form "
                "(weighted least squares), so pass expert_step=None"
            )
        if self.expert == "softmax" and self.expert_step is None:
            object.__setattr__(self, "expert_step", default_expert_step())
        for name in ("gate_l2", "expert_l2", "reg_covar"):
            object.__setattr__(self, name, _check_nonnegative(getattr(self, name), name))
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any) -> None:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(inputs (n, P),
        targets)`` with targets ``(n,)`` or ``(n, T)`` (linear) or class labels
        ``(n,)`` in ``0 .. C − 1`` (softmax; values checked when concrete)."""
        inputs, targets = split_data(x)
        _check_inputs(inputs, self.num_experts, "num_experts")
        _check_rows(inputs, targets)
        if self.expert == "linear":
            if targets.ndim not in (1, 2) or (targets.ndim == 2 and targets.shape[1] < 1):
                raise ValueError(
                    "targets (x[1]) of linear experts must have shape (n,) or (n, T) with T >= 1; "
                    f"got shape {tuple(targets.shape)}"
                )
        else:
            if targets.ndim != 1:
                raise ValueError(
                    "targets (x[1]) of softmax experts must be class labels of shape (n,); got "
                    f"shape {tuple(targets.shape)}"
                )
            _check_labels(targets, self.num_classes, "class labels (targets, x[1])")

    def _expert_shapes(self, dim: int, targets: Array) -> tuple[Any, Any, Any]:
        """Shapes of ``expert_weights``, ``expert_bias``, ``expert_variances``."""
        k = self.num_experts
        if self.expert == "softmax":
            c = self.num_classes
            return (k, dim, c), (k, c), None
        if targets.ndim == 1:
            return (k, dim), (k,), (k,)
        width = targets.shape[1]
        return (k, dim, width), (k, width), (k, width)

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only for concrete arrays)."""
        if not isinstance(params, MixtureOfExpertsParams):
            raise TypeError(
                f"params must be a MixtureOfExpertsParams (model.init builds one); got "
                f"{type(params).__name__}"
            )
        inputs, targets = split_data(x)
        dim, k = inputs.shape[1], self.num_experts
        why = f"P={dim} inputs, num_experts={k}"
        _check_shape(params.gate_weights, (dim, k), "gate_weights", why)
        _check_shape(params.gate_bias, (k,), "gate_bias", why)
        weights, bias, variances = self._expert_shapes(dim, targets)
        if self.expert == "softmax":
            why = f"{why}, num_classes={self.num_classes}"
        else:
            shape = "(n,)" if targets.ndim == 1 else f"(n, {targets.shape[1]})"
            why = f"{why}, targets of shape {shape}"
        _check_shape(params.expert_weights, weights, "expert_weights", why)
        _check_shape(params.expert_bias, bias, "expert_bias", why)
        if variances is None:
            if params.expert_variances is not None:
                raise ValueError("params.expert_variances must be None for softmax experts")
        else:
            if params.expert_variances is None:
                raise ValueError(
                    f"params.expert_variances must be an array of shape {variances} for linear "
                    "experts; got None"
                )
            _check_shape(params.expert_variances, variances, "expert_variances", why)
            _check_positive(params.expert_variances, "expert_variances")
        if not isinstance(params.optimizer_state, MixtureOfExpertsOptimizerState):
            raise TypeError(
                "params.optimizer_state must be a MixtureOfExpertsOptimizerState (model.init "
                f"builds one); got {type(params.optimizer_state).__name__}"
            )

    # ------------------------------------------------------------- pieces

    def gate_log_probabilities(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """``log g_k(x_i)``, ``(n, K)``."""
        return jax.nn.log_softmax(inputs @ params.gate_weights + params.gate_bias, axis=1)

    def gate_probabilities(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """The gate ``g_k(x_i) = p(z_i = k | x_i)``, ``(n, K)``.

        Args:
          params: :class:`MixtureOfExpertsParams`.
          inputs: ``(n, P)``.
        """
        return jax.nn.softmax(inputs @ params.gate_weights + params.gate_bias, axis=1)

    def _linear_means(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """Each expert's mean ``(n, K, T)`` (``T = 1`` for univariate targets)."""
        weights, bias = params.expert_weights, params.expert_bias
        if bias.ndim == 1:
            weights, bias = weights[..., None], bias[:, None]
        return jnp.einsum("np,kpt->nkt", inputs, weights) + bias

    def _class_log_probabilities(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """``log p(y = c | x_i, k)``, ``(n, K, C)``."""
        logits = jnp.einsum("np,kpc->nkc", inputs, params.expert_weights) + params.expert_bias
        return jax.nn.log_softmax(logits, axis=2)

    def expert_log_likelihoods(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """``log p(y_i | x_i, z_i = k)``, ``(n, K)``."""
        inputs, targets = split_data(x)
        if self.expert == "softmax":
            labels = jax.nn.one_hot(targets.astype(jnp.int32), self.num_classes, dtype=inputs.dtype)
            return jnp.einsum("nkc,nc->nk", self._class_log_probabilities(params, inputs), labels)
        variances = params.expert_variances
        if variances.ndim == 1:
            variances = variances[:, None]
        residual = _targets_matrix(targets)[:, None, :] - self._linear_means(params, inputs)
        return -0.5 * jnp.sum(
            LOG_2PI + jnp.log(variances) + jnp.square(residual) / variances, axis=2
        )

    def log_joint(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """``log p(y_i, z_i = k | x_i) = log g_k(x_i) + log p(y_i | x_i, k)``,
        ``(n, K)`` (differentiable in ``params``)."""
        inputs, _ = split_data(x)
        return self.gate_log_probabilities(params, inputs) + self.expert_log_likelihoods(params, x)

    # ------------------------------------------------------------- the contract

    def init(self, key: Array, x: Data, weights: Array | None = None) -> MixtureOfExpertsParams:
        """Parameters for one restart (see ``init_method``), with fresh
        optimizer states.

        Args:
          key: PRNG key.
          x: ``(inputs (n, P), targets)``.
          weights: optional ``(n,)`` observation weights.
        """
        inputs, targets = split_data(x)
        dtype = inputs.dtype
        n, dim = inputs.shape
        k = self.num_experts
        gate_key, resp_key, expert_key = jax.random.split(key, 3)
        if self.init_method == "gate":
            gate_weights, gate_bias = anchored_gate(gate_key, inputs, k, weights)
            resp = jax.nn.softmax(inputs @ gate_weights + gate_bias, axis=1)
        else:
            _, variance = _input_moments(inputs, weights)
            scale = 0.01 / jnp.sqrt(variance)
            gate_weights = scale[:, None] * jax.random.normal(gate_key, (dim, k), dtype)
            gate_bias = jnp.zeros(k, dtype)
            resp = jax.random.uniform(resp_key, (n, k), dtype)
            resp = resp / jnp.sum(resp, axis=1, keepdims=True)
        gate_weights, gate_bias = gate_weights.astype(dtype), gate_bias.astype(dtype)
        if self.expert == "linear":
            if weights is not None:
                resp = resp * weights[:, None]
            expert_weights, expert_bias, variances = weighted_least_squares(
                inputs, _targets_matrix(targets), resp, reg_covar=self.reg_covar
            )
            if targets.ndim == 1:
                expert_weights, expert_bias = expert_weights[..., 0], expert_bias[:, 0]
                variances = variances[:, 0]
            experts_state = ()
        else:
            _, variance = _input_moments(inputs, weights)
            # Small experts when the gate splits the inputs (the first M-step
            # fits each to its region); otherwise experts that differ (a
            # standard-normal logit scale), so the restart is off the
            # symmetric point where all experts agree.
            spread = 0.01 if self.init_method == "gate" else 1.0 / math.sqrt(dim)
            scale = spread / jnp.sqrt(variance)
            c = self.num_classes
            expert_weights = scale[None, :, None] * jax.random.normal(
                expert_key, (k, dim, c), dtype
            )
            expert_bias = jnp.zeros((k, c), dtype)
            variances = None
            experts_state = self.expert_step.init((expert_weights, expert_bias))
        state = MixtureOfExpertsOptimizerState(
            self.gate_step.init((gate_weights, gate_bias)), experts_state
        )
        return MixtureOfExpertsParams(
            gate_weights, gate_bias, expert_weights, expert_bias, variances, state
        )

    def e_step(
        self, params: MixtureOfExpertsParams, x: Data, weights: Array | None = None
    ) -> tuple[MixtureOfExpertsStats, Array]:
        """Responsibilities and the summed log-likelihood.

        Args:
          params: current parameters.
          x: ``(inputs (n, P), targets)``.
          weights: optional ``(n,)`` observation weights.

        Returns:
          ``(stats, log_likelihood)``: :class:`MixtureOfExpertsStats` (the
          weighted responsibilities ``(n, K)``), and
          ``Σ_i w_i log p(y_i | x_i)``.
        """
        resp, total = e_step_from_log_joint(self.log_joint(params, x), weights)
        return MixtureOfExpertsStats(resp), total

    def expected_log_joint(
        self, params: MixtureOfExpertsParams, stats: MixtureOfExpertsStats, x: Data
    ) -> Array:
        """``Q(θ, θ_old) = Σ_ik r_ik log p(y_i, z_i = k | x_i, θ)`` for
        ``params`` = θ (the responsibilities in ``stats`` came from θ_old)."""
        return expected_log_joint(stats.responsibilities, self.log_joint(params, x))

    def m_step(
        self,
        stats: MixtureOfExpertsStats,
        params: MixtureOfExpertsParams,
        x: Data,
        weights: Array | None = None,
    ) -> MixtureOfExpertsParams:
        """ECM: gate by the gate step on ``Q_gate + log p(gate)``; linear
        experts in closed form, softmax experts by the expert step.

        ``Q`` separates into a gate term and an expert term, so each block is
        improved on its own and the sum never decreases.
        """
        del weights  # already in the responsibilities
        inputs, targets = split_data(x)
        resp = stats.responsibilities

        def gate_objective(gate: tuple[Array, Array]) -> Array:
            log_gate = jax.nn.log_softmax(inputs @ gate[0] + gate[1], axis=1)
            return expected_log_joint(resp, log_gate) + _gaussian_log_prior(gate[0], self.gate_l2)

        (gate_weights, gate_bias), gate_state = self.gate_step.update(
            gate_objective,
            (params.gate_weights, params.gate_bias),
            params.optimizer_state.gate,
        )
        if self.expert == "linear":
            variances = params.expert_variances
            univariate = variances.ndim == 1
            expert_weights, expert_bias, variances = weighted_least_squares(
                inputs,
                _targets_matrix(targets),
                resp,
                variances[:, None] if univariate else variances,
                self.expert_l2,
                self.reg_covar,
            )
            if univariate:
                expert_weights, expert_bias = expert_weights[..., 0], expert_bias[:, 0]
                variances = variances[:, 0]
            experts_state = params.optimizer_state.experts
        else:
            labels = jax.nn.one_hot(targets.astype(jnp.int32), self.num_classes, dtype=inputs.dtype)

            def expert_objective(experts: tuple[Array, Array]) -> Array:
                logits = jnp.einsum("np,kpc->nkc", inputs, experts[0]) + experts[1]
                log_lik = jnp.einsum("nkc,nc->nk", jax.nn.log_softmax(logits, axis=2), labels)
                return expected_log_joint(resp, log_lik) + _gaussian_log_prior(
                    experts[0], self.expert_l2
                )

            (expert_weights, expert_bias), experts_state = self.expert_step.update(
                expert_objective,
                (params.expert_weights, params.expert_bias),
                params.optimizer_state.experts,
            )
            variances = None
        return MixtureOfExpertsParams(
            gate_weights,
            gate_bias,
            expert_weights,
            expert_bias,
            variances,
            MixtureOfExpertsOptimizerState(gate_state, experts_state),
        )

    def is_finite(self, params: MixtureOfExpertsParams) -> Array:
        """Whether the fitted parameters are finite (a scalar boolean; the
        optimizer state may hold inf, e.g. a line search's initial value)."""
        return tree_all_finite(params._replace(optimizer_state=()))

    def with_optimizer_state(self, params: MixtureOfExpertsParams) -> MixtureOfExpertsParams:
        """``params`` with fresh optimizer states (for parameters set by hand,
        e.g. ``params._replace(...)`` or a ``MixtureOfExpertsParams(...,
        optimizer_state=None)``)."""
        gate = self.gate_step.init((params.gate_weights, params.gate_bias))
        experts = (
            ()
            if self.expert == "linear"
            else self.expert_step.init((params.expert_weights, params.expert_bias))
        )
        return params._replace(optimizer_state=MixtureOfExpertsOptimizerState(gate, experts))

    def log_prob(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """Per-observation ``log p(y_i | x_i)``, ``(n,)``."""
        return log_normalize(self.log_joint(params, x), axis=1)[0]

    def posterior(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """Responsibilities ``p(z_i = k | x_i, y_i)``, ``(n, K)`` (the gate
        :meth:`gate_probabilities` is the prior ``p(z_i = k | x_i)``)."""
        return log_normalize(self.log_joint(params, x), axis=1)[1]

    def log_prior(self, params: MixtureOfExpertsParams) -> Array:
        """``log p(θ)``: the Gaussian priors on the gate and expert weights
        (``0`` without them)."""
        return _gaussian_log_prior(params.gate_weights, self.gate_l2) + _gaussian_log_prior(
            params.expert_weights, self.expert_l2
        )

    def predict(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """The predictive mean ``E[y | x]`` for linear experts, ``(n,)`` or
        ``(n, T)``; class probabilities ``p(y = c | x)`` for softmax experts,
        ``(n, C)``.

        Args:
          params: :class:`MixtureOfExpertsParams`.
          inputs: ``(n, P)``.
        """
        gate = self.gate_probabilities(params, inputs)
        if self.expert == "softmax":
            return jnp.einsum(
                "nk,nkc->nc", gate, jnp.exp(self._class_log_probabilities(params, inputs))
            )
        mean = jnp.einsum("nk,nkt->nt", gate, self._linear_means(params, inputs))
        return mean[:, 0] if params.expert_bias.ndim == 1 else mean

    def sample_targets(
        self, key: Array, params: MixtureOfExpertsParams, inputs: Array
    ) -> tuple[Array, Array]:
        """One target per input row from the model.

        Args:
          key: PRNG key.
          params: :class:`MixtureOfExpertsParams`.
          inputs: ``(n, P)``.

        Returns:
          ``(targets, labels)``: targets ``(n,)`` or ``(n, T)`` (linear), or
          int32 class labels ``(n,)`` (softmax); the chosen experts ``(n,)``.
        """
        gate_key, draw_key = jax.random.split(key)
        n = inputs.shape[0]
        labels = jax.random.categorical(
            gate_key, self.gate_log_probabilities(params, inputs), axis=1
        )
        rows = jnp.arange(n)
        if self.expert == "softmax":
            log_probs = self._class_log_probabilities(params, inputs)[rows, labels]  # (n, C)
            return jax.random.categorical(draw_key, log_probs, axis=1).astype(jnp.int32), labels
        means = self._linear_means(params, inputs)[rows, labels]  # (n, T)
        variances = params.expert_variances
        scale = jnp.sqrt(variances if variances.ndim == 2 else variances[:, None])[labels]
        targets = means + scale * jax.random.normal(draw_key, means.shape, means.dtype)
        return (targets[:, 0] if variances.ndim == 1 else targets), labels

    def sample(self, key: Array, params: MixtureOfExpertsParams, n: int) -> Any:
        """Not available: the model is conditional on its inputs.

        Raises:
          TypeError: always; use :meth:`sample_targets` with inputs.
        """
        raise TypeError(
            "MixtureOfExperts models targets given inputs and has no distribution over inputs: "
            "draw targets with model.sample_targets(key, params, inputs)"
        )

    def num_parameters(self, params: MixtureOfExpertsParams) -> int:
        """Free parameters: ``(P + 1)(K − 1)`` for the gate, plus
        ``K (P + 2) T`` for linear experts or ``K (P + 1)(C − 1)`` for softmax
        ones (the optimizer state is not counted)."""
        dim, k = jnp.shape(params.gate_weights)
        gate = (dim + 1) * (k - 1)
        if self.expert == "softmax":
            return int(gate + k * (dim + 1) * (self.num_classes - 1))
        width = 1 if jnp.ndim(params.expert_bias) == 1 else jnp.shape(params.expert_bias)[1]
        return int(gate + k * (dim + 2) * width)

    def diagnose(
        self, stats: MixtureOfExpertsStats, params: MixtureOfExpertsParams
    ) -> dict[str, Array]:
        """``{"collapsed": (K,)}``: experts responsible for less than a
        thousandth of an average observation's weight."""
        return {"collapsed": _collapsed(stats.responsibilities)}


def _collapsed(resp: Array) -> Array:
    counts = jnp.sum(resp, axis=0)
    average = jnp.sum(counts) / jnp.maximum(num_rows(resp), 1)
    return counts < 1e-3 * average


# -------------------------------------------- mixture of logistic regressions


@dataclasses.dataclass(frozen=True)
class MixtureOfLogisticRegressions:
    """A finite mixture of binary logistic regressions, fitted by generalized
    EM.

    ``p(y | x) = Σ_k π_k Bernoulli(y | sigmoid(x β_k + b_k))``, with mixing
    weights ``π`` that do not depend on the inputs (a
    :class:`MixtureOfExperts` with softmax experts lets them). Data are
    ``x = (inputs (n, P), labels (n,))`` with labels in ``{0, 1}``. The M-step
    is ECM: the weights in closed form (normalised responsibilities), the
    coefficients by ``step`` (a :class:`jaxem.gem.GradientMStep` on
    ``Q + log prior``, never lowering it, its optimizer state carried in
    ``params.optimizer_state``).

    Args:
      num_components: ``K >= 1``.
      step: the coefficients' GEM step (``None``: 5 L-BFGS updates,
        :func:`default_expert_step`).
      l2: precision of a Gaussian prior ``N(0, 1 / l2)`` on each coefficient
        (MAP; ``0``: none). Intercepts are not penalised. With separable
        data the maximum-likelihood coefficients are infinite; a small
        ``l2`` keeps them finite.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> inputs = jax.random.normal(jax.random.key(0), (300, 2))
      >>> labels = (inputs[:, 0] + inputs[:, 1] > 0).astype(jnp.float32)
      >>> model = jaxem.MixtureOfLogisticRegressions(num_components=2, l2=1.0)
      >>> result = jaxem.fit(model, (inputs, labels), key=jax.random.key(1), num_restarts=2)
      >>> result.params.coefficients.shape
      (2, 2)
      >>> bool(jnp.all(jnp.isfinite(model.predict(result.params, inputs))))
      True
    """

    num_components: int
    step: gem.GradientMStep | None = None
    l2: float = 0.0

    m_step_uses_data: ClassVar[bool] = True
    stats_per_observation: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(
            self, "num_components", _check_count(self.num_components, "num_components", 1)
        )
        _check_step(self.step, "step")
        if self.step is None:
            object.__setattr__(self, "step", default_expert_step())
        object.__setattr__(self, "l2", _check_nonnegative(self.l2, "l2"))

    def check_data(self, x: Any) -> None:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(inputs (n, P),
        labels (n,))`` with labels in ``{0, 1}`` (values checked when
        concrete)."""
        inputs, labels = split_data(x, "labels")
        _check_inputs(inputs, self.num_components, "num_components")
        _check_rows(inputs, labels)
        if labels.ndim != 1:
            raise ValueError(f"labels (x[1]) must have shape (n,); got shape {tuple(labels.shape)}")
        _check_labels(labels, 2, "labels (x[1]) of a logistic regression (0 or 1)")

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, MixtureOfLogisticRegressionsParams):
            raise TypeError(
                "params must be a MixtureOfLogisticRegressionsParams (model.init builds one); "
                f"got {type(params).__name__}"
            )
        inputs, _ = split_data(x, "labels")
        dim, k = inputs.shape[1], self.num_components
        why = f"P={dim} inputs, num_components={k}"
        _check_shape(params.weights, (k,), "weights", why)
        _check_shape(params.coefficients, (k, dim), "coefficients", why)
        _check_shape(params.intercepts, (k,), "intercepts", why)
        if is_concrete(params.weights):
            w = np.asarray(params.weights, dtype=float)
            if not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-4:
                raise ValueError(
                    "params.weights must be finite, non-negative and sum to 1; got "
                    f"{np.array2string(w, precision=4)}"
                )

    def _logits(self, coefficients: Array, intercepts: Array, inputs: Array) -> Array:
        return inputs @ coefficients.T + intercepts  # (n, K)

    def component_log_likelihoods(
        self, params: MixtureOfLogisticRegressionsParams, x: Data
    ) -> Array:
        """``log p(y_i | x_i, z_i = k)``, ``(n, K)``."""
        inputs, labels = split_data(x, "labels")
        return _bernoulli_log_likelihoods(
            self._logits(params.coefficients, params.intercepts, inputs), labels
        )

    def log_joint(self, params: MixtureOfLogisticRegressionsParams, x: Data) -> Array:
        """``log π_k + log p(y_i | x_i, k)``, ``(n, K)``."""
        return jnp.log(params.weights) + self.component_log_likelihoods(params, x)

    def init(
        self, key: Array, x: Data, weights: Array | None = None
    ) -> MixtureOfLogisticRegressionsParams:
        """Equal weights, random coefficients (standard normal in units of
        each input's standard deviation, divided by ``√P``), zero intercepts,
        and a fresh optimizer state.

        Args:
          key: PRNG key.
          x: ``(inputs (n, P), labels (n,))``.
          weights: optional ``(n,)`` observation weights (for the inputs'
            scale).
        """
        inputs, _ = split_data(x, "labels")
        dtype = inputs.dtype
        dim = inputs.shape[1]
        k = self.num_components
        _, variance = _input_moments(inputs, weights)
        coefficients = jax.random.normal(key, (k, dim), dtype) / jnp.sqrt(variance * dim)
        intercepts = jnp.zeros(k, dtype)
        state = self.step.init((coefficients, intercepts))
        return MixtureOfLogisticRegressionsParams(
            jnp.full(k, 1.0 / k, dtype), coefficients, intercepts, state
        )

    def e_step(
        self, params: MixtureOfLogisticRegressionsParams, x: Data, weights: Array | None = None
    ) -> tuple[MixtureOfLogisticRegressionsStats, Array]:
        """Responsibilities ``(n, K)`` and the summed log-likelihood
        ``Σ_i w_i log p(y_i | x_i)``."""
        resp, total = e_step_from_log_joint(self.log_joint(params, x), weights)
        return MixtureOfLogisticRegressionsStats(resp), total

    def expected_log_joint(
        self,
        params: MixtureOfLogisticRegressionsParams,
        stats: MixtureOfLogisticRegressionsStats,
        x: Data,
    ) -> Array:
        """``Q(θ, θ_old)`` at ``params`` = θ (``stats`` from θ_old)."""
        return expected_log_joint(stats.responsibilities, self.log_joint(params, x))

    def m_step(
        self,
        stats: MixtureOfLogisticRegressionsStats,
        params: MixtureOfLogisticRegressionsParams,
        x: Data,
        weights: Array | None = None,
    ) -> MixtureOfLogisticRegressionsParams:
        """ECM: weights in closed form, coefficients by the GEM step."""
        del weights  # already in the responsibilities
        inputs, labels = split_data(x, "labels")
        resp = stats.responsibilities
        counts = jnp.sum(resp, axis=0) + 10.0 * jnp.finfo(resp.dtype).eps
        mixing = counts / jnp.sum(counts)

        def objective(theta: tuple[Array, Array]) -> Array:
            log_lik = _bernoulli_log_likelihoods(self._logits(*theta, inputs), labels)
            return expected_log_joint(resp, log_lik) + _gaussian_log_prior(theta[0], self.l2)

        (coefficients, intercepts), state = self.step.update(
            objective, (params.coefficients, params.intercepts), params.optimizer_state
        )
        return MixtureOfLogisticRegressionsParams(mixing, coefficients, intercepts, state)

    def is_finite(self, params: MixtureOfLogisticRegressionsParams) -> Array:
        """Whether the fitted parameters are finite (a scalar boolean; the
        optimizer state may hold inf)."""
        return tree_all_finite(params._replace(optimizer_state=()))

    def with_optimizer_state(
        self, params: MixtureOfLogisticRegressionsParams
    ) -> MixtureOfLogisticRegressionsParams:
        """``params`` with a fresh optimizer state (for parameters set by hand)."""
        return params._replace(
            optimizer_state=self.step.init((params.coefficients, params.intercepts))
        )

    def log_prob(self, params: MixtureOfLogisticRegressionsParams, x: Data) -> Array:
        """Per-observation ``log p(y_i | x_i)``, ``(n,)``."""
        return log_normalize(self.log_joint(params, x), axis=1)[0]

    def posterior(self, params: MixtureOfLogisticRegressionsParams, x: Data) -> Array:
        """Responsibilities ``p(z_i = k | x_i, y_i)``, ``(n, K)``."""
        return log_normalize(self.log_joint(params, x), axis=1)[1]

    def log_prior(self, params: MixtureOfLogisticRegressionsParams) -> Array:
        """``log p(θ)``: the Gaussian prior on the coefficients (``0`` without)."""
        return _gaussian_log_prior(params.coefficients, self.l2)

    def predict(self, params: MixtureOfLogisticRegressionsParams, inputs: Array) -> Array:
        """``p(y = 1 | x) = Σ_k π_k sigmoid(x β_k + b_k)``, ``(n,)``.

        Args:
          params: :class:`MixtureOfLogisticRegressionsParams`.
          inputs: ``(n, P)``.
        """
        logits = self._logits(params.coefficients, params.intercepts, inputs)
        return jax.nn.sigmoid(logits) @ params.weights

    def sample_targets(
        self, key: Array, params: MixtureOfLogisticRegressionsParams, inputs: Array
    ) -> tuple[Array, Array]:
        """One label per input row: ``(labels (n,) int32 in {0, 1}, components (n,))``."""
        component_key, label_key = jax.random.split(key)
        n = inputs.shape[0]
        components = jax.random.categorical(component_key, jnp.log(params.weights), shape=(n,))
        logits = self._logits(params.coefficients, params.intercepts, inputs)[
            jnp.arange(n), components
        ]
        labels = jax.random.bernoulli(label_key, jax.nn.sigmoid(logits))
        return labels.astype(jnp.int32), components

    def sample(self, key: Array, params: MixtureOfLogisticRegressionsParams, n: int) -> Any:
        """Not available: the model is conditional on its inputs.

        Raises:
          TypeError: always; use :meth:`sample_targets` with inputs.
        """
        raise TypeError(
            "MixtureOfLogisticRegressions models labels given inputs and has no distribution "
            "over inputs: draw labels with model.sample_targets(key, params, inputs)"
        )

    def num_parameters(self, params: MixtureOfLogisticRegressionsParams) -> int:
        """Free parameters: ``K − 1`` weights and ``K (P + 1)`` coefficients
        and intercepts (the optimizer state is not counted)."""
        k, dim = jnp.shape(params.coefficients)
        return int(k - 1 + k * (dim + 1))

    def diagnose(
        self, stats: MixtureOfLogisticRegressionsStats, params: MixtureOfLogisticRegressionsParams
    ) -> dict[str, Array]:
        """``{"collapsed": (K,)}``: components responsible for less than a
        thousandth of an average observation's weight."""
        return {"collapsed": _collapsed(stats.responsibilities)}


def _bernoulli_log_likelihoods(logits: Array, labels: Array) -> Array:
    """``y log σ(η) + (1 − y) log σ(−η)`` for logits ``(n, K)`` and labels ``(n,)``."""
    y = labels[:, None]
    return y * jax.nn.log_sigmoid(logits) + (1.0 - y) * jax.nn.log_sigmoid(-logits)
