"""Components whose M-step is a gradient step (generalized EM), and three of
them: logistic, softmax and Poisson regressions.

Where a family has no closed-form M-step, the M-step maximises the expected
complete-data log-likelihood ``Q(θ) = Σ_ik r_ik log p(x_i | z_i = k, θ_k)``
plus the log prior with a :class:`jaxem.gem.GradientMStep` (any optax
optimizer, never lowering the objective). So the statistics are the
responsibilities and the data (:class:`~jaxem.PerObservation`), the M-step
state is the optimizer's (carried by the driver beside the parameters), and
the component plugs into any latent structure like a closed-form one: a
mixture of logistic regressions is ``Mixture(LogisticRegression(), K)``, and
a mixture of experts takes any of these as its experts.

The objective is divided by the total weight of the observations, so the
optimizer sees the same function whatever the scale of the weights or the
size of the data set (its maximiser is that of ``Q + log prior``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import gammaln

from jaxem import gem
from jaxem._numerics import LOG_2PI
from jaxem._stats import PerObservation
from jaxem._validation import check_finite_values, check_int, check_number
from jaxem.inference import expected_log_joint
from jaxem.models.components._checks import check_count_data
from jaxem.models.components._component import Component
from jaxem.models.components._regression import (
    check_labels,
    check_regression_data,
    check_vector_targets,
)

Array = jax.Array


@functools.cache
def default_step() -> gem.GradientMStep:
    """The default gradient M-step: 5 L-BFGS updates (zoom line search) per
    EM iteration. One shared object, so equal components compare equal and
    compile once."""
    return gem.GradientMStep(optax.lbfgs(), num_steps=5)


def check_step(value: Any, name: str) -> gem.GradientMStep:
    """``value`` (a :class:`jaxem.gem.GradientMStep`), or the default for ``None``."""
    if value is None:
        return default_step()
    if not isinstance(value, gem.GradientMStep):
        raise TypeError(f"{name} must be a jaxem.gem.GradientMStep or None; got {value!r}")
    return value


def gaussian_log_prior(value: Array, precision: float) -> Array:
    """``Σ log N(v | 0, 1 / precision)`` over the entries (``0`` for no prior)."""
    if precision == 0.0:
        return jnp.zeros((), value.dtype)
    return (
        -0.5 * precision * jnp.sum(jnp.square(value))
        + 0.5 * value.size * (math.log(precision) - LOG_2PI)
    ).astype(value.dtype)


def gradient_m_step(
    step: gem.GradientMStep,
    log_likelihoods_fn: Any,
    log_prior_fn: Any,
    stats: PerObservation,
    params: Any,
    m_step_state: Any,
) -> tuple[Any, Any]:
    """One GEM M-step on ``(Σ_ik r_ik ℓ_ik(θ) + log p(θ)) / Σ_ik r_ik``.

    Args:
      step: the gradient M-step (optimizer, updates, constraints).
      log_likelihoods_fn: ``(θ, data) -> (n, K)`` log-likelihoods.
      log_prior_fn: ``θ -> scalar``.
      stats: weighted responsibilities ``(n, K)`` and the data.
      params: ``θ_old``, where the optimizer starts.
      m_step_state: the optimizer's state.
    """
    resp = stats.values
    total = jnp.maximum(jnp.sum(resp), jnp.finfo(resp.dtype).tiny)

    def objective(theta: Any) -> Array:
        q = expected_log_joint(resp, log_likelihoods_fn(theta, stats.data))
        return (q + log_prior_fn(theta)) / total

    return step.update(objective, params, m_step_state)


class GradientComponent(Component):
    """Base of components fitted by gradient M-steps.

    Subclasses hold a ``step`` (:class:`jaxem.gem.GradientMStep`) and define
    ``log_likelihoods(params, x)`` (differentiable in ``params``),
    ``log_prior(params)``, ``start(x, num_components)`` (the point the
    initial M-step starts from), and the contract's checks, sampling and
    parameter count. The rest is here: the statistics are the
    responsibilities with the data, the M-step is :func:`gradient_m_step`,
    and :meth:`initialize` is that M-step from ``start`` with a fresh
    optimizer.
    """

    step: gem.GradientMStep

    def statistics(self, x: Any, resp: Array, params: Any) -> PerObservation:
        """The weighted responsibilities ``(rows, K)`` and the rows themselves."""
        return PerObservation(resp, x)

    def init_m_step_state(self, params: Any) -> Any:
        """The optimizer's state at ``params``."""
        return self.step.init(params)

    def maximize(
        self, stats: PerObservation, counts: Array, params: Any, m_step_state: Any
    ) -> tuple[Any, Any]:
        """Gradient steps on ``Q + log prior`` from ``params``, never lowering it."""
        return gradient_m_step(
            self.step, self.log_likelihoods, self.log_prior, stats, params, m_step_state
        )

    def initialize(self, x: Any, resp: Array, weights: Array | None = None) -> Any:
        """The M-step from ``start`` on responsibilities ``(n, K)``, with a
        fresh optimizer state."""
        weighted = resp if weights is None else resp * weights[:, None]
        start = self.start(x, resp.shape[1])
        params, _ = self.maximize(
            self.statistics(x, weighted, start),
            jnp.sum(weighted, axis=0),
            start,
            self.init_m_step_state(start),
        )
        return params


