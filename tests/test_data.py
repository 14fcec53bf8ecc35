"""Data validation: every malformed input gets a clear error before anything is traced."""

import time

import numpy as np
import pytest

import bayesode as bo

TS = np.arange(5.0)
YS = np.ones((5, 2))


@pytest.mark.parametrize(
    "ts, ys, kwargs, match",
    [
        ([0.0, 2.0, 1.0, 3.0, 4.0], YS, {}, r"`ts` is not sorted: 2.0 at index 1 is followed by 1.0"),
        ([0.0, 1.0, 1.0, 3.0, 4.0], YS, {}, r"duplicate time 1.0 at indices 1 and 2"),
        ([0.0, np.nan, 2.0, 3.0, 4.0], YS, {}, r"non-finite time nan at index 1"),
        ([0.0, 1.0, np.inf, 3.0, 4.0], YS, {}, r"non-finite time inf at index 2"),
        (np.zeros((5, 1)), YS, {}, r"`ts` must be 1-D"),
        ([], np.ones((0, 2)), {}, r"`ts` is empty"),
        (["a", "b", "c", "d", "e"], YS, {}, r"`ts` must be numeric; got dtype <U1"),
        (TS, np.ones((2, 5)), {}, r"Did you pass the transpose\?"),
        (TS, np.ones((4, 2)), {}, r"`ys` has 4 rows but its times have 5"),
        (TS, np.ones((5, 2, 1)), {}, r"`ys` must be 2-D"),
        (TS, np.full((5, 2), np.nan), {}, r"entirely missing"),
        (TS, np.where(np.eye(5, 2) > 0, np.inf, 1.0), {}, r"infinite value at \(time index 0, column 0\)"),
        (TS, np.full((5, 2), "x"), {}, r"`ys` must be numeric"),
        (TS, YS, {"state_names": ["a"]}, r"`ys` has 2 columns; expected 1"),
        (TS, YS, {"state_names": ["a", "a"]}, r"`state_names` repeat"),
        (TS, YS, {"series_names": ["s1", "s2"]}, r"`series_names` has 2 names for 1 series"),
        (TS, YS, {"t0": 1.0}, r"`t0` of series 0 is 1.0, after its first time 0.0"),
        (TS, YS, {"t0": np.nan}, r"`t0` must be a finite scalar"),
        ([TS, TS], [YS], {}, r"`ys` must be a list with one array per series \(2\)"),
        ([TS, TS[::-1]], [YS, YS], {}, r"`ts\[1\]` is not sorted"),
        ([TS, TS], [YS, np.ones((5, 3))], {}, r"`ys\[1\]` has 3 columns; expected 2"),
        ([TS, TS[:3]], [YS, YS], {}, r"`ys\[1\]` has 5 rows but its times have 3"),
        (TS, YS + 1j, {}, r"must be real"),
    ],
)
def test_bad_data_errors(ts, ys, kwargs, match):
    start = time.perf_counter()
    with pytest.raises(bo.DataError, match=match):
        bo.make_data(ts, ys, **kwargs)
    assert time.perf_counter() - start < 0.5  # raised in NumPy, before any compilation


def test_padding_and_mask_for_series_of_different_lengths():
    d = bo.make_data([np.arange(3.0), np.arange(5.0) * 0.5], [np.ones((3, 1)), np.ones((5, 1))])
    assert d.ts.shape == (2, 5) and d.ys.shape == (2, 5, 1)
    np.testing.assert_array_equal(d.ts[0], [0, 1, 2, 2, 2])  # padded by repeating the last time
    assert d.mask[0].sum() == 3 and d.mask[1].sum() == 5
    assert not d.shared_grid
    md = d.model_data()
    assert md.ts.shape == (2, 5) and bool(md.mask[0, 3, 0]) is False


