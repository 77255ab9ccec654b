"""Hidden Markov models built from a component family: Baum-Welch under ``jaxem.fit``.

The chain (initial-state and transition probabilities, with optional
Dirichlet priors) is the latent structure; the emission distribution of a
step given its state is any :class:`jaxem.Component`, the same families a
mixture is built from. Inference is :mod:`jaxem.inference`'s forward-backward
(sequential or parallel in time).

Data are a batch of sequences: an array ``(B, T, ...)`` of ``B`` sequences
of ``T`` steps, or a tuple ``(values (B, T, ...), lengths (B,))`` for
sequences of different lengths, padded to ``T`` (:func:`pad_sequences`
builds it from hmmlearn's concatenated ``(X, lengths)``). The sequences are
the engine's rows: statistics are additive over sequences, so chunked,
sharded, streamed and online fits split the batch by sequences, observation
weights are per sequence, and ``fit``'s mean log-likelihood is per sequence.
Padding never changes a result.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import gem
from jaxem._model import Model
from jaxem._stats import attach, reduce_over_rows
from jaxem._validation import check_finite, check_number, is_concrete
from jaxem.inference._hmm import (
    hmm_log_likelihood,
    hmm_posterior_sample,
    hmm_sample_states,
    hmm_smoother,
    viterbi,
)
from jaxem.models._mixture import INIT_METHODS, collapsed, initial_responsibilities
from jaxem.models.components._checks import guarded_counts
from jaxem.models.components._component import Component, resolve_component

Array = jax.Array


class HMMParams(NamedTuple):
    """Parameters of a :class:`jaxem.HMM`.

    Attributes:
      initial: ``(K,)`` initial-state probabilities.
      transitions: ``(K, K)`` transition probabilities, ``[from, to]``; rows
        on the simplex.
      emissions: the emission component's parameters (leaves with a leading
        ``K`` axis).
    """

    initial: Array
    transitions: Array
    emissions: Any


class HMMStats(NamedTuple):
    """Expected sufficient statistics of an HMM (additive over sequences).

    Attributes:
      initial: ``(K,)``, ``Σ_b w_b p(z_{b,0} = k | x_b)``.
      transitions: ``(K, K)``, expected weighted transition counts.
      counts: ``(K,)``, expected weighted number of steps in each state.
      emissions: the emission component's statistics.
      num_sequences: number of sequences, a scalar.
      num_steps: number of valid steps, a scalar.
    """

    initial: Array
    transitions: Array
    counts: Array
    emissions: Any
    num_sequences: Array
    num_steps: Array


def pad_sequences(x: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    """hmmlearn's concatenated sequences as a padded batch.

    Args:
      x: ``(N, ...)``, the sequences one after another.
      lengths: ``(B,)`` positive integers summing to ``N``.

    Returns:
      ``(values (B, max(lengths), ...), lengths (B,))``, numpy arrays; each
      sequence is padded by repeating its last step (padding never changes a
      result, and stays in every emission family's domain).

    Raises:
      ValueError: lengths that are not positive integers or do not sum to ``N``.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("x must have a leading step axis; got a scalar")
    lengths = check_lengths(lengths, x.shape[0])
    width = int(lengths.max())
    ends = np.cumsum(lengths)
    starts = ends - lengths
    index = np.minimum(starts[:, None] + np.arange(width)[None, :], (ends - 1)[:, None])
    return x[index], lengths


def check_lengths(lengths: Any, total: int | None = None, width: int | None = None) -> np.ndarray:
    """Concrete sequence lengths as an int array, or a clear ``ValueError``."""
    array = np.asarray(lengths)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"lengths must be a 1-D array of sequence lengths; got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"lengths must be integers; got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        bad = int(np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))[0])
        raise ValueError(f"lengths must be integers; lengths[{bad}] = {array[bad]}")
    array = array.astype(np.int64)
    if np.any(array < 1):
        bad = int(np.flatnonzero(array < 1)[0])
        raise ValueError(
            f"lengths must be positive (every sequence needs a step); lengths[{bad}] = {array[bad]}"
        )
    if total is not None and int(array.sum()) != total:
        raise ValueError(
            f"lengths sum to {int(array.sum())} but x has {total} rows: the lengths must add "
            "up to the number of rows of the concatenated sequences"
        )
    if width is not None and int(array.max()) > width:
        bad = int(np.argmax(array))
        raise ValueError(
            f"lengths[{bad}] = {array[bad]} exceeds the padded length {width} of the sequences"
        )
    return array


