"""Hidden Markov models whose transitions depend on per-step inputs, fitted
by generalized EM.

An input-driven (input-output) HMM (Bengio and Frasconi 1995) moves between
its ``K`` states with probabilities that are a softmax regression on an input
vector ``u_t`` (``P`` features) observed at every step:

    ``p(z_t = j | z_{t−1} = i, u_t) = softmax_j(u_t W[i] + b[i])``,

with ``W (K, P, K)`` and ``b (K, K)``: each state ``i`` has its own gate over
the next state, as a mixture of experts has one gate over its experts. The
initial state and the emissions are those of :class:`jaxem.HMM` (any
component family).

Data are a tuple ``(values (B, T, ...), inputs (B, T, P))`` of ``B``
sequences of ``T`` steps, or ``(values, inputs, lengths (B,))`` for
sequences of different lengths padded to ``T``. ``inputs[b, t]`` drives the
transition from step ``t − 1`` into step ``t`` (``inputs[:, 0]`` enters no
transition; it is checked and otherwise ignored). As for :class:`jaxem.HMM`,
sequences are the engine's rows and padding never changes a result.

The M-step is ECM: the initial probabilities and the emissions in closed
form (or the emission family's own M-step), as Baum-Welch does; the
transition weights by a :class:`jaxem.gem.GradientMStep` on their part of
``Q``,

    ``Q_A(W, b) = Σ_{b,t,i,j} ξ_bt(i, j) log softmax_j(u_bt W[i] + b[i])``
    ``         = Σ_ij (F[i, :, j] · W[i, :, j] + N[i, j] b[i, j])``
    ``           − Σ_{b,t,i} γ_b,t−1(i) logsumexp_j(u_bt W[i] + b[i])``,

with ``ξ_bt(i, j) = p(z_{t−1} = i, z_t = j | x_b)``, ``γ_b,t−1(i) = Σ_j
ξ_bt(i, j)``, ``F = Σ ξ u`` and ``N = Σ ξ``: so the statistics the gradient
needs are, per sequence, the departure probabilities ``γ (T, K)`` and the
flows ``F (K, P, K)`` and ``N (K, K)`` (:class:`~jaxem.PerObservation`, with
the inputs as the data), exactly, and never the ``(T, K, K)`` pair
probabilities. Each block never lowers its part of ``Q``, so the
log-likelihood never decreases.

References:
  Bengio, Y. and Frasconi, P. (1995). An input output HMM architecture.
  Advances in Neural Information Processing Systems 7, 427-434.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from jaxem import gem
from jaxem._stats import PerObservation, attach, reduce_over_rows
from jaxem._validation import check_finite_values, check_number, is_concrete
from jaxem.inference._hmm import hmm_sample_states
from jaxem.models._hmm import (
    HMM,
    _check_stochastic,
    _log_dirichlet,
    _normalize_counts,
    check_lengths,
)
from jaxem.models.components._checks import guarded_counts
from jaxem.models.components._gradient import check_step, gaussian_log_prior

Array = jax.Array

_LAYOUT = (
    "a tuple (values (B, T, ...), inputs (B, T, P)) of B sequences of T steps, or "
    "(values, inputs, lengths (B,)) for sequences of different lengths"
)


class InputDrivenHMMParams(NamedTuple):
    """Parameters of a :class:`jaxem.InputDrivenHMM` with ``K`` states and
    ``P`` inputs.

    Only differences along the last (``to``) axis matter: adding a constant
    to ``transition_weights[i, p, :]`` or ``transition_bias[i, :]`` changes
    no probability. :meth:`jaxem.InputDrivenHMM.init` and the M-step return
    rows that sum to zero (the Gaussian prior ``transition_l2`` is on those
    centred weights).

    Attributes:
      initial: ``(K,)`` initial-state probabilities.
      transition_weights: ``(K, P, K)``, ``[from, input, to]``: state ``i``'s
        gate over the next state is ``softmax(u_t @ transition_weights[i] +
        transition_bias[i])``.
      transition_bias: ``(K, K)``, ``[from, to]``.
      emissions: the emission component's parameters (leaves with a leading
        ``K`` axis).
    """

    initial: Array
    transition_weights: Array
    transition_bias: Array
    emissions: Any


class InputDrivenTransitionStats(NamedTuple):
    """Per-sequence statistics of the transitions (exactly what the gradient
    of ``Q`` in the transition weights needs), weighted by the sequence's
    weight.

    Attributes:
      departures: ``(B, T, K)``, ``p(z_{t−1} = i | x_b)`` at step ``t``
        (zero at ``t = 0`` and at padded steps).
      flows: ``(B, K, P, K)``, ``Σ_t p(z_{t−1} = i, z_t = j | x_b) u_bt`` at
        ``[b, i, :, j]``.
      counts: ``(B, K, K)``, the expected transitions ``Σ_t p(z_{t−1} = i,
        z_t = j | x_b)``.
    """

    departures: Array
    flows: Array
    counts: Array


class InputDrivenHMMStats(NamedTuple):
    """What the M-step of a :class:`jaxem.InputDrivenHMM` needs.

    Attributes:
      initial: ``(K,)``, ``Σ_b w_b p(z_{b,0} = k | x_b)``.
      counts: ``(K,)``, expected weighted number of steps in each state.
      emissions: the emission component's statistics.
      transitions: an :class:`InputDrivenTransitionStats` per sequence
        (:class:`~jaxem.PerObservation`, with the data).
      num_sequences: number of sequences, a scalar.
      num_steps: number of valid steps, a scalar.
    """

    initial: Array
    counts: Array
    emissions: Any
    transitions: PerObservation
    num_sequences: Array
    num_steps: Array


class InputDrivenHMMMStepState(NamedTuple):
    """The M-step states a :class:`jaxem.InputDrivenHMM` carries across EM
    iterations (beside the parameters).

    Attributes:
      transitions: the transition step's optimizer state.
      emissions: the emission component's M-step state (``()`` in closed form).
    """

    transitions: Any
    emissions: Any


def _split(x: Any) -> tuple[Any, Array]:
    """``(the values in jaxem.HMM's layout: values or (values, lengths), inputs)``."""
    if len(x) == 3:
        values, inputs, lengths = x
        return (values, lengths), inputs
    values, inputs = x
    return values, inputs


@dataclasses.dataclass(frozen=True)
class InputDrivenHMM(HMM):
    """A hidden Markov model whose transition probabilities are a softmax
    regression on per-step inputs, fitted by generalized EM.

    ``p(z_t = j | z_{t−1} = i, u_t) = softmax_j(u_t W[i] + b[i])``; the
    initial-state probabilities and the emissions (any component family)
    are those of :class:`jaxem.HMM`, and so are inference (sequential or
    parallel in time, with a transition matrix per step), the per-sequence
    rows, weights and padding. Data: ``(values (B, T, ...), inputs (B, T,
    P))`` or ``(values, inputs, lengths (B,))``; ``inputs[:, t]`` drives the
    move from step ``t − 1`` to ``t``. With inputs that are all zero, the
    model is an HMM with transitions ``softmax(b[i])``.

    Args:
      emission: the emission family (as :class:`jaxem.HMM`).
      num_states: ``K >= 1``.
      transition_step: the transition weights' GEM step
        (:class:`jaxem.gem.GradientMStep`, any optax optimizer; ``None``: 5
        L-BFGS updates per EM iteration). Its optimizer state is carried by
        the driver beside the parameters (:meth:`init_m_step_state`).
      transition_l2: precision of a Gaussian prior ``N(0, 1 / transition_l2)``
        on each transition weight (MAP; ``0``: none); the bias is not
        penalised.
      initial_concentration: Dirichlet ``α >= 1`` on the initial-state
        probabilities (``1``: no prior).
      transition_concentration: must stay ``1`` (the transitions have the
        Gaussian prior ``transition_l2`` instead of a Dirichlet).
      init_method, parallel, block_size, kmeans_max_iter: as :class:`jaxem.HMM`.
        A restart starts from that initialisation with zero transition
        weights (transitions that ignore the inputs; see :meth:`init`).

    Examples:
      Two states; a larger input makes either state likelier to switch. The
      transition weights here take 10 Adam updates per EM iteration (any
      optax optimizer):

      >>> import jax, jax.numpy as jnp, optax, jaxem
      >>> from jaxem import gem
      >>> truth = jaxem.models.InputDrivenHMMParams(
      ...     initial=jnp.array([0.5, 0.5]),
      ...     transition_weights=jnp.array([[[-2.0, 2.0]], [[2.0, -2.0]]]),  # (K, P, K)
      ...     transition_bias=jnp.array([[2.0, -2.0], [-2.0, 2.0]]),
      ...     emissions=jaxem.models.components.GaussianParams(
      ...         jnp.array([[-2.0], [2.0]]), jnp.array([0.25, 0.25])),
      ... )
      >>> model = jaxem.InputDrivenHMM(
      ...     jaxem.Gaussian("spherical"), num_states=2,
      ...     transition_step=gem.GradientMStep(optax.adam(0.1), num_steps=10))
      >>> inputs = jax.random.normal(jax.random.key(0), (8, 40, 1))  # (B, T, P)
      >>> keys = jax.random.split(jax.random.key(1), 8)
      >>> values, states = jax.jit(jax.vmap(model.sample, (0, None, 0)))(keys, truth, inputs)
      >>> result = jaxem.fit(model, (values, inputs), key=jax.random.key(2))
      >>> w = result.params.transition_weights  # (K, P, K)
      >>> switching = jnp.array([w[0, 0, 1] - w[0, 0, 0], w[1, 0, 0] - w[1, 0, 1]])
      >>> bool(jnp.all(switching > 2.0))  # (truth: 4 for both states)
      True
      >>> model.transition_probabilities(result.params, inputs).shape  # (B, T, K, K)
      (8, 40, 2, 2)

    References:
      Bengio, Y. and Frasconi, P. (1995). An input output HMM architecture.
      Advances in Neural Information Processing Systems 7, 427-434.
    """

    transition_step: gem.GradientMStep | None = None
    transition_l2: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.transition_concentration != 1.0:
            raise ValueError(
                "InputDrivenHMM has no Dirichlet prior on its transitions (they are a softmax "
                "regression on the inputs): leave transition_concentration at 1 and use "
                f"transition_l2 for a Gaussian prior on the weights; got "
                f"transition_concentration={self.transition_concentration}"
            )
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("transition_step", check_step(self.transition_step, "transition_step"))
        set_("transition_l2", check_number(self.transition_l2, "transition_l2", 0.0))

    # ------------------------------------------------------------ the data

    def _inputs(self, x: Any) -> Array:
        """``(B, T, P)`` inputs, zero at padded steps (whatever they held)."""
        values_x, inputs = _split(x)
        _, _, valid = self._unpack(values_x)
        inputs = jnp.asarray(inputs)
        return jnp.where(valid[..., None], inputs, jnp.zeros((), inputs.dtype))

    def check_data(self, x: Any) -> Array:
        """Raise for data of the wrong layout (see the class), inputs of the
        wrong shape or with non-finite values at valid steps (named by
        sequence, step and feature), and what :meth:`jaxem.HMM.check_data`
        raises for the values and lengths; return whether the values are
        valid."""
        if not isinstance(x, tuple):
            raise TypeError(f"x must be {_LAYOUT}; got {type(x).__name__}")
        if len(x) not in (2, 3):
            raise ValueError(f"x must be {_LAYOUT}; got a tuple of {len(x)} arrays")
        values_x, inputs = _split(x)
        values = x[0]
        if jnp.ndim(values) >= 3 and is_concrete(values):
            # The values' NaN and inf are named as x[0] (jaxem.HMM calls them x).
            host = np.asarray(values)
            counts = np.full(host.shape[0], host.shape[1], np.int64)
            if len(x) == 3 and jnp.ndim(x[2]) == 1 and is_concrete(x[2]):
                counts = check_lengths(x[2], width=host.shape[1])
            _check_finite_steps(host, counts, "x[0]", "values")
        valid = super().check_data(values_x)
        shape = tuple(jnp.shape(inputs))
        if len(shape) != 3 or shape[:2] != tuple(jnp.shape(values))[:2] or shape[2] < 1:
            hint = " (for one input, inputs[..., None])" if len(shape) == 2 else ""
            raise ValueError(
                f"inputs (x[1]) must have shape (B, T, P) = {tuple(jnp.shape(values))[:2]} + "
                f"(P,) with P >= 1, one input vector per step of the values; got shape "
                f"{shape}{hint}"
            )
        if is_concrete(inputs) and (len(x) == 2 or is_concrete(x[2])):
            host = np.asarray(inputs)
            counts = np.full(shape[0], shape[1], np.int64) if len(x) == 2 else np.asarray(x[2])
            _check_finite_steps(host, counts.astype(np.int64), "x[1]", "inputs")
            return valid
        return valid & jnp.all(jnp.isfinite(self._inputs(x)))

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, InputDrivenHMMParams):
            raise TypeError(
                f"params must be an InputDrivenHMMParams (model.init builds one); got "
                f"{type(params).__name__}"
            )
        k, dim = self.num_states, x[1].shape[-1]
        _check_stochastic(params.initial, "params.initial", (k,))
        for name, shape in (("transition_weights", (k, dim, k)), ("transition_bias", (k, k))):
            value = getattr(params, name)
            if tuple(jnp.shape(value)) != shape:
                raise ValueError(
                    f"params.{name} must have shape {shape} (num_states={k}, P={dim} inputs); "
                    f"got {tuple(jnp.shape(value))}"
                )
            check_finite_values(value, f"params.{name}")
        values = x[0]
        steps = jax.ShapeDtypeStruct(
            (values.shape[0] * values.shape[1], *values.shape[2:]), values.dtype
        )
        self.emission.check_params(params.emissions, steps, k)

    # ----------------------------------------------------------- inference

    def transition_log_probabilities(self, params: InputDrivenHMMParams, inputs: Array) -> Array:
        """``log p(z_t = j | z_{t−1} = i, u_t)`` at ``[..., i, j]``:
        ``(..., K, K)`` for inputs ``(..., P)`` (differentiable in ``params``)."""
        logits = jnp.einsum("...p,ipj->...ij", inputs, params.transition_weights)
        return jax.nn.log_softmax(logits + params.transition_bias, axis=-1)

    def transition_probabilities(self, params: InputDrivenHMMParams, inputs: Array) -> Array:
        """The transition matrices ``(..., K, K)`` (rows ``[from]`` on the
        simplex) at inputs ``(..., P)``, e.g. ``(B, T, K, K)`` for ``(B, T, P)``.

        Args:
          params: :class:`~jaxem.models.InputDrivenHMMParams`.
          inputs: ``(..., P)``.
        """
        return jnp.exp(self.transition_log_probabilities(params, inputs))

    def _block_rows(self, x: Any) -> int:
        if self.block_size is not None:
            return self.block_size
        k = self.num_states
        steps = x[0].shape[1] * k * k * (k if self.parallel else 1)  # (a (K, K) matrix a step)
        return max(1, (1 << 22) // max(steps, 1))

    def _over_sequences(self, algorithm: Any, params: InputDrivenHMMParams, x: Any):
        """``algorithm(log_initial, log_transition (T, K, K), log_emissions,
        length, parallel)`` on every sequence, vmapped; with the sequences'
        values and lengths."""
        values, lengths, valid = self._unpack(_split(x)[0])
        log_e = self._log_emissions(self.emission.prepare(params.emissions), values, valid)
        log_a = self.transition_log_probabilities(params, self._inputs(x))
        log_initial = jnp.log(params.initial)
        run = lambda la, le, n: algorithm(log_initial, la, le, n, self.parallel)
        return jax.vmap(run)(log_a, log_e, lengths), values, lengths

    def _log_chain(self, params: InputDrivenHMMParams, x: Any) -> tuple[Array, Array, Array]:
        """``(log initial (K,), log transitions (B, T, K, K), log emissions
        (B, T, K))`` (see :meth:`jaxem.HMM.expected_log_joint`)."""
        values, _, valid = self._unpack(_split(x)[0])
        log_e = self._log_emissions(self.emission.prepare(params.emissions), values, valid)
        log_a = self.transition_log_probabilities(params, self._inputs(x))
        return jnp.log(params.initial), log_a, log_e

    def e_step(
        self, params: InputDrivenHMMParams, x: Any, weights: Array | None = None
    ) -> tuple[InputDrivenHMMStats, Array]:
        """Forward-backward on every sequence: the expected statistics and
        ``Σ_b w_b log p(x_b | u_b)``.

        Args:
          params: current parameters.
          x: ``(values, inputs)`` or ``(values, inputs, lengths)``.
          weights: optional per-sequence weights, ``(B,)``.
        """

        def block(xb: Any, wb: Array | None) -> tuple[InputDrivenHMMStats, Array]:
            posterior, w, common, total = self._smoothed_block(params, xb, wb)
            pairs = posterior.transitions * w[:, None, None, None]  # (B, T, K, K)
            transitions = InputDrivenTransitionStats(
                departures=jnp.sum(pairs, axis=-1),
                flows=jnp.einsum("btij,btp->bipj", pairs, self._inputs(xb)),
                counts=jnp.sum(pairs, axis=1),
            )
            return InputDrivenHMMStats(transitions=PerObservation(transitions), **common), total

        stats, total = reduce_over_rows(block, (x, weights), self._block_rows(x))
        return attach(stats, x), total

    def init_m_step_state(self, params: InputDrivenHMMParams) -> InputDrivenHMMMStepState:
        """The transition step's optimizer state and the emission family's
        M-step state at ``params``."""
        return InputDrivenHMMMStepState(
            self.transition_step.init((params.transition_weights, params.transition_bias)),
            self.emission.init_m_step_state(params.emissions),
        )

    def expected_transition_log_joint(
        self, params: InputDrivenHMMParams, stats: InputDrivenHMMStats
    ) -> Array:
        """``Q_A = Σ_{b,t,i,j} ξ_bt(i, j) log p(z_t = j | z_{t−1} = i, u_bt)``
        at ``params`` (the transitions' part of ``Q``; the posterior in
        ``stats``, with the data attached, comes from the E-step)."""
        return _transition_q(
            (params.transition_weights, params.transition_bias),
            stats.transitions.values,
            self._inputs(stats.transitions.data),
        )

    def m_step(
        self,
        stats: InputDrivenHMMStats,
        params: InputDrivenHMMParams,
        m_step_state: InputDrivenHMMMStepState | None = None,
    ) -> tuple[InputDrivenHMMParams, InputDrivenHMMMStepState]:
        """ECM: the initial probabilities (Dirichlet MAP) and the emissions
        as in Baum-Welch, and the transition weights by their gradient step
        on ``(Q_A + log p(W)) / (number of transitions)``, never lowering
        it (rows returned centred, see
        :class:`~jaxem.models.InputDrivenHMMParams`). Returns ``(params,
        m_step_state)``."""
        if m_step_state is None:
            m_step_state = self.init_m_step_state(params)
        counts = guarded_counts(stats.counts, stats.num_steps)
        emissions, emissions_state = self.emission.maximize(
            stats.emissions, counts, params.emissions, m_step_state.emissions
        )
        initial = _normalize_counts(stats.initial + (self.initial_concentration - 1.0))
        transition_stats = stats.transitions.values
        inputs = self._inputs(stats.transitions.data)
        departures = transition_stats.departures
        total = jnp.maximum(jnp.sum(departures), jnp.finfo(departures.dtype).tiny)

        def objective(theta: tuple[Array, Array]) -> Array:
            # (on the centred rows, so that the optimizer sees no gradient,
            # not even rounding noise, along the directions that change
            # nothing: quasi-Newton steps would drift along them)
            theta = jax.tree.map(_centre, theta)
            q = _transition_q(theta, transition_stats, inputs)
            return (q + gaussian_log_prior(theta[0], self.transition_l2)) / total

        theta, transitions_state = self.transition_step.update(
            objective,
            (params.transition_weights, params.transition_bias),
            m_step_state.transitions,
        )
        weights, bias = jax.tree.map(_centre, theta)
        return (
            InputDrivenHMMParams(initial, weights, bias, emissions),
            InputDrivenHMMMStepState(transitions_state, emissions_state),
        )

    def log_prior(self, params: InputDrivenHMMParams) -> Array:
        """``log p(θ)``: the Dirichlet prior on the initial probabilities, the
        Gaussian prior on the transition weights and the emission family's
        prior (``0`` terms where there are none)."""
        dtype = params.initial.dtype
        total = _log_dirichlet(params.initial, self.initial_concentration, dtype)
        total = total + gaussian_log_prior(params.transition_weights, self.transition_l2)
        return total + self.emission.log_prior(params.emissions)

    def sample(self, key: Array, params: InputDrivenHMMParams, inputs: Array) -> tuple[Any, Array]:
        """One sequence driven by given inputs.

        Args:
          key: PRNG key.
          params: :class:`~jaxem.models.InputDrivenHMMParams`.
          inputs: ``(T, P)``, the inputs of the ``T`` steps (``inputs[0]``
            is unused).

        Returns:
          ``(values (T, ...), states (T,))``.

        Raises:
          TypeError: ``inputs`` is a number of steps (the model needs inputs).
        """
        if isinstance(inputs, numbers.Number):
            raise TypeError(
                "InputDrivenHMM draws sequences given their inputs: pass inputs (T, P), not a "
                f"number of steps; got {inputs!r}"
            )
        params = jax.tree.map(jnp.asarray, params)
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(f"inputs must have shape (T, P); got {tuple(inputs.shape)}")
        state_key, emission_key = jax.random.split(key)
        log_a = self.transition_log_probabilities(params, inputs)
        states = hmm_sample_states(state_key, jnp.log(params.initial), log_a, inputs.shape[0])
        return self.emission.sample(emission_key, params.emissions, states), states

    def _sequences(self, x: Any) -> Any:
        """The values (and lengths) without the inputs."""
        return _split(x)[0]

    def constraints(self, params: InputDrivenHMMParams) -> InputDrivenHMMParams:
        """Initial probabilities on the simplex, transition weights and
        biases as logits over the ``to`` axis (a shift of a row changes no
        probability), and the emission family's declaration."""
        emissions = self.emission.constraints(params.emissions)
        return InputDrivenHMMParams(gem.simplex, gem.logits, gem.logits, emissions)

    def num_parameters(self, params: InputDrivenHMMParams) -> int:
        """Free parameters: ``K − 1`` initial, ``K (K − 1)(P + 1)`` transition
        weights and biases, and the emission family's."""
        k = self.num_states
        dim = jnp.shape(params.transition_weights)[1]
        return int(k - 1 + k * (k - 1) * (dim + 1) + self.emission.num_parameters(params.emissions))

    # ------------------------------------------------------ initialisation

    def from_responsibilities(
        self, x: Any, resp: Array, weights: Array | None = None
    ) -> InputDrivenHMMParams:
        """:meth:`jaxem.HMM.from_responsibilities` on the values, with zero
        transition weights (transitions that ignore the inputs) and the bias
        at that chain's log transition probabilities, centred (each row
        summing to zero)."""
        chain = super().from_responsibilities(_split(x)[0], resp, weights)
        k, dim = self.num_states, jnp.shape(x[1])[-1]
        dtype = chain.transitions.dtype
        return InputDrivenHMMParams(
            chain.initial,
            jnp.zeros((k, dim, k), dtype),
            _centre(jnp.log(chain.transitions)),
            chain.emissions,
        )


def _centre(rows: Array) -> Array:
    """``rows`` less their mean over the last axis (the softmax's)."""
    return rows - jnp.mean(rows, axis=-1, keepdims=True)


def _transition_q(
    theta: tuple[Array, Array], stats: InputDrivenTransitionStats, inputs: Array
) -> Array:
    """``Q_A(W, b)`` from the per-sequence statistics (see the module)."""
    weights, bias = theta
    linear = jnp.sum(jnp.sum(stats.flows, axis=0) * weights) + jnp.sum(
        jnp.sum(stats.counts, axis=0) * bias
    )
    logits = jnp.einsum("btp,ipj->btij", inputs, weights) + bias
    return linear - jnp.sum(stats.departures * logsumexp(logits, axis=-1))


def _check_finite_steps(host: np.ndarray, lengths: np.ndarray, name: str, what: str) -> None:
    """Raise ``ValueError`` naming the first NaN or inf at a valid step."""
    valid = np.arange(host.shape[1])[None, :] < lengths[:, None]
    mask = valid.reshape(valid.shape + (1,) * (host.ndim - 2))
    bad = np.argwhere(~np.isfinite(host) & mask)
    if len(bad):
        first = tuple(int(i) for i in bad[0])
        where = ", ".join(str(i) for i in first)
        raise ValueError(
            f"{what} ({name}) contain {len(bad)} non-finite value(s) (NaN or inf) at valid "
            f"steps; the first is {name}[{where}] = {host[first]}"
        )