def test_nan_is_missing_and_times_are_relative():
    ys = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 4.0]])
    d = bo.make_data([1900.0, 1901.0, 1902.0], ys, state_names=["a", "b"])
    assert d.mask.sum() == 4
    md = d.model_data()
    np.testing.assert_allclose(md.ts[0], [0.0, 1.0, 2.0])  # relative to t_ref=1900 (float32 keeps precision)
    assert float(md.ys[0, 0, 1]) == 1.0  # missing entries hold a finite placeholder


def test_lognormal_likelihood_rejects_non_positive_data():
    model = bo.models.lotka_volterra()
    d = bo.make_data(TS, np.where(np.eye(5, 2) > 0, 0.0, 1.0))
    with pytest.raises(bo.DataError, match=r"non-positive value 0.0 at \(series 0, time index 0, column 0\)"):
        model.spec.check_data(d)


def test_model_data_dimension_mismatch():
    model = bo.models.lotka_volterra()
    d = bo.make_data(TS, np.ones((5, 3)))
    with pytest.raises(bo.DataError, match=r"data have 3 observed column\(s\).*field.state_dim = 2"):
        model.spec.check_data(d)


def test_make_data_keeps_dataframe_column_names_and_dates():
    import pandas as pd

    df = pd.DataFrame({"hare": [30.0, 47.2, 70.2], "lynx": [4.0, 6.1, 9.8]})
    d = bo.make_data([0.0, 1.0, 2.0], df, time_origin="1900-01-01")
    assert d.state_names == ("hare", "lynx")  # were y0, y1
    assert bo.make_data([[0.0, 1.0, 2.0]] * 2, [df, df]).state_names == ("hare", "lynx")
    assert d.to_dates(d.ts[0]).astype(str).tolist()[-1] == "1900-01-03T00:00:00.000"
    assert d.time_from_date("1900-01-11", "--until") == 10.0
    with pytest.raises(bo.DataError, match=r"`time_origin`='yesterday' is not an ISO date"):
        bo.make_data([0.0, 1.0], [1.0, 2.0], time_origin="yesterday")
    plain = bo.make_data([0.0, 1.0], [1.0, 2.0])
    np.testing.assert_array_equal(plain.to_dates(plain.ts[0]), [0.0, 1.0])  # numbers stay numbers
    with pytest.raises(bo.ConfigError, match=r"--until '2021-06-01' is a date, but the data's times are numbers"):
        plain.time_from_date("2021-06-01", "--until")


def test_user_times_may_be_dates_for_dated_data_and_only_for_them():
    """``Data.as_times``: what Posterior.predict, series_predictions and the plots read ``ts``/``until`` with."""
    import datetime

    import pandas as pd

    dated = bo.make_data([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], time_origin="2021-06-01")
    np.testing.assert_array_equal(dated.as_times(["2021-06-03", "2021-06-04T12:00"]), [2.0, 3.5])
    np.testing.assert_array_equal(dated.as_times(pd.date_range("2021-06-01", periods=3)), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(dated.as_times(np.array(["2021-05-31"], dtype="datetime64[D]")), [-1.0])
    assert dated.as_times(datetime.date(2021, 6, 5)) == 4.0 and dated.as_times(pd.Timestamp("2021-06-05 06:00")) == 4.25
    assert dated.as_times(7) == 7.0  # numbers stay days since the first date
    with pytest.raises(bo.ConfigError, match=r"`until`='soon' is not numbers or ISO dates"):
        dated.as_times("soon", "until")
    with pytest.raises(bo.ConfigError, match=r"`ts` has dates with a time zone \(UTC\)"):
        dated.as_times(pd.Timestamp("2021-06-05", tz="UTC"))
    with pytest.raises(bo.ConfigError, match=r"`ts` must be numbers or dates; got dtype bool"):
        dated.as_times([True, False])
    plain = bo.make_data([0.0, 1.0], [1.0, 2.0])
    with pytest.raises(bo.ConfigError, match=r"`until` holds dates, but the data's times are numbers \(time\)"):
        plain.as_times("2021-06-01", "until")
