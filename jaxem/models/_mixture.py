"""Finite mixtures built from a component family.

A mixture owns what every mixture shares: the mixing weights (with an
optional Dirichlet prior), the E-step (the posterior of the discrete latent,
:mod:`jaxem.inference`, over row blocks), the initialisations (k-means,
k-means++, random responsibilities, random observations), sampling and
diagnostics. The component (:class:`jaxem.Component`) owns the distribution
of an observation given its component: log-likelihoods for all ``K`` at
once, statistics and the M-step, closed-form or by gradient steps alike.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import _kmeans, gem
from jaxem._model import Model
from jaxem._numerics import frame_scale, num_rows
from jaxem._stats import attach, map_over_rows, reduce_over_rows
from jaxem._validation import check_int, check_number, is_concrete
from jaxem.inference import discrete_posterior, expected_log_joint
from jaxem.models.components._checks import guarded_counts
from jaxem.models.components._component import Component, resolve_component

Array = jax.Array
Data = Any  # an (n, D) array, or a tuple of arrays with a common leading axis

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


class MixtureParams(NamedTuple):
    """Parameters of a :class:`jaxem.Mixture`.

    Attributes:
      weights: mixing proportions, ``(K,)``, on the simplex.
      components: the component family's parameters (leaves with a leading
        ``K`` axis, plus any resolved prior).
    """

    weights: Array
    components: Any


class MixtureStats(NamedTuple):
    """Expected sufficient statistics of a mixture.

    Attributes:
      counts: ``N_k = Σ_i w_i r_ik``, ``(K,)``.
      components: the component family's statistics (additive, or
        :class:`~jaxem.PerObservation` for gradient components).
      num_observations: number of rows, a scalar.
    """

    counts: Array
    components: Any
    num_observations: Array


def collapsed(counts: Array, num_observations: Array) -> Array:
    """Components with less than a thousandth of an average observation's weight."""
    average_weight = jnp.sum(counts) / jnp.maximum(num_observations, 1.0)
    return counts < 1e-3 * average_weight


def check_simplex(weights: Any, name: str = "params.weights") -> None:
    """Raise unless concrete ``weights`` are finite, non-negative and sum to 1."""
    if not is_concrete(weights):
        return
    w = np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-4:
        raise ValueError(
            f"{name} must be non-negative and sum to 1; got sum {w.sum():.6g} "
            f"and minimum {w.min():.6g}"
        )


def check_weight_shape(weights: Any, num_components: int, context: str = "") -> None:
    got = tuple(jnp.shape(weights))
    if got != (num_components,):
        raise ValueError(
            f"params.weights must have shape ({num_components},) for "
            f"num_components={num_components}{context}; got {got}"
        )


def check_mixture_options(model: Any) -> None:
    """Check (and normalise) the options every mixture has."""
    set_ = lambda name, value: object.__setattr__(model, name, value)
    set_("num_components", check_int(model.num_components, "num_components", 1))
    if model.init_method not in INIT_METHODS:
        raise ValueError(f"init_method must be one of {INIT_METHODS}; got {model.init_method!r}")
    alpha = check_number(model.weight_concentration, "weight_concentration")
    if alpha < 1.0:
        raise ValueError(
            "weight_concentration must be a finite number >= 1 (the MAP weights are on "
            f"the boundary of the simplex below 1); got {alpha}"
        )
    set_("weight_concentration", alpha)
    size = model.block_size
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
    ):
        raise ValueError(f"block_size must be a positive integer or None; got {size!r}")
    set_("kmeans_max_iter", check_int(model.kmeans_max_iter, "kmeans_max_iter", 0))


