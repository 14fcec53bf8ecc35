"""A user's table (a CSV file or a pandas DataFrame) as times, values and names, read with pandas.

pandas does the reading (quotes, byte-order marks, line endings, number and date
parsing); this module adds what a time-series fit needs to be told early and in the
user's words: which line or row and which column is wrong, and how to fix it.
pandas is imported inside the functions, so ``bayesode --help`` and the dataset list
do not pay for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

# Cells read as missing (NaN), compared after strip() and lower().
MISSING = ("", "na", "n/a", "nan")
# Said when the time column cannot be read: the first column is the default, and may not be the times.
_TIME_HINT = " If the times are in another column, name it with time_column=..."
_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "bars"))


def read_table(source, fn: str, *, time_column=None, state_columns=None, series_column=None,
               time_format: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Times, values, names (and series labels) of a CSV path or a DataFrame.

    ``fn`` starts every error message (e.g. ``load_csv('obs.csv')``). ``time_format``:
    ``"number"``, ``"date"``, or None to detect it. Returns a dict with ``ts`` (rows,)
    float64 (dates: days since the earliest), ``ys`` (rows, state) float64 with NaN for
    missing, ``state_names``, ``time_name`` (the time column's name), ``series`` (rows,)
    str or None, and ``time_origin`` (ISO text of the earliest date, or None).
    """
    if _is_frame(source):
        frame, where = _from_dataframe(source, fn, time_column)
    else:
        frame, where = _from_csv(Path(source), fn)
    time_column, state_columns = _pick_columns(list(frame.columns), fn, time_column, state_columns, series_column)
    ts, origin = _times(frame[time_column], where, fn, time_column, time_format)
    ys = np.stack([_values(frame[c], where, fn, c) for c in state_columns], axis=1).reshape(len(frame), -1)
    series = None
    if series_column is not None:
        labels = frame[series_column]
        empty = _missing(labels)
        if empty.any():
            raise DataError(f"{fn}: {where[int(np.argmax(empty))]}, series column {series_column!r} is empty; "
                            "label every row.")  # fmt: skip
        series = np.array([str(v).strip() for v in labels], dtype=str)
    for a in (ts, ys, series):
        if a is not None:
            a.setflags(write=False)
    return {"ts": ts, "ys": ys, "state_names": tuple(state_columns), "time_name": time_column, "series": series,
            "time_origin": origin}  # fmt: skip


def read_events(path: Path, fn: str, state_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Dose table as arrays: subject (str), time, amount (float64), compartment (a state name)."""
    frame, where = _from_csv(path, fn)
    missing = [c for c in ("subject", "time", "amount", "compartment") if c not in frame.columns]
    if missing:
        raise DataError(f"{fn}: events file {str(path)!r} lacks columns {missing}; it has {list(frame.columns)}.")
    out = {
        "subject": frame["subject"].to_numpy(dtype=str),
        "time": _values(frame["time"], where, fn, "time"),
        "amount": _values(frame["amount"], where, fn, "amount"),
        "compartment": frame["compartment"].to_numpy(dtype=str),
    }
    unknown = sorted(set(out["compartment"].tolist()) - set(state_names))
    if unknown:
        raise DataError(f"{fn}: events name compartments {unknown} that are not states {list(state_names)}.")
    for a in out.values():
        a.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------
# Sources


def _is_frame(source) -> bool:
    return type(source).__name__ == "DataFrame" and hasattr(source, "columns")


def _from_dataframe(df, fn: str, time_column):
    """Columns by name (an index that is not 0, 1, 2, ... becomes a column: dates often sit there)."""
    import pandas as pd

    if not isinstance(df.index, pd.RangeIndex) and (time_column is None or time_column == df.index.name):
        df = df.reset_index(names=df.index.name or "time")
        time_column = time_column or df.columns[0]
    names = [str(c) for c in df.columns]
    _check_header(names, fn)
    if len(df) < 2:
        raise DataError(f"{fn}: found {len(df)} row(s); a time series needs at least 2 rows.")
    frame = df.set_axis(names, axis=1).reset_index(drop=True)
    return frame, [f"row {label!r}" for label in df.index]


def _from_csv(path: Path, fn: str):
    """The file as a frame of stripped text cells, and each row's ``line N`` (blank lines skipped)."""
    import pandas as pd

    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"{fn}: file not found{where}. Check the path.")
    empty = DataError(f"{fn}: the file is empty; expected a header line naming the columns, then at least 2 rows.")
    if not path.read_text(encoding="utf-8-sig", errors="replace").strip():
        raise empty
    try:
        # The python engine marks a short row's absent cells NaN (an empty cell stays ""), so ragged rows show.
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_values=[], skip_blank_lines=False,
                          engine="python", encoding="utf-8-sig")  # fmt: skip
    except pd.errors.EmptyDataError:
        raise empty from None
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if not m:
            raise DataError(f"{fn}: could not read the file as CSV ({' '.join(str(e).split())}).") from None
        raise DataError(
            f"{fn}: line {m[2]} has {m[3]} cells but the header has {m[1]} columns; check for a missing or extra "
            "comma (an empty cell still needs its comma)."
        ) from None
    cells = raw.apply(lambda col: col.str.strip())
    blank = (cells.isna() | (cells == "")).all(axis=1).to_numpy() if len(cells) else np.zeros(0, bool)
    lines = np.flatnonzero(~blank) + 1
    if not lines.size:
        raise empty
    header = ["" if isinstance(c, float) else c for c in cells.iloc[lines[0] - 1]]
    if len(header) == 1:
        for sep, what in _SEPARATORS:
            if sep in header[0]:
                raise DataError(
                    f"{fn}: the header {header[0]!r} is one column separated by {what}; bayesode reads "
                    "comma-separated files. Save the file as CSV with commas."
                )
    if all(_is_number(c) or c.lower() in MISSING for c in header):
        raise DataError(
            f"{fn}: no header line; the first line {','.join(header)!r} looks like data. "
            "Add a first line naming the columns, e.g. 'time,x,y'."
        )
    _check_header(header, fn)
    body = cells.iloc[lines[1:] - 1].set_axis(header, axis=1).reset_index(drop=True)
    short = body.isna().any(axis=1).to_numpy()
    if short.any():
        i = int(np.argmax(short))
        raise DataError(
            f"{fn}: line {lines[1 + i]} has {int(body.iloc[i].notna().sum())} cells but the header has "
            f"{len(header)} columns {header}; check for a missing or extra comma (an empty cell still needs its comma)."
        )
    if len(body) < 2:
        raise DataError(f"{fn}: found {len(body)} data row(s); a time series needs at least 2 rows.")
    return body, [f"line {n}" for n in lines[1:]]


