"""Finite mixtures with pluggable component distributions.

A :class:`Mixture` owns what every mixture shares: the mixing weights (with an
optional Dirichlet prior), the E-step (log-space responsibilities over row
blocks), the initialisations (k-means, k-means++, random responsibilities,
random observations), sampling and diagnostics. A :class:`Component` owns one
family of component distributions, for all ``K`` components at once: their
log-densities, their additive sufficient statistics and the closed-form
M-step. The Gaussian mixture is ``Mixture(Gaussian(...), K)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import _kmeans
from jaxem._numerics import (
    default_block_size,
    log_normalize,
    map_over_blocks,
    num_rows,
    sum_over_blocks,
)
from jaxem._validation import is_concrete

Array = jax.Array
Data = Any  # an (n, D) array, or a tuple of arrays with a common leading axis

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


class MixtureParams(NamedTuple):
    """Parameters of a :class:`Mixture`.

    Attributes:
      weights: mixing proportions, ``(K,)``, on the simplex.
      components: the component family's parameters (a NamedTuple whose
        leaves have a leading ``K`` axis, plus any resolved prior).
    """

    weights: Array
    components: Any


class MixtureStats(NamedTuple):
    """Additive expected sufficient statistics of a :class:`Mixture`.

    Attributes:
      counts: ``N_k = Σ_i w_i r_ik``, ``(K,)``.
      components: the component family's statistics (additive).
      num_observations: number of rows, a scalar.
    """

    counts: Array
    components: Any
    num_observations: Array


@runtime_checkable
class Component(Protocol):
    """A family of component distributions, evaluated for all ``K`` at once.

    A component is an immutable, hashable configuration object (like a
    model). Its parameters are a NamedTuple whose fitted leaves have a leading
    ``K`` axis; data-driven prior hyperparameters, when the family has a
    prior, are resolved by :meth:`initialize` and carried in the parameters.

    Optional methods: ``check_data(x, num_components)`` (shapes and types;
    runs at trace time), ``check_params(params, x, num_components)``,
    ``features(x) -> (n, F)`` (the points k-means seeds from; default ``x``),
    ``block_rows(x, num_components) -> int`` (rows per E-step block),
    ``prepare(params)`` (per-call precomputation passed to
    ``log_likelihoods``; default the parameters themselves),
    ``shift_statistics(stats, counts, from_params, to_params)`` (the same
    statistics re-expressed about ``to_params``, for families whose
    statistics are moments about the parameters they were computed under;
    online EM needs it to carry statistics across parameter updates; families
    whose statistics do not depend on the parameters omit it).
    """

    def log_likelihoods(self, prepared: Any, x: Data) -> Array:
        """``log p(x_i | z_i = k)`` for a block of rows, ``(rows, K)``."""
        ...

    def statistics(self, x: Data, resp: Array, params: Any) -> Any:
        """Additive statistics of a block, from weighted responsibilities
        ``resp`` ``(rows, K)`` computed under ``params``."""
        ...

    def maximize(self, stats: Any, counts: Array, params: Any) -> Any:
        """Closed-form ``argmax`` of the expected complete-data log-likelihood
        (plus log prior) from summed statistics; ``params`` are the parameters
        the statistics were computed under. Always finite."""
        ...

    def initialize(self, x: Data, resp: Array, weights: Array | None) -> Any:
        """Parameters from (unweighted) responsibilities ``(n, K)`` alone,
        resolving any data-driven prior."""
        ...

    def log_prior(self, params: Any) -> Array:
        """``log p(θ_components)``; ``0.0`` without a prior."""
        ...

    def sample(self, key: Array, params: Any, labels: Array) -> Any:
        """One draw per entry of ``labels`` ``(n,)`` from that component."""
        ...

    def num_parameters(self, params: Any) -> int:
        """Free parameters of all ``K`` components."""
        ...


def check_num_components(k: Any) -> int:
    """``k`` as an int ``>= 1``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"num_components must be an integer; got {k!r}")
    if k < 1:
        raise ValueError(f"num_components must be >= 1; got {k}")
    return int(k)