class RegressionParams(NamedTuple):
    """Parameters of ``K`` generalised linear regressions on ``P`` inputs.

    Attributes:
      coefficients: ``(K, P)`` (logistic, Poisson) or ``(K, P, C)`` (softmax).
      intercepts: ``(K,)`` or ``(K, C)``.
    """

    coefficients: Array
    intercepts: Array


def _check_l2(value: Any) -> float:
    return check_number(value, "l2", 0.0)


class _Regression(GradientComponent):
    """What the three generalised linear regressions share: the linear
    predictor, a Gaussian prior on the coefficients, the start, the checks of
    the parameters and the k-means features (the inputs)."""

    def _linear(self, params: RegressionParams, inputs: Array) -> Array:
        """``x B_k + b_k``: ``(n, K)``, or ``(n, K, C)`` for softmax."""
        return jnp.einsum("np,kp...->nk...", inputs, params.coefficients) + params.intercepts

    def log_prior(self, params: RegressionParams) -> Array:
        """``Σ log N(B | 0, 1 / l2)`` over the coefficients (``0`` for
        ``l2 = 0``; the intercepts are not penalised)."""
        return gaussian_log_prior(params.coefficients, self.l2)

    def features(self, x: Any) -> Array:
        """``[inputs, targets]`` (``(n, P + 1)``), the points k-means seeds
        from (as for :class:`jaxem.LinearRegression`)."""
        return jnp.concatenate([x[0], x[1][:, None]], axis=1)

    def _tail(self) -> tuple[int, ...]:
        return ()

    def start(self, x: Any, num_components: int) -> RegressionParams:
        """Zero coefficients and intercepts."""
        inputs = x[0]
        tail = self._tail()
        return RegressionParams(
            jnp.zeros((num_components, inputs.shape[1], *tail), inputs.dtype),
            jnp.zeros((num_components, *tail), inputs.dtype),
        )

    def check_params(self, params: Any, x: Any, num_components: int) -> None:
        """Raise for parameters of the wrong type, shape or (when concrete)
        non-finite values."""
        if not isinstance(params, RegressionParams):
            raise TypeError(f"params must be a RegressionParams; got {type(params).__name__}")
        dim, tail = x[0].shape[1], self._tail()
        expected = {
            "coefficients": (num_components, dim, *tail),
            "intercepts": (num_components, *tail),
        }
        why = f"num_components={num_components}, P={dim} inputs"
        if tail:
            why += f", num_classes={tail[0]}"
        for name, shape in expected.items():
            got = tuple(jnp.shape(getattr(params, name)))
            if got != shape:
                raise ValueError(f"params.{name} must have shape {shape} ({why}); got {got}")
        for name in expected:
            check_finite_values(getattr(params, name), f"params.{name}")

    def constraints(self, params: RegressionParams) -> RegressionParams:
        """Real coefficients and intercepts; for softmax, logits over the
        classes (a shift common to all classes changes no probability, so
        ``C − 1`` per row are free)."""
        kind = gem.logits if self._tail() else gem.real
        return RegressionParams(kind, kind)

    def num_parameters(self, params: RegressionParams) -> int:
        """``K (P + 1)`` coefficients and intercepts (per free class for softmax)."""
        k, dim = jnp.shape(params.coefficients)[:2]
        free = 1 if not self._tail() else self._tail()[0] - 1
        return int(k * (dim + 1) * free)


