"""Validated time-series data: one or many series, each with its own time grid.

All checks run in NumPy before anything is traced, and every error names the
argument, the offending index or value, and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # JAX is imported where arrays are made (model_data), so reading data stays light
    import jax


class ModelData(NamedTuple):
    """What a model function receives (a pytree of arrays; shapes fix the compiled sampler).

    ``ts``: (series, time) times relative to ``Data.t_ref``, padded by repeating the last time;
    ``ys``: (series, time, observed) with missing/padding entries replaced by 1.0;
    ``mask``: (series, time, observed) True where observed; ``t0``: (series,) start times.
    """

    ts: jax.Array
    ys: jax.Array
    mask: jax.Array
    t0: jax.Array

    def shapes(self) -> tuple:
        """``((shape, dtype), ...)`` per field: the key of compiled programs cached on a model."""
        return tuple((tuple(np.shape(x)), str(x.dtype)) for x in self)


@dataclass(frozen=True, eq=False)
class Data:
    """Time series for a fit. Build with :func:`make_data`.

    Attributes
    ----------
    ts : (series, time) float64, raw times, padded by repeating each series' last time.
    ys : (series, time, observed) float64, NaN where missing or padding.
    lengths : (series,) number of real time points per series.
    t0 : (series,) raw start time of each series (the time ``y0`` refers to).
    state_names, series_names : column and series labels.
    time_name : name of the time axis (the user's time column).
    time_origin : ISO date (or date and time) that time 0 stands for, when the times came
        from dates; times are then days since it. None for plain numbers.
    """

    ts: np.ndarray
    ys: np.ndarray
    lengths: np.ndarray
    t0: np.ndarray
    state_names: tuple[str, ...]
    series_names: tuple[str, ...]
    time_name: str = "time"
    time_origin: str | None = None

    @property
    def num_series(self) -> int:
        return self.ts.shape[0]

    @property
    def num_observed(self) -> int:
        return self.ys.shape[-1]

    @property
    def t_ref(self) -> float:
        """Origin of model time: fields see ``t - t_ref`` (keeps float32 precise for years like 1900)."""
        return float(np.min(self.t0))

    @property
    def shared_grid(self) -> bool:
        """True when every series has the same times (then ``time`` coordinates are real times)."""
        return bool(np.all(self.ts == self.ts[:1]) and np.all(self.lengths == self.lengths[0]))

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.ys)

    def model_data(self, dtype=None) -> ModelData:
        """Arrays for the model, in JAX's default float dtype unless given."""
        import jax.numpy as jnp

        dtype = dtype or jnp.zeros(()).dtype
        mask = self.mask
        return ModelData(
            ts=jnp.asarray(self.ts - self.t_ref, dtype=dtype),
            ys=jnp.asarray(np.where(mask, self.ys, 1.0), dtype=dtype),
            mask=jnp.asarray(mask),
            t0=jnp.asarray(self.t0 - self.t_ref, dtype=dtype),
        )

    def series(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Unpadded ``(ts, ys)`` of series ``i``."""
        n = int(self.lengths[i])
        return self.ts[i, :n], self.ys[i, :n]

    def to_dates(self, ts):
        """Times as dates (``datetime64[ms]``) when the data came with dates; else ``ts`` unchanged.

        >>> d = make_data([0.0, 1.5], [1.0, 2.0], time_origin="2021-06-01")
        >>> d.to_dates(d.ts[0]).astype(str).tolist()
        ['2021-06-01T00:00:00.000', '2021-06-02T12:00:00.000']
        """
        ts = np.asarray(ts, dtype=np.float64)
        if self.time_origin is None:
            return ts
        ms = np.round(ts * 86_400_000.0).astype(np.int64)  # days -> whole milliseconds
        return np.datetime64(self.time_origin, "ms") + ms.astype("timedelta64[ms]")

    def time_from_date(self, text: str, argname: str = "time") -> float:
        """An ISO date (``2021-06-01``) as a time of these data: days since ``time_origin``."""
        if self.time_origin is None:
            raise ConfigError(
                f"{argname} {text!r} is a date, but the data's times are numbers ({self.time_name}); give a number."
            )
        try:
            stamp = np.datetime64(text, "ms")
        except ValueError:
            raise ConfigError(f"{argname} {text!r} is not an ISO date (YYYY-MM-DD).") from None
        return float(self.as_times(stamp, argname))  # one conversion of dates to days, for the CLI and the API

    def as_times(self, values, argname: str = "ts") -> np.ndarray:
        """Times given by a user on these data's time axis, as float64 (same shape).

        Numbers are taken as they are (for data with dates: days since ``time_origin``).
        Dates (ISO text such as ``"2021-06-01"``, ``datetime64``, ``datetime``, pandas
        ``Timestamp`` or ``DatetimeIndex``, or sequences of them) become days since
        ``time_origin``; data whose times are numbers refuse them, naming ``argname``.

        >>> d = make_data([0.0, 1.5], [1.0, 2.0], time_origin="2021-06-01")
        >>> d.as_times(["2021-06-03", "2021-06-04T12:00"]).tolist()
        [2.0, 3.5]
        >>> d.as_times(7).tolist()
        7.0
        """
        arr = np.asarray(values)
        if arr.dtype.kind in "iuf":
            return arr.astype(np.float64)
        if arr.dtype.kind not in "MOU" and not hasattr(values, "tz"):
            raise ConfigError(f"`{argname}` must be numbers or dates; got dtype {arr.dtype}.")
        if self.time_origin is None:
            raise ConfigError(
                f"`{argname}` holds dates, but the data's times are numbers ({self.time_name}); give numbers."
            )
        import pandas as pd  # only for dates: reading numbers stays light

        try:
            stamps = pd.to_datetime(pd.Series(np.ravel(arr)) if arr.ndim else arr.item(), format="ISO8601")
        except (ValueError, TypeError):
            raise ConfigError(f"`{argname}`={values!r} is not numbers or ISO dates (YYYY-MM-DD).") from None
        tz = getattr(getattr(stamps, "dt", stamps), "tz", None)
        if tz is not None:
            raise ConfigError(
                f"`{argname}` has dates with a time zone ({tz}); the data's dates have none: give local dates."
            )
        origin = pd.Timestamp(self.time_origin)
        days = (stamps - origin) / pd.Timedelta(days=1)
        return np.asarray(days, dtype=np.float64).reshape(arr.shape)

    def column_scale(self) -> np.ndarray:
        """(observed,) typical size of each column: std of observed values (or |mean|, or 1)."""
        out = np.ones(self.num_observed)
        for k in range(self.num_observed):
            v = self.ys[..., k][np.isfinite(self.ys[..., k])]
            if v.size:
                s = float(np.std(v)) if v.size > 1 else 0.0
                out[k] = s if s > 0 else (abs(float(np.mean(v))) or 1.0)
        return out


def _as_float_array(value, argname: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged nested lists etc.
        raise DataError(f"`{argname}` could not be read as a numeric array ({e}).") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(
            f"`{argname}` must be numeric; got dtype {arr.dtype}. Convert strings/dates to numbers "
            "(e.g. years, or days since the first observation)."
        )
    if np.iscomplexobj(arr):
        raise DataError(f"`{argname}` must be real; got complex dtype {arr.dtype}.")
    return arr.astype(np.float64)


def check_times(ts, argname: str = "ts") -> np.ndarray:
    """Validate one series' times: 1-D, finite, strictly increasing."""
    ts = _as_float_array(ts, argname)
    if ts.ndim != 1:
        raise DataError(f"`{argname}` must be 1-D (time,); got shape {ts.shape}.")
    if ts.size == 0:
        raise DataError(f"`{argname}` is empty; a series needs at least one time point.")
    bad = np.flatnonzero(~np.isfinite(ts))
    if bad.size:
        raise DataError(
            f"`{argname}` has a non-finite time {ts[bad[0]]} at index {bad[0]}; times must be finite "
            "(drop that row, or mark the observation missing with NaN in `ys` instead)."
        )
    d = np.diff(ts)
    dup = np.flatnonzero(d == 0)
    if dup.size:
        i = int(dup[0])
        raise DataError(
            f"`{argname}` has a duplicate time {ts[i]} at indices {i} and {i + 1}; times must be strictly "
            "increasing. Merge (e.g. average) the duplicate rows."
        )
    back = np.flatnonzero(d < 0)
    if back.size:
        i = int(back[0])
        raise DataError(
            f"`{argname}` is not sorted: {ts[i]} at index {i} is followed by {ts[i + 1]}; sort times "
            "(and the rows of `ys` with them), e.g. order = np.argsort(ts)."
        )
    return ts


def _check_values(ys, ts, argname: str, num_observed: int | None) -> np.ndarray:
    ys = _as_float_array(ys, argname)
    if ys.ndim == 1 and (num_observed in (None, 1)):
        ys = ys[:, None]
    if ys.ndim != 2:
        raise DataError(f"`{argname}` must be 2-D (time, observed); got shape {ys.shape}.")
    if ys.shape[0] != ts.shape[0]:
        hint = " Did you pass the transpose?" if ys.shape[1] == ts.shape[0] else ""
        raise DataError(
            f"`{argname}` has {ys.shape[0]} rows but its times have {ts.shape[0]}; expected shape "
            f"(time, observed) = ({ts.shape[0]}, {num_observed or ys.shape[1]}); got {ys.shape}.{hint}"
        )
    if num_observed is not None and ys.shape[1] != num_observed:
        raise DataError(f"`{argname}` has {ys.shape[1]} columns; expected {num_observed} (one per observed state).")
    inf = np.argwhere(np.isinf(ys))
    if inf.size:
        i, k = (int(v) for v in inf[0])
        raise DataError(
            f"`{argname}` has an infinite value at (time index {i}, column {k}); use NaN to mark a missing "
            "observation, or fix the value."
        )
    if not np.isfinite(ys).any():
        raise DataError(f"`{argname}` is entirely missing (all NaN); a series needs at least one observation.")
    return ys


def make_data(
    ts,
    ys,
    *,
    state_names=None,
    series_names=None,
    t0=None,
    time_name: str = "time",
    time_origin: str | None = None,
) -> Data:
    """Validate and pack time series.

    Parameters
    ----------
    ts : (time,) array, or a list of such arrays (one per series)
        Strictly increasing, finite times.
    ys : (time, observed) array, or a list of such arrays
        Observations; NaN marks a missing value (masked out of the likelihood).
    state_names : sequence of str, optional
        Column names (default: a DataFrame's column names, else ``y0, y1, ...``).
    series_names : sequence of str, optional
        Series labels (default ``0, 1, ...``).
    t0 : float or sequence, optional
        Start time of each series (where ``y0`` applies); default each
        series' first time. Must not be after that first time.
    time_name : str
        Name of the time axis in results and plots (default ``"time"``).
    time_origin : str, optional
        ISO date that time 0 stands for, when ``ts`` are days since it; results and
        plots then show dates.

    Examples
    --------
    >>> d = make_data([0.0, 1.0, 2.0], [[1.0], [0.5], [float("nan")]])
    >>> d.ys.shape, int(d.mask.sum())
    ((1, 3, 1), 2)
    """
    if state_names is None:  # a pandas DataFrame (or a list of them) names its columns: keep the names
        first = ys[0] if isinstance(ys, (list, tuple)) and len(ys) > 0 else ys
        if hasattr(first, "columns"):
            state_names = [str(c) for c in first.columns]
    many = isinstance(ts, (list, tuple)) and len(ts) > 0 and np.ndim(ts[0]) == 1
    if many != (isinstance(ys, (list, tuple)) and len(ys) > 0 and np.ndim(ys[0]) >= 1 and many):
        if many:
            raise DataError("`ts` is a list of series but `ys` is not; pass `ys` as a list with one array per series.")
    if many:
        if not isinstance(ys, (list, tuple)) or len(ys) != len(ts):
            n = len(ys) if isinstance(ys, (list, tuple)) else "an array"
            raise DataError(f"`ys` must be a list with one array per series ({len(ts)}); got {n}.")
        ts_list = [check_times(t, f"ts[{i}]") for i, t in enumerate(ts)]
    else:
        ts_list = [check_times(ts, "ts")]
        ys = [ys]
    num_observed = len(state_names) if state_names is not None else None
    ys_list = []
    for i, (t, y) in enumerate(zip(ts_list, ys)):
        name = f"ys[{i}]" if many else "ys"
        y = _check_values(y, t, name, num_observed)
        num_observed = y.shape[1] if num_observed is None else num_observed
        ys_list.append(y)

    if state_names is None:
        state_names = tuple(f"y{k}" for k in range(num_observed))
    state_names = tuple(str(s) for s in state_names)
    if len(set(state_names)) != len(state_names):
        raise DataError(f"`state_names` repeat: {list(state_names)}; names must be unique.")
    S = len(ts_list)
    if series_names is None:
        series_names = tuple(str(i) for i in range(S))
    series_names = tuple(str(s) for s in series_names)
    if len(series_names) != S:
        raise DataError(f"`series_names` has {len(series_names)} names for {S} series.")
    if len(set(series_names)) != S:
        raise DataError(f"`series_names` repeat: {list(series_names)}; names must be unique.")

    lengths = np.array([t.size for t in ts_list])
    T = int(lengths.max())
    ts_pad = np.stack([np.concatenate([t, np.full(T - t.size, t[-1])]) for t in ts_list])
    ys_pad = np.stack([np.concatenate([y, np.full((T - y.shape[0], num_observed), np.nan)]) for y in ys_list])
    if t0 is None:
        t0_arr = ts_pad[:, 0].copy()
    else:
        t0_arr = _as_float_array(t0, "t0")
        t0_arr = np.broadcast_to(t0_arr, (S,)).copy() if t0_arr.ndim == 0 else t0_arr
        if t0_arr.shape != (S,) or not np.all(np.isfinite(t0_arr)):
            raise DataError(f"`t0` must be a finite scalar or one value per series ({S}); got {t0!r}.")
        late = np.flatnonzero(t0_arr > ts_pad[:, 0])
        if late.size:
            i = int(late[0])
            raise DataError(
                f"`t0` of series {i} is {t0_arr[i]}, after its first time {ts_pad[i, 0]}; t0 must be <= ts[0]."
            )
    if time_origin is not None:
        try:
            np.datetime64(time_origin, "ms")
        except ValueError:
            raise DataError(f"`time_origin`={time_origin!r} is not an ISO date (YYYY-MM-DD).") from None
    return Data(ts_pad, ys_pad, lengths, t0_arr, state_names, series_names, time_name, time_origin)


_DATA_OPTIONS = ("state_names", "series_names", "t0", "time_name", "time_origin")


def as_data(ts, ys=None, **kwargs) -> Data:
    """Return ``ts`` if it is already :class:`Data`, else ``make_data(ts, ys, **kwargs)``.

    Keyword arguments other than :func:`make_data`'s options are a typo in the
    caller's arguments (e.g. ``run_nuts(..., num_draws=...)``), and options with a
    ``Data`` object would be ignored; both raise instead of passing silently.
    """
    unknown = sorted(set(kwargs) - set(_DATA_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unexpected keyword argument(s) {unknown}; check their spelling against the function's signature "
            f"(the only data options are {list(_DATA_OPTIONS)})."
        )
    if isinstance(ts, Data):
        if ys is not None:
            raise DataError("pass either a `Data` object or `ts` and `ys`, not both.")
        if kwargs:
            raise DataError(
                f"data option(s) {sorted(kwargs)} were given with a `Data` object, which already holds them; "
                "pass them to make_data(...) instead."
            )
        return ts
    if ys is None:
        raise DataError("`ys` is required when `ts` is an array (or pass a `Data` from make_data).")
    return make_data(ts, ys, **kwargs)
