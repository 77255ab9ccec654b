"""A component that is itself a mixture: each of the ``K`` components of a
latent structure is a mixture of ``M`` components of one family.

``HMM(MixtureComponent(Gaussian("diag"), num_mix=3), num_states=K)`` is an
HMM whose states emit from Gaussian mixtures (hmmlearn's ``GMMHMM``), and
``Mixture(MixtureComponent(Poisson(), 2), K)`` a mixture of mixtures. The
inner family is evaluated for each outer component by ``vmap``: its
parameters carry a leading ``K`` axis over its own ``M`` components, so a
tied Gaussian covariance is tied within each outer component (hmmlearn's
``GMMHMM(covariance_type="tied")``). The E-step splits each outer
responsibility over the ``M`` inner components by their posterior; the
M-step is the inner family's, per outer component, and the mixing weights'.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, logsumexp

from jaxem import gem
from jaxem._validation import check_number, is_concrete
from jaxem.models._mixture import initial_responsibilities
from jaxem.models.components._component import Component, resolve_component

Array = jax.Array


class MixtureComponentParams(NamedTuple):
    """Parameters of ``K`` mixtures of ``M`` inner components.

    Attributes:
      weights: ``(K, M)`` mixing weights; rows on the simplex.
      components: the inner family's parameters, each leaf with leading axes
        ``(K, …)`` over the inner family's own layout for ``M`` components
        (e.g. Gaussian means ``(K, M, D)``).
    """

    weights: Array
    components: Any


class MixtureComponentStats(NamedTuple):
    """Statistics of ``K`` mixtures of ``M`` inner components.

    Attributes:
      counts: ``(K, M)`` total weighted inner responsibilities.
      components: the inner family's statistics, with a leading ``K`` axis.
    """

    counts: Array
    components: Any


def _take(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda leaf: leaf[index], tree)


@dataclasses.dataclass(frozen=True)
class MixtureComponent(Component):
    """Each component a mixture of ``num_mix`` components of ``component``.

    Args:
      component: the inner family (any :class:`jaxem.Component` with a
        closed-form or gradient M-step).
      num_mix: ``M >= 1`` inner components per component.
      weight_concentration: Dirichlet ``α >= 1`` on each row of mixing
        weights (``1``: no prior).

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (4, 30, 2))
      >>> emission = jaxem.MixtureComponent(jaxem.Gaussian("diag"), num_mix=2)
      >>> model = jaxem.HMM(emission, num_states=3)
      >>> params = jaxem.fit(model, x, key=jax.random.key(1), max_iter=5).params
      >>> params.emissions.weights.shape, params.emissions.components.means.shape
      ((3, 2), (3, 2, 2))
    """

    component: Component
    num_mix: int
    weight_concentration: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "component", resolve_component(self.component))
        m = self.num_mix
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"num_mix must be a positive integer; got {m!r}")
        object.__setattr__(self, "num_mix", int(m))
        alpha = check_number(self.weight_concentration, "weight_concentration")
        if alpha < 1.0:
            raise ValueError(f"weight_concentration must be a finite number >= 1; got {alpha}")
        object.__setattr__(self, "weight_concentration", alpha)

    # ------------------------------------------------------------ checks

    @property
    def missing_values(self) -> bool:
        """Whether NaN is a missing value: as for the inner family."""
        return getattr(self.component, "missing_values", False)

    def for_data(self, x: Any) -> MixtureComponent:
        """With the inner family specialised to concrete ``x``."""
        specialise = getattr(self.component, "for_data", None)
        if specialise is None:
            return self
        component = specialise(x)
        return (
            self if component is self.component else dataclasses.replace(self, component=component)
        )

    def check_data(self, x: Any, num_components: int) -> Array:
        """The inner family's checks."""
        return self.component.check_data(x, self.num_mix)

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong structure, shape or value."""
        if not isinstance(params, MixtureComponentParams):
            raise TypeError(f"params must be a MixtureComponentParams; got {type(params).__name__}")
        shape = (num_components, self.num_mix)
        got = tuple(jnp.shape(params.weights))
        if got != shape:
            raise ValueError(f"params.weights must have shape {shape}; got {got}")
        for leaf in jax.tree.leaves(params.components):
            if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != num_components:
                raise ValueError(
                    "every leaf of params.components must have a leading axis of "
                    f"{num_components} (one set of inner parameters per component); got shape "
                    f"{tuple(jnp.shape(leaf))}"
                )
        if is_concrete(params.weights):
            weights = np.asarray(params.weights, dtype=float)
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError("params.weights must be finite and non-negative")
            if not np.allclose(weights.sum(axis=1), 1.0, atol=1e-4):
                raise ValueError(f"params.weights rows must sum to 1; got {weights.sum(axis=1)}")
        # (concrete leaves sliced on the host: checking compiles nothing)
        host = jax.tree.map(
            lambda leaf: np.asarray(leaf) if is_concrete(leaf) else leaf, params.components
        )
        for k in range(num_components):
            self.component.check_params(_take(host, k), x, self.num_mix)

    def block_rows(self, x: Any, num_components: int) -> int:
        """The inner family's, for all ``K · M`` inner components."""
        return self.component.block_rows(x, num_components * self.num_mix)

    def features(self, x: Any) -> Array:
        return self.component.features(x)

    # --------------------------------------------------------- densities

    def prepare(self, params: MixtureComponentParams) -> tuple[Array, Any]:
        return jnp.log(params.weights), jax.vmap(self.component.prepare)(params.components)

    def _joint(self, prepared: tuple[Array, Any], x: Any) -> Array:
        """``log w_km + log p(x_i | k, m)``, ``(K, rows, M)``."""
        log_weights, inner = prepared
        log_densities = jax.vmap(self.component.log_likelihoods, in_axes=(0, None))(inner, x)
        return log_densities + log_weights[:, None, :]

    def log_likelihoods(self, prepared: tuple[Array, Any], x: Any) -> Array:
        """``log Σ_m w_km p(x_i | k, m)``, ``(rows, K)``."""
        return logsumexp(self._joint(prepared, x), axis=-1).T

    # ----------------------------------------------------- statistics, M

    def statistics(self, x: Any, resp: Array, params: MixtureComponentParams):
        """Each outer responsibility split over the inner components by their
        posterior, and the inner family's statistics per component."""
        joint = self._joint(self.prepare(params), x)  # (K, rows, M)
        inner = jax.nn.softmax(joint, axis=-1) * resp.T[:, :, None]
        stats = jax.vmap(self.component.statistics, in_axes=(None, 0, 0))(
            x, inner, params.components
        )
        return MixtureComponentStats(jnp.sum(inner, axis=1), stats)

    def _guarded(self, stats: MixtureComponentStats, counts: Array) -> Array:
        """Inner counts plus ``10 eps`` of an inner component's share of the
        (guarded, positive) outer count, so an empty inner component divides
        by a positive number."""
        eps = jnp.finfo(stats.counts.dtype).eps
        return stats.counts + 10.0 * eps * counts[:, None] / self.num_mix

    def maximize(self, stats, counts, params, m_step_state=()):
        """The mixing weights (normalised counts, with the Dirichlet prior)
        and the inner family's M-step per component."""
        inner_counts = self._guarded(stats, counts)
        states = m_step_state if m_step_state != () else self.init_m_step_state(params)
        components, states = jax.vmap(self.component.maximize)(
            stats.components, inner_counts, params.components, states
        )
        weights = self._maximize_weights(stats.counts, params.weights)
        return MixtureComponentParams(weights, components), states

    def _maximize_weights(self, counts: Array, weights: Array) -> Array:
        totals = counts + (self.weight_concentration - 1.0)
        sums = jnp.sum(totals, axis=1, keepdims=True)
        return jnp.where(sums > 0, totals / jnp.where(sums > 0, sums, 1.0), weights)

    def init_m_step_state(self, params: MixtureComponentParams) -> Any:
        return jax.vmap(self.component.init_m_step_state)(params.components)

    def shift_statistics(self, stats, counts, from_params, to_params):
        shifted = jax.vmap(self.component.shift_statistics)(
            stats.components, stats.counts, from_params.components, to_params.components
        )
        return stats._replace(components=shifted)

    def diagnose(self, stats, counts, params) -> dict[str, Array]:
        """The inner family's flags, a component flagged when any of its
        inner components is."""
        flags = jax.vmap(self.component.diagnose)(
            stats.components, self._guarded(stats, counts), params.components
        )
        return {
            name: jnp.any(flag.reshape(flag.shape[0], -1), axis=1) for name, flag in flags.items()
        }

    def log_prior(self, params: MixtureComponentParams) -> Array:
        """The inner family's prior plus the Dirichlet prior on the weights."""
        total = jnp.sum(jax.vmap(self.component.log_prior)(params.components))
        alpha = self.weight_concentration
        if alpha == 1.0:
            return total
        m = self.num_mix
        rows = gammaln(m * alpha) - m * gammaln(alpha)
        rows = rows + (alpha - 1.0) * jnp.sum(jnp.log(params.weights), axis=1)
        return total + jnp.sum(rows).astype(total.dtype)

    # ---------------------------------------------------- initialisation

    def initialize(self, x: Any, resp: Array, weights: Array | None = None):
        """Per component, k-means on its rows (weighted by the
        responsibilities; a fixed key, so restarts differ through ``resp``)
        splits it into ``M`` inner components."""
        n = resp.shape[0]
        w = jnp.ones((n,), resp.dtype) if weights is None else weights
        features = self.component.features(x)
        keys = jax.random.split(jax.random.key(0), resp.shape[1])

        def one(key, r):
            split = initial_responsibilities(key, features, self.num_mix, "kmeans", r * w + 1e-30)
            inner = split * r[:, None]
            params = self.component.initialize(x, inner, weights)
            counts = jnp.sum(inner * w[:, None], axis=0) + 1e-12
            return counts / jnp.sum(counts), params

        mixing, components = jax.vmap(one)(keys, resp.T)
        return MixtureComponentParams(mixing.astype(resp.dtype), components)

    def sample(self, key: Array, params: MixtureComponentParams, labels: Array) -> Any:
        """One draw per label: an inner component from the label's weights,
        then a draw from it."""
        pick_key, draw_key = jax.random.split(key)
        inner = jax.random.categorical(pick_key, jnp.log(params.weights[labels]))
        keys = jax.random.split(draw_key, params.weights.shape[0])
        draws = jax.vmap(self.component.sample, in_axes=(0, 0, None))(
            keys, params.components, inner
        )  # (K, n, ...): every row from every component's mixture; keep its own
        return jax.tree.map(lambda leaf: leaf[labels, jnp.arange(labels.shape[0])], draws)

    def constraints(self, params: MixtureComponentParams) -> MixtureComponentParams:
        """Rows of weights on the simplex and the inner family's declaration
        (over leaves with the extra leading ``K`` axis)."""
        inner = self.component.constraints(_take(params.components, 0))
        return MixtureComponentParams(gem.simplex, inner)

    def num_parameters(self, params: MixtureComponentParams) -> int:
        k, m = params.weights.shape
        return int(k * (m - 1) + k * self.component.num_parameters(_take(params.components, 0)))
