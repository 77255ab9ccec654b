"""Mixtures of experts: a softmax gate on the inputs, and any conditional
component as the experts.

A mixture of experts (Jacobs et al. 1991) models targets ``y`` given inputs
``x`` through a discrete latent ``z`` (which expert answers): the gate gives
its prior ``p(z = k | x) = softmax(x V + c)_k`` and the chosen expert, a
conditional component, models ``p(y | x, z = k)``. Data are a tuple
``(inputs (n, P), targets)``.

The M-step is ECM: the expected complete-data log-likelihood separates into
a gate part and an expert part. The gate, a softmax regression on soft labels
with no closed form, takes a :class:`jaxem.gem.GradientMStep`; the experts
take their own M-step: closed form for :class:`jaxem.LinearRegression`,
gradient steps for :class:`jaxem.LogisticRegression`,
:class:`jaxem.SoftmaxRegression` and :class:`jaxem.PoissonRegression`. Each
block never lowers its part, so the sum never decreases.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem import gem
from jaxem._model import Model
from jaxem._numerics import num_rows
from jaxem._stats import PerObservation, attach, map_over_rows, reduce_over_rows
from jaxem._validation import check_finite_values, check_int, check_number
from jaxem.inference import discrete_posterior, expected_log_joint
from jaxem.models._mixture import collapsed
from jaxem.models.components._checks import guarded_counts
from jaxem.models.components._component import Component, check_component
from jaxem.models.components._gradient import (
    check_step,
    gaussian_log_prior,
    gradient_m_step,
    softmax_gate_log_probabilities,
)
from jaxem.models.components._regression import input_moments

Array = jax.Array
Data = tuple[Array, Array]  # (inputs (n, P), targets)

INIT_METHODS = ("gate", "random")


class MixtureOfExpertsParams(NamedTuple):
    """Parameters of a :class:`jaxem.MixtureOfExperts` with ``K`` experts on
    ``P`` inputs.

    Attributes:
      gate_weights: ``(P, K)``; the gate is ``softmax(x @ gate_weights + gate_bias)``.
      gate_bias: ``(K,)``.
      experts: the expert component's parameters (leading axis ``K``).
    """

    gate_weights: Array
    gate_bias: Array
    experts: Any


class MixtureOfExpertsStats(NamedTuple):
    """What the M-step of a :class:`jaxem.MixtureOfExperts` needs.

    Attributes:
      counts: ``Σ_i w_i r_ik``, ``(K,)``.
      gate: the weighted responsibilities ``(n, K)`` and the data
        (:class:`~jaxem.PerObservation`: the gate's gradient M-step needs them).
      experts: the expert component's statistics.
      num_observations: number of rows, a scalar.
    """

    counts: Array
    gate: PerObservation
    experts: Any
    num_observations: Array


class MixtureOfExpertsMStepState(NamedTuple):
    """The M-step states a :class:`jaxem.MixtureOfExperts` carries across EM
    iterations (beside the parameters).

    Attributes:
      gate: the gate step's optimizer state.
      experts: the expert component's M-step state (``()`` in closed form).
    """

    gate: Any
    experts: Any


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
    mean, variance = input_moments(inputs, weights)
    p = None if weights is None else weights / jnp.sum(weights)
    anchors = inputs[jax.random.choice(key, n, (num_experts,), replace=False, p=p)]  # (K, P)
    direction = (anchors - mean) / variance  # (K, P)
    bias = -direction @ mean - 0.5 * jnp.sum(direction * (anchors - mean), axis=1)
    return direction.T, bias


def _check_inputs(x: Any) -> Array:
    inputs = x[0]
    if inputs.ndim != 2 or inputs.shape[1] < 1:
        hint = " (for one input, reshape with inputs[:, None])" if inputs.ndim == 1 else ""
        raise ValueError(
            f"inputs (x[0]) of a mixture of experts must be a 2-D array of shape (n, P) with "
            f"P >= 1; got shape {tuple(inputs.shape)}{hint}"
        )
    return inputs


@dataclasses.dataclass(frozen=True)
class MixtureOfExperts(Model):
    """A mixture of experts with a softmax gate, fitted by generalized EM.

    ``p(y | x) = Σ_k g_k(x) p(y | x, k)`` with the gate
    ``g_k(x) = softmax(x V + c)_k`` and experts from any conditional
    component: :class:`jaxem.LinearRegression` (linear-Gaussian regression,
    closed-form M-step), :class:`jaxem.LogisticRegression`,
    :class:`jaxem.SoftmaxRegression` or :class:`jaxem.PoissonRegression`
    (gradient M-steps). The gate's M-step is a
    :class:`jaxem.gem.GradientMStep` on ``Q_gate + log p(gate)``; its
    optimizer state is carried by the driver beside the parameters (see
    :meth:`init_m_step_state`).

    The model is conditional: it has no distribution over inputs, so
    :meth:`sample` is replaced by :meth:`sample_targets`.

    Args:
      expert: the experts' component family (conditional).
      num_experts: ``K >= 1``.
      gate_step: the gate's GEM step (``None``: 5 L-BFGS updates per EM
        iteration).
      gate_l2: precision of a Gaussian prior ``N(0, 1 / gate_l2)`` on each
        gate weight (MAP; ``0``: none). The gate bias is not penalised.
      init_method: ``"gate"`` (a random soft partition of the inputs among
        ``K`` random anchor observations, see :func:`anchored_gate`; the
        experts are fitted to that partition) or ``"random"`` (a near-uniform
        gate, experts fitted to random responsibilities).

    Examples:
      Two regimes of a piecewise-linear function, split at ``x = 0``:

      >>> import jax, jax.numpy as jnp, jaxem
      >>> u = jnp.linspace(-2.0, 2.0, 200)
      >>> noise = 0.05 * jax.random.normal(jax.random.key(0), (200,))
      >>> targets = jnp.where(u < 0, 1.0 + 2.0 * u, 1.0 - u) + noise
      >>> inputs = u[:, None]
      >>> model = jaxem.MixtureOfExperts(jaxem.LinearRegression(), num_experts=2)
      >>> result = jaxem.fit(model, (inputs, targets), key=jax.random.key(1), num_restarts=4)
      >>> sorted(round(float(w), 1) for w in result.params.experts.coefficients[:, 0])
      [-1.0, 2.0]
      >>> model.gate_probabilities(result.params, inputs).shape
      (200, 2)

    References:
      Jacobs, R. A., Jordan, M. I., Nowlan, S. J. and Hinton, G. E. (1991).
      Adaptive mixtures of local experts. Neural Computation 3, 79-87.
      Jordan, M. I. and Jacobs, R. A. (1994). Hierarchical mixtures of experts
      and the EM algorithm. Neural Computation 6, 181-214.
    """

    expert: Component
    num_experts: int
    gate_step: gem.GradientMStep | None = None
    gate_l2: float = 0.0
    init_method: str = "gate"

    def __post_init__(self):
        check_component(self.expert)
        object.__setattr__(self, "num_experts", check_int(self.num_experts, "num_experts", 1))
        object.__setattr__(self, "gate_step", check_step(self.gate_step, "gate_step"))
        object.__setattr__(self, "gate_l2", check_number(self.gate_l2, "gate_l2", 0.0))
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any) -> Array:
        """Raise ``ValueError``/``TypeError`` unless ``x`` is ``(inputs (n, P),
        targets)`` that the expert component takes (values checked when
        concrete), with at least ``K`` rows; return whether the values are
        valid."""
        valid = self.expert.check_data(x, self.num_experts)
        _check_inputs(x)
        n = num_rows(x)
        if n < self.num_experts:
            raise ValueError(
                f"x has {n} observation(s) but num_experts={self.num_experts}: need at least "
                "as many observations as experts"
            )
        return valid

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only for concrete arrays)."""
        if not isinstance(params, MixtureOfExpertsParams):
            raise TypeError(
                f"params must be a MixtureOfExpertsParams (model.init builds one); got "
                f"{type(params).__name__}"
            )
        dim, k = x[0].shape[1], self.num_experts
        for name, shape in (("gate_weights", (dim, k)), ("gate_bias", (k,))):
            value = getattr(params, name)
            if tuple(jnp.shape(value)) != shape:
                raise ValueError(
                    f"params.{name} must have shape {shape} (P={dim} inputs, num_experts={k}); "
                    f"got {tuple(jnp.shape(value))}"
                )
            check_finite_values(value, f"params.{name}")
        self.expert.check_params(params.experts, x, k)

    # ---------------------------------------------------------------- pieces

    def gate_log_probabilities(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """``log g_k(x_i)``, ``(n, K)``."""
        return softmax_gate_log_probabilities((params.gate_weights, params.gate_bias), inputs)

    def gate_probabilities(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """The gate ``g_k(x_i) = p(z_i = k | x_i)``, ``(n, K)``.

        Args:
          params: :class:`~jaxem.models.MixtureOfExpertsParams`.
          inputs: ``(n, P)``.
        """
        return jnp.exp(self.gate_log_probabilities(params, inputs))

    def _log_joint(self, params: MixtureOfExpertsParams) -> Any:
        """``x_block -> log g_k(x_i) + log p(y_i | x_i, k)``, ``(rows, K)``."""
        prepared = self.expert.prepare(params.experts)
        return lambda xb: (
            self.gate_log_probabilities(params, xb[0]) + (self.expert.log_likelihoods(prepared, xb))
        )

    def log_joint(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """``log p(y_i, z_i = k | x_i)``, ``(n, K)`` (differentiable in ``params``)."""
        return self._log_joint(params)(x)

    # ------------------------------------------------------------- the contract

    def init(self, key: Array, x: Data, weights: Array | None = None) -> MixtureOfExpertsParams:
        """Parameters for one restart (see ``init_method``).

        Args:
          key: PRNG key.
          x: ``(inputs (n, P), targets)``.
          weights: optional ``(n,)`` observation weights.
        """
        x = jax.tree.map(jnp.asarray, x)
        inputs = x[0]
        dtype = inputs.dtype
        n, dim = inputs.shape
        k = self.num_experts
        gate_key, resp_key = jax.random.split(key)
        if self.init_method == "gate":
            gate_weights, gate_bias = anchored_gate(gate_key, inputs, k, weights)
            resp = jax.nn.softmax(inputs @ gate_weights + gate_bias, axis=1)
        else:
            _, variance = input_moments(inputs, weights)
            scale = 0.01 / jnp.sqrt(variance)
            gate_weights = scale[:, None] * jax.random.normal(gate_key, (dim, k), dtype)
            gate_bias = jnp.zeros(k, dtype)
            resp = jax.random.uniform(resp_key, (n, k), dtype)
            resp = resp / jnp.sum(resp, axis=1, keepdims=True)
        experts = self.expert.initialize(x, resp, weights)
        return MixtureOfExpertsParams(gate_weights.astype(dtype), gate_bias.astype(dtype), experts)

    def e_step(
        self, params: MixtureOfExpertsParams, x: Data, weights: Array | None = None
    ) -> tuple[MixtureOfExpertsStats, Array]:
        """Responsibilities, the experts' statistics and the summed
        log-likelihood ``Σ_i w_i log p(y_i | x_i)``."""
        log_joint = self._log_joint(params)

        def block(xb: Data, wb: Array | None) -> tuple[MixtureOfExpertsStats, Array]:
            log_marginal, resp = discrete_posterior(log_joint(xb))
            if wb is not None:
                resp = resp * wb[:, None]
                log_marginal = jnp.where(wb > 0, log_marginal * wb, 0.0)
            stats = MixtureOfExpertsStats(
                jnp.sum(resp, axis=0),
                PerObservation(resp),
                self.expert.statistics(xb, resp, params.experts),
                jnp.asarray(num_rows(xb), resp.dtype),
            )
            return stats, jnp.sum(log_marginal)

        rows = self.expert.block_rows(x, self.num_experts)
        stats, total = reduce_over_rows(block, (x, weights), rows)
        return attach(stats, x), total

    def init_m_step_state(self, params: MixtureOfExpertsParams) -> MixtureOfExpertsMStepState:
        """The gate's optimizer state and the experts' M-step state at ``params``."""
        return MixtureOfExpertsMStepState(
            self.gate_step.init((params.gate_weights, params.gate_bias)),
            self.expert.init_m_step_state(params.experts),
        )

    def m_step(
        self,
        stats: MixtureOfExpertsStats,
        params: MixtureOfExpertsParams,
        m_step_state: MixtureOfExpertsMStepState | None = None,
    ) -> tuple[MixtureOfExpertsParams, MixtureOfExpertsMStepState]:
        """ECM: the gate by its gradient step on ``Q_gate + log p(gate)``, the
        experts by their own M-step. Returns ``(params, m_step_state)``."""
        if m_step_state is None:
            m_step_state = self.init_m_step_state(params)
        gate_stats = PerObservation(stats.gate.values, stats.gate.data[0])
        gate, gate_state = gradient_m_step(
            self.gate_step,
            softmax_gate_log_probabilities,
            lambda gate: gaussian_log_prior(gate[0], self.gate_l2),
            gate_stats,
            (params.gate_weights, params.gate_bias),
            m_step_state.gate,
        )
        counts = guarded_counts(stats.counts, stats.num_observations)
        experts, experts_state = self.expert.maximize(
            stats.experts, counts, params.experts, m_step_state.experts
        )
        return (
            MixtureOfExpertsParams(gate[0], gate[1], experts),
            MixtureOfExpertsMStepState(gate_state, experts_state),
        )

    def shift_stats(
        self,
        stats: MixtureOfExpertsStats,
        from_params: MixtureOfExpertsParams,
        to_params: MixtureOfExpertsParams,
    ) -> MixtureOfExpertsStats:
        """The experts' statistics re-expressed about ``to_params`` (see
        :meth:`jaxem.Mixture.shift_stats`); the responsibilities need no shift."""
        experts = self.expert.shift_statistics(
            stats.experts, stats.counts, from_params.experts, to_params.experts
        )
        return stats._replace(experts=experts)

    def expected_log_joint(
        self,
        params: MixtureOfExpertsParams,
        x: Data,
        q_params: MixtureOfExpertsParams,
        weights: Array | None = None,
    ) -> Array:
        """``Q(params, q_params) = Σ_i w_i Σ_k r_ik log p(y_i, z_i = k | x_i,
        params)``, with ``r_ik = p(z_i = k | x_i, y_i, q_params)`` (the
        posterior depends on the inputs through the gate): EM's auxiliary
        function without the prior.

        Args:
          params: the parameters of the log-joint.
          x: ``(inputs (n, P), targets)``.
          q_params: the parameters of the posterior.
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          A scalar.
        """
        log_joint = self._log_joint(params)
        q_log_joint = self._log_joint(q_params)

        def block(xb: Data, wb: Array | None) -> Array:
            resp = discrete_posterior(q_log_joint(xb))[1]
            if wb is not None:
                resp = resp * wb[:, None]
            return expected_log_joint(resp, log_joint(xb))

        rows = self.expert.block_rows(x, self.num_experts)
        return reduce_over_rows(block, (x, weights), rows)

    def log_prob(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """Per-observation ``log p(y_i | x_i)``, ``(n,)``."""
        log_joint = self._log_joint(params)
        rows = self.expert.block_rows(x, self.num_experts)
        return map_over_rows(lambda xb: discrete_posterior(log_joint(xb))[0], (x,), rows)

    def posterior(self, params: MixtureOfExpertsParams, x: Data) -> Array:
        """Responsibilities ``p(z_i = k | x_i, y_i)``, ``(n, K)`` (the gate
        :meth:`gate_probabilities` is the prior ``p(z_i = k | x_i)``)."""
        log_joint = self._log_joint(params)
        rows = self.expert.block_rows(x, self.num_experts)
        return map_over_rows(lambda xb: discrete_posterior(log_joint(xb))[1], (x,), rows)

    def log_prior(self, params: MixtureOfExpertsParams) -> Array:
        """``log p(θ)``: the Gaussian prior on the gate weights and the
        experts' prior (``0`` without them)."""
        return gaussian_log_prior(params.gate_weights, self.gate_l2) + self.expert.log_prior(
            params.experts
        )

    def predict(self, params: MixtureOfExpertsParams, inputs: Array) -> Array:
        """The predictive mean ``E[y | x] = Σ_k g_k(x) E[y | x, k]``: ``(n,)``
        or ``(n, T)`` (linear, Poisson), ``p(y = 1 | x)`` (logistic), or class
        probabilities ``(n, C)`` (softmax).

        Args:
          params: :class:`~jaxem.models.MixtureOfExpertsParams`.
          inputs: ``(n, P)``.
        """
        gate = self.gate_probabilities(params, inputs)
        per_expert = self.expert.predict(params.experts, inputs)  # (n, K, ...)
        gate = gate.reshape(gate.shape + (1,) * (per_expert.ndim - 2))
        return jnp.sum(gate * per_expert, axis=1)

    def sample_targets(
        self, key: Array, params: MixtureOfExpertsParams, inputs: Array
    ) -> tuple[Array, Array]:
        """One target per input row, and the expert that produced it.

        Args:
          key: PRNG key.
          params: :class:`~jaxem.models.MixtureOfExpertsParams`.
          inputs: ``(n, P)``.

        Returns:
          ``(targets, labels (n,))``.
        """
        gate_key, draw_key = jax.random.split(key)
        labels = jax.random.categorical(
            gate_key, self.gate_log_probabilities(params, inputs), axis=1
        )
        return self.expert.sample_targets(draw_key, params.experts, inputs, labels), labels

    def sample(self, key: Array, params: MixtureOfExpertsParams, n: int) -> Any:
        """Not available: the model is conditional on its inputs.

        Raises:
          TypeError: always; use :meth:`sample_targets` with inputs.
        """
        raise TypeError(
            "MixtureOfExperts models targets given inputs and has no distribution over inputs: "
            "draw targets with model.sample_targets(key, params, inputs)"
        )

    def constraints(self, params: MixtureOfExpertsParams) -> MixtureOfExpertsParams:
        """The gate's weights and bias as logits over the experts (a common
        shift changes no gate probability), and the experts' declaration."""
        experts = self.expert.constraints(params.experts)
        return MixtureOfExpertsParams(gem.logits, gem.logits, experts)

    def num_parameters(self, params: MixtureOfExpertsParams) -> int:
        """Free parameters: ``(P + 1)(K − 1)`` for the gate plus the experts'."""
        dim, k = jnp.shape(params.gate_weights)
        return int((dim + 1) * (k - 1) + self.expert.num_parameters(params.experts))

    def diagnose(
        self, stats: MixtureOfExpertsStats, params: MixtureOfExpertsParams
    ) -> dict[str, Array]:
        """``{"collapsed": (K,)}``, experts responsible for less than a
        thousandth of an average observation's weight, and the expert
        component's own flags."""
        counts = guarded_counts(stats.counts, stats.num_observations)
        flags = self.expert.diagnose(stats.experts, counts, params.experts)
        return {"collapsed": collapsed(stats.counts, stats.num_observations), **flags}
