"""Bundled example datasets, and a reader for your own CSV files.

Every bundled file is listed in ``data/registry.json`` with its units, source, licence,
sha256 and (for simulated data) the script and seed that made it; ``data/README.md``
has a data card per dataset. This module needs only the standard library and NumPy.

>>> from bayesode import datasets
>>> d = datasets.load("lynx_hare")
>>> d.ys.shape, d.state_names, d.units["time"]
((21, 2), ('hare', 'lynx'), 'year')
"""

from __future__ import annotations

import csv
import datetime
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["Dataset", "data_dir", "format_table", "list_datasets", "load", "load_csv"]

# Cells read as missing (NaN), compared after strip() and lower().
_MISSING = frozenset({"", "na", "n/a", "nan"})


@dataclass(frozen=True, eq=False)
class Dataset:
    """A table of time series with its units and provenance.

    Build with :func:`load` (bundled data) or :func:`load_csv` (your own file), and turn
    into model input with :meth:`to_data`.

    Attributes
    ----------
    name : str
        Registry name, or the file stem for :func:`load_csv`.
    ts : (rows,) float64
        Times, one per row, in file order. Dates are converted to days since the earliest.
    ys : (rows, state) float64
        Observations; NaN marks a missing or unobserved value.
    state_names : tuple of str
        Column names of ``ys``.
    units : dict
        ``"time"`` and each state name to a unit string (``""`` when unknown).
    description, source, licence : str
        Provenance (empty for :func:`load_csv`).
    time_name : str
        Name of the time column, or ``"day"`` when it held dates (converted to days since
        the earliest; ``meta["time_origin"]`` keeps that date).
    series : (rows,) str array or None
        Series label of each row (e.g. subject), or None for a single series.
    events : dict of (events,) arrays, or None
        Discrete interventions, e.g. doses for ``pk_multidose``: ``subject`` (str),
        ``time`` (float64), ``amount`` (float64), ``compartment`` (state name).
    t0 : float or None
        Time of the initial state when it precedes the first observation (e.g. the first
        dose); None means each series starts at its first row.
    meta : dict
        Everything else the registry records (kind, script, seed, true parameters, constants).
    """

    name: str
    ts: np.ndarray
    ys: np.ndarray
    state_names: tuple[str, ...]
    units: dict[str, str]
    description: str = ""
    source: str = ""
    licence: str = ""
    time_name: str = "time"
    series: np.ndarray | None = None
    events: dict[str, np.ndarray] | None = None
    t0: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def series_names(self) -> tuple[str, ...]:
        """Series labels in order of first appearance (``(name,)`` for single-series data)."""
        if self.series is None:
            return (self.name,)
        return tuple(dict.fromkeys(str(s) for s in self.series))

    def to_data(self):
        """Build validated model input with ``bayesode.make_data``, one series per label.

        Returns
        -------
        Data
            ``ts`` (series, time), ``ys`` (series, time, state); rows of each series keep
            their file order (``make_data`` checks the times increase).

        Examples
        --------
        >>> from bayesode import datasets
        >>> data = datasets.load("pk_multidose").to_data()
        >>> data.series_names, data.state_names
        (('S1', 'S2', 'S3'), ('gut', 'central'))
        """
        from .data import make_data  # lazy: _data imports JAX

        names = self.series_names
        if self.series is None:
            ts, ys = self.ts, self.ys
        else:
            labels = np.asarray(self.series).astype(str)
            ts = [self.ts[labels == s] for s in names]
            ys = [self.ys[labels == s] for s in names]
        return make_data(
            ts,
            ys,
            state_names=self.state_names,
            series_names=names,
            t0=self.t0,
            time_name=self.time_name,
        )

    def __repr__(self) -> str:
        """Summarise name, size, states, series and time unit (the arrays are left out)."""
        series = "" if self.series is None else f", series={len(self.series_names)}"
        return (
            f"Dataset({self.name!r}, rows={self.ts.shape[0]}, states={list(self.state_names)}{series}, "
            f"time={self.time_name!r} [{self.units.get('time', '')}])"
        )


# ---------------------------------------------------------------------------------------
# Locating the bundled data


