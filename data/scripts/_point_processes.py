"""The Jia & Benson (NeurIPS 2019) synthetic point processes, simulated exactly in NumPy.

Settings of their experiments (reference code ``examples/point_processes.py``), on ``[0, 100]``:

- homogeneous Poisson: ``lambda = 1``;
- Hawkes, exponential kernel: ``lambda(t) = mu + alpha sum_{t_j < t} e^{-beta (t - t_j)}`` with
  ``mu = 0.2, alpha = 0.8, beta = 1`` (branching ratio ``alpha / beta``);
- Hawkes, power-law kernel: ``lambda(t) = mu + sum_{t_j < t} alpha (beta / sigma) ((t - t_j) / sigma)^(-beta - 1)``
  for ``t - t_j > sigma`` (0 before), ``mu = 0.2, alpha = 0.8, beta = 2, sigma = 1``;
- self-correcting: ``lambda(t) = exp(mu t - beta N(t-))``, ``mu = 0.5, beta = 0.2``.

Each process is simulated by Ogata thinning with a bound that is exact for it (or, for the
self-correcting process, by inverting its piecewise-exponential compensator), so the data
follow the stated intensities exactly. ``intensity`` evaluates the true intensity of a
sequence at any times (just before, i.e. left limits at, the events), for benchmarks.
"""

from __future__ import annotations

import numpy as np

T_END = 100.0
NUM_SEQUENCES = 10
PARAMETERS = {
    "poisson": {"rate": 1.0},
    "hawkes_exponential": {"mu": 0.2, "alpha": 0.8, "beta": 1.0},
    "hawkes_power_law": {"mu": 0.2, "alpha": 0.8, "beta": 2.0, "sigma": 1.0},
    "self_correcting": {"mu": 0.5, "beta": 0.2},
}


def intensity(kind: str, events: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """True intensity at ``ts`` given the sequence ``events``, counting only events strictly before each t."""
    p = PARAMETERS[kind]
    ts = np.asarray(ts, np.float64)
    lag = ts[:, None] - np.asarray(events)[None, :]
    past = lag > 0
    if kind == "poisson":
        return np.full(ts.shape, p["rate"])
    if kind == "hawkes_exponential":
        return p["mu"] + p["alpha"] * np.sum(np.where(past, np.exp(-p["beta"] * np.where(past, lag, 0)), 0), 1)
    if kind == "hawkes_power_law":
        s, b = p["sigma"], p["beta"]
        on = lag > s
        kernel = p["alpha"] * (b / s) * (np.where(on, lag, s) / s) ** (-b - 1)
        return p["mu"] + np.sum(np.where(on, kernel, 0.0), 1)
    if kind == "self_correcting":
        return np.exp(p["mu"] * ts - p["beta"] * past.sum(1))
    raise ValueError(kind)


def simulate(kind: str, rng: np.random.Generator, t_end: float = T_END) -> np.ndarray:
    """One sequence of event times on ``(0, t_end]``."""
    p = PARAMETERS[kind]
    if kind == "poisson":
        n = rng.poisson(p["rate"] * t_end)
        return np.sort(rng.uniform(0.0, t_end, n))
    if kind == "self_correcting":
        # Between events lambda = exp(mu t - beta n): invert Lambda over (t, t + w) = Exp(1).
        t, n, out = 0.0, 0, []
        while True:
            e = rng.exponential()
            t = np.log(np.exp(p["mu"] * t) + p["mu"] * e * np.exp(p["beta"] * n)) / p["mu"]
            if t > t_end:
                return np.array(out)
            out.append(t)
            n += 1
    # Hawkes: Ogata thinning. For the exponential kernel the intensity only decays between
    # events, so its current value bounds it. The power-law kernel is 0 up to lag sigma, jumps to
    # its maximum alpha * beta / sigma and then decays: events within 10 sigma are bounded by that
    # maximum each, older ones by their current (decreasing) contribution.
    t, out = 0.0, []
    while True:
        ev = np.array(out)
        if kind == "hawkes_exponential":
            # The intensity just after t, counting an event at t itself: until the next event it only
            # decays from there. (At t alone, `intensity` counts events strictly before t and misses
            # the event just accepted: a bound short by alpha, which thinned the excitation away.)
            bound = intensity(kind, ev, np.array([np.nextafter(t, np.inf)]))[0] + 1e-12
        else:
            recent = np.sum(t - ev < 10.0 * p["sigma"]) if ev.size else 0
            bound = p["mu"] + recent * p["alpha"] * p["beta"] / p["sigma"] + intensity(kind, ev, np.array([t]))[0]
        t += rng.exponential(1.0 / bound)
        if t > t_end:
            return np.array(out)
        if rng.uniform() * bound <= intensity(kind, ev, np.array([t]))[0]:
            out.append(t)


def write_sequences(kind: str, seed: int, out) -> None:
    """``make_<kind>_events.py``: simulate ``NUM_SEQUENCES`` sequences and write ``time,mark,sequence`` rows."""
    from _common import write_csv

    rng = np.random.default_rng(seed)
    rows = []
    for s in range(NUM_SEQUENCES):
        rows += [[f"{t:.6f}", "0", str(s)] for t in simulate(kind, rng)]
    write_csv(out / f"{kind}_events.csv", ["time", "mark", "sequence"], rows)
