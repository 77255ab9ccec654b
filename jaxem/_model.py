"""The model contract (version 2): what ``jaxem.fit`` needs from a latent-variable model.

This module is the authority on the contract. A model is an immutable,
hashable object holding configuration only; parameters are a pytree of arrays
passed explicitly; every method is a pure function written for one restart
and one dataset, unjitted, so it composes with ``jax.jit``, ``jax.vmap`` and
``jax.grad``.

- **One M-step signature** for closed forms and gradient steps:
  ``m_step(stats, params, m_step_state) -> (params, m_step_state)``. The
  M-step state (an optimizer's moments or curvature pairs, for warm starts)
  is carried by the driver *beside* the parameters, never inside them;
  closed forms carry an empty state ``()``.
- **Statistics** are additive pytrees, or parts typed
  :class:`~jaxem.PerObservation` (one row per observation, concatenated
  across pieces of the data, e.g. the posteriors a gradient M-step needs).
  Nothing else tells the engine how to split rows.
- **Each model checks its own data**, including NaN and inf: a model that
  handles missing values accepts NaN as "missing".
- **Weights** are per-observation weights that every statistic honours.

Optional methods have defaults, given by subclassing :class:`Model` (as
jaxem's own models do) or, for a model that does not, filled in once at the
boundary by :func:`as_model` (as optax fills in ``with_extra_args_support``):
the driver then calls every method unconditionally.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._numerics import num_rows
from jaxem._validation import check_finite_data, is_concrete

Array = jax.Array
Params = Any  # a pytree of arrays (jaxem's models use NamedTuples)
Stats = Any  # additive arrays and PerObservation parts
MStepState = Any  # () for closed-form M-steps

REQUIRED = ("init", "e_step", "m_step", "log_prob", "posterior", "log_prior")
OPTIONAL = (
    "check_data",
    "check_params",
    "init_m_step_state",
    "shift_stats",
    "diagnose",
    "num_observations",
    "for_data",
    "constraints",
    "expected_log_joint",
)


def check_finite_params(params: Any) -> None:
    """Raise ``ValueError`` if concrete parameters hold NaN or inf, naming
    the offending leaf by its path."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if is_concrete(leaf) and jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(
                    f"params{jax.tree_util.keystr(path)} contains NaN or inf: starting "
                    "parameters must be finite"
                )


