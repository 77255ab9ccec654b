"""Linear dynamical systems (linear-Gaussian state-space models) fitted by EM.

States ``z_t`` (``S`` dimensions) follow linear-Gaussian dynamics driven by
optional inputs ``u_t`` (``P`` features), and emissions ``y_t`` (``D``
dimensions) are linear-Gaussian in the state and the inputs:

    ``z_0 ~ N(m_0, S_0)``,
    ``z_t = A z_{t−1} + B u_t + b + N(0, Q)`` for ``t >= 1``,
    ``y_t = H z_t + D u_t + d + N(0, R)``.

EM is Shumway and Stoffer's (1982; Ghahramani and Hinton 1996): the E-step
is the Kalman filter and Rauch-Tung-Striebel smoother of
:mod:`jaxem.inference` (sequential or parallel in time), summarised by the
expected second moments of ``(z_t, z_{t−1}, u_t, 1)`` and ``(y_t, z_t, u_t,
1)``; the M-step is two linear regressions and their residual covariances,
in closed form.

**Data** are a batch of sequences, as :class:`jaxem.HMM` takes them: an
array ``(B, T, D)`` of ``B`` sequences of ``T`` steps, or ``(values (B, T,
D), lengths (B,))`` for sequences of different lengths padded to ``T``. A
model with inputs (``input_dim = P >= 1``) takes them as
:class:`jaxem.InputDrivenHMM` does: ``(values, inputs (B, T, P))`` or
``(values, inputs, lengths)``, ``inputs[:, t]`` driving the move into step
``t`` and the emission of step ``t`` (``inputs[:, 0]`` enters the emission
only). Sequences are the engine's rows: statistics are additive over
sequences (chunked, sharded, streamed and online fits split the batch by
sequences), observation weights are per sequence, and padding never changes
a result.

**Missing values.** NaN in the values means missing, coordinate by
coordinate: a step may be partly observed, and a step with nothing observed
is a pure prediction step. EM treats the missing coordinates of partly
observed steps as latent too (their conditional moments given the state and
the observed coordinates enter the emission statistics exactly), and leaves
steps with nothing observed out of the emission statistics (they carry no
information about the emission parameters); either way each iteration
never lowers the observed-data likelihood. A sequence with no observed value
is allowed (its states are predicted from the model alone; it adds nothing
to the log-likelihood); data with no observed value at all are refused.
Inputs must be finite at every valid step.

The likelihood is invariant under a change of basis of the state (``z →
T z`` for invertible ``T``), so ``A``, ``H`` and the state covariances are
identified only up to such a transform; predictions, the log-likelihood and
the emissions' autocovariances are not.

References:
  Shumway, R. H. and Stoffer, D. S. (1982). An approach to time series
  smoothing and forecasting using the EM algorithm. Journal of Time Series
  Analysis 3(4), 253-264.

  Ghahramani, Z. and Hinton, G. E. (1996). Parameter estimation for linear
  dynamical systems. Technical report CRG-TR-96-2, University of Toronto.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from jaxem import gem
from jaxem._model import Model
from jaxem._numerics import cholesky_with_jitter, frame_scale, symmetrize
from jaxem._stats import reduce_over_rows
from jaxem._validation import check_number, is_concrete
from jaxem.inference._kalman import (
    highest_precision,
    kalman_log_likelihood,
    kalman_posterior_sample,
    kalman_smoother,
    masked_emission,
)
from jaxem.models._hmm import check_lengths

Array = jax.Array

COVARIANCE_TYPES = ("full", "diag")
PARAMETER_NAMES = (
    "initial_mean",
    "initial_covariance",
    "dynamics_weights",
    "dynamics_input_weights",
    "dynamics_bias",
    "dynamics_covariance",
    "emission_weights",
    "emission_input_weights",
    "emission_bias",
    "emission_covariance",
)
# Parameters whose values depend on the basis of the state space.
_STATE_BASIS = (
    "initial_mean",
    "initial_covariance",
    "dynamics_weights",
    "dynamics_input_weights",
    "dynamics_bias",
    "dynamics_covariance",
    "emission_weights",
)


class LinearGaussianSSMParams(NamedTuple):
    """Parameters of a :class:`jaxem.LinearGaussianSSM` with ``S`` states,
    ``D`` emission dimensions and ``P`` inputs (``P = 0``: the input weights
    are empty arrays).

    Attributes:
      initial_mean: ``(S,)``, ``m_0``.
      initial_covariance: ``(S, S)``, ``S_0``.
      dynamics_weights: ``(S, S)``, ``A``.
      dynamics_input_weights: ``(S, P)``, ``B``.
      dynamics_bias: ``(S,)``, ``b``.
      dynamics_covariance: ``(S, S)``, ``Q`` (diagonal for
        ``dynamics_covariance_type="diag"``).
      emission_weights: ``(D, S)``, ``H``.
      emission_input_weights: ``(D, P)``, ``D``.
      emission_bias: ``(D,)``, ``d``.
      emission_covariance: ``(D, D)``, ``R`` (diagonal for
        ``emission_covariance_type="diag"``).
    """

    initial_mean: Array
    initial_covariance: Array
    dynamics_weights: Array
    dynamics_input_weights: Array
    dynamics_bias: Array
    dynamics_covariance: Array
    emission_weights: Array
    emission_input_weights: Array
    emission_bias: Array
    emission_covariance: Array


class LinearGaussianSSMStats(NamedTuple):
    """Expected sufficient statistics of a linear-Gaussian state-space
    model, weighted by the sequences' weights and additive over sequences.

    With the regressors ``φ_t = (z_{t−1}, u_t, 1)`` of the dynamics and
    ``ψ_t = (z_t, u_t, 1)`` of the emissions (``K = S + P + 1`` entries),
    expectations under the posterior of the states and the missing values:

    Attributes:
      initial_sum: ``(S,)``, ``Σ_b E[z_{b,0}]``.
      initial_outer: ``(S, S)``, ``Σ_b E[z_{b,0} z_{b,0}ᵀ]``.
      dynamics_regressors: ``(K, K)``, ``Σ E[φ_t φ_tᵀ]`` over transitions.
      dynamics_cross: ``(S, K)``, ``Σ E[z_t φ_tᵀ]``.
      dynamics_targets: ``(S, S)``, ``Σ E[z_t z_tᵀ]`` over transitions.
      emission_regressors: ``(K, K)``, ``Σ E[ψ_t ψ_tᵀ]`` over steps with an
        observed value.
      emission_cross: ``(D, K)``, ``Σ E[(y_t − d) ψ_tᵀ] / s``, in the frame
        of the parameters they were computed under: about their emission
        bias ``d`` (so that a large common offset of the data does not
        cancel in float32) and divided by a power of two ``s >= 1`` of the
        size of their emission weights and noise (so that sums of squares
        of data of size 1e18 do not overflow float32; ``s = 1`` for data of
        unit size); :meth:`~jaxem.LinearGaussianSSM.shift_stats` moves them.
      emission_targets: ``(D, D)``, ``Σ E[(y_t − d)(y_t − d)ᵀ] / s²``.
      num_sequences: the sequences' total weight, a scalar.
      num_transitions: the transitions' total weight (``Σ_b w_b (L_b − 1)``).
      num_emission_steps: the total weight of the steps with an observed value.
    """

    initial_sum: Array
    initial_outer: Array
    dynamics_regressors: Array
    dynamics_cross: Array
    dynamics_targets: Array
    emission_regressors: Array
    emission_cross: Array
    emission_targets: Array
    num_sequences: Array
    num_transitions: Array
    num_emission_steps: Array


def _is_count(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= minimum


def _completion(emission_covariance: Array, observed: Array) -> tuple[Array, Array]:
    """How the missing coordinates of one step depend on the observed ones
    given the state: ``(G (D, D), C (D, D))`` with ``E[y | z, y_o] = (I − G)
    μ + G y°`` for the emission mean ``μ`` and ``y°`` the values with zeros
    at missing coordinates, and ``Cov[y | z, y_o] = C``. ``G`` has identity
    rows at observed coordinates and ``R_mo R_oo⁻¹`` at missing ones; ``C``
    is ``R_mm − R_mo R_oo⁻¹ R_om`` on the missing block and zero elsewhere
    (one Cholesky factorisation of fixed shape, see
    :func:`jaxem.inference._kalman.masked_emission`)."""
    dim = observed.shape[0]
    o = observed.astype(emission_covariance.dtype)
    eye = jnp.eye(dim, dtype=emission_covariance.dtype)
    _, padded = masked_emission(
        jnp.zeros((dim, 1), emission_covariance.dtype), emission_covariance, observed
    )
    factor = jnp.linalg.cholesky(padded)
    solved = cho_solve((factor, True), eye * o[None, :])  # R̃⁻¹ P_o
    regression = (emission_covariance * o[None, :]) @ solved
    gain = jnp.where(observed[:, None], eye, regression)
    missing = 1.0 - o
    spread = ((eye - gain) @ emission_covariance) * (missing[:, None] * missing[None, :])
    return gain, symmetrize(spread)


def emission_frame(params: LinearGaussianSSMParams) -> tuple[Array, Array]:
    """``(d, s)``: the centre and the power-of-two scale the emission
    statistics are taken in (see :class:`LinearGaussianSSMStats`), from the
    size of the emission weights and noise (the states have unit size)."""
    size = jnp.maximum(
        jnp.max(jnp.abs(params.emission_weights)),
        jnp.sqrt(jnp.max(jnp.abs(jnp.diagonal(params.emission_covariance)))),
    )
    return params.emission_bias, frame_scale(size)


def _regression(
    regressors: Array, cross: Array, previous: Array, free: np.ndarray, count: Array
) -> Array:
    """The weights ``W (rows, K)`` maximising the expected Gaussian
    regression log-likelihood of targets on regressors, given ``Σ E[φφᵀ]``
    ``(K, K)`` and ``Σ E[y φᵀ]`` ``(rows, K)``; the columns not in the
    (static) boolean mask ``free`` stay at ``previous``'s (the others are
    the regression on the free regressors of the targets less the fixed
    part). No data (``count == 0``): ``previous``."""
    if not free.any():
        return previous
    index = np.flatnonzero(free)
    fixed = np.flatnonzero(~free)
    target = cross[:, index]
    if fixed.size:
        target = target - previous[:, fixed] @ regressors[np.ix_(fixed, index)]
    factor, _ = cholesky_with_jitter(symmetrize(regressors[np.ix_(index, index)]))
    solved = cho_solve((factor, True), target.T).T
    weights = previous.at[:, index].set(solved)
    return jnp.where(count > 0, weights, previous)


def _residual_covariance(
    targets: Array, cross: Array, regressors: Array, weights: Array, count: Array
) -> Array:
    """``Σ E[(y − W φ)(y − W φ)ᵀ] / count``."""
    product = weights @ cross.T
    scatter = targets - product - product.T + weights @ regressors @ weights.T
    return symmetrize(scatter) / jnp.maximum(count, jnp.finfo(targets.dtype).tiny)


def _regularize(covariance: Array, reg_covar: float, covariance_type: str) -> Array:
    """``Σ + reg_covar · I`` (its diagonal only for ``"diag"``), with jitter
    where it is singular in the working precision: always a valid
    covariance."""
    dim = covariance.shape[-1]
    eye = jnp.eye(dim, dtype=covariance.dtype)
    if covariance_type == "diag":
        covariance = jnp.maximum(jnp.diagonal(covariance), 0.0) * eye
    covariance = covariance + reg_covar * eye
    factor, jittered = cholesky_with_jitter(covariance)
    return jnp.where(jittered, factor @ factor.T, covariance)


def _check_covariance(value: Any, name: str, dim: int, covariance_type: str = "full") -> None:
    if not is_concrete(value):
        return
    matrix = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"params.{name} contains NaN or inf")
    scale = max(float(np.max(np.abs(matrix))), np.finfo(np.float64).tiny)
    if np.max(np.abs(matrix - matrix.T)) > 1e-5 * scale:
        raise ValueError(f"params.{name} must be symmetric")
    if covariance_type == "diag" and np.any(matrix[~np.eye(dim, dtype=bool)] != 0):
        raise ValueError(f"params.{name} must be diagonal (its covariance type is 'diag')")
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ValueError(f"params.{name} must be positive definite") from None


def _first_bad(host: np.ndarray, mask: np.ndarray) -> tuple[int, tuple[int, ...]]:
    bad = np.argwhere(mask)
    return len(bad), tuple(int(i) for i in bad[0])


@dataclasses.dataclass(frozen=True)
class LinearGaussianSSM(Model):
    """A linear-Gaussian state-space model (linear dynamical system) with
    ``S`` states, fitted by EM, with missing values (NaN) and optional
    inputs.

    ``z_t = A z_{t−1} + B u_t + b + N(0, Q)``, ``y_t = H z_t + D u_t + d +
    N(0, R)``, ``z_0 ~ N(m_0, S_0)`` (see the module and
    :class:`~jaxem.models.LinearGaussianSSMParams`).

    Args:
      state_dim: ``S >= 1``.
      input_dim: ``P >= 0``, the number of inputs per step (``0``: data are
        ``(B, T, D)`` or ``(values, lengths)``; else ``(values, inputs)`` or
        ``(values, inputs, lengths)``).
      dynamics_covariance_type: ``"full"`` or ``"diag"`` (``Q``).
      emission_covariance_type: ``"full"`` or ``"diag"`` (``R``; with
        ``"diag"`` and ``S < D`` the emission model is a factor analyser).
      fixed: names of parameters (fields of
        :class:`~jaxem.models.LinearGaussianSSMParams`) that EM keeps at their
        starting values (``init_params``, or :meth:`init`'s, which starts
        fixed biases and input weights at zero: ``fixed=("dynamics_bias",)``
        is a model without a dynamics bias). The M-step maximises over the
        others given them.
      reg_covar: added to the diagonal of every covariance the M-step
        estimates (``S_0``, ``Q``, ``R``), ``>= 0``.
      parallel: parallel-in-time inference (``lax.associative_scan``)
        instead of ``lax.scan``: fewer sequential steps for long sequences
        on an accelerator, about three times the work (on a CPU, no faster,
        and slower to compile).
      block_size: sequences per E-step block (``None``: chosen from the sizes).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> model = jaxem.LinearGaussianSSM(state_dim=1)
      >>> truth = jaxem.models.LinearGaussianSSMParams(
      ...     jnp.zeros(1), jnp.eye(1), jnp.array([[0.9]]), jnp.zeros((1, 0)), jnp.zeros(1),
      ...     0.1 * jnp.eye(1), jnp.ones((2, 1)), jnp.zeros((2, 0)), jnp.zeros(2), 0.1 * jnp.eye(2))
      >>> keys = jax.random.split(jax.random.key(0), 4)
      >>> y, z = jax.vmap(model.sample, (0, None, None))(keys, truth, 100)  # (4, 100, 2)
      >>> y = y.at[:, 40:50, 0].set(jnp.nan)  # missing values
      >>> result = jaxem.fit(model, y, key=jax.random.key(1), max_iter=50)
      >>> means, covariances = model.smoother(result.params, y)
      >>> means.shape, covariances.shape
      ((4, 100, 1), (4, 100, 1, 1))
      >>> model.impute(result.params, y).shape  # NaN replaced by E[y | observed]
      (4, 100, 2)

    References:
      Shumway, R. H. and Stoffer, D. S. (1982). An approach to time series
      smoothing and forecasting using the EM algorithm. Journal of Time
      Series Analysis 3(4), 253-264.

      Ghahramani, Z. and Hinton, G. E. (1996). Parameter estimation for
      linear dynamical systems. Technical report CRG-TR-96-2, University of
      Toronto.
    """

    state_dim: int
    input_dim: int = 0
    dynamics_covariance_type: str = "full"
    emission_covariance_type: str = "full"
    fixed: tuple[str, ...] = ()
    reg_covar: float = 1e-6
    parallel: bool = False
    block_size: int | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        if not _is_count(self.state_dim, 1):
            raise ValueError(f"state_dim must be a positive integer; got {self.state_dim!r}")
        set_("state_dim", int(self.state_dim))
        if not _is_count(self.input_dim, 0):
            raise ValueError(f"input_dim must be a non-negative integer; got {self.input_dim!r}")
        set_("input_dim", int(self.input_dim))
        for name in ("dynamics_covariance_type", "emission_covariance_type"):
            if getattr(self, name) not in COVARIANCE_TYPES:
                raise ValueError(
                    f"{name} must be one of {COVARIANCE_TYPES}; got {getattr(self, name)!r}"
                )
        fixed = (self.fixed,) if isinstance(self.fixed, str) else self.fixed
        try:
            fixed = tuple(fixed)
        except TypeError:
            raise TypeError(
                f"fixed must be a tuple of parameter names; got {self.fixed!r}"
            ) from None
        unknown = [name for name in fixed if name not in PARAMETER_NAMES]
        if unknown:
            raise ValueError(
                f"fixed names unknown parameters {unknown}; the parameters are {PARAMETER_NAMES}"
            )
        set_("fixed", tuple(name for name in PARAMETER_NAMES if name in fixed))
        set_("reg_covar", check_number(self.reg_covar, "reg_covar", 0.0))
        if not isinstance(self.parallel, (bool, np.bool_)):
            raise TypeError(f"parallel must be True or False; got {self.parallel!r}")
        set_("parallel", bool(self.parallel))
        if self.block_size is not None and not _is_count(self.block_size, 1):
            raise ValueError(
                f"block_size must be a positive integer or None; got {self.block_size!r}"
            )

    # ------------------------------------------------------------ the data

    def _layout(self) -> str:
        if self.input_dim:
            return (
                f"a tuple (values (B, T, D), inputs (B, T, P={self.input_dim})), or (values, "
                "inputs, lengths (B,)) for sequences of different lengths"
            )
        return (
            "an array (B, T, D) of B sequences of T steps, or a tuple (values (B, T, D), "
            "lengths (B,)) for sequences of different lengths"
        )

    def _split(self, x: Any) -> tuple[Any, Any, Any]:
        """``(values, inputs or None, lengths or None)`` as given."""
        if not isinstance(x, tuple):
            return x, None, None
        if self.input_dim:
            return (x[0], x[1], None) if len(x) == 2 else tuple(x)
        return x[0], None, x[1]

    def _unpack(self, x: Any) -> tuple[Array, Array, Array, Array]:
        """``(values (B, T, D), inputs (B, T, P) zero at padded steps,
        lengths (B,) int32, valid (B, T))``."""
        values, inputs, lengths = self._split(x)
        values = jnp.asarray(values)
        batch, num_steps = values.shape[:2]
        if lengths is None:
            lengths = jnp.full((batch,), num_steps, jnp.int32)
        else:
            lengths = jnp.asarray(lengths).astype(jnp.int32)
        valid = jnp.arange(num_steps)[None, :] < lengths[:, None]
        if inputs is None:
            inputs = jnp.zeros((batch, num_steps, 0), values.dtype)
        else:
            inputs = jnp.asarray(inputs).astype(values.dtype)
            inputs = jnp.where(valid[..., None], inputs, jnp.zeros((), values.dtype))
        return values, inputs, lengths, valid

    def check_data(self, x: Any) -> Array:
        """Raise for data of the wrong layout (see the class), values that are
        infinite at valid steps (NaN means missing), inputs that are not
        finite at valid steps, lengths that are not integers in ``1 … T``,
        data without a transition (a sequence of two or more steps) or
        without an observed value; return whether the values are valid.

        Raises:
          TypeError: a list, or a container that does not match the layout.
          ValueError: wrong shapes or values (named by sequence, step and
            coordinate: how many, and the first).
        """
        if isinstance(x, list):
            raise TypeError(f"x must be {self._layout()}; got a list")
        if self.input_dim and not isinstance(x, tuple):
            raise TypeError(
                f"x must be {self._layout()} (the model has input_dim={self.input_dim}); "
                f"got {type(x).__name__}"
            )
        if isinstance(x, tuple) and len(x) not in ((2, 3) if self.input_dim else (2,)):
            raise ValueError(f"x must be {self._layout()}; got a tuple of {len(x)} arrays")
        values, inputs, lengths = self._split(x)
        name = "x[0]" if isinstance(x, tuple) else "x"
        shape = tuple(jnp.shape(values))
        if len(shape) != 3:
            hint = " (one feature: x[..., None]; one sequence: x[None])" if len(shape) == 2 else ""
            raise ValueError(
                f"x must hold sequences as an array (B, T, D) of B sequences of T steps of D "
                f"values; got shape {shape}{hint}"
            )
        batch, num_steps, dim = shape
        if dim < 1:
            raise ValueError(f"x must have at least one value per step; got shape {shape}")
        if num_steps < 2:
            raise ValueError(
                f"x has sequences of {num_steps} step(s): a linear-Gaussian state-space model "
                "needs at least one transition (a sequence of two or more steps)"
            )
        if lengths is not None and jnp.ndim(lengths) != 1:
            raise ValueError(f"lengths must have shape (B,); got {tuple(jnp.shape(lengths))}")
        if inputs is not None:
            got = tuple(jnp.shape(inputs))
            if got != (batch, num_steps, self.input_dim):
                want = (batch, num_steps, self.input_dim)
                raise ValueError(
                    f"inputs (x[1]) must have shape (B, T, P) = {want}, one input vector per "
                    f"step of the values (input_dim={self.input_dim}); got shape {got}"
                )
        parts = [values, inputs, lengths]
        if not all(part is None or is_concrete(part) for part in parts):
            values_, inputs_, _, valid = self._unpack(x)
            ok = jnp.all(~jnp.isinf(values_) | ~valid[..., None])
            return ok & jnp.all(jnp.isfinite(inputs_))
        # Concrete: checked on the host (padding left out).
        host = np.asarray(values)
        counts = np.full(batch, num_steps, np.int64)
        if lengths is not None:
            counts = check_lengths(lengths, width=num_steps)
        valid = (np.arange(num_steps)[None, :] < counts[:, None])[..., None]
        infinite = np.isinf(host) & valid
        if infinite.any():
            count, first = _first_bad(host, infinite)
            where = ", ".join(map(str, first))
            raise ValueError(
                f"{name} contains {count} non-finite value(s) other than NaN at valid steps; the "
                f"first is {name}[{where}] = {host[first]} (NaN marks a missing value; inf is "
                "not a value)"
            )
        if inputs is not None:
            host_inputs = np.asarray(inputs)
            bad = ~np.isfinite(host_inputs) & valid
            if bad.any():
                count, first = _first_bad(host_inputs, bad)
                where = ", ".join(map(str, first))
                raise ValueError(
                    f"inputs (x[1]) contain {count} non-finite value(s) (NaN or inf) at valid "
                    f"steps; the first is x[1][{where}] = {host_inputs[first]} (inputs cannot be "
                    "missing)"
                )
        if int(np.sum(counts - 1)) < 1:
            raise ValueError(
                f"x has {int(counts.sum())} valid step(s), in sequences of one step: a "
                "linear-Gaussian state-space model needs at least one transition (a sequence "
                "of two or more steps)"
            )
        if not np.any(~np.isnan(host) & valid):
            raise ValueError(
                "x has no observed value: every value is missing (NaN) at every valid step"
            )
        return True

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value
        (covariances must be symmetric positive definite)."""
        if not isinstance(params, LinearGaussianSSMParams):
            raise TypeError(
                f"params must be a LinearGaussianSSMParams (model.init builds one); got "
                f"{type(params).__name__}"
            )
        values = self._split(x)[0]
        s, p, d = self.state_dim, self.input_dim, jnp.shape(values)[-1]
        shapes = dict(
            initial_mean=(s,),
            initial_covariance=(s, s),
            dynamics_weights=(s, s),
            dynamics_input_weights=(s, p),
            dynamics_bias=(s,),
            dynamics_covariance=(s, s),
            emission_weights=(d, s),
            emission_input_weights=(d, p),
            emission_bias=(d,),
            emission_covariance=(d, d),
        )
        for name, shape in shapes.items():
            value = getattr(params, name)
            if tuple(jnp.shape(value)) != shape:
                raise ValueError(
                    f"params.{name} must have shape {shape} (state_dim={s}, D={d}, "
                    f"input_dim={p}); got {tuple(jnp.shape(value))}"
                )
            if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
                raise ValueError(f"params.{name} contains NaN or inf")
        _check_covariance(params.initial_covariance, "initial_covariance", s)
        _check_covariance(
            params.dynamics_covariance, "dynamics_covariance", s, self.dynamics_covariance_type
        )
        _check_covariance(
            params.emission_covariance, "emission_covariance", d, self.emission_covariance_type
        )

    def num_observations(self, x: Any) -> Array:
        """The number of valid steps with at least one observed value (BIC's
        ``n``: the model observes steps; its rows are sequences)."""
        values, _, _, valid = self._unpack(x)
        return jnp.sum(valid & jnp.any(~jnp.isnan(values), axis=-1))

    # ----------------------------------------------------------- inference

    def _offsets(self, params: LinearGaussianSSMParams, inputs: Array) -> tuple[Array, Array]:
        """``(B u_t + b (..., T, S), D u_t + d (..., T, D))``."""
        dynamics = inputs @ params.dynamics_input_weights.T + params.dynamics_bias
        emission = inputs @ params.emission_input_weights.T + params.emission_bias
        return dynamics, emission

    def _over_sequences(self, algorithm: Any, params: LinearGaussianSSMParams, x: Any, *keys):
        """``algorithm`` (a :mod:`jaxem.inference` Kalman function) on every
        sequence, vmapped; with the unpacked data."""
        values, inputs, lengths, valid = self._unpack(x)
        dynamics, emission = self._offsets(params, inputs)
        system = (
            params.initial_mean,
            params.initial_covariance,
            params.dynamics_weights,
            params.dynamics_covariance,
            params.emission_weights,
            params.emission_covariance,
        )

        def run(y, c, e, n, *key):
            return algorithm(
                *key,
                *system,
                y,
                dynamics_offsets=c,
                emission_offsets=e,
                length=n,
                parallel=self.parallel,
            )

        out = jax.vmap(run)(values, dynamics, emission, lengths, *keys)
        return out, (values, inputs, lengths, valid)

    def _block_rows(self, x: Any) -> int:
        if self.block_size is not None:
            return self.block_size
        values = self._split(x)[0]
        s, d = self.state_dim, values.shape[-1]
        per_sequence = values.shape[1] * (6 * s * s + 4 * d * d + 4 * (s + d))
        return max(1, (1 << 22) // max(per_sequence, 1))

    @highest_precision
    def e_step(
        self, params: LinearGaussianSSMParams, x: Any, weights: Array | None = None
    ) -> tuple[LinearGaussianSSMStats, Array]:
        """The Kalman smoother on every sequence: the expected statistics and
        ``Σ_b w_b log p(y_b)``.

        Args:
          params: current parameters.
          x: sequences (see the class).
          weights: optional per-sequence weights, ``(B,)``.
        """

        def block(xb: Any, wb: Array | None) -> tuple[LinearGaussianSSMStats, Array]:
            posterior, (values, inputs, lengths, valid) = self._over_sequences(
                kalman_smoother, params, xb
            )
            dtype = posterior.smoothed_means.dtype
            w = jnp.ones(lengths.shape, dtype) if wb is None else wb.astype(dtype)
            per_sequence = jax.vmap(lambda p, y, u, ok: self._sequence_stats(params, p, y, u, ok))(
                posterior, values, inputs, valid
            )
            stats = jax.tree.map(lambda s: jnp.tensordot(w, s, axes=1), per_sequence)
            # A zero-weight sequence adds nothing, even where its density is 0.
            total = jnp.sum(jnp.where(w > 0, w * posterior.log_likelihood, 0.0))
            return stats, total

        return reduce_over_rows(block, (x, weights), self._block_rows(x))

    def _sequence_stats(
        self, params: LinearGaussianSSMParams, posterior: Any, values: Array, inputs: Array, valid
    ) -> LinearGaussianSSMStats:
        """One sequence's (unweighted) statistics."""
        means = posterior.smoothed_means  # (T, S)
        covs = posterior.smoothed_covariances
        dtype = means.dtype
        s = self.state_dim
        num_steps = means.shape[0]
        ones = jnp.ones((num_steps, 1), dtype)
        valid_f = valid.astype(dtype)

        def pad(block: Array, rows: int, cols: int) -> Array:
            return jnp.zeros((rows, cols), dtype).at[: block.shape[0], : block.shape[1]].set(block)

        # Dynamics: φ_t = (z_{t−1}, u_t, 1) for the transitions t = 1 … L − 1.
        moves = valid_f[1:]
        phi = jnp.concatenate([means[:-1], inputs[1:], ones[1:]], axis=1)  # (T − 1, K)
        k = phi.shape[1]
        dynamics_regressors = jnp.einsum("t,ti,tj->ij", moves, phi, phi) + pad(
            jnp.einsum("t,tij->ij", moves, covs[:-1]), k, k
        )
        dynamics_cross = jnp.einsum("t,ti,tj->ij", moves, means[1:], phi) + pad(
            jnp.einsum("t,tij->ij", moves, posterior.cross_covariances[1:]), s, k
        )
        dynamics_targets = jnp.einsum("t,tij->ij", moves, covs[1:]) + jnp.einsum(
            "t,ti,tj->ij", moves, means[1:], means[1:]
        )

        # Emissions: ψ_t = (z_t, u_t, 1) at steps with an observed value, the
        # missing coordinates completed given the state and the observed ones.
        observed = ~jnp.isnan(values) & valid[:, None]
        seen = jnp.any(observed, axis=1).astype(dtype)
        psi = jnp.concatenate([means, inputs, ones], axis=1)  # (T, K)
        centre, scale = emission_frame(params)
        coefficients = (
            jnp.concatenate(
                [
                    params.emission_weights,
                    params.emission_input_weights,
                    jnp.zeros((centre.shape[0], 1), dtype),
                ],
                axis=1,
            )
            / scale
        )  # (D, K): E[(y − d) / s | ψ] = coefficients ψ

        def step(mean_psi, cov, y, obs):
            gain, spread = _completion(params.emission_covariance, obs)
            spread = spread / scale / scale
            centred = jnp.where(obs, (y - centre) / scale, 0.0)
            unexplained = coefficients - gain @ coefficients  # (I − G) [H, D, 0] / s
            expected = unexplained @ mean_psi + gain @ centred  # E[(y − d) / s | y_o]
            weights_state = unexplained[:, :s]
            cross = jnp.outer(expected, mean_psi) + pad(weights_state @ cov, expected.shape[0], k)
            outer = jnp.outer(expected, expected) + weights_state @ cov @ weights_state.T + spread
            return cross, outer

        cross, outer = jax.vmap(step)(psi, covs, values, observed)
        emission_regressors = jnp.einsum("t,ti,tj->ij", seen, psi, psi) + pad(
            jnp.einsum("t,tij->ij", seen, covs), k, k
        )
        return LinearGaussianSSMStats(
            initial_sum=means[0],
            initial_outer=covs[0] + jnp.outer(means[0], means[0]),
            dynamics_regressors=dynamics_regressors,
            dynamics_cross=dynamics_cross,
            dynamics_targets=dynamics_targets,
            emission_regressors=emission_regressors,
            emission_cross=jnp.einsum("t,tij->ij", seen, cross),
            emission_targets=symmetrize(jnp.einsum("t,tij->ij", seen, outer)),
            num_sequences=jnp.ones((), dtype),
            num_transitions=jnp.sum(moves),
            num_emission_steps=jnp.sum(seen),
        )

    def _free_columns(self, weights: str, input_weights: str, bias: str) -> np.ndarray:
        """The (static) mask of the free columns of ``[weights, input
        weights, bias]``."""
        s, p = self.state_dim, self.input_dim
        return np.concatenate(
            [
                np.full(s, weights not in self.fixed),
                np.full(p, input_weights not in self.fixed),
                np.full(1, bias not in self.fixed),
            ]
        )

    @highest_precision
    def m_step(
        self, stats: LinearGaussianSSMStats, params: LinearGaussianSSMParams, m_step_state: Any = ()
    ) -> tuple[LinearGaussianSSMParams, Any]:
        """Closed form: the initial mean and covariance from the first
        states' moments; ``[A, B, b]`` and ``Q`` by the regression of ``z_t``
        on ``(z_{t−1}, u_t, 1)``; ``[H, D, d]`` and ``R`` by the regression
        of ``y_t`` on ``(z_t, u_t, 1)`` (each on expected moments), fixed
        parameters kept (the others maximised given them), covariances
        regularised with ``reg_covar``. Returns ``(params, ())``."""
        fixed = self.fixed
        s, p = self.state_dim, self.input_dim
        new = {}

        count = stats.num_sequences
        safe = jnp.maximum(count, jnp.finfo(count.dtype).tiny)
        mean = params.initial_mean if "initial_mean" in fixed else stats.initial_sum / safe
        spread = (
            stats.initial_outer
            - jnp.outer(mean, stats.initial_sum)
            - jnp.outer(stats.initial_sum, mean)
            + count * jnp.outer(mean, mean)
        ) / safe
        new["initial_mean"] = jnp.where(count > 0, mean, params.initial_mean)
        new["initial_covariance"] = jnp.where(
            count > 0,
            _regularize(symmetrize(spread), self.reg_covar, "full"),
            params.initial_covariance,
        )

        previous = jnp.concatenate(
            [params.dynamics_weights, params.dynamics_input_weights, params.dynamics_bias[:, None]],
            axis=1,
        )
        free = self._free_columns("dynamics_weights", "dynamics_input_weights", "dynamics_bias")
        weights = _regression(
            stats.dynamics_regressors, stats.dynamics_cross, previous, free, stats.num_transitions
        )
        new["dynamics_weights"] = weights[:, :s]
        new["dynamics_input_weights"] = weights[:, s : s + p]
        new["dynamics_bias"] = weights[:, -1]
        covariance = _residual_covariance(
            stats.dynamics_targets,
            stats.dynamics_cross,
            stats.dynamics_regressors,
            weights,
            stats.num_transitions,
        )
        new["dynamics_covariance"] = jnp.where(
            stats.num_transitions > 0,
            _regularize(covariance, self.reg_covar, self.dynamics_covariance_type),
            params.dynamics_covariance,
        )

        # (the targets are (y − d_old) / s: the bias column is (d − d_old) / s,
        # zero before the step, and the weights are [H, D] / s)
        centre, scale = emission_frame(params)
        previous = (
            jnp.concatenate(
                [
                    params.emission_weights,
                    params.emission_input_weights,
                    jnp.zeros_like(params.emission_bias)[:, None],
                ],
                axis=1,
            )
            / scale
        )
        free = self._free_columns("emission_weights", "emission_input_weights", "emission_bias")
        weights = _regression(
            stats.emission_regressors,
            stats.emission_cross,
            previous,
            free,
            stats.num_emission_steps,
        )
        new["emission_weights"] = scale * weights[:, :s]
        new["emission_input_weights"] = scale * weights[:, s : s + p]
        new["emission_bias"] = centre + scale * weights[:, -1]
        covariance = _residual_covariance(
            stats.emission_targets,
            stats.emission_cross,
            stats.emission_regressors,
            weights,
            stats.num_emission_steps,
        )
        covariance = (scale * covariance) * scale
        new["emission_covariance"] = jnp.where(
            stats.num_emission_steps > 0,
            _regularize(covariance, self.reg_covar, self.emission_covariance_type),
            params.emission_covariance,
        )
        for name in fixed:
            new[name] = getattr(params, name)
        return LinearGaussianSSMParams(**new), m_step_state

    @highest_precision
    def shift_stats(
        self,
        stats: LinearGaussianSSMStats,
        from_params: LinearGaussianSSMParams,
        to_params: LinearGaussianSSMParams,
    ) -> LinearGaussianSSMStats:
        """Statistics re-expressed in ``to_params``' emission frame (the
        emission moments are taken about the emission bias and scaled, see
        :class:`~jaxem.models.LinearGaussianSSMStats`; the others depend on
        the parameters only through the posterior)."""
        from_centre, from_scale = emission_frame(from_params)
        to_centre, to_scale = emission_frame(to_params)
        ratio = from_scale / to_scale  # (a power of two: exact)
        shift = (to_centre - from_centre) / to_scale  # (D,)
        first = ratio * stats.emission_cross[:, -1]  # Σ E[y − d_from] / s_to
        cross = ratio * stats.emission_cross - jnp.outer(shift, stats.emission_regressors[:, -1])
        outer = jnp.outer(shift, first)
        targets = (
            ratio * ratio * stats.emission_targets
            - outer
            - outer.T
            + stats.num_emission_steps * jnp.outer(shift, shift)
        )
        return stats._replace(emission_cross=cross, emission_targets=targets)

    @highest_precision
    def log_prob(self, params: LinearGaussianSSMParams, x: Any) -> Array:
        """Per-sequence ``log p(y_b)`` of the observed values, ``(B,)`` (the
        Kalman filter alone)."""
        return self._over_sequences(kalman_log_likelihood, params, x)[0]

    def posterior(self, params: LinearGaussianSSMParams, x: Any) -> Array:
        """The smoothed state means ``E[z_{b,t} | y_b]``, ``(B, T, S)`` (at
        padded steps, the last valid step's); :meth:`smoother` gives their
        covariances too."""
        return self.smoother(params, x)[0]

    @highest_precision
    def smoother(self, params: LinearGaussianSSMParams, x: Any) -> tuple[Array, Array]:
        """The smoothed states: ``(means (B, T, S), covariances (B, T, S,
        S))`` of ``p(z_{b,t} | y_b)`` (at padded steps, the last valid
        step's), e.g. for a band of two standard deviations.

        Args:
          params: :class:`~jaxem.models.LinearGaussianSSMParams`.
          x: sequences (see the class).
        """
        posterior = self._over_sequences(kalman_smoother, params, x)[0]
        return posterior.smoothed_means, posterior.smoothed_covariances

    @highest_precision
    def impute(self, params: LinearGaussianSSMParams, x: Any, key: Array | None = None) -> Array:
        """The values with the missing ones filled in: by their conditional
        means ``E[y_t | observed values]`` (the emission of the smoothed state,
        plus what the step's observed coordinates say about its missing ones
        through ``R``), or, with a ``key``, by a draw from their conditional
        distribution (states drawn by forward filtering, backward sampling,
        then the missing values given the states and the observed ones).

        Args:
          params: :class:`~jaxem.models.LinearGaussianSSMParams`.
          x: sequences (see the class).
          key: optional PRNG key.

        Returns:
          ``(B, T, D)``: observed values unchanged, missing ones imputed
          (padded steps as given).
        """
        if key is None:
            posterior, data = self._over_sequences(kalman_smoother, params, x)
            states = posterior.smoothed_means
        else:
            batch = jnp.shape(self._split(x)[0])[0]
            state_key, noise_key = jax.random.split(key)
            states, data = self._over_sequences(
                kalman_posterior_sample, params, x, jax.random.split(state_key, batch)
            )
        values, inputs, _, valid = data
        _, emission = self._offsets(params, inputs)
        observed = ~jnp.isnan(values)
        means = states @ params.emission_weights.T + emission  # (B, T, D)

        def fill(mean, y, obs, noise):
            gain, spread = _completion(params.emission_covariance, obs)
            known = jnp.where(obs, y, 0.0)
            value = mean - gain @ mean + gain @ known
            if noise is None:
                return value
            factor = jnp.linalg.cholesky(spread + jnp.diag(obs.astype(spread.dtype)))
            return value + jnp.where(obs, 0.0, factor @ noise)

        if key is None:
            filled = jax.vmap(jax.vmap(lambda m, y, o: fill(m, y, o, None)))(
                means, values, observed
            )
        else:
            noise = jax.random.normal(noise_key, values.shape, values.dtype)
            filled = jax.vmap(jax.vmap(fill))(means, values, observed, noise)
        keep = observed | ~valid[..., None]
        return jnp.where(keep, values, filled)

    def log_prior(self, params: LinearGaussianSSMParams) -> Array:
        """``0``: the model has no prior (maximum likelihood)."""
        return jnp.zeros((), params.initial_mean.dtype)

    @highest_precision
    def sample(self, key: Array, params: LinearGaussianSSMParams, n: Any) -> tuple[Array, Array]:
        """One sequence: ``(emissions (T, D), states (T, S))``.

        Args:
          key: PRNG key.
          params: :class:`~jaxem.models.LinearGaussianSSMParams`.
          n: the number of steps ``T`` (a model without inputs), or the
            inputs ``(T, P)`` of the steps (a model with inputs).

        Raises:
          TypeError: a number of steps for a model with inputs.
        """
        params = jax.tree.map(jnp.asarray, params)
        dtype = params.initial_mean.dtype
        if self.input_dim:
            if isinstance(n, numbers.Number):
                raise TypeError(
                    "a LinearGaussianSSM with inputs draws sequences given their inputs: pass "
                    f"inputs (T, P={self.input_dim}), not a number of steps; got {n!r}"
                )
            inputs = jnp.asarray(n, dtype)
            if inputs.ndim != 2 or inputs.shape[1] != self.input_dim:
                raise ValueError(
                    f"inputs must have shape (T, P={self.input_dim}); got {tuple(inputs.shape)}"
                )
        else:
            if not _is_count(n, 1):
                raise ValueError(f"n must be a positive number of steps; got {n!r}")
            inputs = jnp.zeros((int(n), 0), dtype)
        dynamics, emission = self._offsets(params, inputs)
        num_steps = inputs.shape[0]
        state_key, emission_key = jax.random.split(key)
        state_noise = jax.random.normal(state_key, (num_steps, self.state_dim), dtype)
        emission_noise = jax.random.normal(
            emission_key, (num_steps, params.emission_bias.shape[0]), dtype
        )
        first = (
            params.initial_mean + jnp.linalg.cholesky(params.initial_covariance) @ state_noise[0]
        )
        factor = jnp.linalg.cholesky(params.dynamics_covariance)

        def step(state, inputs):
            offset, noise = inputs
            following = params.dynamics_weights @ state + offset + factor @ noise
            return following, following

        _, rest = jax.lax.scan(step, first, (dynamics[1:], state_noise[1:]))
        states = jnp.concatenate([first[None], rest])
        noise = emission_noise @ jnp.linalg.cholesky(params.emission_covariance).T
        return states @ params.emission_weights.T + emission + noise, states

    def constraints(self, params: LinearGaussianSSMParams) -> LinearGaussianSSMParams:
        """Real means, weights and biases; a positive-definite initial
        covariance; ``Q`` and ``R`` positive definite (``"full"``) or
        positive diagonal matrices (``"diag"``); the ``fixed`` parameters
        fixed. The change of state basis is not removed (``S²`` free
        coordinates more than :meth:`num_parameters` when no parameter of
        the state side is fixed)."""
        kinds = {name: gem.real for name in PARAMETER_NAMES}
        kinds["initial_covariance"] = gem.positive_definite
        for name, kind in (
            ("dynamics_covariance", self.dynamics_covariance_type),
            ("emission_covariance", self.emission_covariance_type),
        ):
            kinds[name] = gem.positive_diagonal if kind == "diag" else gem.positive_definite
        kinds.update({name: gem.fixed for name in self.fixed})
        return LinearGaussianSSMParams(**kinds)

    def num_parameters(self, params: LinearGaussianSSMParams) -> int:
        """Free parameters: the entries of the parameters that are not fixed
        (a covariance counts its upper triangle, or its diagonal for
        ``"diag"``), less ``S²`` for the change of state basis that leaves
        the likelihood unchanged, when no parameter of the state side is
        fixed."""
        s, p = self.state_dim, self.input_dim
        d = jnp.shape(params.emission_bias)[0]

        def covariance(dim: int, kind: str) -> int:
            return dim if kind == "diag" else dim * (dim + 1) // 2

        sizes = dict(
            initial_mean=s,
            initial_covariance=covariance(s, "full"),
            dynamics_weights=s * s,
            dynamics_input_weights=s * p,
            dynamics_bias=s,
            dynamics_covariance=covariance(s, self.dynamics_covariance_type),
            emission_weights=d * s,
            emission_input_weights=d * p,
            emission_bias=d,
            emission_covariance=covariance(d, self.emission_covariance_type),
        )
        total = sum(size for name, size in sizes.items() if name not in self.fixed)
        if not any(name in self.fixed for name in _STATE_BASIS):
            total -= s * s
        return int(total)

    # ------------------------------------------------------ initialisation

    @highest_precision
    def init(self, key: Array, x: Any, weights: Array | None = None) -> LinearGaussianSSMParams:
        """Parameters for one restart, from the data's moments.

        The emission bias and input weights are the (weighted) regression of
        each coordinate on the inputs over its observed values; ``H`` and a
        diagonal ``R`` are probabilistic PCA of the residuals (missing values
        counted as zero residuals), so that the states start with unit
        variance; the states' factor-analysis means then give ``A`` by least
        squares over the transitions, perturbed at random by ``key`` (so
        restarts differ) and shrunk to singular values of at most 0.98
        (stable), and ``Q`` from its residuals. ``m_0`` is the first states'
        mean and ``S_0 = I``. Fixed biases and input weights start at zero;
        fixed matrices keep these values.

        Args:
          key: PRNG key.
          x: sequences (see the class).
          weights: optional per-sequence weights ``(B,)``.
        """
        values, inputs, _, valid = self._unpack(jax.tree.map(jnp.asarray, x))
        dtype = values.dtype
        s, p = self.state_dim, self.input_dim
        batch, num_steps, dim = values.shape
        w = jnp.ones((batch,), dtype) if weights is None else jnp.asarray(weights, dtype)
        step_weights = w[:, None] * valid.astype(dtype)  # (B, T)
        observed = ~jnp.isnan(values) & valid[..., None]
        observed_weights = step_weights[..., None] * observed.astype(dtype)  # (B, T, D)
        known = jnp.where(observed, values, 0.0)
        tiny = jnp.finfo(dtype).tiny
        eps = jnp.finfo(dtype).eps

        # Emission bias and input weights: per coordinate, regression on (u, 1).
        regressors = jnp.concatenate([inputs, jnp.ones((batch, num_steps, 1), dtype)], axis=-1)
        use = jnp.asarray(
            np.r_[
                np.full(p, "emission_input_weights" not in self.fixed),
                "emission_bias" not in self.fixed,
            ],
            dtype,
        )
        regressors = regressors * use
        level = jnp.sum(observed_weights * known, axis=(0, 1)) / jnp.maximum(
            jnp.sum(observed_weights, axis=(0, 1)), tiny
        )
        level = level * use[-1]
        scale = frame_scale(jnp.max(jnp.abs(jnp.where(observed, known - level, 0.0))))
        scaled = jnp.where(observed, (known - level) / scale, 0.0)

        def coordinate(ow, target):
            gram = jnp.einsum("bt,bti,btj->ij", ow, regressors, regressors)
            moment = jnp.einsum("bt,bti,bt->i", ow, regressors, target)
            factor, _ = cholesky_with_jitter(gram + eps * jnp.eye(p + 1, dtype=dtype))
            return cho_solve((factor, True), moment)

        coefficients = jax.vmap(coordinate, in_axes=(2, 2))(observed_weights, scaled)  # (D, P+1)
        residual = jnp.where(observed, scaled - regressors @ coefficients.T, 0.0)  # (B, T, D)

        # Probabilistic PCA of the residuals.
        total = jnp.maximum(jnp.sum(step_weights), tiny)
        covariance = jnp.einsum("bt,bti,btj->ij", step_weights, residual, residual) / total
        eigenvalues, eigenvectors = jnp.linalg.eigh(symmetrize(covariance))
        eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
        average = jnp.maximum(jnp.mean(jnp.diagonal(covariance)), eps)
        rank = min(s, dim)
        noise = jnp.mean(eigenvalues[rank:]) if dim > s else 0.1 * average
        loadings = jnp.sqrt(jnp.maximum(eigenvalues[:rank] - noise, 0.05 * average))
        weight_key, dynamics_key = jax.random.split(key)
        emission_weights = (
            jnp.zeros((dim, s), dtype).at[:, :rank].set(eigenvectors[:, :rank] * loadings)
        )
        emission_weights = emission_weights + 0.1 * jnp.sqrt(average) * jax.random.normal(
            weight_key, (dim, s), dtype
        )
        explained = jnp.sum(emission_weights**2, axis=1)
        variances = jnp.diagonal(covariance) - explained
        variances = jnp.maximum(variances, 0.1 * jnp.diagonal(covariance))
        variances = jnp.maximum(variances, 1e-3 * average)
        emission_covariance = jnp.diag(variances)

        # The states' factor-analysis means, and the dynamics from them.
        precision = emission_weights.T / variances  # Hᵀ R⁻¹, (S, D)
        factor, _ = cholesky_with_jitter(
            symmetrize(precision @ emission_weights) + jnp.eye(s, dtype=dtype)
        )
        projection = cho_solve((factor, True), precision)  # (I + Hᵀ R⁻¹ H)⁻¹ Hᵀ R⁻¹
        states = jnp.einsum("sd,btd->bts", projection, residual)
        moves = step_weights[:, 1:]
        before, after = states[:, :-1], states[:, 1:]
        gram = jnp.einsum("bt,bti,btj->ij", moves, before, before)
        moment = jnp.einsum("bt,bti,btj->ij", moves, after, before)
        factor, _ = cholesky_with_jitter(symmetrize(gram) + eps * jnp.eye(s, dtype=dtype))
        dynamics = cho_solve((factor, True), moment.T).T
        if "dynamics_weights" not in self.fixed:
            dynamics = dynamics + 0.2 / np.sqrt(s) * jax.random.normal(dynamics_key, (s, s), dtype)
        left, singular, right = jnp.linalg.svd(dynamics)
        dynamics = (left * jnp.minimum(singular, 0.98)) @ right
        errors = after - jnp.einsum("ij,btj->bti", dynamics, before)
        count = jnp.maximum(jnp.sum(moves), tiny)
        dynamics_covariance = jnp.einsum("bt,bti,btj->ij", moves, errors, errors) / count
        dynamics_covariance = symmetrize(dynamics_covariance) + 0.05 * jnp.eye(s, dtype=dtype)
        if self.dynamics_covariance_type == "diag":
            dynamics_covariance = jnp.diag(jnp.diagonal(dynamics_covariance))
        first_weights = step_weights[:, 0]
        initial_mean = jnp.sum(first_weights[:, None] * states[:, 0], axis=0) / jnp.maximum(
            jnp.sum(first_weights), tiny
        )

        emission_bias = level + scale * coefficients[:, -1]
        return LinearGaussianSSMParams(
            initial_mean=initial_mean,
            initial_covariance=jnp.eye(s, dtype=dtype),
            dynamics_weights=dynamics,
            dynamics_input_weights=jnp.zeros((s, p), dtype),
            dynamics_bias=jnp.zeros((s,), dtype),
            dynamics_covariance=dynamics_covariance,
            emission_weights=scale * emission_weights,
            emission_input_weights=scale * coefficients[:, :p],
            emission_bias=emission_bias,
            emission_covariance=scale**2 * emission_covariance
            + self.reg_covar * jnp.eye(dim, dtype=dtype),
        )