def initial_responsibilities(
    key: Array,
    features: Array,
    num_components: int,
    method: str,
    weights: Array | None = None,
    kmeans_max_iter: int = 100,
) -> Array:
    """``(n, K)`` starting responsibilities from an ``init_method``.

    ``"kmeans"``: one-hot k-means labels (k-means++ seeding, then Lloyd);
    ``"k-means++"`` and ``"random_from_data"``: one-hot on ``K`` seed rows
    (k-means++ seeds, or uniformly drawn rows); ``"random"``: rows drawn
    uniformly from the simplex's interior and normalised.
    """
    n = features.shape[0]
    k = num_components
    dtype = features.dtype
    # Weights relative to the largest: seeds do not depend on the weights'
    # scale (at 1e-20 or 1e20 the rounding of the sampling masses would break
    # ties between equally distant rows differently).
    w = jnp.ones(n, dtype) if weights is None else weights / jnp.max(weights)
    # k-means in a frame scaled by a power of two (the same clusters, exactly;
    # squared distances of data of size 1e18 would overflow float32).
    features = features / frame_scale(jnp.max(jnp.abs(features - jnp.mean(features, axis=0))))
    if method in ("kmeans", "k-means++"):
        centres, seeds = _kmeans.kmeans_plusplus(key, features, k, w)
        if method == "kmeans":
            _, labels = _kmeans.lloyd(features, centres, w, max_iter=kmeans_max_iter)
            return jax.nn.one_hot(labels, k, dtype=dtype)
        return jnp.zeros((n, k), dtype).at[seeds, jnp.arange(k)].set(1.0)
    if method == "random":
        resp = jax.random.uniform(key, (n, k), dtype)
        return resp / jnp.sum(resp, axis=1, keepdims=True)
    p = None if weights is None else w / jnp.sum(w)  # no constant p (see _kmeans)
    seeds = jax.random.choice(key, n, (k,), replace=False, p=p)
    return jnp.zeros((n, k), dtype).at[seeds, jnp.arange(k)].set(1.0)