def data_dir() -> Path:
    """Folder holding ``registry.json`` and the bundled CSV files.

    A wheel install bundles it as ``bayesode/data``; a source or editable checkout has
    it at the repository root.
    """
    package = Path(__file__).resolve().parents[1]  # bayesode/
    candidates = [package / "data", package.parent / "data"]
    for folder in candidates:
        if (folder / "registry.json").is_file():
            return folder
    raise FileNotFoundError(
        f"bayesode's bundled data folder was not found (looked for registry.json in {[str(c) for c in candidates]}). "
        "Reinstall bayesode, or run from a full source checkout."
    )


def _registry() -> dict[str, dict]:
    path = data_dir() / "registry.json"
    entries = json.loads(path.read_text(encoding="utf-8"))["datasets"]
    return {e["name"]: e for e in entries}


def _entry(name: str) -> dict:
    entries = _registry()
    if name not in entries:
        close = difflib.get_close_matches(str(name), entries, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"load(name={name!r}): no such dataset. Available: {', '.join(sorted(entries))}.{hint} "
            "For your own file use datasets.load_csv(path)."
        )
    return entries[name]


def _verified(name: str, part: dict) -> Path:
    """Path of a registered file after checking its sha256."""
    path = data_dir() / part["file"]
    if not path.is_file():
        raise DataError(f"load({name!r}): the registered file {str(path)!r} is missing. Reinstall bayesode.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != part["sha256"]:
        raise DataError(
            f"load({name!r}): checksum mismatch for {str(path)!r}: sha256 is {digest}, the registry expects "
            f"{part['sha256']}. The file was changed or corrupted: restore it (e.g. git checkout -- data/{part['file']}), "
            "or, if you regenerated it on purpose, run data/scripts/update_registry.py."
        )
    return path


# ---------------------------------------------------------------------------------------
# Public API


def load(name: str) -> Dataset:
    """Load a bundled dataset by name, after checking its file against the registry's sha256.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (``bayesode datasets`` on the command line).

    Returns
    -------
    Dataset
        ``ts`` (rows,), ``ys`` (rows, state) float64 with NaN for missing, units and provenance.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the available ones).
    DataError
        A bundled file is missing or its checksum does not match.

    Examples
    --------
    >>> d = load("influenza_england_1978_school")
    >>> d.ts[:3], d.meta["constants"]["population"]
    (array([0., 1., 2.]), 763)
    """
    entry = _entry(name)
    path = _verified(name, entry)
    table = _read_table(
        path,
        f"load({name!r})",
        time_column=entry["time_column"],
        state_columns=entry["state_columns"],
        series_column=entry.get("series_column"),
        time_format=entry.get("time_format", "number"),
    )
    events = None
    if entry.get("events"):
        events = _read_events(_verified(name, entry["events"]), name, table["state_names"])
    meta = {k: v for k, v in entry.items() if k in ("kind", "title", "script", "seed", "true_parameters", "constants")}
    if table["time_origin"] is not None:
        meta["time_origin"] = table["time_origin"]
    if events is not None:
        meta["events_units"] = dict(entry["events"].get("units", {}))
    return Dataset(
        name=name,
        ts=table["ts"],
        ys=table["ys"],
        state_names=table["state_names"],
        units=dict(entry["units"]),
        description=entry["description"],
        source=entry["source"],
        licence=entry["licence"],
        time_name=table["time_name"],
        series=table["series"],
        events=events,
        t0=entry.get("t0"),
        meta=meta,
    )


def list_datasets() -> list[dict]:
    """One summary dict per bundled dataset.

    Keys: ``name``, ``title``, ``description``, ``kind`` (real/simulated), ``rows``,
    ``columns`` (state names), ``series`` (column name or None) and ``units``.

    Examples
    --------
    >>> [d["name"] for d in list_datasets()][:2]
    ['lynx_hare', 'influenza_england_1978_school']
    """
    return [
        {
            "name": e["name"],
            "title": e.get("title", ""),
            "description": e["description"],
            "kind": e.get("kind", ""),
            "rows": e["rows"],
            "columns": list(e["state_columns"]),
            "series": e.get("series_column"),
            "units": dict(e["units"]),
        }
        for e in _registry().values()
    ]


def format_table() -> str:
    """Plain-text table of the bundled datasets (what ``bayesode datasets`` prints)."""
    head = ("name", "rows", "columns", "time unit", "title")
    body = []
    for d in list_datasets():
        cols = ", ".join(d["columns"]) + (f" (by {d['series']})" if d["series"] else "")
        body.append((d["name"], str(d["rows"]), cols, d["units"]["time"], d["title"]))
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r):
        cells = [c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(r) for r in body)]) + "\n"


