"""Latent structures built from components: parameter and statistics types.

The models themselves (:class:`jaxem.Mixture`, :class:`jaxem.GaussianMixture`,
:class:`jaxem.MixtureOfExperts`, :class:`jaxem.HMM`, :class:`jaxem.InputDrivenHMM`,
:class:`jaxem.LogJointModel`, :class:`jaxem.FactorAnalysis`, :class:`jaxem.PPCA`)
live at the top level. This module holds the types of their parameters (to
build or inspect them by hand), their statistics and their M-step states; the
component families' own types are in :mod:`jaxem.models.components`.
"""

from jaxem.models._experts import (
    MixtureOfExpertsMStepState,
    MixtureOfExpertsParams,
    MixtureOfExpertsStats,
    anchored_gate,
)
from jaxem.models._factor import FactorAnalysisParams, FactorAnalysisStats
from jaxem.models._gaussian_mixture import GaussianMixtureParams
from jaxem.models._hmm import HMMParams, HMMStats
from jaxem.models._input_hmm import (
    InputDrivenHMMMStepState,
    InputDrivenHMMParams,
    InputDrivenHMMStats,
    InputDrivenTransitionStats,
)
from jaxem.models._lds import LinearGaussianSSMParams, LinearGaussianSSMStats
from jaxem.models._mixture import MixtureParams, MixtureStats, initial_responsibilities
from jaxem.models._mixture_component import MixtureComponentParams, MixtureComponentStats

__all__ = [
    "FactorAnalysisParams",
    "FactorAnalysisStats",
    "GaussianMixtureParams",
    "HMMParams",
    "HMMStats",
    "InputDrivenHMMMStepState",
    "InputDrivenHMMParams",
    "InputDrivenHMMStats",
    "InputDrivenTransitionStats",
    "LinearGaussianSSMParams",
    "LinearGaussianSSMStats",
    "MixtureComponentParams",
    "MixtureComponentStats",
    "MixtureOfExpertsMStepState",
    "MixtureOfExpertsParams",
    "MixtureOfExpertsStats",
    "MixtureParams",
    "MixtureStats",
    "anchored_gate",
    "initial_responsibilities",
]
