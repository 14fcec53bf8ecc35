"""Event sequences (point-process data): padded times, marks and masks, and a CSV reader.

One or many sequences of event times on ``[t0, t_end]``, each with an optional integer
mark (event type). Sequences of different lengths share one padded array: ``mask``
is False on padding, and padded times repeat ``t_end`` so that a solve over them is
a zero-length segment. Checked here, in NumPy, before anything is traced.

>>> seqs = make_event_sequences([[0.5, 1.2, 3.0], [2.0]], t_end=4.0)
>>> seqs.times.shape, seqs.num_events.tolist()
((2, 3), [3, 1])
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["EventSequences", "load_events", "make_event_sequences", "read_events_csv"]


@dataclass(frozen=True, eq=False)
class EventSequences:
    """Padded event sequences.

    Attributes
    ----------
    times : (sequence, event) float64
        Event times, increasing within a sequence; padding holds ``t_end``.
    marks : (sequence, event) int32
        Mark (event type) of each event, ``0 .. num_marks - 1``; 0 on padding.
    mask : (sequence, event) bool
        True for real events.
    t0, t_end : (sequence,) float64
        Observation window of each sequence.
    num_marks : int
        Number of event types (1 for an unmarked process).
    names : tuple of str
        One label per sequence.
    mark_names : tuple of str
        One label per mark.
    """

    times: np.ndarray
    marks: np.ndarray
    mask: np.ndarray
    t0: np.ndarray
    t_end: np.ndarray
    num_marks: int
    names: tuple[str, ...]
    mark_names: tuple[str, ...]

    @property
    def num_sequences(self) -> int:
        return int(self.times.shape[0])

    @property
    def num_events(self) -> np.ndarray:
        """(sequence,) number of real events in each sequence."""
        return self.mask.sum(axis=1)

    def event_list(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times, marks)`` of sequence ``i`` without padding."""
        m = self.mask[i]
        return self.times[i][m], self.marks[i][m]

    def split(self, t_split) -> tuple[EventSequences, EventSequences]:
        """Cut every sequence at ``t_split``: ``(events before, events from t_split on)``.

        The second part's window starts at ``t_split``; use it as held-out data with the
        first part as history.
        """
        t_split = float(t_split)
        if not np.all((self.t0 < t_split) & (t_split < self.t_end)):
            raise DataError(f"split(t_split={t_split}): must lie inside every window (t0, t_end).")
        lists = [self.event_list(i) for i in range(self.num_sequences)]
        before = make_event_sequences(
            [t[t < t_split] for t, _ in lists], [m[t < t_split] for t, m in lists], t0=self.t0, t_end=t_split,
            num_marks=self.num_marks, names=self.names, mark_names=self.mark_names,
        )
        after = make_event_sequences(
            [t[t >= t_split] for t, _ in lists], [m[t >= t_split] for t, m in lists], t0=t_split, t_end=self.t_end,
            num_marks=self.num_marks, names=self.names, mark_names=self.mark_names,
        )  # fmt: skip
        return before, after


