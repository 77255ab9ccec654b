"""Model selection in one call: fit every configuration, score each by BIC,
AIC and ICL, and pick the best."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxem import _criteria, _engine
from jaxem._driver import fit
from jaxem._engine import FitResult
from jaxem._model import as_model

CRITERIA = ("bic", "aic", "icl")


class SelectionRow(NamedTuple):
    """One configuration's scores in a :class:`jaxem.Selection` (plain Python
    numbers; the criteria are lower-is-better).

    Attributes:
      name: the configuration's name (its key in a dict of models, else a
        short description of the model).
      log_likelihood: ``log p(x | θ̂)`` summed over the observations.
      num_parameters: free parameters ``p``.
      bic: ``−2 log p(x | θ̂) + p log n``.
      aic: ``−2 log p(x | θ̂) + 2p``.
      icl: ``BIC + 2 H(q)`` (NaN for a model without ``expected_log_joint``).
      converged: whether the chosen restart met ``tol``.
    """

    name: str
    log_likelihood: float
    num_parameters: int
    bic: float
    aic: float
    icl: float
    converged: bool


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Selection:
    """The outcome of :func:`jaxem.select`: every configuration fitted and
    scored; ``str(selection)`` is the table, the chosen row marked ``*``.

    Attributes:
      table: one :class:`~jaxem._select.SelectionRow` per configuration, in
        the order given.
      models: the configurations, in the same order.
      results: each configuration's :class:`~jaxem.FitResult`.
      criterion: the criterion that chose (``"bic"``, ``"aic"`` or ``"icl"``).
      best_index: the position of the chosen configuration (the lowest
        criterion; the first of equals).
    """

    table: list[SelectionRow]
    models: list[Any]
    results: list[FitResult]
    criterion: str
    best_index: int

    @property
    def best(self) -> Any:
        """The chosen configuration (model)."""
        return self.models[self.best_index]

    @property
    def best_result(self) -> FitResult:
        """The chosen configuration's :class:`~jaxem.FitResult`."""
        return self.results[self.best_index]

    def __str__(self) -> str:
        headers = ["", "model", "log-likelihood", "parameters", "BIC", "AIC", "ICL"]
        chosen = headers.index(self.criterion.upper())
        headers[chosen] += "*"
        lines = []
        for i, row in enumerate(self.table):
            numbers = (row.log_likelihood, row.bic, row.aic, row.icl)
            values = [f"{v:.2f}" if math.isfinite(v) else str(v) for v in numbers]
            mark = "*" if i == self.best_index else ("!" if not row.converged else "")
            lines.append(
                [mark, row.name, values[0], str(row.num_parameters), *values[1:]],
            )
        widths = [max(len(r[c]) for r in [headers, *lines]) for c in range(len(headers))]
        align = lambda r: "  ".join(
            cell.ljust(w) if c < 2 else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        text = [align(headers), *(align(r) for r in lines)]
        if any(not row.converged for row in self.table):
            text.append("(! the fit did not converge within max_iter)")
        return "\n".join(text)

    def __repr__(self) -> str:
        return f"Selection(criterion={self.criterion!r}, best_index={self.best_index})\n{self}"


def select(
    models: Any,
    x: Any,
    *,
    key: Any,
    num_restarts: int = 4,
    criterion: str = "bic",
    **fit_options: Any,
) -> Selection:
    """Fit every model configuration to ``x``, score each, and pick the best.

    Each configuration is fitted with :func:`jaxem.fit` (the same ``key``,
    ``num_restarts`` and ``fit_options`` for all), then scored by BIC, AIC
    and ICL (:func:`jaxem.bic`, :func:`jaxem.aic`, :func:`jaxem.icl`, all in
    one compiled program per configuration), with the log-likelihood and the
    number of parameters. Programs are cached per configuration and data
    shape: equal configurations in the list share their programs, and
    selecting again, or on new data of the same shape, compiles nothing.

    Args:
      models: a list of model configurations (e.g. Gaussian mixtures over
        ``K = 1 … 6`` and covariance types), or a dict ``name -> model``.
      x: data every model takes.
      key: a PRNG key, ``jax.random.key(seed)``.
      num_restarts: restarts per configuration.
      criterion: what chooses: ``"bic"`` (default), ``"aic"`` or ``"icl"``
        (lower is better). ICL needs models that define
        ``expected_log_joint`` (mixtures, mixtures of experts, hidden Markov
        models); for other models its column is NaN.
      **fit_options: passed to :func:`jaxem.fit` (``max_iter``, ``tol``,
        ...). The criteria are of unweighted data: ``weights`` is refused.

    Returns:
      A :class:`Selection`.

    Raises:
      ValueError: an unknown criterion, no models, or ``weights``; what
        :func:`jaxem.fit` raises.
      TypeError: ``criterion="icl"`` for a model without ``expected_log_joint``.

    Examples:
      >>> import jax, jaxem
      >>> x = jaxem.load_faithful()
      >>> models = {f"K={k}": jaxem.GaussianMixture(k) for k in (1, 2, 3)}
      >>> selection = jaxem.select(models, x, key=jax.random.key(0), num_restarts=2)
      >>> selection.best.num_components  # two clusters of eruptions
      2
      >>> print(selection)  # doctest: +NORMALIZE_WHITESPACE, +ELLIPSIS
         model  log-likelihood  parameters     BIC*      AIC      ICL
         K=1          -1289.8...     5  2607.6...
      *  K=2          -1130.2...    11  2322.1...
         K=3          -1119.7...    17  2334.8...
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if "weights" in fit_options:
        raise ValueError(
            "select scores unweighted data (BIC's n counts observations); weights are not supported"
        )
    if isinstance(models, Mapping):
        names = [str(name) for name in models]
        models = list(models.values())
    else:
        models = list(models)
        names = [describe(model) for model in models]
    if not models:
        raise ValueError("models is empty; pass at least one model configuration")
    completed = [as_model(model) for model in models]
    with_icl = [_criteria.defines_expected_log_joint(model) for model in completed]
    if criterion == "icl" and not all(with_icl):
        bad = names[with_icl.index(False)]
        raise TypeError(
            f"criterion='icl' needs models that define expected_log_joint; {bad} does not"
        )
    results, rows = [], []
    for name, model, icl in zip(names, completed, with_icl, strict=True):
        result = fit(model, x, key=key, num_restarts=num_restarts, **fit_options)
        data, _, _ = _engine.check_data(model, x, None)
        resolved = _criteria._resolved(model, data)
        scores = _criteria.scores(resolved, result.params, data, icl)
        scores = [float(value) for value in scores]
        log_lik, bic, aic, icl_value = scores
        rows.append(
            SelectionRow(
                name,
                log_lik,
                resolved.num_parameters(result.params),
                bic,
                aic,
                icl_value,
                bool(np.asarray(result.converged)[int(result.best_restart)]),
            )
        )
        results.append(result)
    values = np.array([getattr(row, criterion) for row in rows])
    values = np.where(np.isnan(values), np.inf, values)
    return Selection(rows, models, results, criterion, int(np.argmin(values)))


def describe(model: Any) -> str:
    """A short description of a model configuration: its class with the
    fields it was given (required ones positionally, the others when they
    differ from their defaults), nested configurations likewise."""
    if not dataclasses.is_dataclass(model) or isinstance(model, type):
        return repr(model)
    parts = []
    for field in dataclasses.fields(model):
        if not (field.init and field.repr):
            continue
        value = getattr(model, field.name)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            parts.append(describe(value))
            continue
        default = (
            field.default if field.default is not dataclasses.MISSING else field.default_factory()
        )
        if not _same(value, default):
            parts.append(f"{field.name}={describe(value)}")
    return f"{type(model).__name__}({', '.join(parts)})"


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except Exception:  # (arrays and other values without a truth value)
        return False
