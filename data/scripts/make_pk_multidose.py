"""Make ``pk_multidose.csv`` and ``pk_multidose_doses.csv``: one-compartment oral PK, repeated doses.

Model (amounts in mg, per subject)::

    d gut/dt     = -ka * gut
    d central/dt =  ka * gut - ke * central

Each dose adds ``amount`` mg to ``gut`` at its time. Both states start at 0 at t = 0 h,
just before the first dose. The volume of distribution is fixed at V = 1 L, so the
observed plasma concentration (mg/L) equals the central amount (mg) numerically.
Only ``central`` is observed (``gut`` is written as NA), with multiplicative log-normal
noise: obs = central * exp(0.1 * z), z ~ N(0, 1).

Between doses the system is linear, so the trajectory is the exact superposition of
single-dose solutions (ka != ke for every subject):

    gut(t)     = sum_d D_d exp(-ka (t - t_d))
    central(t) = sum_d D_d ka / (ka - ke) (exp(-ke (t - t_d)) - exp(-ka (t - t_d)))

over doses with t_d <= t. Samples are taken 0.5, 1, 2, 4, 8 h after each dose (only
those before the next dose) and 0.5, 1, 2, 4, 8, 12, 24 h after the last.

Run ``python data/scripts/make_pk_multidose.py [--out DIR]``; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import numpy as np
from _common import fmt_time, fmt_value, output_dir, write_csv

SEED = 4242
NOISE_SD = 0.1  # sd of log(obs) - log(central)
VOLUME_L = 1.0
# Per-subject absorption and elimination rates (1/h) and doses as (time h, amount mg).
SUBJECTS = {
    "S1": {"ka": 1.0, "ke": 0.20, "doses": [(0.0, 100.0), (12.0, 100.0), (24.0, 100.0), (36.0, 100.0)]},
    "S2": {"ka": 1.6, "ke": 0.12, "doses": [(0.0, 200.0), (24.0, 200.0), (48.0, 200.0)]},
    "S3": {"ka": 0.7, "ke": 0.30, "doses": [(0.0, 150.0), (8.0, 150.0), (16.0, 75.0), (24.0, 75.0)]},
}
AFTER_DOSE = (0.5, 1.0, 2.0, 4.0, 8.0)
AFTER_LAST = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0)


def sample_times(doses) -> np.ndarray:
    """Observation times for one subject (never at a dose time)."""
    times = [d[0] for d in doses]
    out = []
    for i, td in enumerate(times):
        if i + 1 < len(times):
            out += [td + s for s in AFTER_DOSE if td + s < times[i + 1]]
        else:
            out += [td + s for s in AFTER_LAST]
    return np.array(out)


def amounts(ts, ka: float, ke: float, doses) -> np.ndarray:
    """(time, 2) exact gut and central amounts at ``ts`` (mg)."""
    gut = np.zeros_like(ts)
    central = np.zeros_like(ts)
    for td, dose in doses:
        dt = ts - td
        on = dt >= 0
        dt = np.where(on, dt, 0.0)
        gut += np.where(on, dose * np.exp(-ka * dt), 0.0)
        central += np.where(on, dose * ka / (ka - ke) * (np.exp(-ke * dt) - np.exp(-ka * dt)), 0.0)
    return np.stack([gut, central], axis=-1)


def main() -> None:
    out = output_dir(__doc__.splitlines()[0])
    rng = np.random.default_rng(SEED)
    rows, dose_rows = [], []
    for subject, p in SUBJECTS.items():
        ts = sample_times(p["doses"])
        conc = amounts(ts, p["ka"], p["ke"], p["doses"])[:, 1] / VOLUME_L
        obs = conc * np.exp(NOISE_SD * rng.standard_normal(ts.shape))
        rows += [[subject, fmt_time(t), "NA", fmt_value(c, 4)] for t, c in zip(ts, obs, strict=True)]
        dose_rows += [[subject, fmt_time(td), fmt_value(amt, 1), "gut"] for td, amt in p["doses"]]
    write_csv(out / "pk_multidose.csv", ["subject", "time", "gut", "central"], rows)
    write_csv(out / "pk_multidose_doses.csv", ["subject", "time", "amount", "compartment"], dose_rows)


if __name__ == "__main__":
    main()
