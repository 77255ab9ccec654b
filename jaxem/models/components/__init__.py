"""Component families: one distribution family per module, for ``K``
components at once.

The families themselves (:class:`jaxem.Gaussian`, :class:`jaxem.Poisson`,
..., :class:`jaxem.LogisticRegression`) and their contract
(:class:`jaxem.Component`) live at the top level, where users reach for them.
This module holds what is needed to build or inspect parameters and
statistics by hand, the covariance structures the Gaussian family is made of
(reused by other families with Gaussian structure), and the base class of
components fitted by gradient M-steps.
"""

from jaxem.models.components._bernoulli import BernoulliParams, BernoulliStats
from jaxem.models.components._categorical import CategoricalParams, CategoricalStats
from jaxem.models.components._covariance import (
    Covariance,
    DiagCovariance,
    FullCovariance,
    SphericalCovariance,
    TiedCovariance,
)
from jaxem.models.components._exponential import ExponentialParams, ExponentialStats
from jaxem.models.components._factor import FactorAnalyzer, FactorParams
from jaxem.models.components._gaussian import GaussianParams, GaussianPriorParams, GaussianStats
from jaxem.models.components._gradient import GradientComponent, RegressionParams
from jaxem.models.components._linear_regression import (
    LinearRegressionParams,
    LinearRegressionStats,
)
from jaxem.models.components._poisson import PoissonParams, PoissonStats
from jaxem.models.components._student_t import StudentTParams, StudentTStats

__all__ = [
    "BernoulliParams",
    "BernoulliStats",
    "CategoricalParams",
    "CategoricalStats",
    "Covariance",
    "DiagCovariance",
    "ExponentialParams",
    "ExponentialStats",
    "FactorAnalyzer",
    "FactorParams",
    "FullCovariance",
    "GaussianParams",
    "GaussianPriorParams",
    "GaussianStats",
    "GradientComponent",
    "LinearRegressionParams",
    "LinearRegressionStats",
    "PoissonParams",
    "PoissonStats",
    "RegressionParams",
    "SphericalCovariance",
    "StudentTParams",
    "StudentTStats",
    "TiedCovariance",
]
