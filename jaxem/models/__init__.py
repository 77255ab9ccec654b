"""Latent-variable models implementing the :class:`jaxem.Model` contract."""

from jaxem.models._gaussian_mixture import (
    GaussianMixture,
    GaussianMixtureParams,
    GaussianMixturePrior,
    GaussianMixturePriorParams,
    GaussianMixtureStats,
)

__all__ = [
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "GaussianMixturePriorParams",
    "GaussianMixtureStats",
]