class MixtureBase(Model):
    """The mixture model over ``self.component``, ``self.num_components``,
    ``self.init_method``, ``self.weight_concentration``, ``self.block_size``
    and ``self.kmeans_max_iter``; subclasses choose the parameter layout with
    ``_split`` and ``_join`` (:class:`jaxem.GaussianMixture` keeps
    scikit-learn's flat one)."""

    component: Component
    num_components: int
    init_method: str
    weight_concentration: float
    block_size: int | None
    kmeans_max_iter: int

    # ---------------------------------------------------------------- layout

    def _split(self, params: Any) -> tuple[Array, Any]:
        """``(weights, component parameters)`` of ``params`` (no copy)."""
        return params.weights, params.components

    def _join(self, weights: Array, components: Any) -> Any:
        return MixtureParams(weights, components)

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Data) -> Array:
        """Raise ``ValueError``/``TypeError`` for data the component cannot
        take (values when concrete), or fewer observations than components;
        return whether the values are valid."""
        valid = self.component.check_data(x, self.num_components)
        n = num_rows(x)
        if n < self.num_components:
            raise ValueError(
                f"x has {n} observation(s) but num_components={self.num_components}: "
                "need at least as many observations as components"
            )
        return valid

    def check_params(self, params: Any, x: Data) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, MixtureParams):
            raise TypeError(f"params must be a MixtureParams; got {type(params).__name__}")
        check_weight_shape(params.weights, self.num_components)
        self.component.check_params(params.components, x, self.num_components)
        check_simplex(params.weights)

    def for_data(self, x: Data) -> Any:
        """The mixture with its component family specialised to concrete
        ``x`` (e.g. whether Gaussian data hold missing values)."""
        specialise = getattr(self.component, "for_data", None)
        if specialise is None:
            return self
        component = specialise(x)
        if component is self.component:
            return self
        return dataclasses.replace(self, component=component)

    def _block_rows(self, x: Data) -> int:
        if self.block_size is not None:
            return self.block_size
        return self.component.block_rows(x, self.num_components)

    def log_joint(self, params: Any, x: Data) -> Array:
        """``log p(x_i, z_i = k) = log π_k + log p(x_i | k)``, ``(n, K)``
        (differentiable in ``params``)."""
        return self._log_joint(params)(x)

    def _log_joint(self, params: Any) -> Any:
        """``x_block -> log π_k + log p(x_i | k)``, ``(rows, K)``."""
        weights, components = self._split(params)
        prepared = self.component.prepare(components)
        log_weights = jnp.log(weights)
        return lambda xb: self.component.log_likelihoods(prepared, xb) + log_weights

    # ------------------------------------------------------------- the contract

    def e_step(
        self, params: Any, x: Data, weights: Array | None = None
    ) -> tuple[MixtureStats, Array]:
        """Expected sufficient statistics and the summed log-likelihood.

        Args:
          params: current parameters.
          x: data (``(n, D)``, or a tuple of arrays for conditional components).
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          ``(stats, log_likelihood)``: :class:`MixtureStats` (the component's
          statistics computed under ``params``), and
          ``Σ_i w_i log p(x_i | params)`` (a scalar).
        """
        _, components = self._split(params)
        log_joint = self._log_joint(params)

        def block(xb: Data, wb: Array | None) -> tuple[MixtureStats, Array]:
            log_marginal, resp = discrete_posterior(log_joint(xb))
            if wb is not None:
                resp = resp * wb[:, None]
                # A zero-weight row adds nothing, even where its density is 0.
                log_marginal = jnp.where(wb > 0, log_marginal * wb, 0.0)
            rows = jnp.asarray(num_rows(xb), log_marginal.dtype)
            stats = MixtureStats(
                jnp.sum(resp, axis=0), self.component.statistics(xb, resp, components), rows
            )
            return stats, jnp.sum(log_marginal)

        stats, total = reduce_over_rows(block, (x, weights), self._block_rows(x))
        return attach(stats, x), total

    def init_m_step_state(self, params: Any) -> Any:
        """The component's M-step state (``()`` for closed forms)."""
        return self.component.init_m_step_state(self._split(params)[1])

    def m_step(self, stats: MixtureStats, params: Any, m_step_state: Any = None) -> tuple[Any, Any]:
        """``argmax Q(θ) + log p(θ)`` from the statistics (or, for a gradient
        component, an improvement of it).

        The weights are the (Dirichlet-MAP) normalised counts; the components
        come from the component family's M-step. Always finite: an empty
        component keeps finite parameters (see the component family).

        Args:
          stats: statistics from :meth:`e_step` under ``params`` (summed over
            any number of pieces of the data).
          params: the parameters the statistics were computed under.
          m_step_state: the component's M-step state (``None``: a fresh one).

        Returns:
          ``(params, m_step_state)``.
        """
        if m_step_state is None:
            m_step_state = self.init_m_step_state(params)
        counts = guarded_counts(stats.counts, stats.num_observations)
        _, components = self._split(params)
        components, m_step_state = self.component.maximize(
            stats.components, counts, components, m_step_state
        )
        return self._join(self._maximize_weights(counts), components), m_step_state

    def shift_stats(self, stats: MixtureStats, from_params: Any, to_params: Any) -> MixtureStats:
        """``stats`` computed under ``from_params``, re-expressed about
        ``to_params``: what :meth:`e_step` would have returned with the same
        responsibilities had it taken its moments about ``to_params``.

        Statistics taken about the parameters (e.g. Gaussian moments about the
        current means) are exact and free of cancellation, but statistics from
        different parameters can only be added after this shift; online EM
        (:func:`jaxem.online_em`) uses it. The identity for component families
        whose statistics do not depend on the parameters.
        """
        components = self.component.shift_statistics(
            stats.components, stats.counts, self._split(from_params)[1], self._split(to_params)[1]
        )
        return stats._replace(components=components)

    def _maximize_weights(self, counts: Array) -> Array:
        counts = counts + (self.weight_concentration - 1.0)
        return counts / jnp.sum(counts)

    def log_prob(self, params: Any, x: Data) -> Array:
        """Per-observation ``log p(x_i)``, shape ``(n,)``."""
        log_joint = self._log_joint(params)
        return map_over_rows(
            lambda xb: discrete_posterior(log_joint(xb))[0], (x,), self._block_rows(x)
        )

    def posterior(self, params: Any, x: Data) -> Array:
        """Responsibilities ``p(z_i = k | x_i)``, shape ``(n, K)``."""
        log_joint = self._log_joint(params)
        return map_over_rows(
            lambda xb: discrete_posterior(log_joint(xb))[1], (x,), self._block_rows(x)
        )

    def expected_log_joint(
        self, params: Any, x: Data, q_params: Any, weights: Array | None = None
    ) -> Array:
        """``Σ_i w_i Σ_k q_ik log p(x_i, z_i = k | params)``, with ``q_ik =
        p(z_i = k | x_i, q_params)``: EM's ``Q(params, q_params)`` without
        the prior (differentiable in both parameter sets).

        Args:
          params: the parameters of the log-joint.
          x: data.
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

        return reduce_over_rows(block, (x, weights), self._block_rows(x))

    def impute(self, params: Any, x: Array, key: Array | None = None) -> Array:
        """``x`` with its missing (NaN) entries filled in (component families
        that take missing values, such as :class:`jaxem.Gaussian`).

        Without ``key``: the conditional means ``E[x_m | x_o] = Σ_k
        p(z = k | x_o) E[x_m | x_o, z = k]``. With ``key``: one draw per row
        from ``p(x_m | x_o)`` (a component from the posterior, then the
        missing values from its conditional distribution). Observed entries
        are returned unchanged.
        """
        impute = getattr(self.component, "impute", None)
        if impute is None:
            raise TypeError(f"{type(self.component).__name__} components have no missing values")
        x = jnp.asarray(x)
        return impute(self._split(params)[1], x, self.posterior(params, x), key)

    def log_prior(self, params: Any) -> Array:
        """``log p(θ)``: Dirichlet on the weights plus the components' prior.

        With ``weight_concentration = 1`` (no prior on the weights) the
        weights contribute ``0`` rather than the flat Dirichlet's constant
        ``log Γ(K)``, so a model without priors monitors the plain
        log-likelihood, as scikit-learn does.
        """
        weights, components = self._split(params)
        return self._log_weight_prior(weights) + self.component.log_prior(components)

    def _log_weight_prior(self, weights: Array) -> Array:
        alpha = self.weight_concentration
        if alpha == 1.0:
            return jnp.zeros((), weights.dtype)
        k = self.num_components
        return (
            gammaln(k * alpha) - k * gammaln(alpha) + (alpha - 1.0) * jnp.sum(jnp.log(weights))
        ).astype(weights.dtype)

    def init(self, key: Array, x: Data, weights: Array | None = None) -> Any:
        """Parameters for one restart, from ``init_method``.

        Args:
          key: PRNG key.
          x: data.
          weights: optional ``(n,)`` observation weights (used by the seeding,
            the Lloyd iterations, the initial M-step and a data-driven prior).
        """
        x = jax.tree.map(jnp.asarray, x)
        resp = initial_responsibilities(
            key,
            self.component.features(x),
            self.num_components,
            self.init_method,
            weights,
            self.kmeans_max_iter,
        )
        return self.from_responsibilities(x, resp, weights)

    def from_responsibilities(self, x: Data, resp: Array, weights: Array | None = None) -> Any:
        """The M-step from given responsibilities ``(n, K)`` (unweighted; the
        observation weights multiply them). How every ``init_method`` ends,
        and how to start from a clustering of one's own."""
        x = jax.tree.map(jnp.asarray, x)
        weighted = resp if weights is None else resp * weights[:, None]
        counts = guarded_counts(jnp.sum(weighted, axis=0), num_rows(x))
        components = self.component.initialize(x, resp, weights)
        return self._join(self._maximize_weights(counts), components)

    def sample(self, key: Array, params: Any, n: int) -> tuple[Any, Array]:
        """``n`` draws: ``(x, labels (n,))``."""
        weights, components = self._split(params)
        label_key, draw_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(weights), shape=(n,))
        return self.component.sample(draw_key, components, labels), labels

    def predict(self, params: Any, inputs: Array) -> Array:
        """Conditional components: the mixture's expected target given the
        inputs, ``Σ_k π_k E[y | x, k]`` (``(n,)`` or ``(n, T)``; class
        probabilities ``(n, C)`` for softmax components)."""
        weights, components = self._split(params)
        return jnp.tensordot(self.component.predict(components, inputs), weights, ([1], [0]))

    def sample_targets(self, key: Array, params: Any, inputs: Array) -> tuple[Array, Array]:
        """Conditional components: one target per input row,
        ``(targets, labels (n,))``."""
        weights, components = self._split(params)
        label_key, draw_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(weights), shape=(inputs.shape[0],))
        return self.component.sample_targets(draw_key, components, inputs, labels), labels

    def constraints(self, params: Any) -> Any:
        """Weights on the simplex and the component family's declaration, in
        the parameters' layout."""
        return self._join(gem.simplex, self.component.constraints(self._split(params)[1]))

    def num_parameters(self, params: Any) -> int:
        """Free parameters: ``K − 1`` weights plus the components'."""
        return int(self.num_components - 1 + self.component.num_parameters(self._split(params)[1]))

    def diagnose(self, stats: MixtureStats, params: Any) -> dict[str, Array]:
        """``{"collapsed": (K,)}``, components whose total responsibility is
        below a thousandth of an average observation's weight, and the
        component family's own flags (e.g. ``"singular"`` for Gaussian
        components)."""
        counts = guarded_counts(stats.counts, stats.num_observations)
        flags = self.component.diagnose(stats.components, counts, self._split(params)[1])
        return {"collapsed": collapsed(stats.counts, stats.num_observations), **flags}


