"""Inference for latent variables: pure functions on arrays.

Models call these, and users can call them inside their own ``jit``,
``vmap`` and ``grad`` code: the posterior of a discrete latent variable
from its log-joint values (mixtures, mixtures of experts, models given as a
log-joint), and forward-backward, Viterbi and sampling for a hidden Markov
chain, sequential or parallel in time (hidden Markov models), and Kalman
filtering, Rauch-Tung-Striebel smoothing and posterior sampling for a
linear-Gaussian state-space model, sequential or parallel in time (linear
dynamical systems).
"""

from jaxem.inference._discrete import (
    discrete_posterior,
    expected_log_joint,
    posterior_from_gradient,
)
from jaxem.inference._hmm import (
    HMMPosterior,
    hmm_filter,
    hmm_log_likelihood,
    hmm_posterior_from_gradient,
    hmm_posterior_sample,
    hmm_sample_states,
    hmm_smoother,
    viterbi,
)
from jaxem.inference._kalman import (
    KalmanPosterior,
    kalman_filter,
    kalman_log_likelihood,
    kalman_posterior_sample,
    kalman_smoother,
)

__all__ = [
    "HMMPosterior",
    "KalmanPosterior",
    "discrete_posterior",
    "expected_log_joint",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_posterior_from_gradient",
    "hmm_posterior_sample",
    "hmm_sample_states",
    "hmm_smoother",
    "kalman_filter",
    "kalman_log_likelihood",
    "kalman_posterior_sample",
    "kalman_smoother",
    "posterior_from_gradient",
    "viterbi",
]
