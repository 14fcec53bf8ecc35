"""Datasets: the bundled ones (registry and cards), and your own CSV file or DataFrame.

Every bundled file is listed in ``data/registry.json`` with its units, source, licence,
sha256 and (for simulated data) the script and seed that made it; ``data/README.md``
has a data card per dataset. Tables are read by :mod:`.tables` (pandas).

>>> from bayesode import datasets
>>> d = datasets.load("lynx_hare")
>>> d.ys.shape, d.state_names, d.units["time"]
((21, 2), ('hare', 'lynx'), 'year')
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .tables import read_events, read_table

__all__ = ["Dataset", "data_dir", "format_table", "list_datasets", "load", "load_csv"]


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
        Times, one per row, in file order. Dates become days since the earliest
        (``meta["time_origin"]``), and :meth:`to_data` keeps that date so results show dates.
    ys : (rows, state) float64
        Observations; NaN marks a missing or unobserved value.
    state_names : tuple of str
        Column names of ``ys``.
    units : dict
        ``"time"`` and each state name to a unit string (``""`` when unknown).
    description, source, licence : str
        Provenance (empty for :func:`load_csv`).
    time_name : str
        Name of the time column, as in the file (also when it held dates).
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
            time_origin=self.meta.get("time_origin"),
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
    table = read_table(
        path,
        f"load({name!r})",
        time_column=entry["time_column"],
        state_columns=entry["state_columns"],
        series_column=entry.get("series_column"),
        time_format=entry.get("time_format", "number"),
    )
    events = None
    if entry.get("events"):
        events = read_events(_verified(name, entry["events"]), f"load({name!r})", table["state_names"])
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
    source,
    time_column: str | None = None,
    state_columns=None,
    series_column: str | None = None,
) -> Dataset:
    r"""Read your own table, a CSV file or a pandas DataFrame, into a :class:`Dataset`.

    Parameters
    ----------
    source : str, Path or pandas.DataFrame
        A comma-separated file whose first line is a header naming the columns, or a
        DataFrame (its column names are kept; an index other than 0, 1, 2, ..., such as a
        DatetimeIndex, is the time column unless ``time_column`` names another).
    time_column : str, optional
        The time column, anywhere in the table; default the first column. Numbers, or
        dates (ISO text like ``2021-06-01``, optionally with a time, or datetime
        values), which become days since the earliest, kept as ``meta["time_origin"]``.
    state_columns : sequence of str, optional
        Observed columns, in this order; default every column except the time and
        series columns. Empty cells, ``NA``, ``N/A`` and ``nan`` are missing (NaN).
    series_column : str, optional
        Column of labels (e.g. subject) splitting the rows into series.

    Returns
    -------
    Dataset
        Column names as given; units unknown (``""``) except ``"day"`` for dates;
        ``name`` is the file stem (``"dataframe"`` for a DataFrame).

    Raises
    ------
    DataError
        Missing or empty file, no header, duplicated or empty column names, rows of the
        wrong length, unknown column names, a cell that is not a number (the message
        names its line or row and its column), fewer than 2 rows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "obs.csv"
    >>> _ = p.write_text("x,t,y\n1.0,0,NA\n0.5,1,2\n")
    >>> d = load_csv(p, time_column="t")
    >>> d.ts, d.state_names, d.ys[:, 1]
    (array([0., 1.]), ('x', 'y'), array([nan,  2.]))
    """
    if type(source).__name__ == "DataFrame":
        name, fn, meta = "dataframe", "load_csv(DataFrame)", {"kind": "user"}
    else:
        path = Path(source)
        name, fn, meta = path.stem, f"load_csv({str(path)!r})", {"kind": "user", "path": str(path)}
    table = read_table(source, fn, time_column=time_column, state_columns=state_columns, series_column=series_column)
    if table["time_origin"] is not None:
        meta["time_origin"] = table["time_origin"]
    return Dataset(
        name=name,
        ts=table["ts"],
        ys=table["ys"],
        state_names=table["state_names"],
        units={"time": "day" if table["time_origin"] is not None else "", **{s: "" for s in table["state_names"]}},
        time_name=table["time_name"],
        series=table["series"],
        meta=meta,
    )