@dataclasses.dataclass(frozen=True)
class LogisticRegression(_Regression):
    """Binary logistic regressions, fitted by gradient M-steps.

    ``p(y = 1 | x, k) = sigmoid(x β_k + b_k)`` for data ``(inputs (n, P),
    labels (n,))`` with labels in ``{0, 1}``. ``Mixture(LogisticRegression(),
    K)`` is a mixture of logistic regressions (mixing weights that do not
    depend on the inputs); ``MixtureOfExperts(LogisticRegression(), K)`` lets
    a gate choose.

    Args:
      step: the coefficients' :class:`jaxem.gem.GradientMStep` (``None``: 5
        L-BFGS updates per EM iteration).
      l2: precision of a Gaussian prior ``N(0, 1 / l2)`` on each coefficient
        (MAP; ``0``: none); intercepts are not penalised. With separable data
        the maximum-likelihood coefficients are infinite; a small ``l2`` keeps
        them finite.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxem
      >>> inputs = jax.random.normal(jax.random.key(0), (300, 2))
      >>> labels = (inputs[:, 0] + inputs[:, 1] > 0).astype(jnp.float32)
      >>> model = jaxem.Mixture(jaxem.LogisticRegression(l2=1.0), num_components=2)
      >>> result = jaxem.fit(model, (inputs, labels), key=jax.random.key(1), num_restarts=2)
      >>> result.params.components.coefficients.shape
      (2, 2)
      >>> model.predict(result.params, inputs).shape
      (300,)
    """

    step: gem.GradientMStep | None = None
    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "step", check_step(self.step, "step"))
        object.__setattr__(self, "l2", _check_l2(self.l2))

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is ``(inputs (n, P), labels (n,))`` with labels
        in ``{0, 1}`` (values checked when concrete); return whether it is."""
        _, labels, finite = check_regression_data(x, "LogisticRegression", "labels (n,)")
        check_vector_targets(labels, "labels")
        return finite & check_labels(labels, 2, "labels (x[1]) of a logistic regression (0 or 1)")

    def log_likelihoods(self, params: RegressionParams, x: Any) -> Array:
        """``y log σ(η) + (1 − y) log σ(−η)``, ``(n, K)``."""
        logits = self._linear(params, x[0])
        y = x[1][:, None]
        return y * jax.nn.log_sigmoid(logits) + (1.0 - y) * jax.nn.log_sigmoid(-logits)

    def predict(self, params: RegressionParams, inputs: Array) -> Array:
        """``p(y = 1 | x, k)``, ``(n, K)``."""
        return jax.nn.sigmoid(self._linear(params, inputs))

    def sample_targets(self, key: Array, params: RegressionParams, inputs: Array, labels: Array):
        """One int32 label in ``{0, 1}`` per row, from component ``labels[i]``."""
        logits = self._linear(params, inputs)[jnp.arange(inputs.shape[0]), labels]
        return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(jnp.int32)

    def sample(self, key: Array, params: RegressionParams, labels: Array) -> Any:
        """Not available: the component is conditional on its inputs.

        Raises:
          TypeError: always; use ``sample_targets`` with inputs.
        """
        raise TypeError(
            "LogisticRegression models labels given inputs and has no distribution over "
            "inputs: draw labels with model.sample_targets(key, params, inputs)"
        )


@dataclasses.dataclass(frozen=True)
class SoftmaxRegression(_Regression):
    """Multinomial logistic (softmax) regressions over ``C`` classes, fitted
    by gradient M-steps.

    ``p(y = c | x, k) = softmax(x B_k + d_k)_c`` for data ``(inputs (n, P),
    labels (n,))`` with labels in ``0 .. C − 1`` (integers, or integer-valued
    floats).

    Args:
      num_classes: ``C >= 2``.
      step: the :class:`jaxem.gem.GradientMStep` (``None``: 5 L-BFGS updates).
      l2: precision of a Gaussian prior on each coefficient (``0``: none).
    """

    num_classes: int
    step: gem.GradientMStep | None = None
    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "num_classes", check_int(self.num_classes, "num_classes", 2))
        object.__setattr__(self, "step", check_step(self.step, "step"))
        object.__setattr__(self, "l2", _check_l2(self.l2))

    def _tail(self) -> tuple[int, ...]:
        return (self.num_classes,)

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is ``(inputs (n, P), labels (n,))`` with labels
        in ``0 .. C − 1`` (values checked when concrete); return whether it is."""
        _, labels, finite = check_regression_data(x, "SoftmaxRegression", "labels (n,)")
        check_vector_targets(labels, "class labels")
        return finite & check_labels(labels, self.num_classes, "class labels (targets, x[1])")

    def _class_log_probabilities(self, params: RegressionParams, inputs: Array) -> Array:
        return jax.nn.log_softmax(self._linear(params, inputs), axis=2)  # (n, K, C)

    def log_likelihoods(self, params: RegressionParams, x: Any) -> Array:
        """``log p(y_i | x_i, k)``, ``(n, K)``."""
        inputs, labels = x
        one_hot = jax.nn.one_hot(labels.astype(jnp.int32), self.num_classes, dtype=inputs.dtype)
        return jnp.einsum("nkc,nc->nk", self._class_log_probabilities(params, inputs), one_hot)

    def predict(self, params: RegressionParams, inputs: Array) -> Array:
        """Class probabilities ``p(y = c | x, k)``, ``(n, K, C)``."""
        return jnp.exp(self._class_log_probabilities(params, inputs))

    def sample_targets(self, key: Array, params: RegressionParams, inputs: Array, labels: Array):
        """One int32 class label per row, from component ``labels[i]``."""
        log_probs = self._class_log_probabilities(params, inputs)
        rows = log_probs[jnp.arange(inputs.shape[0]), labels]
        return jax.random.categorical(key, rows, axis=1).astype(jnp.int32)

    def sample(self, key: Array, params: RegressionParams, labels: Array) -> Any:
        """Not available: the component is conditional on its inputs.

        Raises:
          TypeError: always; use ``sample_targets`` with inputs.
        """
        raise TypeError(
            "SoftmaxRegression models labels given inputs and has no distribution over "
            "inputs: draw labels with model.sample_targets(key, params, inputs)"
        )


