"""The component contract: one family of distributions, for ``K`` components at once.

A latent structure (a mixture, a mixture of experts, and next a hidden Markov
model) is built *from* a component: the structure owns the latent variable
(its prior, the posterior, the initialisation), the component owns the
distribution of the observations given the latent state. Components are
immutable, hashable configuration objects; their parameters are pytrees
whose fitted leaves have a leading ``K`` axis.

A closed-form component and a gradient one have the same M-step signature,
``maximize(stats, counts, params, m_step_state) -> (params, m_step_state)``:
closed forms ignore the state (``()``), gradient components carry an
optimizer's state in it (see :class:`~jaxem.models.components.GradientComponent`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxem._numerics import default_block_size, num_rows

Array = jax.Array
Data = Any  # an (n, D) array, or a tuple of arrays with a common leading axis

REQUIRED = (
    "check_data",
    "check_params",
    "log_likelihoods",
    "statistics",
    "maximize",
    "initialize",
    "sample",
    "num_parameters",
)


@runtime_checkable
class Component(Protocol):
    """A family of component distributions, evaluated for all ``K`` at once.

    Subclass it for the defaults of the optional methods (``prepare``,
    ``features``, ``block_rows``, ``init_m_step_state``, ``shift_statistics``,
    ``log_prior``, ``constraints``, and ``predict``/``sample_targets``, which only conditional
    components have). Data-driven prior hyperparameters, when a family has a
    prior, are resolved by :meth:`initialize` and carried in the parameters.
    """

    #: Whether the family reads NaN in the data as a missing value (its
    #: :meth:`check_data` accepts NaN; the latent structure then leaves NaN to
    #: it instead of refusing it). A class attribute of the family.
    missing_values = False

    # ----------------------------------------------------------- required

    def check_data(self, x: Data, num_components: int) -> Array:
        """Raise ``ValueError``/``TypeError`` for data the family cannot take
        (shapes and types always; values, NaN and inf included, when ``x`` is
        concrete). Returns a scalar boolean: whether the values are valid."""
        ...

    def check_params(self, params: Any, x: Data, num_components: int) -> None:
        """Raise for parameters of the wrong structure, shape or value (values
        only when concrete)."""
        ...

    def log_likelihoods(self, prepared: Any, x: Data) -> Array:
        """``log p(x_i | z_i = k)`` for a block of rows, ``(rows, K)``, from
        :meth:`prepare`'s output."""
        ...

    def statistics(self, x: Data, resp: Array, params: Any) -> Any:
        """Statistics of a block from weighted responsibilities ``(rows, K)``
        computed under ``params``: additive, or :class:`~jaxem.PerObservation`."""
        ...

    def maximize(
        self, stats: Any, counts: Array, params: Any, m_step_state: Any
    ) -> tuple[Any, Any]:
        """The M-step from summed statistics and the components' total
        responsibilities ``counts (K,)``: ``argmax`` of the expected
        complete-data log-likelihood plus log prior (closed form), or an
        improvement of it (gradient steps). ``params`` are those the
        statistics were computed under. Always finite."""
        ...

    def initialize(self, x: Data, resp: Array, weights: Array | None) -> Any:
        """Parameters from (unweighted) responsibilities ``(n, K)`` alone,
        resolving any data-driven prior."""
        ...

    def sample(self, key: Array, params: Any, labels: Array) -> Any:
        """One draw per entry of ``labels`` ``(n,)`` from that component."""
        ...

    def num_parameters(self, params: Any) -> int:
        """Free parameters of all ``K`` components."""
        ...

    # ------------------------------------------------- optional (defaults)

    def prepare(self, params: Any) -> Any:
        """Per-call precomputation for :meth:`log_likelihoods` (Cholesky
        factors, logarithms). Default: the parameters themselves."""
        return params

    def features(self, x: Data) -> Array:
        """The ``(n, F)`` points k-means seeds the components from. Default: ``x``."""
        return x

    def block_rows(self, x: Data, num_components: int) -> int:
        """Rows per E-step block, bounding temporaries. Default: about
        ``2**18`` elements on a CPU for rows of the data's width plus ``2K``."""
        width = sum(leaf.size // leaf.shape[0] for leaf in jax.tree.leaves(x)) + 2 * num_components
        return default_block_size(num_rows(x), width)

    def init_m_step_state(self, params: Any) -> Any:
        """The M-step state at ``params``: ``()`` for closed forms."""
        return ()

    def shift_statistics(self, stats: Any, counts: Array, from_params: Any, to_params: Any) -> Any:
        """Statistics computed under ``from_params`` re-expressed about
        ``to_params`` (families whose statistics are moments about their
        parameters define it; online EM needs it). Default: unchanged."""
        return stats

    def diagnose(self, stats: Any, counts: Array, params: Any) -> dict[str, Array]:
        """Value-dependent problems of the components, as boolean arrays with
        a leading ``K`` axis, from the statistics computed under ``params``
        (the latent structure adds them to its own diagnostics). Default:
        none."""
        return {}

    def log_prior(self, params: Any) -> Array:
        """``log p(θ_components)``. Default: ``0.0`` (no prior)."""
        leaves = jax.tree.leaves(params)
        return jnp.zeros((), jnp.result_type(*leaves) if leaves else jnp.float32)

    def constraints(self, params: Any) -> Any:
        """The domain of each parameter of the ``K`` components: a pytree of
        :mod:`jaxem.gem` constraints mirroring ``params`` (or a prefix of
        it), with :data:`jaxem.gem.fixed` for values the fit does not
        estimate (resolved prior hyperparameters, parameters held fixed by
        configuration). The latent structure composes it into
        ``model.constraints``; its free coordinates should number
        :meth:`num_parameters`. Default: ``None``, every parameter real and
        free."""
        return None

    def predict(self, params: Any, inputs: Array) -> Array:
        """Conditional components: each component's expected target given
        ``inputs (n, P)``, with ``K`` on axis 1."""
        raise TypeError(
            f"{type(self).__name__} models its data unconditionally and has no predictions "
            "given inputs"
        )

    def sample_targets(self, key: Array, params: Any, inputs: Array, labels: Array) -> Array:
        """Conditional components: one target per input row, from component ``labels[i]``."""
        raise TypeError(f"{type(self).__name__} models its data unconditionally: draw with sample")


def check_component(component: Any) -> None:
    """Raise ``TypeError`` unless ``component`` has every method a latent
    structure calls (subclassing :class:`Component` gives the optional ones)."""
    needed = REQUIRED
    if Component not in type(component).__mro__:
        needed = (
            *needed,
            "prepare",
            "features",
            "block_rows",
            "init_m_step_state",
            "shift_statistics",
            "diagnose",
            "log_prior",
            "constraints",
        )
    missing = [name for name in needed if not callable(getattr(component, name, None))]
    if missing:
        raise TypeError(
            "component must implement the jaxem.Component contract (subclass jaxem.Component "
            f"for the optional methods); {component!r} has no "
            f"{', '.join(repr(name) for name in missing)}"
        )


def resolve_component(component: Any) -> Any:
    """The component family ``component`` stands for, checked.

    A model that is the one-component case of a family (such as
    :class:`jaxem.FactorAnalysis`) offers ``as_component()``; a latent
    structure given such a model builds itself from that family instead
    (resolved once, in the structure's ``__post_init__``). Anything else is
    returned as it is.

    Raises:
      TypeError: the result lacks a method of the component contract.
    """
    as_component = getattr(component, "as_component", None)
    if callable(as_component) and not isinstance(component, type):
        component = as_component()
    check_component(component)
    return component
