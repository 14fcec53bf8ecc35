"""The synthetic suite of Herrera, Krach & Teichmann (ICLR 2021), with partly observed coordinates.

Three processes with known conditional expectations, each coordinate an
independent copy, on ``[0, horizon]`` with a grid of ``num_steps`` steps:

- Black-Scholes ``dX = mu X dt + sigma X dW``: ``E[X_t | X_s] = X_s exp(mu (t - s))``;
- Ornstein-Uhlenbeck ``dX = -k (X - m) dt + sigma dW``:
  ``E[X_t | X_s] = m + (X_s - m) exp(-k (t - s))``;
- Heston ``dX = mu X dt + sqrt(v) X dW``, ``dv = kappa (theta - v) dt + xi sqrt(v) dZ``
  (``corr(W, Z) = rho``): ``X exp(-mu t)`` is a martingale, so
  ``E[X_t | observations up to s] = X_s exp(mu (t - s))`` whatever ``v`` is.

Parameters are the paper's (Appendix F.1): ``mu = 2, sigma = 0.3`` (Black-Scholes);
``k = 2, m = 4, sigma = 0.3`` (OU); ``mu = 2, kappa = 2, theta = 1, xi = 1, rho = 0.5,
v0 = 1`` (Heston); ``X0 = 1``; horizon 1 on 100 steps. Observation times: time 0
(fully observed), then each grid time with probability ``obs_prob`` (the paper: 0.1);
at an observation time each coordinate is seen with probability ``coord_prob``
(at least one is). Because coordinates are independent, the conditional
expectation of a coordinate uses its own latest observed value. Black-Scholes and
OU are simulated exactly on the grid; Heston by Euler with full truncation.

Run ``python -m bayesode.datasets.njode_synthetic OUT_DIR`` to write the suite as
CSV files (``series,time,y0,y1``, empty = missing) with fixed seeds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .irregular import IrregularData, make_irregular

PROCESSES = ("black_scholes", "ornstein_uhlenbeck", "heston")
BS = dict(mu=2.0, sigma=0.3)
OU = dict(k=2.0, m=4.0, sigma=0.3)
HESTON = dict(mu=2.0, kappa=2.0, theta=1.0, xi=1.0, rho=0.5, v0=1.0)
X0 = 1.0


@dataclass(frozen=True)
class SyntheticPaths:
    """Simulated paths: ``grid`` (G,); ``paths`` (N, G, D); ``mask`` (N, G, D), True
    where a coordinate is observed at a grid time (all False at unobserved times)."""

    kind: str
    grid: np.ndarray
    paths: np.ndarray
    mask: np.ndarray


def simulate_paths(kind: str, num_paths: int, *, seed: int, obs_dim: int = 2, obs_prob: float = 0.1,
                   coord_prob: float = 0.7, horizon: float = 1.0, num_steps: int = 100) -> SyntheticPaths:  # fmt: skip
    """Simulate ``num_paths`` paths of ``kind`` (one of :data:`PROCESSES`) with random observation times.

    Examples
    --------
    >>> sp = simulate_paths("ornstein_uhlenbeck", 3, seed=0)
    >>> sp.paths.shape, bool(sp.mask[:, 0].all())
    ((3, 101, 2), True)
    """
    if kind not in PROCESSES:
        raise ConfigError(f"`kind`={kind!r} is unknown; choose one of {list(PROCESSES)}.")
    if not (0 < obs_prob <= 1 and 0 < coord_prob <= 1):
        raise ConfigError(f"`obs_prob` and `coord_prob` must be in (0, 1]; got {obs_prob}, {coord_prob}.")
    rng = np.random.default_rng(seed)
    dt = horizon / num_steps
    grid = np.linspace(0.0, horizon, num_steps + 1)
    shape = (num_paths, num_steps, obs_dim)
    dw = rng.standard_normal(shape) * np.sqrt(dt)
    x = np.full((num_paths, num_steps + 1, obs_dim), X0)
    if kind == "black_scholes":
        mu, s = BS["mu"], BS["sigma"]
        x[:, 1:] = X0 * np.exp(np.cumsum((mu - 0.5 * s**2) * dt + s * dw, axis=1))
    elif kind == "ornstein_uhlenbeck":
        k, m, s = OU["k"], OU["m"], OU["sigma"]
        decay, sd = np.exp(-k * dt), s * np.sqrt((1 - np.exp(-2 * k * dt)) / (2 * k))
        for i in range(num_steps):
            x[:, i + 1] = m + (x[:, i] - m) * decay + sd * dw[:, i] / np.sqrt(dt)
    else:
        p = HESTON
        dz = p["rho"] * dw + np.sqrt(1 - p["rho"] ** 2) * rng.standard_normal(shape) * np.sqrt(dt)
        v = np.full((num_paths, obs_dim), p["v0"])
        for i in range(num_steps):
            vp = np.maximum(v, 0.0)
            x[:, i + 1] = x[:, i] + p["mu"] * x[:, i] * dt + np.sqrt(vp) * x[:, i] * dw[:, i]
            v = v + p["kappa"] * (p["theta"] - vp) * dt + p["xi"] * np.sqrt(vp) * dz[:, i]
    observed_time = rng.random((num_paths, num_steps + 1)) < obs_prob
    observed_time[:, 0] = True
    coords = rng.random((num_paths, num_steps + 1, obs_dim)) < coord_prob
    # At least one coordinate at an observation time (a random one, if none was drawn).
    none = ~coords.any(-1)
    pick = rng.integers(0, obs_dim, size=none.shape)
    coords[none, pick[none]] = True
    mask = observed_time[..., None] & coords
    mask[:, 0] = True
    return SyntheticPaths(kind, grid, x, mask)


def conditional_expectation(sp: SyntheticPaths) -> np.ndarray:
    """``E[X_t | observations up to t]`` at every grid time, (N, G, D); exact (right-continuous)."""
    n, g, d = sp.paths.shape
    idx = np.where(sp.mask, np.arange(g)[None, :, None], 0)
    last = np.maximum.accumulate(idx, axis=1)  # index of the latest observation of each coordinate
    x_last = np.take_along_axis(sp.paths, last, axis=1)
    elapsed = sp.grid[None, :, None] - sp.grid[last]
    if sp.kind == "ornstein_uhlenbeck":
        return OU["m"] + (x_last - OU["m"]) * np.exp(-OU["k"] * elapsed)
    mu = BS["mu"] if sp.kind == "black_scholes" else HESTON["mu"]
    return x_last * np.exp(mu * elapsed)


def to_irregular(sp: SyntheticPaths, paths=None) -> IrregularData:
    """The observed part of ``paths`` (index array or slice; default all) as :class:`IrregularData`."""
    sel = np.arange(sp.paths.shape[0])[paths if paths is not None else slice(None)]
    ts, ys = [], []
    for i in sel:
        rows = sp.mask[i].any(-1)
        ts.append(sp.grid[rows])
        ys.append(np.where(sp.mask[i, rows], sp.paths[i, rows], np.nan))
    d = sp.paths.shape[-1]
    return make_irregular(ts, ys, state_names=[f"y{j}" for j in range(d)], series_names=[str(i) for i in sel])


def write_suite(out_dir, *, num_paths: int = 200, seed: int = 0) -> list[Path]:
    """Write one CSV per process (seed ``seed + index``): ``series,time,y0,y1`` with empty cells for missing."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for j, kind in enumerate(PROCESSES):
        sp = simulate_paths(kind, num_paths, seed=seed + j)
        lines = ["series,time," + ",".join(f"y{c}" for c in range(sp.paths.shape[-1]))]
        for i in range(num_paths):
            for t in np.nonzero(sp.mask[i].any(-1))[0]:
                vals = [f"{v:.6g}" if m else "" for v, m in zip(sp.paths[i, t], sp.mask[i, t])]
                lines.append(f"{i},{sp.grid[t]:.4f}," + ",".join(vals))
        path = out_dir / f"njode_{kind}.csv"
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_suite(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(p)
