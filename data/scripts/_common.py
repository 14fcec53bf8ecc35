"""Shared helpers for the data scripts: output folder argument and byte-stable CSV writing.

Numbers are written with a fixed format so that rerunning a script reproduces its CSV
byte for byte: times with ``repr`` (the shortest string that round-trips the float64),
values with a fixed number of decimals, missing values as ``NA``, ``\\n`` line endings.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[1]


def output_dir(description: str) -> Path:
    """Parse ``--out DIR`` (default: the ``data/`` folder) and return it, created if needed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write the CSV into (default: data/)")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out


def fmt_time(t: float) -> str:
    """Exact float64 time: ``repr`` round-trips, so the loader reads back the same number."""
    return repr(float(t))


def fmt_value(x: float, decimals: int) -> str:
    """A value with fixed decimals, ``NA`` for NaN."""
    x = float(x)
    if math.isnan(x):
        return "NA"
    s = f"{x:.{decimals}f}"
    return "0." + "0" * decimals if s == "-0." + "0" * decimals else s


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Write already formatted cells as a comma-separated file with ``\\n`` line endings."""
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {path} ({len(rows)} rows)")


def solve_on_grid(rhs: Callable, y0: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """(time, state) float64 solution of ``y' = rhs(t, y)`` from ``y(ts[0]) = y0``: SciPy DOP853, rtol = atol = 1e-12."""
    from scipy.integrate import solve_ivp

    sol = solve_ivp(rhs, (ts[0], ts[-1]), y0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-12)
    assert sol.success, sol.message
    return sol.y.T


def write_gaussian_noisy(path: Path, header: Sequence[str], ts, ys, *, sd: float, seed: int, decimals: int = 6) -> None:
    """Add independent N(0, sd^2) noise (``np.random.default_rng(seed)``) to every value of ``ys`` and write the CSV."""
    rng = np.random.default_rng(seed)
    obs = ys + sd * rng.standard_normal(ys.shape)
    rows = [[fmt_time(t), *(fmt_value(v, decimals) for v in row)] for t, row in zip(ts, obs, strict=True)]
    write_csv(path, header, rows)
