"""Models given only as a log-joint ``log p(x_i, z_i = k | θ)``.

From a function ``log_joint_fn(params, x) -> (n, K)`` everything EM needs
follows: the marginal log-likelihood is its row-wise log-sum-exp, the
posterior is the gradient of that log-normaliser with respect to the
log-joint (:func:`jaxem.inference.posterior_from_gradient`),
``Q(θ, θ_old) = Σ_i w_i Σ_k r_ik log_joint(θ, x)_ik`` with the
responsibilities held fixed, and the M-step is a
:class:`jaxem.gem.GradientMStep` on ``Q + log prior`` (or a closed form the
user supplies). Parameters are the user's own pytrees, everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxem import _free, gem
from jaxem._model import Model, check_finite_params
from jaxem._numerics import num_rows
from jaxem._stats import PerObservation
from jaxem._validation import check_finite_data
from jaxem.inference import discrete_posterior, expected_log_joint, posterior_from_gradient
from jaxem.models._mixture import collapsed
from jaxem.models.components._gradient import gradient_m_step

Array = jax.Array


@functools.cache
def _default_gradient_step() -> gem.GradientMStep:
    """One shared default (so equal models compile once)."""
    return gem.GradientMStep(optax.adam(0.05), num_steps=20)


@dataclasses.dataclass(frozen=True)
class LogJointModel(Model):
    """A latent-variable model with a discrete latent, given by its log-joint.

    Parameters are the user's own pytrees: what ``init_fn`` returns, what
    ``fit`` returns, and what :meth:`log_prob`, :meth:`posterior`,
    :meth:`log_prior` and ``init_params`` take. The gradient M-step's
    optimizer state is carried by the driver beside them.

    Args:
      log_joint_fn: ``(params, x) -> (n, K)``, ``log p(x_i, z_i = k | params)``
        (pure and differentiable in ``params``).
      init_fn: ``(key, x) -> params``, the starting parameters of one restart.
      gradient_step: the :class:`jaxem.gem.GradientMStep` that makes the
        M-step (``None``: 20 Adam steps of size 0.05, no constraints).
      m_step_fn: a closed form ``(responsibilities (n, K), x, params) ->
        params`` that maximises ``Q`` (plus the log prior), used instead of
        gradient steps; the responsibilities include the observation weights.
      log_prior_fn: ``params -> scalar`` for MAP estimation; ``None`` for none.
      sample_fn: ``(key, params, n) -> draws``, for :meth:`sample`.
      num_parameters_fn: ``params -> int`` for BIC/AIC; ``None`` counts the
        free coordinates under :meth:`constraints`.
      check_data_fn: ``x -> None``, raising for data the model cannot take
        (NaN and inf are refused in any case).
      param_constraints: the parameters' domains, a (hashable) pytree of
        :mod:`jaxem.gem` constraints mirroring the parameters or a prefix of
        them (:data:`jaxem.gem.fixed` for values the fit does not estimate),
        returned by :meth:`constraints`; ``None``: the gradient step's
        constraints (all real without them). Named apart from the
        :meth:`constraints` method of the model contract.

    Examples:
      A mixture of two unit-variance Gaussians with unknown means and weights:

      >>> import jax, jax.numpy as jnp, optax, jaxem
      >>> from jaxem import gem
      >>> def log_joint(params, x):
      ...     logits, means = params
      ...     log_weights = jax.nn.log_softmax(logits)
      ...     return log_weights - 0.5 * (x - means) ** 2 - 0.5 * jnp.log(2 * jnp.pi)
      >>> def init(key, x):
      ...     return jnp.zeros(2), jax.random.choice(key, x[:, 0], (2,), replace=False)
      >>> model = jaxem.LogJointModel(
      ...     log_joint, init, gradient_step=gem.GradientMStep(optax.adam(0.1), num_steps=25))
      >>> x = jnp.concatenate([jnp.full((50, 1), -2.0), jnp.full((50, 1), 3.0)])
      >>> x = x + 0.5 * jax.random.normal(jax.random.key(0), x.shape)
      >>> result = jaxem.fit(model, x, key=jax.random.key(1), num_restarts=4, max_iter=200)
      >>> sorted(round(float(m)) for m in result.params[1])
      [-2, 3]
    """

    log_joint_fn: Callable[[Any, Any], Array]
    init_fn: Callable[[Array, Any], Any]
    gradient_step: gem.GradientMStep | None = None
    m_step_fn: Callable[[Array, Any, Any], Any] | None = None
    log_prior_fn: Callable[[Any], Array] | None = None
    sample_fn: Callable[[Array, Any, int], Any] | None = None
    num_parameters_fn: Callable[[Any], int] | None = None
    check_data_fn: Callable[[Any], None] | None = None
    param_constraints: Any = None

    def __post_init__(self):
        for name in ("log_joint_fn", "init_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable; got {getattr(self, name)!r}")
        for name in (
            "m_step_fn",
            "log_prior_fn",
            "sample_fn",
            "num_parameters_fn",
            "check_data_fn",
        ):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None; got {value!r}")
        if self.gradient_step is None:
            if self.m_step_fn is None:
                object.__setattr__(self, "gradient_step", _default_gradient_step())
        elif not isinstance(self.gradient_step, gem.GradientMStep):
            raise TypeError(
                "gradient_step must be a jaxem.gem.GradientMStep or None; "
                f"got {self.gradient_step!r}"
            )
        if self.gradient_step is not None and self.m_step_fn is not None:
            raise ValueError("give either gradient_step or a closed-form m_step_fn, not both")
        leaves = jax.tree.leaves(
            self.param_constraints, is_leaf=lambda c: c is None or isinstance(c, gem.Constraint)
        )
        bad = [leaf for leaf in leaves if leaf is not None and not isinstance(leaf, gem.Constraint)]
        if bad:
            raise TypeError(
                "param_constraints must be a pytree of jaxem.gem constraints (or None); "
                f"got {bad[0]!r}"
            )

    # ------------------------------------------------------------------ checks

    def check_data(self, x: Any) -> Array:
        """The user's ``check_data_fn`` (if any), and finite values (when
        concrete); returns whether the values are finite."""
        if self.check_data_fn is not None:
            self.check_data_fn(x)
        return check_finite_data(x)

    def check_params(self, params: Any, x: Any) -> None:
        """Raise ``ValueError`` for concrete parameters holding NaN or inf
        (the structure and shapes are checked against ``init_fn``'s by the
        driver)."""
        check_finite_params(params)

    def _log_joint(self, params: Any, x: Any) -> Array:
        log_joint = self.log_joint_fn(params, x)
        n = num_rows(x)
        if jnp.ndim(log_joint) != 2 or jnp.shape(log_joint)[0] != n:
            raise ValueError(
                "log_joint_fn(params, x) must return an (n, K) array of log p(x_i, z_i = k) "
                f"with one row per observation (n = {n}); got shape {jnp.shape(log_joint)}"
            )
        return log_joint

    # ------------------------------------------------------------- the contract

    def init(self, key: Array, x: Any, weights: Array | None = None) -> Any:
        """The user's initial parameters (``init_fn(key, x)``; the weights are
        not passed on)."""
        del weights
        return self.init_fn(key, x)

    def e_step(
        self, params: Any, x: Any, weights: Array | None = None
    ) -> tuple[PerObservation, Array]:
        """Responsibilities (the gradient of the log-normaliser) with the data,
        and the summed log-likelihood."""
        resp, total = posterior_from_gradient(self._log_joint(params, x), weights)
        return PerObservation(resp, x), total

    def expected_log_joint(
        self, params: Any, x: Any, q_params: Any, weights: Array | None = None
    ) -> Array:
        """``Q(params, q_params) = Σ_i w_i Σ_k r_ik log_joint_fn(params, x)_ik``
        with ``r_ik = p(z_i = k | x_i, q_params)``: EM's auxiliary function
        without the prior, a scalar."""
        resp = discrete_posterior(self._log_joint(q_params, x))[1]
        if weights is not None:
            resp = resp * weights[:, None]
        return expected_log_joint(resp, self._log_joint(params, x))

    def init_m_step_state(self, params: Any) -> Any:
        """The gradient step's optimizer state at ``params`` (``()`` with a
        closed-form ``m_step_fn``)."""
        return () if self.gradient_step is None else self.gradient_step.init(params)

    def m_step(
        self, stats: PerObservation, params: Any, m_step_state: Any = None
    ) -> tuple[Any, Any]:
        """Gradient steps on ``(Q + log prior)`` divided by the total weight
        (or the closed form); returns ``(params, m_step_state)``."""
        if m_step_state is None:
            m_step_state = self.init_m_step_state(params)
        if self.gradient_step is None:
            return self.m_step_fn(stats.values, stats.data, params), m_step_state
        return gradient_m_step(
            self.gradient_step, self._log_joint, self.log_prior, stats, params, m_step_state
        )

    def log_prob(self, params: Any, x: Any) -> Array:
        """Per-observation ``log p(x_i)``, ``(n,)``."""
        return discrete_posterior(self._log_joint(params, x))[0]

    def posterior(self, params: Any, x: Any) -> Array:
        """``p(z_i = k | x_i)``, ``(n, K)``."""
        return discrete_posterior(self._log_joint(params, x))[1]

    def log_prior(self, params: Any) -> Array:
        """``log p(θ)`` (``0.0`` without a ``log_prior_fn``)."""
        if self.log_prior_fn is None:
            leaves = jax.tree.leaves(params)
            dtype = jnp.result_type(*leaves) if leaves else jnp.float32
            return jnp.zeros((), dtype)
        return self.log_prior_fn(params)

    def sample(self, key: Array, params: Any, n: int) -> Any:
        """``n`` draws from ``sample_fn``.

        Raises:
          TypeError: the model has no ``sample_fn``.
        """
        if self.sample_fn is None:
            raise TypeError(
                "this LogJointModel has no sampler: pass sample_fn=(key, params, n) -> x"
            )
        return self.sample_fn(key, params, n)

    def constraints(self, params: Any) -> Any:
        """``param_constraints``, or the gradient step's constraints (``None``,
        all real, without either)."""
        if self.param_constraints is not None:
            return self.param_constraints
        return None if self.gradient_step is None else self.gradient_step.constraints

    def num_parameters(self, params: Any) -> int:
        """Free parameters (``num_parameters_fn``, or the number of free
        coordinates under :meth:`constraints`)."""
        if self.num_parameters_fn is not None:
            return int(self.num_parameters_fn(params))
        return _free.num_free(self.constraints(params), params)

    def diagnose(self, stats: PerObservation, params: Any) -> dict[str, Array]:
        """``{"collapsed": (K,)}``: latent states with less than a thousandth
        of an average observation's weight."""
        resp = stats.values
        return {"collapsed": collapsed(jnp.sum(resp, axis=0), num_rows(resp))}
