"""jaxem: Expectation-Maximization for latent-variable models in JAX.

E and M steps are pure functions of parameter pytrees; :func:`jaxem.fit`
jit-compiles the whole EM loop once and runs random restarts as a batch axis
on CPU, GPU or TPU.

>>> import jax, jaxem
>>> x = jaxem.load_faithful()
>>> model = jaxem.GaussianMixture(num_components=2, covariance_type="full")
>>> result = jaxem.fit(model, x, key=jax.random.key(0), num_restarts=4)
>>> result.params.weights.shape
(2,)

The top level holds what a user calls: the fitting functions, the latent
structures (:class:`Mixture`, :class:`GaussianMixture`,
:class:`MixtureOfExperts`, :class:`HMM`, :class:`InputDrivenHMM`,
:class:`LogJointModel`, and the factor models :class:`FactorAnalysis` and
:class:`PPCA`), the component families they are built from, the
two contracts (:class:`Model`, :class:`Component`) and
:class:`PerObservation`, criteria and datasets. Parameter and statistics
types live in :mod:`jaxem.models` and :mod:`jaxem.models.components`; pure
inference functions in :mod:`jaxem.inference`; generalized EM in
:mod:`jaxem.gem`; scikit-learn-style estimators in :mod:`jaxem.estimators`.
"""

from jaxem import gem, inference, models
from jaxem._criteria import aic, bic, icl
from jaxem._datasets import load_airquality, load_earthquakes, load_faithful
from jaxem._driver import SquaremStep, em_step, fit, squarem_step
from jaxem._elbo import LowerBound, elbo
from jaxem._engine import EMInfo, FitResult, restart_keys
from jaxem._implicit import fixed_point
from jaxem._impute import impute
from jaxem._information import observed_information, standard_errors
from jaxem._model import Model
from jaxem._online import (
    OnlineEM,
    OnlineEMState,
    OnlineFitResult,
    fit_online,
    online_em,
    polynomial_step_size,
)
from jaxem._select import Selection, select
from jaxem._stats import PerObservation
from jaxem.models._experts import MixtureOfExperts
from jaxem.models._factor import PPCA, FactorAnalysis
from jaxem.models._gaussian_mixture import GaussianMixture, GaussianMixturePrior
from jaxem.models._hmm import HMM, pad_sequences
from jaxem.models._input_hmm import InputDrivenHMM
from jaxem.models._lds import LinearGaussianSSM
from jaxem.models._log_joint import LogJointModel
from jaxem.models._mixture import Mixture
from jaxem.models._mixture_component import MixtureComponent
from jaxem.models.components._bernoulli import Bernoulli
from jaxem.models.components._categorical import Categorical
from jaxem.models.components._component import Component
from jaxem.models.components._exponential import Exponential
from jaxem.models.components._gaussian import Gaussian, GaussianPrior
from jaxem.models.components._gradient import (
    LogisticRegression,
    PoissonRegression,
    SoftmaxRegression,
)
from jaxem.models.components._linear_regression import LinearRegression
from jaxem.models.components._poisson import Poisson
from jaxem.models.components._student_t import StudentT

__version__ = "0.1.0"

__all__ = [
    "Bernoulli",
    "Categorical",
    "Component",
    "EMInfo",
    "Exponential",
    "FactorAnalysis",
    "FitResult",
    "Gaussian",
    "GaussianMixture",
    "GaussianMixturePrior",
    "GaussianPrior",
    "HMM",
    "InputDrivenHMM",
    "LinearGaussianSSM",
    "LinearRegression",
    "LogJointModel",
    "LogisticRegression",
    "LowerBound",
    "Mixture",
    "MixtureComponent",
    "MixtureOfExperts",
    "Model",
    "OnlineEM",
    "OnlineEMState",
    "OnlineFitResult",
    "PPCA",
    "PerObservation",
    "Poisson",
    "PoissonRegression",
    "Selection",
    "SoftmaxRegression",
    "SquaremStep",
    "StudentT",
    "aic",
    "bic",
    "elbo",
    "em_step",
    "fit",
    "fit_online",
    "fixed_point",
    "gem",
    "icl",
    "impute",
    "inference",
    "load_airquality",
    "load_earthquakes",
    "load_faithful",
    "models",
    "observed_information",
    "online_em",
    "pad_sequences",
    "polynomial_step_size",
    "restart_keys",
    "select",
    "squarem_step",
    "standard_errors",
]
