"""Gaussian mixture models with full, tied, diagonal or spherical covariances.

:class:`GaussianMixture` is ``Mixture(Gaussian(covariance_type, reg_covar,
prior), num_components)`` with scikit-learn's flat parameter layout
(``weights``, ``means``, ``covariances``): every computation is the mixture's
and the Gaussian component's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem.models._gaussian import (
    Gaussian,
    GaussianMixturePrior,
    GaussianMixturePriorParams,
    GaussianParams,
    GaussianPriorParams,
    GaussianStats,
    check_gaussian_params,
)
from jaxem.models._mixture import (
    INIT_METHODS,
    Mixture,
    MixtureParams,
    MixtureStats,
    check_block_size,
    check_num_components,
    check_weights_simplex,
)

Array = jax.Array


class GaussianMixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture (scikit-learn's shapes).

    Attributes:
      weights: mixing proportions, ``(K,)``, on the simplex.
      means: component means, ``(K, D)``.
      covariances: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical.
      prior: the resolved prior hyperparameters when the model has a prior
        (carried unchanged by the M-step; not fitted), else ``None``.
    """

    weights: Array
    means: Array
    covariances: Array
    prior: GaussianMixturePriorParams | None = None


GaussianMixtureStats = MixtureStats
"""A Gaussian mixture's statistics: :class:`MixtureStats` holding
:class:`GaussianStats` (moments about the current means)."""


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A mixture of ``K`` multivariate Gaussians, fitted by EM (MLE or MAP).

    The model holds configuration only; parameters are a
    :class:`GaussianMixtureParams` pytree. Every method is a pure function of
    ``(params, x)`` for one dataset, so it can be jitted, vmapped and
    differentiated. It is :class:`jaxem.Mixture` with :class:`jaxem.Gaussian`
    components: E and M steps are matrix products over Cholesky factors,
    evaluated in row blocks: no ``(n, K, D)`` or ``(n, K, D, D)`` tensor is
    ever formed, and second moments are taken about the current means so
    float32 stays accurate.

    Args:
      num_components: ``K >= 1``.
      covariance_type: ``"full"`` (each component its own matrix),
        ``"tied"`` (one shared matrix), ``"diag"`` (per-component diagonal) or
        ``"spherical"`` (per-component single variance).
      reg_covar: non-negative value added to the covariances' diagonal after
        each M-step, as in scikit-learn.
      init_method: how :meth:`init` starts a restart: ``"kmeans"`` (greedy
        k-means++ seeding, then Lloyd iterations to convergence, then an
        M-step from the hard assignment), ``"k-means++"`` (an M-step from the
        seeds alone), ``"random"`` (random responsibilities) or
        ``"random_from_data"`` (``K`` random observations as seeds).
      prior: a :class:`GaussianMixturePrior` for MAP estimation, or ``None``
        for maximum likelihood.
      block_size: rows per block in the E-step (bounds temporaries to
        ``block_size × K × D``); ``None`` picks it from the backend and sizes.
      kmeans_max_iter: Lloyd iterations at most, for ``init_method="kmeans"``.

    Examples:
      >>> import jax, jaxem
      >>> x = jax.random.normal(jax.random.key(0), (500, 2))
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(1), x)
      >>> params.means.shape, params.covariances.shape
      ((2, 2), (2, 2, 2))
      >>> stats, log_lik = model.e_step(params, x)
      >>> params = model.m_step(stats, params)
      >>> model.posterior(params, x).shape
      (500, 2)
    """

    num_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    init_method: str = "kmeans"
    prior: GaussianMixturePrior | None = None
    block_size: int | None = None
    kmeans_max_iter: int = 100
    mixture: Mixture = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "num_components", check_num_components(self.num_components))
        if self.init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}; got {self.init_method!r}")
        if self.prior is not None and not isinstance(self.prior, GaussianMixturePrior):
            raise TypeError(f"prior must be a GaussianMixturePrior or None; got {self.prior!r}")
        check_block_size(self.block_size)
        prior = self.prior
        component = Gaussian(
            self.covariance_type,
            self.reg_covar,
            None if prior is None else prior.component_prior(),
        )
        object.__setattr__(self, "reg_covar", component.reg_covar)
        mixture = Mixture(
            component,
            self.num_components,
            init_method=self.init_method,
            weight_concentration=1.0 if prior is None else prior.weight_concentration,
            block_size=self.block_size,
            kmeans_max_iter=self.kmeans_max_iter,
        )
        object.__setattr__(self, "mixture", mixture)

    @property
    def component(self) -> Gaussian:
        """The :class:`Gaussian` component family."""
        return self.mixture.component

    # ------------------------------------------------------ parameter layout

    def to_mixture_params(self, params: GaussianMixtureParams) -> MixtureParams:
        """The same parameters in :class:`Mixture`'s layout."""
        prior = params.prior
        niw = None if prior is None else GaussianPriorParams(*prior[1:])
        return MixtureParams(params.weights, GaussianParams(params.means, params.covariances, niw))

    def from_mixture_params(self, params: MixtureParams) -> GaussianMixtureParams:
        """:class:`Mixture` parameters in this class's flat layout."""
        components = params.components
        prior = None
        if components.prior is not None:
            alpha = jnp.full(
                (self.num_components,),
                self.mixture.weight_concentration,
                params.weights.dtype,
            )
            prior = GaussianMixturePriorParams(alpha, *components.prior)
        return GaussianMixtureParams(
            params.weights, components.means, components.covariances, prior
        )

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Array) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(n, D)`` with ``n >= K``."""
        self.mixture.check_data(x)

    def check_params(self, params: Any, x: Array) -> None:
        """Raise for parameters of the wrong structure, shape or value.

        Shapes are checked always; positivity, normalisation and finiteness
        only for concrete arrays.
        """
        if not isinstance(params, GaussianMixtureParams):
            raise TypeError(f"params must be a GaussianMixtureParams; got {type(params).__name__}")
        k = self.num_components
        if tuple(jnp.shape(params.weights)) != (k,):
            raise ValueError(
                f"params.weights must have shape ({k},) for num_components={k}, "
                f"D={x.shape[-1]}, covariance_type={self.covariance_type!r}; "
                f"got {tuple(jnp.shape(params.weights))}"
            )
        check_gaussian_params(self.component, params.means, params.covariances, params.prior, x, k)
        check_weights_simplex(params.weights)

    # ------------------------------------------------------------- the contract

    def e_step(
        self, params: GaussianMixtureParams, x: Array, weights: Array | None = None
    ) -> tuple[MixtureStats, Array]:
        """Expected sufficient statistics and the summed log-likelihood.

        Args:
          params: current parameters.
          x: data, ``(n, D)``.
          weights: optional per-observation weights, ``(n,)``.

        Returns:
          ``(stats, log_likelihood)``: :class:`MixtureStats` with
          :class:`GaussianStats` about the centres of ``params``, and
          ``Σ_i w_i log p(x_i | params)`` (a scalar).
        """
        return self.mixture.e_step(self.to_mixture_params(params), x, weights)

    def m_step(self, stats: MixtureStats, params: GaussianMixtureParams) -> GaussianMixtureParams:
        """Closed-form ``argmax Q(θ) + log p(θ)``.

        Args:
          stats: statistics from :meth:`e_step` under ``params`` (summed over
            any number of blocks of data).
          params: the parameters the statistics were computed under.

        Returns:
          The updated :class:`GaussianMixtureParams`; always finite (an empty
          component keeps its mean and gets ``reg_covar`` covariance; a
          covariance that is singular in the working precision gets jitter).
        """
        updated = self.mixture.m_step(stats, self.to_mixture_params(params))
        return self.from_mixture_params(updated)

    def shift_stats(
        self,
        stats: MixtureStats,
        from_params: GaussianMixtureParams,
        to_params: GaussianMixtureParams,
    ) -> MixtureStats:
        """``stats`` from :meth:`e_step` under ``from_params``, with their
        moments moved to the centres of ``to_params`` (exact; see
        :meth:`jaxem.Mixture.shift_stats`)."""
        return self.mixture.shift_stats(
            stats, self.to_mixture_params(from_params), self.to_mixture_params(to_params)
        )

    def log_prob(self, params: GaussianMixtureParams, x: Array) -> Array:
        """Per-observation ``log p(x_i)``, shape ``(n,)``."""
        return self.mixture.log_prob(self.to_mixture_params(params), x)

    def posterior(self, params: GaussianMixtureParams, x: Array) -> Array:
        """Responsibilities ``p(z_i = k | x_i)``, shape ``(n, K)``."""
        return self.mixture.posterior(self.to_mixture_params(params), x)

    def log_prior(self, params: GaussianMixtureParams) -> Array:
        """``log p(θ)`` under the model's prior (``0.0`` without a prior)."""
        if self.prior is None or params.prior is None:
            return jnp.zeros((), params.means.dtype)
        return self.mixture.log_prior(self.to_mixture_params(params))

    def init(self, key: Array, x: Array, weights: Array | None = None) -> GaussianMixtureParams:
        """Parameters for one restart, from ``init_method`` (see the class).

        Args:
          key: PRNG key.
          x: data, ``(n, D)``.
          weights: optional ``(n,)`` observation weights (used by the seeding,
            the Lloyd iterations, the initial M-step and a data-driven prior).

        Returns:
          :class:`GaussianMixtureParams` in ``x``'s dtype.
        """
        return self.from_mixture_params(self.mixture.init(key, x, weights))

    def from_responsibilities(
        self, x: Array, resp: Array, weights: Array | None = None
    ) -> GaussianMixtureParams:
        """The M-step from given responsibilities ``(n, K)``.

        This is how every ``init_method`` ends, and how to start from a
        clustering of one's own.
        """
        return self.from_mixture_params(self.mixture.from_responsibilities(x, resp, weights))

    def sample(self, key: Array, params: GaussianMixtureParams, n: int) -> tuple[Array, Array]:
        """``n`` draws: ``(x (n, D), labels (n,))``."""
        return self.mixture.sample(key, self.to_mixture_params(params), n)

    def covariance_matrices(self, params: GaussianMixtureParams) -> Array:
        """Every component's covariance as a ``(K, D, D)`` matrix, whatever the
        covariance type (for plotting and comparison)."""
        return self.component.covariance_matrices(params)

    def num_parameters(self, params: GaussianMixtureParams) -> int:
        """Free parameters: ``K − 1`` weights, ``K·D`` means, and the covariances."""
        return int(self.num_components - 1 + self.component.num_parameters(params))

    def diagnose(self, stats: MixtureStats, params: GaussianMixtureParams) -> dict[str, Array]:
        """Value-dependent problems, as boolean arrays.

        Returns:
          ``{"collapsed": (K,)}``: components whose total responsibility is
          below a thousandth of an average observation's weight (they have
          lost all their points and sit at ``reg_covar`` covariance, or at the
          prior's mode).
        """
        return self.mixture.diagnose(stats, self.to_mixture_params(params))


__all__ = ["GaussianMixture", "GaussianMixtureParams", "GaussianMixtureStats", "GaussianStats"]
