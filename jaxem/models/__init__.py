"""Latent-variable models implementing the :class:`jaxem.Model` contract."""

from jaxem.models._bernoulli import Bernoulli, BernoulliParams, BernoulliStats
from jaxem.models._categorical import Categorical, CategoricalParams, CategoricalStats
from jaxem.models._experts import (
    MixtureOfExperts,
    MixtureOfExpertsOptimizerState,
    MixtureOfExpertsParams,
    MixtureOfExpertsStats,
    MixtureOfLogisticRegressions,
    MixtureOfLogisticRegressionsParams,
    MixtureOfLogisticRegressionsStats,
)
from jaxem.models._exponential import Exponential, ExponentialParams, ExponentialStats
from jaxem.models._gaussian import (
    Gaussian,
    GaussianMixturePrior,
    GaussianMixturePriorParams,
    GaussianParams,
    GaussianPrior,
    GaussianPriorParams,
    GaussianStats,
)
from jaxem.models._gaussian_mixture import (
    GaussianMixture,
    GaussianMixtureParams,
    GaussianMixtureStats,
)
from jaxem.models._linear_regression import (
    LinearRegression,
    LinearRegressionParams,
    LinearRegressionStats,
)
from jaxem.models._log_joint import (
    LogJointModel,
    LogJointParams,
    LogJointStats,
)
from jaxem.models._mixture import Component, Mixture, MixtureParams, MixtureStats
from jaxem.models._poisson import Poisson, PoissonParams, PoissonStats
from jaxem.models._student_t import StudentT, StudentTParams, StudentTStats

__all__ = [
    "Bernoulli",
    "BernoulliParams",
    "BernoulliStats",
    "Categorical",
    "CategoricalParams",
    "CategoricalStats",
    "Component",
    "Exponential",
    "ExponentialParams",
    "ExponentialStats",
    "Gaussian",
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "GaussianMixturePriorParams",
    "GaussianMixtureStats",
    "GaussianParams",
    "GaussianPrior",
    "GaussianPriorParams",
    "GaussianStats",
    "LinearRegression",
    "LinearRegressionParams",
    "LinearRegressionStats",
    "LogJointModel",
    "LogJointParams",
    "LogJointStats",
    "Mixture",
    "MixtureOfExperts",
    "MixtureOfExpertsOptimizerState",
    "MixtureOfExpertsParams",
    "MixtureOfExpertsStats",
    "MixtureOfLogisticRegressions",
    "MixtureOfLogisticRegressionsParams",
    "MixtureOfLogisticRegressionsStats",
    "MixtureParams",
    "MixtureStats",
    "Poisson",
    "PoissonParams",
    "PoissonStats",
    "StudentT",
    "StudentTParams",
    "StudentTStats",
]
