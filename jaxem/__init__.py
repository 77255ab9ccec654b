"""jaxem: Expectation-Maximization for latent-variable models in JAX.

E and M steps are pure functions of parameter pytrees; :func:`jaxem.fit`
jit-compiles the whole EM loop once and runs random restarts as a batch axis
on CPU, GPU or TPU.

>>> import jax, jaxem
>>> x = jaxem.load_faithful()
>>> model = jaxem.GaussianMixture(num_components=2, covariance_type="full")
>>> result = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=8)
>>> result.params.weights.shape
(2,)
"""

from jaxem import gem
from jaxem._criteria import aic, bic
from jaxem._datasets import load_faithful
from jaxem._driver import EMInfo, EMState, FitResult, em_step, fit
from jaxem._model import Model
from jaxem._online import (
    OnlineEM,
    OnlineEMState,
    OnlineFitResult,
    fit_online,
    online_em,
    polynomial_step_size,
)
from jaxem.models import (
    Bernoulli,
    BernoulliParams,
    BernoulliStats,
    Categorical,
    CategoricalParams,
    CategoricalStats,
    Component,
    Exponential,
    ExponentialParams,
    ExponentialStats,
    Gaussian,
    GaussianMixture,
    GaussianMixtureParams,
    GaussianMixturePrior,
    GaussianMixturePriorParams,
    GaussianMixtureStats,
    GaussianParams,
    GaussianPrior,
    GaussianPriorParams,
    GaussianStats,
    LinearRegression,
    LinearRegressionParams,
    LinearRegressionStats,
    LogJointModel,
    LogJointParams,
    LogJointStats,
    Mixture,
    MixtureOfExperts,
    MixtureOfExpertsOptimizerState,
    MixtureOfExpertsParams,
    MixtureOfExpertsStats,
    MixtureOfLogisticRegressions,
    MixtureOfLogisticRegressionsParams,
    MixtureOfLogisticRegressionsStats,
    MixtureParams,
    MixtureStats,
    Poisson,
    PoissonParams,
    PoissonStats,
    StudentT,
    StudentTParams,
    StudentTStats,
)

__version__ = "0.1.0"

__all__ = [
    "Bernoulli",
    "BernoulliParams",
    "BernoulliStats",
    "Categorical",
    "CategoricalParams",
    "CategoricalStats",
    "Component",
    "EMInfo",
    "EMState",
    "Exponential",
    "ExponentialParams",
    "ExponentialStats",
    "FitResult",
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
    "Model",
    "OnlineEM",
    "OnlineEMState",
    "OnlineFitResult",
    "Poisson",
    "PoissonParams",
    "PoissonStats",
    "StudentT",
    "StudentTParams",
    "StudentTStats",
    "aic",
    "bic",
    "em_step",
    "fit",
    "fit_online",
    "gem",
    "load_faithful",
    "online_em",
    "polynomial_step_size",
]