@dataclasses.dataclass(frozen=True)
class Mixture(MixtureBase):
    """A mixture of ``K`` components of one family, fitted by EM (MLE or MAP).

    Args:
      component: the component family, e.g. :class:`jaxem.Gaussian`,
        :class:`jaxem.Poisson`, :class:`jaxem.LinearRegression`, or a
        gradient-fitted one such as :class:`jaxem.LogisticRegression`.
      num_components: ``K >= 1``.
      init_method: how :meth:`init` starts a restart: ``"kmeans"`` (greedy
        k-means++ seeding on the component's features, Lloyd iterations, then
        an M-step from the hard assignment), ``"k-means++"`` (an M-step from
        the seeds alone), ``"random"`` (random responsibilities) or
        ``"random_from_data"`` (``K`` random observations as seeds).
      weight_concentration: Dirichlet ``α >= 1`` on the weights (``1``: no
        prior on the weights).
      block_size: rows per E-step block; ``None`` lets the component choose.
      kmeans_max_iter: Lloyd iterations at most, for ``init_method="kmeans"``.

    Examples:
      >>> import jax, jaxem
      >>> counts = jax.random.poisson(jax.random.key(0), 3.0, (200, 4))
      >>> model = jaxem.Mixture(jaxem.Poisson(), num_components=2)
      >>> result = jaxem.fit(model, counts, key=jax.random.key(1))
      >>> result.params.components.rates.shape
      (2, 4)
    """

    component: Component
    num_components: int
    init_method: str = "kmeans"
    weight_concentration: float = 1.0
    block_size: int | None = None
    kmeans_max_iter: int = 100

    def __post_init__(self):
        object.__setattr__(self, "component", resolve_component(self.component))
        check_mixture_options(self)
