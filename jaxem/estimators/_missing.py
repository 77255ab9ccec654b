"""What the estimators that take missing values share."""

from __future__ import annotations

import jax
import numpy as np
from sklearn.utils import check_random_state

from jaxem._impute import impute as _impute


class ImputeMixin:
    """``impute`` for an estimator with ``allow_missing`` and ``_apply(fn, X)``
    (``fn(model, params, x)`` on validated data, in the fitted dtype)."""

    def impute(self, X, random_state=None):
        """jaxem extension: ``X`` with its missing (NaN) entries filled in by
        their conditional means given each row's observed values
        (:func:`jaxem.impute`); with ``random_state``, one draw from their
        conditional distribution instead."""
        if not self.allow_missing:
            raise ValueError("impute needs allow_missing=True")
        key = None
        if random_state is not None:
            seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
            key = jax.random.key(seed)
        return self._apply(lambda model, params, x: _impute(model, params, x, key), X)
