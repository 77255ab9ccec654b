"""The datasets shipped with the package load with their documented shapes and values."""

from __future__ import annotations

import numpy as np

import jaxem


def test_load_earthquakes():
    counts = jaxem.load_earthquakes()
    assert counts.shape == (107,)
    assert counts.dtype == np.int64
    assert counts.min() >= 0
    # Zucchini & MacDonald (2009): mean 19.36, variance 51.57 (overdispersed).
    np.testing.assert_allclose(counts.mean(), 19.364, atol=1e-3)
    np.testing.assert_allclose(counts.var(ddof=1), 51.573, atol=1e-3)
    assert counts[:4].tolist() == [13, 14, 8, 10] and counts[-2:].tolist() == [11, 11]
    again, years = jaxem.load_earthquakes(return_years=True)
    np.testing.assert_array_equal(again, counts)
    np.testing.assert_array_equal(years, np.arange(1900, 2007))


def test_load_faithful():
    x, names = jaxem.load_faithful(return_names=True)
    assert x.shape == (272, 2) and x.dtype == np.float64
    assert names == ["eruptions", "waiting"]


def test_load_airquality():
    x, names = jaxem.load_airquality(return_names=True)
    assert x.shape == (153, 6) and x.dtype == np.float64
    assert names == ["ozone", "solar_radiation", "wind", "temperature", "month", "day"]
    # R's summary(airquality): 37 and 7 missing; means 42.13, 185.9, 9.958, 77.88.
    assert np.isnan(x).sum(axis=0).tolist() == [37, 7, 0, 0, 0, 0]
    np.testing.assert_allclose(
        np.nanmean(x[:, :4], axis=0), [42.129, 185.932, 9.958, 77.882], atol=1e-3
    )
    assert x[0].tolist() == [41.0, 190.0, 7.4, 67.0, 5.0, 1.0]
    assert x[-1].tolist() == [20.0, 223.0, 11.5, 68.0, 9.0, 30.0]
    assert np.array_equal(np.unique(x[:, 4]), [5, 6, 7, 8, 9])
