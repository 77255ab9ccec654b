"""Small real datasets shipped with the package."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np


def load_faithful(return_names: bool = False):
    """The Old Faithful geyser eruptions (Azzalini & Bowman 1990; R's ``faithful``).

    272 eruptions of the Old Faithful geyser in Yellowstone National Park:
    eruption time and waiting time to the next eruption, both in minutes. The
    points form two well-separated clusters (short and long eruptions), the
    classic test of a two-component Gaussian mixture.

    Args:
      return_names: also return the column names.

    Returns:
      ``x``, a float64 numpy array of shape ``(272, 2)`` (columns
      ``eruptions``, ``waiting``), or ``(x, names)``.

    Examples:
      >>> import jaxem
      >>> x = jaxem.load_faithful()
      >>> x.shape
      (272, 2)
    """
    with resources.files("jaxem").joinpath("data/faithful.csv").open() as handle:
        reader = csv.reader(handle)
        names = next(reader)
        x = np.array([[float(value) for value in row] for row in reader])
    return (x, names) if return_names else x
