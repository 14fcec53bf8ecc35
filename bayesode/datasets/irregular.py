"""Irregular, partly observed series: one container, checked once, padded to one shape.

Each series has its own observation times; at each time any subset of the
coordinates may be missing. Arrays are padded to the longest series: a padded
row repeats the series' last time and is all-missing, which the neural jump
ODE filter treats as a no-op (see :mod:`bayesode.solving.observation_jumps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class IrregularData:
    """Irregular observations of ``series`` series with ``D`` coordinates.

    ``ts`` (series, obs) non-decreasing times; ``ys`` (series, obs, D) values, NaN
    where missing; ``mask`` (series, obs, D) True where observed; ``lengths``
    (series,) rows that are real (the rest is padding); ``state_names`` (D,);
    ``series_names`` (series,).
    """

    ts: np.ndarray
    ys: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    state_names: tuple[str, ...]
    series_names: tuple[str, ...]

    @property
    def obs_dim(self) -> int:
        return self.ys.shape[-1]

    @property
    def num_observations(self) -> int:
        """Rows with at least one observed coordinate."""
        return int(self.mask.any(-1).sum())

    def observed_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(series index, row index)`` of every row with at least one observed coordinate."""
        return np.nonzero(self.mask.any(-1))


def _series_list(ts, ys, mask):
    """Normalise one series or a list of series to lists of (n,), (n, D), (n, D) arrays."""
    if isinstance(ts, (list, tuple)) and len(ts) and np.ndim(ts[0]) == 1:
        if not isinstance(ys, (list, tuple)) or len(ys) != len(ts):
            raise DataError(f"`ys` must be a list of {len(ts)} arrays, one per series in `ts`.")
        masks = [None] * len(ts) if mask is None else list(mask)
        return [np.asarray(t, float) for t in ts], [np.asarray(y, float) for y in ys], masks
    ts, ys = np.asarray(ts, float), np.asarray(ys, float)
    if ts.ndim == 1:
        return [ts], [ys], [mask]
    if ts.ndim == 2:
        masks = [None] * len(ts) if mask is None else list(np.asarray(mask))
        return list(ts), list(ys), masks
    raise DataError(f"`ts` must be (obs,), (series, obs) or a list of (obs,) arrays; got shape {ts.shape}.")


def make_irregular(ts, ys, mask=None, *, state_names=None, series_names=None) -> IrregularData:
    """Check and pad irregular observations.

    Parameters
    ----------
    ts : (obs,) array, (series, obs) array or list of (obs_i,) arrays
        Non-decreasing observation times per series.
    ys : matching (obs, D) / (series, obs, D) / list of (obs_i, D); NaN marks a missing entry.
    mask : optional, same shape as ``ys``
        True where observed; default ``~isnan(ys)``. A True entry must be finite.

    Examples
    --------
    >>> d = make_irregular([0.0, 0.3, 1.0], [[1.0, np.nan], [0.5, 2.0], [np.nan, 1.0]])
    >>> d.ts.shape, d.mask.sum()
    ((1, 3), np.int64(4))
    """
    t_list, y_list, m_list = _series_list(ts, ys, mask)
    out_t, out_y, out_m = [], [], []
    for i, (t, y, m) in enumerate(zip(t_list, y_list, m_list)):
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[0] != t.shape[0]:
            raise DataError(f"series {i}: `ys` must be (obs, D) with obs = len(ts) = {t.shape[0]}; got {y.shape}.")
        if t.shape[0] == 0:
            raise DataError(f"series {i} has no observations.")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
            raise DataError(f"series {i}: `ts` must be finite and non-decreasing; got {t[:6]}...")
        m = ~np.isnan(y) if m is None else np.asarray(m, bool).reshape(y.shape)
        if np.any(m & ~np.isfinite(y)):
            raise DataError(f"series {i}: `ys` is NaN or infinite where `mask` says observed.")
        out_t.append(t), out_y.append(np.where(m, y, np.nan)), out_m.append(m)
    dims = {y.shape[1] for y in out_y}
    if len(dims) != 1:
        raise DataError(f"every series needs the same number of coordinates; got {sorted(dims)}.")
    (d,) = dims
    lengths = np.array([len(t) for t in out_t])
    n = int(lengths.max())
    pad_t = np.stack([np.concatenate([t, np.full(n - len(t), t[-1])]) for t in out_t])
    pad_y = np.stack([np.concatenate([y, np.full((n - len(y), d), np.nan)]) for y in out_y])
    pad_m = np.stack([np.concatenate([m, np.zeros((n - len(m), d), bool)]) for m in out_m])
    if not pad_m.any():
        raise DataError("`ys` has no observed entry (all NaN or masked).")
    state_names = tuple(state_names) if state_names is not None else tuple(f"y{j}" for j in range(d))
    series_names = tuple(series_names) if series_names is not None else tuple(str(i) for i in range(len(out_t)))
    if len(state_names) != d or len(series_names) != len(out_t):
        raise DataError(f"`state_names` needs {d} names and `series_names` {len(out_t)}; got {state_names}, "
                        f"{series_names}.")  # fmt: skip
    return IrregularData(pad_t, pad_y, pad_m, lengths, state_names, series_names)


def irregular_from_frame(frame, *, time: str = "time", series: str | None = None, columns=None) -> IrregularData:
    """Irregular data from a long pandas DataFrame: one row per observation time, NaN for a missing entry.

    ``time``: the time column; ``series``: optional column naming the series;
    ``columns``: the observed columns (default: every other numeric column).
    """
    if time not in frame.columns:
        raise DataError(f"no time column {time!r}; columns are {list(frame.columns)}. Pass `time=...`.")
    if series is not None and series not in frame.columns:
        raise DataError(f"no series column {series!r}; columns are {list(frame.columns)}.")
    if columns is None:
        columns = [c for c in frame.columns if c not in (time, series) and np.issubdtype(frame[c].dtype, np.number)]
    missing = [c for c in columns if c not in frame.columns]
    if missing or not columns:
        raise DataError(f"observed columns {missing or columns} not found; columns are {list(frame.columns)}.")
    groups = [("0", frame)] if series is None else list(frame.groupby(series, sort=False))
    ts, ys = [], []
    for _, g in groups:
        g = g.sort_values(time, kind="stable")
        ts.append(g[time].to_numpy(float))
        ys.append(g[list(columns)].to_numpy(float))
    return make_irregular(ts, ys, state_names=[str(c) for c in columns], series_names=[str(k) for k, _ in groups])
