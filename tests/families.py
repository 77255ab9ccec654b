"""Every model family, with valid data, for the tests that run over all of
them (bad input, degenerate data, weight scales). A new family joins those
tests by adding one entry to ``FAMILIES``.

Data have ``N`` rows and are numpy arrays (value checks on host arrays
compile nothing); models have ``K`` components.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxem
from jaxem import gem

N, K = 40, 2


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family for the matrix tests.

    Attributes:
      name: the test id.
      make: builds the model.
      data: ``rng -> x`` (numpy; an array or a tuple of arrays with ``N`` rows).
      continuous: the data are real-valued (scalable, with no domain but the
        reals): degenerate scales and duplicates apply.
      domain: ``[(label, x -> x with a value outside the domain, regex)]``.
      tuple_data: the data are ``(inputs, targets)``.
      float32_scale: the largest data scale whose log-densities float32
        represents (beyond it a fit must be flagged non-finite, not
        finite-looking).
      rank_error, container_error: what the error for data of the wrong
        rank, or a tuple where one array belongs, says (default: the
        ``(n, D)`` families' messages).
      too_few: ``(x -> data with fewer observations than K, regex)``
        (default: one row).
      missing: NaN in the data is a missing value (refused: inf, and data
        with nothing observed).
      fits: the degenerate-data and collapsed-component tests fit the
        family (``False``: bad input only, for a family whose fits are
        tested in its own file, or run the code of families the matrix
        fits, and would cost the matrix more than they add).
    """

    name: str
    make: Callable[[], Any]
    data: Callable[[np.random.Generator], Any]
    continuous: bool = True
    domain: tuple = ()
    tuple_data: bool = False
    float32_scale: float = 1e18
    rank_error: str = "2-D"
    container_error: str = ""
    too_few: tuple | None = None
    missing: bool = False
    fits: bool = True


T = 5  # steps per sequence for the sequence models (``N`` sequences)