def _check_header(names: list[str], fn: str) -> None:
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{fn}: column {i + 1} has an empty name in the header {names}; name every column.")
        if names.index(name) != i:
            raise DataError(
                f"{fn}: the header repeats {name!r} (columns {names.index(name) + 1} and {i + 1}); "
                "column names must be unique, rename one."
            )


def _pick_columns(header, fn, time_column, state_columns, series_column) -> tuple[str, list[str]]:
    def check(value, argname):
        if value not in header:
            raise DataError(f"{fn}: {argname}={value!r} is not a column; the columns are {header}.")

    time_column = header[0] if time_column is None else time_column
    check(time_column, "time_column")
    if series_column is not None:
        check(series_column, "series_column")
        if series_column == time_column:
            raise DataError(f"{fn}: series_column and time_column are both {time_column!r}; pick different columns.")
    taken = {time_column, series_column}
    if state_columns is None:
        state_columns = [c for c in header if c not in taken]
    else:
        state_columns = [state_columns] if isinstance(state_columns, str) else list(state_columns)
        for c in state_columns:
            check(c, "state_columns entry")
            if c in taken:
                raise DataError(f"{fn}: state_columns includes {c!r}, which is the time or series column.")
        if len(set(state_columns)) != len(state_columns):
            raise DataError(f"{fn}: state_columns repeats a name: {state_columns}.")
    if not state_columns:
        raise DataError(f"{fn}: no state columns left besides time/series; the columns are {header}.")
    return time_column, state_columns


# ---------------------------------------------------------------------------------------
# Cells


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _missing(col) -> np.ndarray:
    """(rows,) True where a cell is missing: NaN/NaT/None, or text in MISSING."""
    text = col.astype(str).str.strip().str.lower() if col.dtype == object or col.dtype.kind in "OSU" else None
    out = col.isna().to_numpy()
    return out | text.isin(MISSING).to_numpy() if text is not None else out


def _times(col, where, fn: str, column: str, time_format: str | None):
    """Times as float64, and the earliest date as ISO text (None when the times are numbers)."""
    import pandas as pd

    empty = _missing(col)
    if empty.any():
        raise DataError(
            f"{fn}: {where[int(np.argmax(empty))]}, time column {column!r} is empty; every row needs a time."
        )
    if pd.api.types.is_datetime64_any_dtype(col):
        return _days(col)
    if time_format is None:
        time_format = "number" if pd.api.types.is_numeric_dtype(col) or _is_number(str(col.iloc[0])) else "date"
    if time_format == "number":
        ts = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(ts)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{fn}: {where[i]}, column {column!r}: cannot read {col.iloc[i]!r} as a number; times must be numbers "
                f"(or all ISO dates like 1978-01-22).{_TIME_HINT}"
            )
        if not np.isfinite(ts).all():
            i = int(np.argmax(~np.isfinite(ts)))
            raise DataError(f"{fn}: {where[i]}, column {column!r}: time {col.iloc[i]!r} is not finite.")
        return ts, None
    try:
        stamps = pd.to_datetime(col, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        raise DataError(f"{fn}: column {column!r} mixes dates with and without time zones; use one kind.") from None
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{fn}: {where[i]}, column {column!r}: cannot read {col.iloc[i]!r} as a number or an ISO date "
            f"(YYYY-MM-DD); use one format for the whole time column.{_TIME_HINT}"
        )
    return _days(stamps)


def _days(stamps):
    """Days since the earliest stamp (float64) and that stamp as ISO text (a date when at midnight)."""
    import pandas as pd

    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    origin = stamps.min()
    days = ((stamps - origin) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    label = origin.date().isoformat() if origin == origin.normalize() else origin.isoformat()
    return days, label


def _values(col, where, fn: str, column: str) -> np.ndarray:
    """One column as float64, NaN where missing; a cell that is not a number is an error naming it."""
    import pandas as pd

    empty = _missing(col)
    values = pd.to_numeric(col.where(~empty), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~empty
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{fn}: {where[i]}, column {column!r}: cannot read {col.iloc[i]!r} as a number. Fix the cell, leave it "
            "empty (or NA) if missing, or choose other columns with state_columns=[...] (labels go in "
            "series_column=...)."
        )
    if np.isinf(values).any():
        i = int(np.argmax(np.isinf(values)))
        raise DataError(f"{fn}: {where[i]}, column {column!r}: infinite value {col.iloc[i]!r}; leave the cell empty "
                        "if missing.")  # fmt: skip
    return values
