"""Gaussian mixture models with scikit-learn's flat parameter layout, and
their conjugate prior (the mixture-level prior lives with the mixture).

:class:`GaussianMixture` is the mixture of :class:`jaxem.Gaussian`
components: the same code as ``Mixture(Gaussian(...), K)``, whose parameters
are ``(weights, means, covariances)`` in scikit-learn's shapes. The Gaussian
component reads its fields by name, so those flat parameters are passed to it
as they are: no conversion between layouts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem._validation import check_number
from jaxem.models._mixture import (
    MixtureBase,
    check_mixture_options,
    check_simplex,
    check_weight_shape,
)
from jaxem.models.components._gaussian import Gaussian, GaussianPrior, GaussianPriorParams

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianMixturePrior(GaussianPrior):
    """Conjugate prior for MAP estimation of a :class:`GaussianMixture`.

    A Dirichlet prior on the weights (``weight_concentration``) and the
    normal-inverse-Wishart prior of :class:`jaxem.GaussianPrior` on the
    components (see there for the Fraley & Raftery (2007) data-driven
    defaults). With a prior, EM maximises ``log p(x | θ) + log p(θ)``;
    ``jaxem.fit`` monitors that sum divided by the total observation weight.

    Attributes:
      weight_concentration: Dirichlet ``α ≥ 1`` (``1`` is flat).
    """

    weight_concentration: float = 1.0

    def __post_init__(self):
        alpha = check_number(self.weight_concentration, "GaussianMixturePrior.weight_concentration")
        if alpha < 1.0:
            raise ValueError(
                "GaussianMixturePrior.weight_concentration must be >= 1 (the MAP weights "
                f"are on the boundary of the simplex below 1); got {alpha}"
            )
        object.__setattr__(self, "weight_concentration", alpha)
        super().__post_init__()

    def component_prior(self) -> GaussianPrior:
        """The normal-inverse-Wishart part, for the :class:`jaxem.Gaussian` component."""
        return GaussianPrior(
            mean_precision=self.mean_precision,
            mean=self.mean,
            degrees_of_freedom=self.degrees_of_freedom,
            scale=self.scale,
        )


class GaussianMixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture (scikit-learn's shapes).

    Attributes:
      weights: mixing proportions, ``(K,)``, on the simplex.
      means: component means, ``(K, D)``.
      covariances: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical.
      prior: the resolved normal-inverse-Wishart hyperparameters when the
        model has a prior (carried unchanged by the M-step; not fitted), else
        ``None``.
    """

    weights: Array
    means: Array
    covariances: Array
    prior: GaussianPriorParams | None = None


@dataclasses.dataclass(frozen=True)
class GaussianMixture(MixtureBase):
    """A mixture of ``K`` multivariate Gaussians, fitted by EM (MLE or MAP).

    The model holds configuration only; parameters are a
    :class:`~jaxem.models.GaussianMixtureParams` pytree in scikit-learn's
    layout. Every method is a pure function of ``(params, x)`` for one
    dataset, so it can be jitted, vmapped and differentiated. It is the
    mixture of :class:`jaxem.Gaussian` components: E and M steps are matrix
    products over Cholesky factors, evaluated in row blocks, so no
    ``(n, K, D)`` or ``(n, K, D, D)`` tensor is ever formed, and second
    moments are taken about the current means so float32 stays accurate.

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
      missing: NaN in the data is a missing value: ``None`` (decided from the
        data), ``True`` or ``False`` (NaN refused); see :class:`jaxem.Gaussian`.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> model = jaxem.GaussianMixture(num_components=2)
      >>> params = model.init(jax.random.key(1), x)
      >>> params.means.shape, params.covariances.shape
      ((2, 2), (2, 2, 2))
      >>> stats, log_lik = model.e_step(params, x)
      >>> params, _ = model.m_step(stats, params)
      >>> model.posterior(params, x).shape
      (272, 2)
    """

    num_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    init_method: str = "kmeans"
    prior: GaussianMixturePrior | None = None
    block_size: int | None = None
    kmeans_max_iter: int = 100
    missing: bool | None = None
    component: Gaussian = dataclasses.field(init=False, repr=False, compare=False)
    weight_concentration: float = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.prior is not None and not isinstance(self.prior, GaussianMixturePrior):
            raise TypeError(f"prior must be a GaussianMixturePrior or None; got {self.prior!r}")
        prior = self.prior
        component = Gaussian(
            self.covariance_type,
            self.reg_covar,
            None if prior is None else prior.component_prior(),
            self.missing,
        )
        object.__setattr__(self, "component", component)
        object.__setattr__(self, "reg_covar", component.reg_covar)
        alpha = 1.0 if prior is None else prior.weight_concentration
        object.__setattr__(self, "weight_concentration", alpha)
        check_mixture_options(self)

    def for_data(self, x: Any) -> GaussianMixture:
        """With ``missing`` read off concrete data ``x`` (see :class:`jaxem.Gaussian`)."""
        component = self.component.for_data(x)
        if component is self.component:
            return self
        return dataclasses.replace(self, missing=component.missing)

    # ---------------------------------------------------------------- layout

    def _split(self, params: GaussianMixtureParams) -> tuple[Array, GaussianMixtureParams]:
        # The Gaussian component reads means, covariances and prior by name.
        return params.weights, params

    def _join(self, weights: Array, components: Any) -> GaussianMixtureParams:
        return GaussianMixtureParams(
            weights, components.means, components.covariances, components.prior
        )

    def check_params(self, params: Any, x: Array) -> None:
        """Raise for parameters of the wrong structure, shape or value.

        Shapes are checked always; positivity, normalisation and finiteness
        only for concrete arrays.
        """
        if not isinstance(params, GaussianMixtureParams):
            raise TypeError(f"params must be a GaussianMixtureParams; got {type(params).__name__}")
        context = f", D={x.shape[-1]}, covariance_type={self.covariance_type!r}"
        check_weight_shape(params.weights, self.num_components, context)
        self.component.check_fields(params, x, self.num_components)
        check_simplex(params.weights)

    def from_responsibilities(
        self, x: Array, resp: Array, weights: Array | None = None
    ) -> GaussianMixtureParams:
        """The M-step from given responsibilities ``(n, K)``.

        This is how every ``init_method`` ends, and how to start from a
        clustering of one's own.
        """
        return super().from_responsibilities(x, resp, weights)

    def covariance_matrices(self, params: GaussianMixtureParams) -> Array:
        """Every component's covariance as a ``(K, D, D)`` matrix, whatever the
        covariance type (for plotting and comparison)."""
        return self.component.covariance_matrices(params)

    def resolve_prior(self, x: Array, weights: Array | None = None) -> GaussianPriorParams | None:
        """The prior's hyperparameters for data ``x`` (``None`` without a
        prior): what :meth:`init` stores in ``params.prior``, for parameters
        built by hand (``params._replace(prior=model.resolve_prior(x))``)."""
        if self.prior is None:
            return None
        return self.prior.resolve(
            jnp.asarray(x), self.num_components, self.covariance_type, weights
        )
