"""scikit-learn-style estimators backed by jaxem (needs scikit-learn).

They inherit scikit-learn's ``BaseEstimator``, so ``clone``, pipelines and
grid search work; all computation is :func:`jaxem.fit` and the model
functions.
"""

try:
    import sklearn  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "jaxem.estimators needs scikit-learn: pip install 'jaxem[sklearn]'"
    ) from error

from sklearn.exceptions import ConvergenceWarning, NotFittedError

from jaxem.estimators._factor_analysis import FactorAnalysis
from jaxem.estimators._gaussian_mixture import (
    ComponentCollapseWarning,
    GaussianMixture,
    NumericalWarning,
)
from jaxem.estimators._hmm import (
    GMMHMM,
    CategoricalHMM,
    ConvergenceMonitor,
    GaussianHMM,
    PoissonHMM,
)

__all__ = [
    "CategoricalHMM",
    "ComponentCollapseWarning",
    "ConvergenceMonitor",
    "ConvergenceWarning",
    "FactorAnalysis",
    "GMMHMM",
    "GaussianHMM",
    "GaussianMixture",
    "NotFittedError",
    "NumericalWarning",
    "PoissonHMM",
]
