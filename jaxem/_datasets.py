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


def load_earthquakes(return_years: bool = False):
    """Annual counts of major earthquakes worldwide, 1900–2006 (Zucchini &
    MacDonald 2009).

    The number of earthquakes of magnitude 7 and above in each year from
    1900 to 2006 (107 years), as given by W. Zucchini and I. L. MacDonald,
    *Hidden Markov Models for Time Series: An Introduction Using R*
    (Chapman & Hall/CRC, 2009), p. 4; compiled there from the U.S.
    Geological Survey's earthquake lists. The counts are overdispersed for
    a single Poisson distribution (mean about 19.4, variance about 51.6) and
    serially correlated: the classic example of a Poisson hidden Markov
    model.

    Args:
      return_years: also return the years.

    Returns:
      ``counts``, an int64 numpy array of shape ``(107,)``, or
      ``(counts, years)`` with ``years`` the int64 array ``1900, ..., 2006``.

    Examples:
      >>> import jaxem
      >>> counts, years = jaxem.load_earthquakes(return_years=True)
      >>> counts.shape, int(years[0]), int(years[-1])
      ((107,), 1900, 2006)
      >>> round(float(counts.mean()), 2)
      19.36
    """
    with resources.files("jaxem").joinpath("data/earthquakes.csv").open() as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = np.array([[int(value) for value in row] for row in reader], dtype=np.int64)
    years, counts = rows[:, 0], rows[:, 1]
    return (counts, years) if return_years else counts


def load_airquality(return_names: bool = False):
    """Daily air-quality measurements in New York, May to September 1973
    (Chambers, Cleveland, Kleiner & Tukey 1983; R's ``airquality``).

    153 days (1 May to 30 September 1973) of: mean ozone (parts per billion,
    13:00 to 15:00, Roosevelt Island), solar radiation (Langleys, 4000–7700
    Å, 08:00 to 12:00, Central Park), average wind speed (miles per hour,
    07:00 and 10:00, LaGuardia Airport), maximum daily temperature (degrees
    Fahrenheit, LaGuardia), month and day. The data come from the New York
    State Department of Conservation (ozone) and the National Weather
    Service (meteorology), as distributed with R. 37 ozone readings and 7
    solar-radiation readings are missing (NaN): a classic dataset for
    methods that take missing values.

    Args:
      return_names: also return the column names.

    Returns:
      ``x``, a float64 numpy array of shape ``(153, 6)`` (columns ``ozone``,
      ``solar_radiation``, ``wind``, ``temperature``, ``month``, ``day``)
      with NaN where a reading is missing, or ``(x, names)``.

    Examples:
      >>> import numpy as np, jaxem
      >>> x = jaxem.load_airquality()
      >>> x.shape, int(np.isnan(x[:, 0]).sum()), int(np.isnan(x[:, 1]).sum())
      ((153, 6), 37, 7)
    """
    with resources.files("jaxem").joinpath("data/airquality.csv").open() as handle:
        reader = csv.reader(handle)
        names = next(reader)
        x = np.array([[float(value) if value else np.nan for value in row] for row in reader])
    return (x, names) if return_names else x
