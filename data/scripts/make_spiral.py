"""Make ``spiral.csv``: the cubic "spiral" ODE of the DiffEqFlux neural-ODE tutorials, with noise.

    du/dt = (u**3) @ A,   A = [[-0.1, 2.0], [-2.0, -0.1]],   u(0) = [2, 0]

Times are t_k = k/39 for k = 0..59: the first 40 are exactly the tutorial's
``range(0, 1, length=40)`` training grid, the other 20 continue it to 59/39 ~ 1.513 for
forecasting. Every point (including t=0) gets independent N(0, 0.02^2) noise.

Run ``python data/scripts/make_spiral.py [--out DIR]``; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import numpy as np
from _common import output_dir, solve_on_grid, write_gaussian_noisy

SEED = 20180
A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
NUM_POINTS = 60
NUM_TRAIN = 40
NOISE_SD = 0.02


def rhs(t, u):
    return (u**3) @ A


def simulate() -> tuple[np.ndarray, np.ndarray]:
    """Noise-free (ts, ys) on the dataset's grid, in float64."""
    ts = np.arange(NUM_POINTS) / (NUM_TRAIN - 1)
    return ts, solve_on_grid(rhs, U0, ts)


def main() -> None:
    out = output_dir(__doc__.splitlines()[0])
    ts, ys = simulate()
    write_gaussian_noisy(out / "spiral.csv", ["t", "u1", "u2"], ts, ys, sd=NOISE_SD, seed=SEED)


if __name__ == "__main__":
    main()