@runtime_checkable
class Model(Protocol):
    """A latent-variable model, as the EM driver sees it (contract version 2).

    Subclass it to get the defaults of the optional methods; any object with
    the required methods works too (the driver fills in the defaults).

    Data ``x`` is an ``(n, D)`` array, or a tuple of arrays with a common
    leading axis ``n`` (e.g. ``(inputs, targets)`` for regressions).
    """

    # ----------------------------------------------------------- required

    def init(self, key: Array, x: Any, weights: Array | None = None) -> Params:
        """Initial parameters for one restart, from data ``x`` (and optional
        ``(n,)`` observation weights)."""
        ...

    def e_step(self, params: Params, x: Any, weights: Array | None = None) -> tuple[Stats, Array]:
        """Expected sufficient statistics under ``params`` (additive, or typed
        :class:`~jaxem.PerObservation` with the data attached), and the summed
        (weighted) observed-data log-likelihood, a scalar."""
        ...

    def m_step(
        self, stats: Stats, params: Params, m_step_state: MStepState
    ) -> tuple[Params, MStepState]:
        """``argmax_θ Q(θ, θ_old) + log p(θ)`` (closed form), or an
        improvement of it (a gradient M-step), from the statistics computed
        under ``params``; returns the new parameters and M-step state."""
        ...

    def log_prob(self, params: Params, x: Any) -> Array:
        """Per-observation ``log p(x_i)``, shape ``(n,)``."""
        ...

    def posterior(self, params: Params, x: Any) -> Array:
        """Posterior over the latent variable per observation, e.g. ``(n, K)``."""
        ...

    def log_prior(self, params: Params) -> Array:
        """``log p(θ)``, a scalar; ``0.0`` when the model has no prior."""
        ...

    def sample(self, key: Array, params: Params, n: int) -> Any:
        """``n`` draws from the model (conditional models raise ``TypeError``
        and offer ``sample_targets``)."""
        ...

    def num_parameters(self, params: Params) -> int:
        """Number of free parameters (for BIC and AIC)."""
        ...

    # ------------------------------------------------- optional (defaults)

    def check_data(self, x: Any) -> Array:
        """Raise ``ValueError``/``TypeError`` for data the model cannot take
        (shapes always; values, such as NaN where the model takes no missing
        values, only when ``x`` is concrete). Returns a scalar boolean: whether
        the values are valid (the driver reports its negation as
        ``invalid_input`` when ``fit`` runs under a user's ``jit``).

        Default: every value must be finite.
        """
        return check_finite_data(x)

    def check_params(self, params: Params, x: Any) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only for concrete arrays). Default: every leaf must be finite."""
        check_finite_params(params)

    def init_m_step_state(self, params: Params) -> MStepState:
        """The M-step state to start from at ``params`` (``()`` by default:
        a closed-form M-step keeps none)."""
        return ()

    def shift_stats(self, stats: Stats, from_params: Params, to_params: Params) -> Stats:
        """``stats`` computed under ``from_params`` re-expressed about
        ``to_params``. Statistics taken about the parameters (moments about
        the current means, so that the M-step does not cancel) must define it;
        online EM moves its running statistics with it after every M-step.
        Default: the identity (statistics that depend on the parameters only
        through the posterior)."""
        return stats

    def diagnose(self, stats: Stats, params: Params) -> dict[str, Array]:
        """Value-dependent problems as boolean arrays (e.g. ``"collapsed"``:
        components that lost all their mass), reported on the fit's result.
        Default: none."""
        return {}

    def for_data(self, x: Any) -> Any:
        """The model specialised to concrete data ``x``: static facts read off
        the data once, at the boundary, so the compiled program does not test
        for them (e.g. a Gaussian family whose data hold no missing value
        takes the complete-data code, with no branch on NaN). The driver
        calls it on concrete data before compiling; under a user's ``jit``
        the model is used as it is. Default: the model itself."""
        return self

    def constraints(self, params: Params) -> Any:
        """The domain of each parameter: a pytree of :mod:`jaxem.gem`
        constraints mirroring ``params`` (or a prefix of it), with
        :data:`jaxem.gem.fixed` for values the fit does not estimate (resolved
        prior hyperparameters, parameters held fixed). Acceleration
        (``fit(accelerate="squarem")``), :func:`jaxem.standard_errors` and
        differentiation through a fit work in the free, unconstrained
        coordinates these define: logarithms of positive values, log-ratios
        on a simplex, Cholesky factors with a log diagonal, nothing for
        fixed values (``jaxem._free``). Default:
        ``None``, every parameter real and free."""
        return None

    def expected_log_joint(
        self, params: Params, x: Any, q_params: Params, weights: Array | None = None
    ) -> Array:
        """``E_q[log p(x, z | params)]`` summed (weighted) over the
        observations, for the posterior ``q = p(z | x, q_params)``: the
        EM auxiliary function ``Q(params, q_params)`` without the prior. What
        :func:`jaxem.elbo` and the ICL criterion need. Default: none
        (``TypeError``); mixtures and hidden Markov models define it."""
        raise TypeError(
            f"{type(self).__name__} does not define expected_log_joint: the lower bound and "
            "ICL need the expected complete-data log-likelihood of a discrete latent structure "
            "(mixtures, hidden Markov models)"
        )

    def num_observations(self, x: Any) -> Any:
        """The number of observations in ``x``, BIC's ``n``. Default: the
        rows (a sequence model counts its steps instead)."""
        return num_rows(x)


@dataclasses.dataclass(frozen=True)
class _Completed:
    """A model that is not a :class:`Model` subclass, with the optional
    methods it lacks filled in by the defaults (hashable by the model)."""

    model: Any

    def __getattr__(self, name: str) -> Any:
        if name == "model":  # (not yet set: dataclass initialisation)
            raise AttributeError(name)
        if hasattr(self.model, name):
            return getattr(self.model, name)
        if name in OPTIONAL:
            return getattr(Model, name).__get__(self.model)
        raise AttributeError(f"{type(self.model).__name__} has no attribute {name!r}")


def as_model(model: Any) -> Any:
    """``model`` with every method of the contract: itself for a
    :class:`Model` subclass, else wrapped so that missing optional methods
    take their defaults.

    Raises:
      TypeError: ``model`` lacks a required method.
    """
    missing = [name for name in REQUIRED if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(
            f"model must implement the jaxem.Model contract; {type(model).__name__} has no "
            f"{', '.join(repr(name) for name in missing)}"
        )
    if Model in type(model).__mro__ or all(hasattr(model, name) for name in OPTIONAL):
        return model
    return _Completed(model)