@dataclasses.dataclass(frozen=True)
class PoissonRegression(_Regression):
    """Poisson regressions with a log link, fitted by gradient M-steps.

    ``y | x, k ~ Poisson(exp(x β_k + b_k))`` for data ``(inputs (n, P),
    counts (n,))`` of non-negative integer counts.

    Args:
      step: the :class:`jaxem.gem.GradientMStep` (``None``: 5 L-BFGS updates).
      l2: precision of a Gaussian prior on each coefficient (``0``: none).
    """

    step: gem.GradientMStep | None = None
    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "step", check_step(self.step, "step"))
        object.__setattr__(self, "l2", _check_l2(self.l2))

    def check_data(self, x: Any, num_components: int) -> Array:
        """Raise unless ``x`` is ``(inputs (n, P), counts (n,))`` of
        non-negative integer counts (values checked when concrete)."""
        _, counts, finite = check_regression_data(x, "PoissonRegression", "counts (n,)")
        check_vector_targets(counts, "counts")
        return finite & check_count_data(counts, "PoissonRegression", "targets")

    def log_likelihoods(self, params: RegressionParams, x: Any) -> Array:
        """``y η − e^η − log y!`` with ``η = x β_k + b_k``, ``(n, K)``."""
        inputs, counts = x
        eta = self._linear(params, inputs)
        y = counts[:, None]
        return y * eta - jnp.exp(eta) - gammaln(y + 1.0)

    def predict(self, params: RegressionParams, inputs: Array) -> Array:
        """Expected counts ``exp(x β_k + b_k)``, ``(n, K)``."""
        return jnp.exp(self._linear(params, inputs))

    def sample_targets(self, key: Array, params: RegressionParams, inputs: Array, labels: Array):
        """One count per row (in the inputs' dtype), from component ``labels[i]``."""
        rates = self.predict(params, inputs)[jnp.arange(inputs.shape[0]), labels]
        return jax.random.poisson(key, rates).astype(inputs.dtype)

    def sample(self, key: Array, params: RegressionParams, labels: Array) -> Any:
        """Not available: the component is conditional on its inputs.

        Raises:
          TypeError: always; use ``sample_targets`` with inputs.
        """
        raise TypeError(
            "PoissonRegression models counts given inputs and has no distribution over "
            "inputs: draw counts with model.sample_targets(key, params, inputs)"
        )


def softmax_gate_log_probabilities(gate: tuple[Array, Array], inputs: Array) -> Array:
    """``log softmax(x V + c)``, ``(n, K)``: the gate of a mixture of experts
    (a softmax regression of the latent state on the inputs)."""
    return jax.nn.log_softmax(inputs @ gate[0] + gate[1], axis=1)