def _per_sequence(value, n: int, argname: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 else None
    if arr is None:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (n,):
            raise DataError(f"`{argname}` must be a number or one per sequence ({n},); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"`{argname}` must be finite; got {arr.tolist()}.")
    return np.array(arr)


def make_event_sequences(
    times, marks=None, *, t_end, t0=0.0, num_marks=None, names=None, mark_names=None
) -> EventSequences:
    """Check and pad event sequences.

    Parameters
    ----------
    times : sequence of 1-D arrays, or one 1-D array
        Event times of each sequence, increasing (ties are allowed), inside ``(t0, t_end]``.
    marks : same structure as ``times`` of ints, optional
        Event types ``0 .. num_marks - 1``; default all 0 (unmarked).
    t_end, t0 : float or (sequence,) array
        End and start of each observation window. The window matters: the likelihood
        charges for the time without events up to ``t_end``.
    num_marks : int, optional
        Default ``max(marks) + 1``.
    names, mark_names : sequence of str, optional

    Raises
    ------
    DataError
        Times not increasing, outside the window, non-finite, or marks out of range.
    """
    if len(times) and np.ndim(times[0]) == 0:
        times = [times]
        marks = None if marks is None else [marks]
    seq_times = [np.asarray(t, dtype=np.float64).reshape(-1) for t in times]
    n = len(seq_times)
    if n == 0:
        raise DataError("`times` holds no sequence; give a list of 1-D arrays of event times.")
    if marks is None:
        seq_marks = [np.zeros(t.shape, np.int64) for t in seq_times]
    else:
        if len(marks) != n:
            raise DataError(f"`marks` has {len(marks)} sequences; `times` has {n}.")
        seq_marks = [np.asarray(m).reshape(-1) for m in marks]
    t0 = _per_sequence(t0, n, "t0")
    t_end = _per_sequence(t_end, n, "t_end")
    for i, (t, m) in enumerate(zip(seq_times, seq_marks)):
        if m.shape != t.shape:
            raise DataError(f"sequence {i}: `marks` has {m.size} entries, `times` has {t.size}.")
        if not np.all(np.isfinite(t)):
            raise DataError(f"sequence {i}: `times` holds non-finite values.")
        if np.any(np.diff(t) < 0):
            k = int(np.argmax(np.diff(t) < 0))
            raise DataError(f"sequence {i}: `times` must increase; times[{k}]={t[k]} > times[{k + 1}]={t[k + 1]}.")
        if t0[i] >= t_end[i]:
            raise DataError(f"sequence {i}: `t0`={t0[i]} must be before `t_end`={t_end[i]}.")
        if t.size and (t[0] <= t0[i] or t[-1] > t_end[i]):
            raise DataError(
                f"sequence {i}: event times must lie in (t0, t_end] = ({t0[i]}, {t_end[i]}]; "
                f"got {t[0]} .. {t[-1]}. Widen the window or drop those events."
            )
        if m.size and (not np.issubdtype(m.dtype, np.integer) or m.min() < 0):
            raise DataError(f"sequence {i}: `marks` must be non-negative ints; got {m[:5].tolist()}...")
    seen = max((int(m.max()) + 1 for m in seq_marks if m.size), default=1)
    num_marks = seen if num_marks is None else int(num_marks)
    if seen > num_marks:
        raise DataError(f"`marks` go up to {seen - 1}, but `num_marks`={num_marks}.")
    width = max(max(t.size for t in seq_times), 1)
    padded_times = np.repeat(t_end[:, None], width, axis=1)
    padded_marks = np.zeros((n, width), np.int32)
    mask = np.zeros((n, width), bool)
    for i, (t, m) in enumerate(zip(seq_times, seq_marks)):
        padded_times[i, : t.size], padded_marks[i, : t.size], mask[i, : t.size] = t, m, True
    names = tuple(str(s) for s in (names if names is not None else range(n)))
    mark_names = tuple(str(s) for s in (mark_names if mark_names is not None else range(num_marks)))
    if len(names) != n or len(mark_names) != num_marks:
        raise DataError(f"`names` needs {n} entries and `mark_names` {num_marks}; got {len(names)}, {len(mark_names)}.")
    return EventSequences(padded_times, padded_marks, mask, t0, t_end, num_marks, names, mark_names)


def read_events_csv(
    path, *, time_column="time", mark_column=None, sequence_column=None, t0=None, t_end=None
) -> EventSequences:
    """Read events from a CSV file with one row per event: ``time[,mark][,sequence]``.

    Marks and sequences may be any labels; they are numbered in sorted order. The window
    defaults to ``[min(time) - (first gap), max(time)]`` over all sequences unless
    ``t0``/``t_end`` are given; give them when you know the observation period.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"read_events_csv(path={str(path)!r}): no such file.")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path}: no rows.")
    header = list(rows[0])
    mark_column = mark_column if mark_column is not None else ("mark" if "mark" in header else None)
    sequence_column = sequence_column if sequence_column is not None else ("sequence" if "sequence" in header else None)
    for col, arg in ((time_column, "time_column"), (mark_column, "mark_column"), (sequence_column, "sequence_column")):
        if col is not None and col not in header:
            raise DataError(f"{path}: `{arg}`={col!r} is not a column; the columns are {header}.")
    try:
        times = np.array([float(r[time_column]) for r in rows])
    except ValueError as e:
        raise DataError(f"{path}: column {time_column!r} must hold numbers ({e}).") from None
    labels = np.array([r[sequence_column] for r in rows]) if sequence_column else np.zeros(len(rows), str)
    mark_labels = np.array([r[mark_column] for r in rows]) if mark_column else np.zeros(len(rows), str)
    names, seq_index = np.unique(labels, return_inverse=True)
    mark_names, mark_index = np.unique(mark_labels, return_inverse=True)
    if t0 is None:
        gap = np.diff(np.unique(times)).min() if np.unique(times).size > 1 else 1.0
        t0 = float(times.min() - gap)
    t_end = float(times.max()) if t_end is None else t_end
    seq_times, seq_marks = [], []
    for i in range(len(names)):
        order = np.argsort(times[seq_index == i], kind="stable")
        seq_times.append(times[seq_index == i][order])
        seq_marks.append(mark_index[seq_index == i][order])
    return make_event_sequences(
        seq_times, seq_marks, t0=t0, t_end=t_end, num_marks=len(mark_names),
        names=[str(s) for s in names] if sequence_column else None,
        mark_names=[str(s) for s in mark_names] if mark_column else None,
    )  # fmt: skip


def load_events(name: str) -> EventSequences:
    """A bundled event dataset (``coal_explosions``, ``<process>_events``) as :class:`EventSequences`.

    The file is checked against the registry's sha256 by :func:`bayesode.datasets.load`; the
    observation window comes from the registry (``constants: t0, t_end``).

    >>> load_events("coal_explosions").num_events.tolist()
    [191]
    """
    from .registry import load

    d = load(name)
    window = d.meta.get("constants", {})
    if "t_end" not in window or d.state_names != ("mark",):
        raise DataError(f"load_events({name!r}): not an event dataset (it needs a `mark` column and a window); "
                        "use datasets.load for time series.")  # fmt: skip
    labels = np.zeros(d.ts.shape, int) if d.series is None else np.asarray(d.series).astype(int)
    ids = np.unique(labels)
    marks = d.ys[:, 0].astype(np.int64)
    return make_event_sequences([d.ts[labels == i] for i in ids], [marks[labels == i] for i in ids],
                                t0=window["t0"], t_end=window["t_end"], names=[str(i) for i in ids])  # fmt: skip