def load_csv(
    path,
    time_column: str | None = None,
    state_columns=None,
    series_column: str | None = None,
) -> Dataset:
    r"""Read your own CSV file into a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        A comma-separated file whose first line is a header naming the columns.
    time_column : str, optional
        The time column; default the first column. Numbers, or ISO dates
        (``YYYY-MM-DD``, optionally with a time), which become days since the earliest.
    state_columns : sequence of str, optional
        Observed columns, in this order; default every column except the time and
        series columns. Empty cells, ``NA``, ``N/A`` and ``nan`` are missing (NaN).
    series_column : str, optional
        Column of labels (e.g. subject) splitting the rows into series.

    Returns
    -------
    Dataset
        Units are unknown (``""``); ``name`` is the file stem.

    Raises
    ------
    DataError
        Missing or empty file, no header, duplicated or empty column names, rows of the
        wrong length, unknown column names, a cell that is not a number (the message
        names its line and column), fewer than 2 rows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "obs.csv"
    >>> _ = p.write_text("t,x,y\n0,1.0,NA\n1,0.5,2\n")
    >>> d = load_csv(p)
    >>> d.ts, d.ys[:, 1]
    (array([0., 1.]), array([nan,  2.]))
    """
    path = Path(path)
    fn = f"load_csv({str(path)!r})"
    if isinstance(state_columns, str):
        state_columns = [state_columns]
    table = _read_table(path, fn, time_column=time_column, state_columns=state_columns, series_column=series_column)
    meta = {"kind": "user", "path": str(path)}
    if table["time_origin"] is not None:
        meta["time_origin"] = table["time_origin"]
    time_unit = f"day (since {table['time_origin']})" if table["time_origin"] is not None else ""
    return Dataset(
        name=path.stem,
        ts=table["ts"],
        ys=table["ys"],
        state_names=table["state_names"],
        units={"time": time_unit, **{s: "" for s in table["state_names"]}},
        time_name=table["time_name"],
        series=table["series"],
        meta=meta,
    )


# ---------------------------------------------------------------------------------------
# CSV parsing (pure ``csv`` + NumPy)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_rows(path: Path, fn: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, cells)`` of each non-blank data row, with shape checks."""
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"{fn}: file not found{where}. Check the path.")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, [c.strip() for c in r]) for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{fn}: the file is empty; expected a header line naming the columns, then at least 2 rows.")
    (_, header), body = rows[0], rows[1:]
    if len(header) == 1:
        for sep, what in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if sep in header[0]:
                raise DataError(
                    f"{fn}: the header {header[0]!r} is one column separated by {what}; bayesode reads "
                    "comma-separated files. Save the file as CSV with commas."
                )
    if all(_is_number(c) or c.lower() in _MISSING for c in header):
        raise DataError(
            f"{fn}: no header line; the first line {','.join(header)!r} looks like data. "
            "Add a first line naming the columns, e.g. 'time,x,y'."
        )
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{fn}: column {i + 1} has an empty name in the header {header}; name every column.")
        if header.index(name) != i:
            raise DataError(
                f"{fn}: the header repeats {name!r} (columns {header.index(name) + 1} and {i + 1}); "
                "column names must be unique, rename one."
            )
    for line, cells in body:
        if len(cells) != len(header):
            raise DataError(
                f"{fn}: line {line} has {len(cells)} cells but the header has {len(header)} columns {header}; "
                "check for a missing or extra comma (an empty cell still needs its comma)."
            )
    if len(body) < 2:
        raise DataError(f"{fn}: found {len(body)} data row(s); a time series needs at least 2 rows.")
    return header, body


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
        state_columns = list(state_columns)
        for c in state_columns:
            check(c, "state_columns entry")
            if c in taken:
                raise DataError(f"{fn}: state_columns includes {c!r}, which is the time or series column.")
        if len(set(state_columns)) != len(state_columns):
            raise DataError(f"{fn}: state_columns repeats a name: {state_columns}.")
    if not state_columns:
        raise DataError(f"{fn}: no state columns left besides time/series; the columns are {header}.")
    return time_column, state_columns