def sequences(rng: np.random.Generator, n: int = N) -> np.ndarray:
    """``(N, T, 2)``: sequences that switch between two regimes every 3 steps."""
    states = (np.arange(n)[:, None] + np.arange(T)[None, :] // 3) % 2
    return rng.normal(size=(n, T, 2)) + 6.0 * states[..., None]


def driven_sequences(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """``(values (N, T, 2), inputs (N, T, 1))``: :func:`sequences` with an input."""
    return sequences(rng, n), rng.normal(size=(n, T, 1))


def blobs(rng: np.random.Generator, n: int = N, dim: int = 2) -> np.ndarray:
    """Two separated Gaussian clusters."""
    labels = np.arange(n) % 2
    return rng.normal(size=(n, dim)) + 6.0 * labels[:, None]


def binary(rng: np.random.Generator, n: int = N) -> np.ndarray:
    probs = np.array([[0.9, 0.8, 0.1], [0.1, 0.3, 0.9]])
    return (rng.random((n, 3)) < probs[np.arange(n) % 2]).astype(np.float64)


def counts(rng: np.random.Generator, n: int = N) -> np.ndarray:
    rates = np.array([[1.0, 4.0, 0.5], [6.0, 1.0, 3.0]])
    return rng.poisson(rates[np.arange(n) % 2]).astype(np.float64)


def positive(rng: np.random.Generator, n: int = N) -> np.ndarray:
    return rng.exponential(np.array([[1.0, 0.2], [0.1, 2.0]])[np.arange(n) % 2])


def regression(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    inputs = rng.normal(size=(n, 1))
    slopes = np.array([2.0, -1.0])[np.arange(n) % 2]
    return inputs, slopes * inputs[:, 0] + np.array([3.0, -3.0])[np.arange(n) % 2]


def binary_labels(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    inputs = rng.normal(size=(n, 2))
    return inputs, (inputs[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float64)


def three_labels(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    inputs = rng.normal(size=(n, 2))
    return inputs, np.digitize(inputs[:, 0], [-0.5, 0.5]).astype(np.float64)


def count_targets(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    inputs = rng.normal(size=(n, 1))
    return inputs, rng.poisson(np.exp(1.0 + 0.5 * inputs[:, 0])).astype(np.float64)


def log_joint(params: Any, x: Any) -> Any:
    """A two-component unit-variance Gaussian mixture in one dimension."""
    logits, means = params
    return jax.nn.log_softmax(logits) - 0.5 * (x - means) ** 2 - 0.5 * jnp.log(2 * jnp.pi)


def log_joint_check(x: Any) -> None:
    """What a user's ``check_data_fn`` checks: one ``(n, 1)`` array, ``n >= K``."""
    if not hasattr(x, "ndim"):
        raise TypeError(f"x must be one (n, 1) array; got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != 1:
        raise ValueError(f"x must be a 2-D array of shape (n, 1); got shape {x.shape}")
    if x.shape[0] < K:
        raise ValueError(f"x has {x.shape[0]} observation(s) but the model has {K} components")


def log_joint_init(key: Any, x: Any) -> Any:
    rows = jax.random.choice(key, x.shape[0], (K,), replace=False)
    return jnp.zeros(K, x.dtype), x[rows, 0]


ADAM = gem.GradientMStep(optax.adam(0.05), num_steps=5)


def with_value(index: tuple[int, ...], value: float, leaf: int | None = None) -> Callable:
    """``x -> x`` with one entry set (in tuple leaf ``leaf``)."""

    def change(x: Any) -> Any:
        if leaf is None:
            x = np.array(x)
            x[index] = value
            return x
        parts = [np.array(a) for a in x]
        parts[leaf][index] = value
        return tuple(parts)

    return change


def gaussian_mixture(covariance_type: str) -> Family:
    return Family(
        f"gmm-{covariance_type}",
        lambda: jaxem.GaussianMixture(K, covariance_type=covariance_type),
        blobs,
        missing=True,
    )


FAMILIES = {
    family.name: family
    for family in [
        *(gaussian_mixture(ct) for ct in ("full", "tied", "diag", "spherical")),
        Family(
            "mixture-gaussian",
            lambda: jaxem.Mixture(jaxem.Gaussian("diag"), K),
            blobs,
            missing=True,
            # (its fits run the Gaussian component and mixture code of
            # gmm-diag, which the matrix fits)
            fits=False,
        ),
        Family(
            "bernoulli",
            lambda: jaxem.Mixture(jaxem.Bernoulli(), K),
            binary,
            continuous=False,
            domain=(("non-binary", with_value((3, 1), 0.5), r"binary \(0 or 1\)"),),
        ),
        Family(
            "categorical",
            lambda: jaxem.Mixture(jaxem.Categorical(), K),
            counts,
            continuous=False,
            domain=(("negative", with_value((2, 0), -1.0), "non-negative integer counts"),),
        ),
        Family(
            "poisson",
            lambda: jaxem.Mixture(jaxem.Poisson(), K),
            counts,
            continuous=False,
            domain=(("non-integer", with_value((2, 2), 1.5), "non-integer"),),
        ),
        Family(
            "exponential",
            lambda: jaxem.Mixture(jaxem.Exponential(), K),
            positive,
            continuous=False,
            domain=(("negative", with_value((5, 0), -2.0), "non-negative"),),
        ),
        Family("student-t", lambda: jaxem.Mixture(jaxem.StudentT(), K), blobs),
        Family(
            "mixture-of-fa",
            lambda: jaxem.Mixture(jaxem.FactorAnalysis(1), K),
            lambda rng: blobs(rng, dim=3),
            missing=True,
        ),
        Family(
            "factor-analysis",
            lambda: jaxem.FactorAnalysis(1),
            lambda rng: blobs(rng, dim=3),
            missing=True,
            # (no components to collapse; its degenerate cases are in
            # tests/test_factor_analysis.py)
            fits=False,
        ),
        Family(
            "mixture-of-mixtures",
            lambda: jaxem.Mixture(jaxem.MixtureComponent(jaxem.Gaussian("diag"), 2), K),
            blobs,
            missing=True,
            # (fitted in tests/test_mixture_component.py)
            fits=False,
        ),
        Family(
            "linear-regression",
            lambda: jaxem.Mixture(jaxem.LinearRegression(), K),
            regression,
            tuple_data=True,
        ),
        Family(
            "logistic",
            lambda: jaxem.Mixture(jaxem.LogisticRegression(l2=1.0), K),
            binary_labels,
            continuous=False,
            domain=(("label 2", with_value((4,), 2.0, leaf=1), r"must lie in 0..1"),),
            tuple_data=True,
        ),
        Family(
            "softmax",
            lambda: jaxem.Mixture(jaxem.SoftmaxRegression(3, l2=1.0), K),
            three_labels,
            continuous=False,
            domain=(("label 0.5", with_value((4,), 0.5, leaf=1), "must be integers"),),
            tuple_data=True,
        ),
        Family(
            "poisson-regression",
            lambda: jaxem.Mixture(jaxem.PoissonRegression(l2=1.0), K),
            count_targets,
            continuous=False,
            domain=(("negative", with_value((4,), -1.0, leaf=1), "non-negative integer"),),
            tuple_data=True,
        ),
        Family(
            "experts-linear",
            lambda: jaxem.MixtureOfExperts(jaxem.LinearRegression(), K, gate_step=ADAM),
            regression,
            tuple_data=True,
        ),
        Family(
            "experts-softmax",
            lambda: jaxem.MixtureOfExperts(
                jaxem.SoftmaxRegression(3, step=ADAM), K, gate_step=ADAM
            ),
            three_labels,
            continuous=False,
            domain=(("label 3", with_value((1,), 3.0, leaf=1), r"must lie in 0..2"),),
            tuple_data=True,
        ),
        Family(
            "experts-logistic",
            lambda: jaxem.MixtureOfExperts(
                jaxem.LogisticRegression(step=ADAM, l2=1.0), K, gate_step=ADAM
            ),
            binary_labels,
            continuous=False,
            domain=(("label -1", with_value((1,), -1.0, leaf=1), r"must lie in 0..1"),),
            tuple_data=True,
            # (its fits take the Adam gate and Adam component steps of
            # experts-softmax over the logistic family's objective)
            fits=False,
        ),
        Family(
            "experts-poisson",
            lambda: jaxem.MixtureOfExperts(jaxem.PoissonRegression(step=ADAM), K, gate_step=ADAM),
            count_targets,
            continuous=False,
            domain=(("non-integer", with_value((4,), 0.5, leaf=1), "non-integer"),),
            tuple_data=True,
            # (its fits take the Adam gate and Adam component steps of
            # experts-softmax over the poisson-regression family's objective)
            fits=False,
        ),
        Family(
            "hmm",
            lambda: jaxem.HMM(jaxem.Gaussian("diag"), K),
            sequences,
            rank_error=r"\(B, T, \.\.\.\)",
            container_error=r"lengths must have shape \(B,\)",
            too_few=(lambda x: (x[:1], np.ones(1)), r"1 valid step\(s\) but num_states=2"),
            missing=True,
            domain=(
                ("length zero", lambda x: (x, np.r_[0.0, np.full(N - 1, T)]), "must be positive"),
                ("length too long", lambda x: (x, np.full(N, T + 1.0)), "exceeds the padded"),
            ),
        ),
        Family(
            "input-hmm",
            lambda: jaxem.InputDrivenHMM(jaxem.Gaussian("diag"), K, transition_step=ADAM),
            driven_sequences,
            tuple_data=True,
            # (its degenerate and collapsed cases pass, at about 20 s of fits;
            # they run with fits=True)
            fits=False,
            rank_error=r"\(B, T, \.\.\.\)",
            too_few=(
                lambda x: (x[0][:1], x[1][:1], np.ones(1)),
                r"1 valid step\(s\) but num_states=2",
            ),
            domain=(
                ("inputs 2-D", lambda x: (x[0], x[1][..., 0]), r"inputs\[\.\.\., None\]"),
                ("inputs steps", lambda x: (x[0], x[1][:, 1:]), r"shape \(B, T, P\)"),
                ("length zero", lambda x: (*x, np.r_[0.0, np.full(N - 1, T)]), "must be positive"),
            ),
        ),
        Family(
            "lds",
            lambda: jaxem.LinearGaussianSSM(state_dim=1),
            sequences,
            missing=True,
            # (no components to collapse; its fits, float32 and degenerate
            # data are tested in tests/test_lds.py)
            fits=False,
            rank_error=r"\(B, T, D\)",
            container_error=r"lengths must have shape \(B,\)",
            too_few=(lambda x: (x, np.ones(N)), r"needs at least one transition"),
            domain=(
                ("length zero", lambda x: (x, np.r_[0.0, np.full(N - 1, T)]), "must be positive"),
                ("length too long", lambda x: (x, np.full(N, T + 1.0)), "exceeds the padded"),
            ),
        ),
        Family(
            "log-joint",
            lambda: jaxem.LogJointModel(
                log_joint, log_joint_init, gradient_step=ADAM, check_data_fn=log_joint_check
            ),
            lambda rng: blobs(rng, dim=1),
            # (a fixed unit variance: at 1e18 a row's log-density is -1e36)
            float32_scale=1e8,
        ),
    ]
}
NAMES = list(FAMILIES)
FITTED = [name for name in NAMES if FAMILIES[name].fits]