def check_block_size(block_size: Any) -> None:
    if block_size is not None and (
        isinstance(block_size, bool)
        or not isinstance(block_size, numbers.Integral)
        or block_size < 1
    ):
        raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A mixture of ``K`` components of one family, fitted by EM (MLE or MAP).

    Args:
      component: the component family, e.g. :class:`jaxem.Gaussian`,
        :class:`jaxem.Bernoulli`, :class:`jaxem.Poisson`.
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
        object.__setattr__(self, "num_components", check_num_components(self.num_components))
        for method in ("log_likelihoods", "statistics", "maximize", "initialize"):
            if not callable(getattr(self.component, method, None)):
                raise TypeError(
                    f"component must implement the jaxem.Component contract (no {method!r}); "
                    f"got {self.component!r}"
                )
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")
        alpha = self.weight_concentration
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"weight_concentration must be a number; got {alpha!r}")
        if not (alpha >= 1.0 and math.isfinite(alpha)):
            raise ValueError(
                "weight_concentration must be a finite number >= 1 (the MAP weights are on "
                f"the boundary of the simplex below 1); got {alpha}"
            )
        object.__setattr__(self, "weight_concentration", float(alpha))
        check_block_size(self.block_size)
        if (
            isinstance(self.kmeans_max_iter, bool)
            or not isinstance(self.kmeans_max_iter, numbers.Integral)
            or self.kmeans_max_iter < 0
        ):
            raise ValueError(
                f"kmeans_max_iter must be an integer >= 0; got {self.kmeans_max_iter!r}"
            )

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Data) -> None:
        """Raise ``ValueError``/``TypeError`` for data the component cannot
        take, or fewer observations than components."""
        check = getattr(self.component, "check_data", None)
        if check is not None:
            check(x, self.num_components)
        n = num_rows(x)
        if n < self.num_components:
            raise ValueError(
                f"x has {n} observation(s) but num_components={self.num_components}: "
                "need at least as many observations as components"
            )

    def check_params(self, params: Any, x: Data) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, MixtureParams):
            raise TypeError(f"params must be a MixtureParams; got {type(params).__name__}")
        k = self.num_components
        if tuple(jnp.shape(params.weights)) != (k,):
            raise ValueError(
                f"params.weights must have shape ({k},) for num_components={k}; "
                f"got {tuple(jnp.shape(params.weights))}"
            )
        check = getattr(self.component, "check_params", None)
        if check is not None:
            check(params.components, x, k)
        check_weights_simplex(params.weights)

    def _block_rows(self, x: Data) -> int:
        if self.block_size is not None:
            return self.block_size
        choose = getattr(self.component, "block_rows", None)
        if choose is not None:
            return choose(x, self.num_components)
        width = (
            sum(math.prod(leaf.shape[1:]) for leaf in jax.tree.leaves(x)) + 2 * self.num_components
        )
        return default_block_size(num_rows(x), width)

    def _prepare(self, params: MixtureParams) -> Any:
        prepare = getattr(self.component, "prepare", None)
        return params.components if prepare is None else prepare(params.components)

    def _joint(self, prepared: Any, log_weights: Array, x: Data) -> Array:
        return self.component.log_likelihoods(prepared, x) + log_weights

    # ------------------------------------------------------------- the contract

    def e_step(
        self, params: MixtureParams, x: Data, weights: Array | None = None
    ) -> tuple[MixtureStats, Array]:
        """Expected sufficient statistics and the summed log-likelihood.

        Args:
          params: current parameters.
          x: data (``(n, D)``, or a tuple of arrays for conditional components).
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          ``(stats, log_likelihood)``: :class:`MixtureStats`, and
          ``Σ_i w_i log p(x_i | params)`` (a scalar).
        """
        prepared = self._prepare(params)
        log_weights = jnp.log(params.weights)

        def block(xb: Data, wb: Array | None) -> tuple[MixtureStats, Array]:
            log_norm, resp = log_normalize(self._joint(prepared, log_weights, xb), axis=1)
            if wb is not None:
                resp = resp * wb[:, None]
                # A zero-weight row adds nothing, even where its density is 0.
                log_norm = jnp.where(wb > 0, log_norm * wb, 0.0)
            rows = jnp.asarray(num_rows(xb), log_norm.dtype)
            stats = MixtureStats(
                jnp.sum(resp, axis=0), self.component.statistics(xb, resp, params.components), rows
            )
            return stats, jnp.sum(log_norm)

        return sum_over_blocks(block, (x, weights), self._block_rows(x))

    def m_step(self, stats: MixtureStats, params: MixtureParams) -> MixtureParams:
        """Closed-form ``argmax Q(θ) + log p(θ)`` from the statistics.

        The weights are the (Dirichlet-MAP) normalised counts; the components
        come from the component family's closed form. Always finite: an empty
        component keeps finite parameters (see the component family).
        """
        counts = stats.counts + 10.0 * jnp.finfo(stats.counts.dtype).eps
        weights = self._maximize_weights(counts)
        components = self.component.maximize(stats.components, counts, params.components)
        return MixtureParams(weights, components)

    def shift_stats(
        self, stats: MixtureStats, from_params: MixtureParams, to_params: MixtureParams
    ) -> MixtureStats:
        """``stats`` computed under ``from_params``, re-expressed about
        ``to_params``: what :meth:`e_step` would have returned with the same
        responsibilities had it taken its moments about ``to_params``.

        Statistics taken about the parameters (e.g. Gaussian moments about the
        current means) are exact and free of cancellation, but statistics from
        different parameters can only be added after this shift; online EM
        (:func:`jaxem.online_em`) uses it. The identity for component families
        whose statistics do not depend on the parameters.
        """
        shift = getattr(self.component, "shift_statistics", None)
        if shift is None:
            return stats
        components = shift(
            stats.components, stats.counts, from_params.components, to_params.components
        )
        return stats._replace(components=components)

    def _maximize_weights(self, counts: Array) -> Array:
        counts = counts + (self.weight_concentration - 1.0)
        return counts / jnp.sum(counts)

    def log_prob(self, params: MixtureParams, x: Data) -> Array:
        """Per-observation ``log p(x_i)``, shape ``(n,)``."""
        prepared = self._prepare(params)
        log_weights = jnp.log(params.weights)
        return map_over_blocks(
            lambda xb: log_normalize(self._joint(prepared, log_weights, xb), axis=1)[0],
            (x,),
            self._block_rows(x),
        )

    def posterior(self, params: MixtureParams, x: Data) -> Array:
        """Responsibilities ``p(z_i = k | x_i)``, shape ``(n, K)``."""
        prepared = self._prepare(params)
        log_weights = jnp.log(params.weights)
        return map_over_blocks(
            lambda xb: log_normalize(self._joint(prepared, log_weights, xb), axis=1)[1],
            (x,),
            self._block_rows(x),
        )

    def log_prior(self, params: MixtureParams) -> Array:
        """``log p(θ)``: Dirichlet on the weights plus the components' prior.

        With ``weight_concentration = 1`` (no prior on the weights) the
        weights contribute ``0`` rather than the flat Dirichlet's constant
        ``log Γ(K)``, so a model without priors monitors the plain
        log-likelihood, as scikit-learn does.
        """
        return self._log_weight_prior(params.weights) + self.component.log_prior(params.components)

    def _log_weight_prior(self, weights: Array) -> Array:
        alpha = self.weight_concentration
        if alpha == 1.0:
            return jnp.zeros((), weights.dtype)
        k = self.num_components
        return (
            gammaln(k * alpha) - k * gammaln(alpha) + (alpha - 1.0) * jnp.sum(jnp.log(weights))
        ).astype(weights.dtype)

    def init(self, key: Array, x: Data, weights: Array | None = None) -> MixtureParams:
        """Parameters for one restart, from ``init_method`` (see the class).

        Args:
          key: PRNG key.
          x: data.
          weights: optional ``(n,)`` observation weights (used by the seeding,
            the Lloyd iterations, the initial M-step and a data-driven prior).
        """
        x = jax.tree.map(jnp.asarray, x)
        resp = initial_responsibilities(
            key,
            self._features(x),
            self.num_components,
            self.init_method,
            weights,
            self.kmeans_max_iter,
        )
        return self.from_responsibilities(x, resp, weights)

    def _features(self, x: Data) -> Array:
        features = getattr(self.component, "features", None)
        return x if features is None else features(x)

    def from_responsibilities(
        self, x: Data, resp: Array, weights: Array | None = None
    ) -> MixtureParams:
        """The M-step from given responsibilities ``(n, K)`` (unweighted; the
        observation weights multiply them). How every ``init_method`` ends,
        and how to start from a clustering of one's own."""
        x = jax.tree.map(jnp.asarray, x)
        weighted = resp if weights is None else resp * weights[:, None]
        counts = jnp.sum(weighted, axis=0)
        components = self.component.initialize(x, resp, weights)
        counts = counts + 10.0 * jnp.finfo(counts.dtype).eps
        return MixtureParams(self._maximize_weights(counts), components)

    def sample(self, key: Array, params: MixtureParams, n: int) -> tuple[Any, Array]:
        """``n`` draws: ``(x, labels (n,))``."""
        label_key, draw_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(params.weights), shape=(n,))
        return self.component.sample(draw_key, params.components, labels), labels

    def num_parameters(self, params: MixtureParams) -> int:
        """Free parameters: ``K − 1`` weights plus the components'."""
        return int(self.num_components - 1 + self.component.num_parameters(params.components))

    def diagnose(self, stats: MixtureStats, params: MixtureParams) -> dict[str, Array]:
        """``{"collapsed": (K,)}``: components whose total responsibility is
        below a thousandth of an average observation's weight."""
        return {"collapsed": collapsed(stats.counts, stats.num_observations)}


def collapsed(counts: Array, num_observations: Array) -> Array:
    """Components with less than a thousandth of an average observation's weight."""
    average_weight = jnp.sum(counts) / jnp.maximum(num_observations, 1.0)
    return counts < 1e-3 * average_weight


def check_weights_simplex(weights: Array) -> None:
    """Raise unless concrete ``weights`` are finite, non-negative and sum to 1."""
    if not is_concrete(weights):
        return
    w = np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ValueError("params.weights contains NaN or inf")
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-4:
        raise ValueError(
            f"params.weights must be non-negative and sum to 1; got sum {w.sum():.6g} "
            f"and minimum {w.min():.6g}"
        )


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
    w = jnp.ones(n, dtype) if weights is None else weights
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
