"""Make ``damped_pendulum.csv``: a damped nonlinear pendulum with noisy angle and angular velocity.

    theta'' = -(g/L) sin(theta) - b theta',   g/L = 9.81 1/s^2,   b = 0.3 1/s
    theta(0) = 1.0 rad,   omega(0) = theta'(0) = 0 rad/s

50 equally spaced times on [0, 10] s (``np.linspace(0, 10, 50)``); both columns get
independent N(0, 0.05^2) noise.

Run ``python data/scripts/make_damped_pendulum.py [--out DIR]``; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import numpy as np
from _common import output_dir, solve_on_grid, write_gaussian_noisy

SEED = 1673
G_OVER_L = 9.81
DAMPING = 0.3
Y0 = np.array([1.0, 0.0])
NUM_POINTS = 50
T_END = 10.0
NOISE_SD = 0.05


def rhs(t, y):
    theta, omega = y
    return np.array([omega, -G_OVER_L * np.sin(theta) - DAMPING * omega])


def simulate() -> tuple[np.ndarray, np.ndarray]:
    """Noise-free (ts, ys) on the dataset's grid, in float64."""
    ts = np.linspace(0.0, T_END, NUM_POINTS)
    return ts, solve_on_grid(rhs, Y0, ts)


def main() -> None:
    out = output_dir(__doc__.splitlines()[0])
    ts, ys = simulate()
    write_gaussian_noisy(out / "damped_pendulum.csv", ["t", "theta", "omega"], ts, ys, sd=NOISE_SD, seed=SEED)


if __name__ == "__main__":
    main()
