"""The model contract: what ``jaxem.fit`` needs from a latent-variable model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import jax

Array = jax.Array
Params = Any  # a NamedTuple pytree of arrays
Stats = Any  # a pytree of arrays that add up across observations


@runtime_checkable
class Model(Protocol):
    """A latent-variable model, as the EM driver sees it.

    A model is an immutable, hashable object that holds only configuration
    (number of components, covariance type, priors, ...). Parameters are a
    NamedTuple pytree of arrays passed explicitly, so changing configuration
    recompiles and changing parameter values never does. Every method is a
    pure function written for one restart and one dataset, unjitted, so it
    composes with ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

    Optional methods, used by the driver when present:

    - ``check_data(x)``: raise ``ValueError``/``TypeError`` for data of the
      wrong rank or feature count, or too few observations (shapes only; it
      runs at trace time).
    - ``check_params(params, x)``: raise for parameters of the wrong
      structure or shape; value checks only on concrete arrays.
    - ``diagnose(stats, params)``: a mapping of boolean arrays describing
      value-dependent problems (e.g. ``"collapsed"``: components that lost all
      their mass), reported on the fit's result.
    - ``is_finite(params)``: a scalar boolean, whether the fitted parameters
      are finite (default: every leaf); models whose params carry auxiliary
      state that may hold inf (a GEM optimizer's line-search state) define it.
    - ``m_step_uses_data = True`` (a class attribute): the M-step needs the
      data, and the driver calls ``m_step(stats, params, x, weights)``. GEM
      models, whose ``Q`` is a sum over observations of a function of
      ``θ`` with the posterior held fixed, use it.
    - ``stats_per_observation = True`` (a class attribute): the statistics
      are arrays with one row per observation (e.g. the responsibilities a
      GEM M-step needs); chunked and sharded E-steps concatenate them
      instead of adding them.
    - ``shift_stats(stats, from_params, to_params)``: statistics computed
      under ``from_params`` re-expressed about ``to_params`` (what the E-step
      would return with the same posterior had it taken its moments about
      ``to_params``). Models whose statistics are taken about the parameters
      (moments about the current means, so the M-step does not cancel) define
      it; online EM (:func:`jaxem.online_em`) moves its running statistics
      with it after every M-step. Statistics that depend on the parameters only
      through the posterior need none.

    Data ``x`` is an ``(n, D)`` array, or a tuple of arrays with a common
    leading axis ``n`` (e.g. ``(inputs, targets)`` for regressions).
    """

    def init(self, key: Array, x: Array) -> Params:
        """Initial parameters for one restart, from data ``x`` of shape ``(n, D)``."""
        ...

    def e_step(self, params: Params, x: Array, weights: Array | None = None) -> tuple[Stats, Array]:
        """Additive expected sufficient statistics, and the summed (weighted)
        observed-data log-likelihood of ``x`` under ``params`` (a scalar)."""
        ...

    def m_step(self, stats: Stats, params: Params) -> Params:
        """``argmax_θ Q(θ, θ_old) + log p(θ)`` from the statistics; ``params``
        are the parameters the statistics were computed under."""
        ...

    def log_prob(self, params: Params, x: Array) -> Array:
        """Per-observation log p(x_i), shape ``(n,)``."""
        ...

    def posterior(self, params: Params, x: Array) -> Array:
        """Posterior over the latent variable per observation, e.g. ``(n, K)``."""
        ...

    def log_prior(self, params: Params) -> Array:
        """log p(θ), a scalar; ``0.0`` when the model has no prior."""
        ...

    def sample(self, key: Array, params: Params, n: int) -> Any:
        """``n`` draws from the model."""
        ...

    def num_parameters(self, params: Params) -> int:
        """Number of free parameters (for BIC and AIC)."""
        ...


Diagnostics = Mapping[str, Array]