def _check_concentration(value: Any, name: str) -> float:
    value = check_number(value, name)
    if value < 1.0:
        raise ValueError(
            f"{name} must be a finite number >= 1 (a Dirichlet concentration below 1 puts "
            f"the MAP estimate on the simplex's boundary); got {value}"
        )
    return value


def _check_stochastic(value: Any, name: str, shape: tuple[int, ...]) -> None:
    got = tuple(jnp.shape(value))
    if got != shape:
        raise ValueError(f"{name} must have shape {shape}; got {got}")
    if not is_concrete(value):
        return
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative; its minimum is {array.min():.6g}")
    sums = array.sum(axis=-1)
    worst = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
    if abs(sums[worst] - 1.0) > 1e-4:
        where = f" (row {worst[0]})" if sums.ndim else ""
        raise ValueError(f"{name} must sum to 1 along its last axis; got {sums[worst]:.6g}{where}")


@dataclasses.dataclass(frozen=True)
class HMM(Model):
    """A hidden Markov model with ``K`` states and emissions from one
    component family, fitted by Baum-Welch (EM; MAP with Dirichlet priors).

    Args:
      emission: the emission family, e.g. :class:`jaxem.Gaussian` (any
        covariance type), :class:`jaxem.Categorical` (one-hot symbols),
        :class:`jaxem.Poisson`, :class:`jaxem.Bernoulli`,
        :class:`jaxem.StudentT`.
      num_states: ``K >= 1``.
      initial_concentration: Dirichlet ``α >= 1`` on the initial-state
        probabilities (``1``: no prior).
      transition_concentration: Dirichlet ``α >= 1`` on each row of the
        transition matrix (``1``: no prior).
      init_method: how :meth:`init` starts a restart: the emission
        parameters as a mixture's ``init_method`` (k-means on the steps by
        default); the chain from the initial assignment's first states and
        transitions, with one pseudo-count each.
      parallel: parallel-in-time inference (``lax.associative_scan``)
        instead of ``lax.scan``: fewer sequential steps for long sequences on
        an accelerator, ``K`` times the work.
      block_size: sequences per E-step block (``None``: chosen from the
        sizes).
      kmeans_max_iter: Lloyd iterations at most, for ``init_method="kmeans"``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (4, 50, 2))  # 4 sequences of 50 steps
      >>> model = jaxem.HMM(jaxem.Gaussian("diag"), num_states=2)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1))
      >>> result.params.transitions.shape
      (2, 2)
    """

    emission: Component
    num_states: int
    initial_concentration: float = 1.0
    transition_concentration: float = 1.0
    init_method: str = "kmeans"
    parallel: bool = False
    block_size: int | None = None
    kmeans_max_iter: int = 100

    def __post_init__(self):
        object.__setattr__(self, "emission", resolve_component(self.emission))
        set_ = lambda name, value: object.__setattr__(self, name, value)
        k = self.num_states
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"num_states must be a positive integer; got {k!r}")
        set_("num_states", int(k))
        for name in ("initial_concentration", "transition_concentration"):
            set_(name, _check_concentration(getattr(self, name), name))
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")
        if not isinstance(self.parallel, (bool, np.bool_)):
            raise TypeError(f"parallel must be True or False; got {self.parallel!r}")
        set_("parallel", bool(self.parallel))
        size = self.block_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
        ):
            raise ValueError(f"block_size must be a positive integer or None; got {size!r}")
        m = self.kmeans_max_iter
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
            raise ValueError(f"kmeans_max_iter must be a non-negative integer; got {m!r}")

    # ------------------------------------------------------------ the data

    def _unpack(self, x: Any) -> tuple[Array, Array, Array]:
        """``(values (B, T, ...) with padding replaced by each sequence's
        first step, lengths (B,) int32, valid (B, T))``."""
        if isinstance(x, tuple):
            values, lengths = x
            lengths = jnp.asarray(lengths).astype(jnp.int32)
        else:
            values = x
            lengths = jnp.full((values.shape[0],), values.shape[1], jnp.int32)
        values = jnp.asarray(values)
        valid = jnp.arange(values.shape[1])[None, :] < lengths[:, None]
        mask = valid.reshape(valid.shape + (1,) * (values.ndim - 2))
        return jnp.where(mask, values, values[:, :1]), lengths, valid

    @staticmethod
    def _steps(values: Array) -> Array:
        """``(B, T, ...)`` as the emission family's ``(B·T, ...)`` rows."""
        return values.reshape((values.shape[0] * values.shape[1], *values.shape[2:]))

    def check_data(self, x: Any) -> Array:
        """Raise for data the emission family cannot take (padding aside:
        non-finite values are named by sequence and step), lengths that are
        not integers in ``1 … T``, fewer valid steps than states, or a wrong
        layout; return whether the values are valid."""
        if isinstance(x, list):
            raise TypeError(
                "x must be an array (B, T, ...) of sequences, or a tuple (values, lengths); "
                "got a list"
            )
        if isinstance(x, tuple):
            if len(x) != 2:
                raise ValueError(
                    "x must be an array (B, T, ...) or a tuple (values (B, T, ...), lengths (B,)); "
                    f"got a tuple of {len(x)} arrays"
                )
            values, lengths = x
            if jnp.ndim(lengths) != 1:
                raise ValueError(f"lengths must have shape (B,); got {tuple(jnp.shape(lengths))}")
        else:
            values, lengths = x, None
        if jnp.ndim(values) < 3:
            raise ValueError(
                "x must hold sequences as an array (B, T, ...) of B sequences of T steps (one "
                f"sequence: x[None]); got shape {tuple(jnp.shape(values))}"
            )
        if not (is_concrete(values) and (lengths is None or is_concrete(lengths))):
            clean, _, _ = self._unpack(x)
            return self.emission.check_data(self._steps(clean), self.num_states)
        # Concrete: checked on the host, the padding left out.
        host = np.asarray(values)
        counts = np.full(host.shape[0], host.shape[1], np.int64)
        if lengths is not None:
            counts = check_lengths(lengths, width=host.shape[1])
        valid = np.arange(host.shape[1])[None, :] < counts[:, None]
        mask = valid.reshape(valid.shape + (1,) * (host.ndim - 2))
        missing = getattr(self.emission, "missing_values", False)
        # (an emission family that takes missing values leaves NaN to itself)
        if missing:
            check_finite(np.where(mask & ~np.isnan(host), host, 0), "x")
        else:
            check_finite(np.where(mask, host, 0), "x")
        if int(counts.sum()) < self.num_states:
            raise ValueError(
                f"x has {int(counts.sum())} valid step(s) but num_states={self.num_states}: "
                "need at least as many steps as states"
            )
        steps = host[valid]  # (the valid steps, in order)
        if missing:
            # A step with nothing observed is a gap in time: the chain moves on
            # and the step's emission contributes nothing (log-likelihood 0).
            flat = steps.reshape(steps.shape[0], -1)
            steps = steps[~np.all(np.isnan(flat), axis=1)] if flat.shape[1] else steps
            if steps.shape[0] == 0:
                raise ValueError("x has no observed value: every value is missing (NaN)")
        if isinstance(values, jax.Array):
            steps = jax.device_put(steps)
        return self.emission.check_data(steps, self.num_states)

    def for_data(self, x: Any) -> Any:
        """The model with its emission family specialised to the valid steps
        of concrete data ``x`` (e.g. whether Gaussian emissions have missing
        values)."""
        specialise = getattr(self.emission, "for_data", None)
        if specialise is None:
            return self
        sequences = self._sequences(x)
        values, lengths = sequences if isinstance(sequences, tuple) else (sequences, None)
        host = np.asarray(values)
        if lengths is None:
            steps = host.reshape((-1, *host.shape[2:]))
        else:
            steps = host[np.arange(host.shape[1])[None, :] < np.asarray(lengths)[:, None]]
        emission = specialise(steps)
        return self if emission is self.emission else dataclasses.replace(self, emission=emission)

    def check_params(self, params: Any, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, HMMParams):
            raise TypeError(f"params must be an HMMParams; got {type(params).__name__}")
        k = self.num_states
        _check_stochastic(params.initial, "params.initial", (k,))
        _check_stochastic(params.transitions, "params.transitions", (k, k))
        # (the emission family reads only the steps' shape and dtype)
        values = x[0] if isinstance(x, tuple) else x
        steps = jax.ShapeDtypeStruct(
            (values.shape[0] * values.shape[1], *values.shape[2:]), values.dtype
        )
        self.emission.check_params(params.emissions, steps, k)

    # ----------------------------------------------------------- inference

    def _log_potentials(self, params: HMMParams) -> tuple[Array, Array, Any]:
        return (
            jnp.log(params.initial),
            jnp.log(params.transitions),
            self.emission.prepare(params.emissions),
        )

    def _log_emissions(self, prepared: Any, values: Array, valid: Array) -> Array:
        """``(B, T, K)`` emission log-likelihoods, zero at padded steps."""
        flat = self.emission.log_likelihoods(prepared, self._steps(values))
        log_e = flat.reshape((*values.shape[:2], self.num_states))
        return jnp.where(valid[..., None], log_e, 0.0)

    def _block_rows(self, x: Any) -> int:
        if self.block_size is not None:
            return self.block_size
        values = x[0] if isinstance(x, tuple) else x
        steps = values.shape[1] * self.num_states * (self.num_states if self.parallel else 1)
        return max(1, (1 << 22) // max(steps, 1))

    def _over_sequences(self, algorithm: Any, params: HMMParams, x: Any):
        """``algorithm(log_initial, log_transition, log_emissions, length,
        parallel)`` (from :mod:`jaxem.inference`) on every sequence, vmapped;
        with the sequences' values and lengths."""
        log_initial, log_transition, prepared = self._log_potentials(params)
        values, lengths, valid = self._unpack(x)
        log_e = self._log_emissions(prepared, values, valid)
        run = lambda le, n: algorithm(log_initial, log_transition, le, n, self.parallel)
        return jax.vmap(run)(log_e, lengths), values, lengths

    def e_step(
        self, params: HMMParams, x: Any, weights: Array | None = None
    ) -> tuple[HMMStats, Array]:
        """Forward-backward on every sequence: the expected statistics and
        ``Σ_b w_b log p(x_b)``.

        Args:
          params: current parameters.
          x: sequences, ``(B, T, ...)`` or ``(values, lengths)``.
          weights: optional per-sequence weights, ``(B,)``.
        """

        def block(xb: Any, wb: Array | None) -> tuple[HMMStats, Array]:
            posterior, w, common, total = self._smoothed_block(params, xb, wb)
            transitions = jnp.sum(posterior.transitions * w[:, None, None], axis=0)
            return HMMStats(transitions=transitions, **common), total

        stats, total = reduce_over_rows(block, (x, weights), self._block_rows(x))
        return attach(stats, x), total

    def _smoothed_block(
        self, params: Any, xb: Any, wb: Array | None
    ) -> tuple[Any, Array, dict[str, Array], Array]:
        """Forward-backward on a block of sequences: ``(posterior, the
        sequence weights (B,), the statistics every HMM keeps beside its
        transitions' (initial, counts, emissions, num_sequences,
        num_steps), Σ_b w_b log p(x_b))``."""
        posterior, values, lengths = self._over_sequences(hmm_smoother, params, xb)
        dtype = posterior.marginals.dtype
        w = jnp.ones(lengths.shape, dtype) if wb is None else wb
        marginals = posterior.marginals * w[:, None, None]
        resp = self._steps(marginals)
        common = dict(
            initial=jnp.sum(marginals[:, 0], axis=0),
            counts=jnp.sum(resp, axis=0),
            emissions=self.emission.statistics(self._steps(values), resp, params.emissions),
            num_sequences=jnp.asarray(lengths.shape[0], dtype),
            num_steps=jnp.sum(lengths).astype(dtype),
        )
        # A zero-weight sequence adds nothing, even where its density is 0.
        total = jnp.sum(jnp.where(w > 0, w * posterior.log_likelihood, 0.0))
        return posterior, w, common, total

    def init_m_step_state(self, params: HMMParams) -> Any:
        """The emission component's M-step state (``()`` for closed forms)."""
        return self.emission.init_m_step_state(params.emissions)

    def m_step(
        self, stats: HMMStats, params: HMMParams, m_step_state: Any = None
    ) -> tuple[HMMParams, Any]:
        """Baum-Welch's M-step: normalised (Dirichlet-MAP) initial and
        transition counts, and the emission family's M-step on the expected
        state occupancies. Always finite: a state never visited keeps a
        uniform transition row (and finite emissions, see the family)."""
        if m_step_state is None:
            m_step_state = self.init_m_step_state(params)
        counts = guarded_counts(stats.counts, stats.num_steps)
        emissions, m_step_state = self.emission.maximize(
            stats.emissions, counts, params.emissions, m_step_state
        )
        initial, transitions = self._maximize_chain(stats, params)
        return HMMParams(initial, transitions, emissions), m_step_state

    def _maximize_chain(self, stats: HMMStats, params: HMMParams) -> tuple[Array, Array]:
        """The initial and transition probabilities from their expected
        counts: normalised, with the Dirichlet priors' pseudo-counts."""
        initial = _normalize_counts(stats.initial + (self.initial_concentration - 1.0))
        transitions = _normalize_counts(stats.transitions + (self.transition_concentration - 1.0))
        return initial, transitions

    def shift_stats(
        self, stats: HMMStats, from_params: HMMParams, to_params: HMMParams
    ) -> HMMStats:
        """Statistics re-expressed about ``to_params`` (the emission
        family's moments; the chain's counts do not depend on the parameters)."""
        emissions = self.emission.shift_statistics(
            stats.emissions, stats.counts, from_params.emissions, to_params.emissions
        )
        return stats._replace(emissions=emissions)

    def diagnose(self, stats: HMMStats, params: HMMParams) -> dict[str, Array]:
        """``{"collapsed": (K,)}``, states occupied for less than a thousandth
        of an average step's weight, and the emission family's own flags."""
        counts = guarded_counts(stats.counts, stats.num_steps)
        flags = self.emission.diagnose(stats.emissions, counts, params.emissions)
        return {"collapsed": collapsed(stats.counts, stats.num_steps), **flags}

    def log_prob(self, params: HMMParams, x: Any) -> Array:
        """Per-sequence ``log p(x_b)``, ``(B,)``."""
        return self._over_sequences(hmm_log_likelihood, params, x)[0]  # (the forward pass alone)

    def posterior(self, params: HMMParams, x: Any) -> Array:
        """Posterior state marginals ``p(z_{b,t} = k | x_b)``, ``(B, T, K)``
        (zero at padded steps)."""
        return self._over_sequences(hmm_smoother, params, x)[0].marginals

    def _log_chain(self, params: HMMParams, x: Any) -> tuple[Array, Array, Array]:
        """The log-potentials of every sequence: ``(log initial (K,), log
        transitions (K, K), log emissions (B, T, K), zero at padded steps)``
        (a subclass with time-varying transitions returns ``(B, T, K, K)``)."""
        log_initial, log_transition, prepared = self._log_potentials(params)
        values, _, valid = self._unpack(x)
        return log_initial, log_transition, self._log_emissions(prepared, values, valid)

    def expected_log_joint(
        self, params: HMMParams, x: Any, q_params: HMMParams, weights: Array | None = None
    ) -> Array:
        """``Σ_b w_b E_q[log p(x_b, z_b | params)]`` for the posterior over
        state paths ``q = p(z_b | x_b, q_params)``: EM's ``Q(params,
        q_params)`` without the prior, from forward-backward under
        ``q_params`` (marginals and pair marginals) and the log initial,
        transition and emission probabilities under ``params``. Padded steps
        and steps with nothing observed (gaps) contribute as in
        :meth:`e_step`.

        Args:
          params: the parameters of the log-joint.
          x: sequences, as for :meth:`e_step`.
          q_params: the parameters of the posterior.
          weights: optional per-sequence weights, ``(B,)``.

        Returns:
          A scalar.
        """

        def block(xb: Any, wb: Array | None) -> Array:
            posterior = self._over_sequences(hmm_smoother, q_params, xb)[0]
            log_initial, log_transition, log_e = self._log_chain(params, xb)
            per_sequence = (
                _expected(posterior.marginals[:, 0], log_initial)
                + _expected(posterior.transitions, log_transition)
                + _expected(posterior.marginals, log_e)
            )
            if wb is None:
                return jnp.sum(per_sequence)
            # A zero-weight sequence adds nothing, even where its density is 0.
            return jnp.sum(jnp.where(wb > 0, wb * per_sequence, 0.0))

        return reduce_over_rows(block, (x, weights), self._block_rows(x))

    def most_likely_states(self, params: HMMParams, x: Any) -> tuple[Array, Array]:
        """Viterbi: the most probable state paths ``(B, T)`` int32 (padded
        steps repeat the last valid state) and their log-joint ``(B,)``."""
        return self._over_sequences(viterbi, params, x)[0]

    def impute(self, params: HMMParams, x: Any, key: Array | None = None) -> Array:
        """The sequences' values ``(B, T, ...)`` with their missing (NaN)
        entries filled in (emission families that take missing values).

        Without ``key``: the conditional means ``E[x_m | x_o]`` (the emission
        family's conditional means averaged over the posterior state
        marginals). With ``key``: one draw from ``p(x_m | x_o)``: a state path
        from the posterior (forward filtering, backward sampling), then the
        missing values given the path. Observed entries and padded steps are
        returned as given.
        """
        impute = getattr(self.emission, "impute", None)
        if impute is None:
            raise TypeError(f"{type(self.emission).__name__} emissions have no missing values")
        given = jnp.asarray(x[0] if isinstance(x, tuple) else x)
        if key is None:
            resp = self.posterior(params, x)
            draw_key = None
        else:
            path_key, draw_key = jax.random.split(key)
            log_initial, log_transition, prepared = self._log_potentials(params)
            values, lengths, valid = self._unpack(x)
            log_e = self._log_emissions(prepared, values, valid)
            keys = jax.random.split(path_key, lengths.shape[0])
            paths = jax.vmap(
                lambda k, le, n: hmm_posterior_sample(
                    k, log_initial, log_transition, le, n, self.parallel
                )
            )(keys, log_e, lengths)
            resp = jax.nn.one_hot(paths, self.num_states, dtype=given.dtype)
        values, _, valid = self._unpack(x)
        filled = impute(params.emissions, self._steps(values), self._steps(resp), draw_key)
        filled = filled.reshape(values.shape)
        mask = valid.reshape(valid.shape + (1,) * (values.ndim - 2))
        return jnp.where(mask, filled, given)

    def log_prior(self, params: HMMParams) -> Array:
        """``log p(θ)``: the Dirichlet priors on the initial probabilities and
        each transition row, plus the emission family's prior (``0`` terms
        for concentrations of ``1``, as mixtures do)."""
        dtype = params.initial.dtype
        total = _log_dirichlet(params.initial, self.initial_concentration, dtype)
        total = total + jnp.sum(
            jax.vmap(lambda row: _log_dirichlet(row, self.transition_concentration, dtype))(
                params.transitions
            )
        )
        return total + self.emission.log_prior(params.emissions)

    def sample(self, key: Array, params: HMMParams, n: int) -> tuple[Any, Array]:
        """One sequence of ``n`` steps: ``(x (n, ...), states (n,))``."""
        params = jax.tree.map(jnp.asarray, params)
        state_key, emission_key = jax.random.split(key)
        states = hmm_sample_states(
            state_key, jnp.log(params.initial), jnp.log(params.transitions), n
        )
        return self.emission.sample(emission_key, params.emissions, states), states

    def _sequences(self, x: Any) -> Any:
        """The sequences' values in this class's layout, ``(B, T, ...)`` or
        ``(values, lengths)`` (a subclass whose data carry more, such as
        inputs, returns this part)."""
        return x

    def num_observations(self, x: Any) -> Array:
        """The number of valid steps (BIC's ``n``: an HMM observes steps; its
        rows are sequences)."""
        return jnp.sum(self._unpack(self._sequences(x))[1])

    def constraints(self, params: HMMParams) -> HMMParams:
        """Initial probabilities and each row of transitions on the simplex,
        and the emission family's declaration."""
        return HMMParams(gem.simplex, gem.simplex, self.emission.constraints(params.emissions))

    def num_parameters(self, params: HMMParams) -> int:
        """Free parameters: ``K − 1`` initial, ``K(K − 1)`` transition, and the
        emission family's."""
        k = self.num_states
        return int(k - 1 + k * (k - 1) + self.emission.num_parameters(params.emissions))

    # ------------------------------------------------------ initialisation

    def _weighted_steps(self, x: Any, weights: Array | None) -> tuple[Array, Array, Array]:
        """``(values (B, T, ...), valid (B, T), step weights (B·T,))``: each
        step weighs its sequence's weight, padded steps nothing."""
        values, lengths, valid = self._unpack(jax.tree.map(jnp.asarray, x))
        w = jnp.ones(lengths.shape, values.dtype) if weights is None else weights
        return values, valid, self._steps(valid * w[:, None]).astype(values.dtype)

    def init(self, key: Array, x: Any, weights: Array | None = None) -> HMMParams:
        """Parameters for one restart: emission parameters from
        ``init_method`` on the valid steps (a mixture's initialisation), the
        chain from that assignment's first states and transitions plus one
        pseudo-count each.

        Args:
          key: PRNG key.
          x: sequences.
          weights: optional per-sequence weights ``(B,)``.
        """
        values, _, step_weights = self._weighted_steps(self._sequences(x), weights)
        resp = initial_responsibilities(
            key,
            self.emission.features(self._steps(values)),
            self.num_states,
            self.init_method,
            step_weights,
            self.kmeans_max_iter,
        )
        return self.from_responsibilities(x, resp, weights)

    def from_responsibilities(self, x: Any, resp: Array, weights: Array | None = None) -> HMMParams:
        """Parameters from given state responsibilities ``(B·T, K)`` of the
        steps (rows in sequence order, padded steps included and ignored):
        the emission family's initialisation, and the chain from the
        responsibilities of first steps and consecutive pairs, with one
        pseudo-count each."""
        values, valid, step_weights = self._weighted_steps(x, weights)
        dtype = values.dtype
        emissions = self.emission.initialize(self._steps(values), resp, step_weights)
        per_step = resp * step_weights[:, None]
        per_step = per_step.reshape((*valid.shape, self.num_states))
        initial = _normalize_counts(jnp.sum(per_step[:, 0], axis=0) + 1.0)
        following = resp.reshape(per_step.shape)[:, 1:] * valid[:, 1:, None]
        pairs = jnp.einsum("btk,btl->kl", per_step[:, :-1], following)
        transitions = _normalize_counts(pairs + 1.0)
        return HMMParams(initial.astype(dtype), transitions.astype(dtype), emissions)


def _expected(probabilities: Array, log_values: Array) -> Array:
    """``Σ p · log_values`` per sequence (over every axis but the first of
    ``probabilities`` (B, ...); ``log_values`` broadcasts against it), with
    ``0 · (−∞)`` taken as ``0``."""
    terms = jnp.where(probabilities > 0, probabilities * log_values, 0.0)
    return jnp.sum(terms.reshape(terms.shape[0], -1), axis=1)


def _normalize_counts(counts: Array) -> Array:
    """Rows of non-negative counts as probabilities (a row of zeros: uniform)."""
    total = jnp.sum(counts, axis=-1, keepdims=True)
    uniform = jnp.full_like(counts, 1.0 / counts.shape[-1])
    return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), uniform)


def _log_dirichlet(probabilities: Array, concentration: float, dtype) -> Array:
    if concentration == 1.0:
        return jnp.zeros((), dtype)
    k = probabilities.shape[-1]
    alpha = concentration
    log_norm = gammaln(k * alpha) - k * gammaln(alpha)
    value = log_norm + (alpha - 1.0) * jnp.sum(jnp.log(probabilities))
    return value.astype(dtype)