def _parse_times(cells: list[tuple[int, str]], fn: str, column: str, time_format: str | None):
    """Parse the time cells into (float64 times, date origin or None).

    ``time_format`` is "number", "date", or None to detect it from the first cell.
    """
    for line, c in cells:
        if c.lower() in _MISSING:
            raise DataError(f"{fn}: line {line}, time column {column!r} is empty; every row needs a time.")
    if time_format is None:
        time_format = "number" if _is_number(cells[0][1]) else "date"
    if time_format == "number":
        out = []
        for line, c in cells:
            if not _is_number(c):
                raise DataError(
                    f"{fn}: line {line}, column {column!r}: cannot read {c!r} as a number; times must be numbers "
                    "(or all ISO dates like 1978-01-22)."
                )
            out.append(float(c))
        ts = np.array(out, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(ts))
        if bad.size:
            line, c = cells[int(bad[0])]
            raise DataError(f"{fn}: line {line}, column {column!r}: time {c!r} is not finite.")
        return ts, None
    stamps = []
    for line, c in cells:
        try:
            stamps.append(datetime.datetime.fromisoformat(c))
        except ValueError:
            raise DataError(
                f"{fn}: line {line}, column {column!r}: cannot read {c!r} as a number or an ISO date "
                "(YYYY-MM-DD); use one format for the whole time column."
            ) from None
    try:
        origin = min(stamps)
        days = [(s - origin).total_seconds() / 86400.0 for s in stamps]
    except TypeError:
        raise DataError(f"{fn}: column {column!r} mixes dates with and without time zones; use one kind.") from None
    label = origin.date().isoformat() if origin.time() == datetime.time(0) else origin.isoformat()
    return np.array(days, dtype=np.float64), label


def _parse_value(line: int, c: str, fn: str, column: str) -> float:
    if c.lower() in _MISSING:
        return math.nan
    try:
        v = float(c)
    except ValueError:
        raise DataError(
            f"{fn}: line {line}, column {column!r}: cannot read {c!r} as a number. Fix the cell, leave it empty "
            "(or NA) if missing, or choose other columns with state_columns=[...] (labels go in series_column=...)."
        ) from None
    if math.isinf(v):
        raise DataError(f"{fn}: line {line}, column {column!r}: infinite value {c!r}; leave the cell empty if missing.")
    return v


def _read_table(
    path: Path,
    fn: str,
    *,
    time_column=None,
    state_columns=None,
    series_column=None,
    time_format: str | None = None,
) -> dict[str, Any]:
    header, body = _read_rows(path, fn)
    time_column, state_columns = _pick_columns(header, fn, time_column, state_columns, series_column)
    col = {name: i for i, name in enumerate(header)}
    ti = col[time_column]
    ts, origin = _parse_times([(line, cells[ti]) for line, cells in body], fn, time_column, time_format)
    ys = np.array(
        [[_parse_value(line, cells[col[s]], fn, s) for s in state_columns] for line, cells in body],
        dtype=np.float64,
    ).reshape(len(body), len(state_columns))
    series = None
    if series_column is not None:
        si = col[series_column]
        for line, cells in body:
            if cells[si].lower() in _MISSING:
                raise DataError(f"{fn}: line {line}, series column {series_column!r} is empty; label every row.")
        series = np.array([cells[si] for _, cells in body], dtype=str)
    for a in (ts, ys, series):
        if a is not None:
            a.setflags(write=False)
    return {
        "ts": ts,
        "ys": ys,
        "state_names": tuple(state_columns),
        # Converted dates are no longer dates: name the time axis after its unit.
        "time_name": time_column if origin is None else "day",
        "series": series,
        "time_origin": origin,
    }


def _read_events(path: Path, name: str, state_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Dose table as arrays: subject (str), time, amount (float64), compartment (state name)."""
    fn = f"load({name!r})"
    header, body = _read_rows(path, fn)
    col = {c: i for i, c in enumerate(header)}
    missing = [c for c in ("subject", "time", "amount", "compartment") if c not in col]
    if missing:
        raise DataError(f"{fn}: events file {str(path)!r} lacks columns {missing}; it has {header}.")
    out = {
        "subject": np.array([cells[col["subject"]] for _, cells in body], dtype=str),
        "time": np.array([_parse_value(line, cells[col["time"]], fn, "time") for line, cells in body]),
        "amount": np.array([_parse_value(line, cells[col["amount"]], fn, "amount") for line, cells in body]),
        "compartment": np.array([cells[col["compartment"]] for _, cells in body], dtype=str),
    }
    unknown = sorted(set(out["compartment"].tolist()) - set(state_names))
    if unknown:
        raise DataError(f"{fn}: events name compartments {unknown} that are not states {list(state_names)}.")
    for a in out.values():
        a.setflags(write=False)
    return out
