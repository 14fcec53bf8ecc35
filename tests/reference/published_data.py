"""Data of the published models, read with NumPy only (shared by the Stan reference script and the tests).

Each function returns plain arrays and numbers, so the Stan references stay independent of bayesode.
"""

import os

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data")


def influenza() -> dict:
    """Boarding school, England, 1978: pupils in bed on days 1..14 after the first case (N = 763).

    As in Grinsztajn et al. (2021): t0 = 0, y0 = (762, 1, 0), ts = 1..14.
    """
    cases = np.loadtxt(os.path.join(DATA, "influenza_england_1978_school.csv"), delimiter=",", skiprows=1,
                       usecols=1)  # fmt: skip
    return {"ts": np.arange(1.0, cases.size + 1.0), "cases": cases, "N": 763.0, "y0": np.array([762.0, 1.0, 0.0]),
            "t0": 0.0}  # fmt: skip


def pk() -> dict:
    """Subject S1 of the bundled pk_multidose data up to its second dose: one 100 mg oral dose at t = 0 h."""
    raw = np.genfromtxt(os.path.join(DATA, "pk_multidose.csv"), delimiter=",", skip_header=1, dtype=str)
    rows = raw[(raw[:, 0] == "S1") & (raw[:, 1].astype(float) < 12.0)]
    return {"ts": rows[:, 1].astype(float), "conc": rows[:, 3].astype(float), "dose": 100.0}


def pk_multidose() -> dict:
    """Subject S1 of the bundled pk_multidose data, all of it: 4 oral doses of 100 mg at 0, 12, 24 and 36 h.

    22 concentrations in (0, 60] h, none at a dose time; ``dose_times[0]`` is t0 = 0, where
    both compartments are empty just before the first dose.
    """
    raw = np.genfromtxt(os.path.join(DATA, "pk_multidose.csv"), delimiter=",", skip_header=1, dtype=str)
    rows = raw[raw[:, 0] == "S1"]
    doses = np.genfromtxt(os.path.join(DATA, "pk_multidose_doses.csv"), delimiter=",", skip_header=1, dtype=str)
    doses = doses[doses[:, 0] == "S1"]
    return {"ts": rows[:, 1].astype(float), "conc": rows[:, 3].astype(float), "dose_times": doses[:, 1].astype(float),
            "amounts": doses[:, 2].astype(float), "compartment": doses[:, 3]}  # fmt: skip


VDP_MU, VDP_SIGMA, VDP_SEED = 10.0, 0.1, 20261203


def van_der_pol() -> dict:
    """Van der Pol, mu = 10 (stiff relaxation oscillations): y1 at 30 times in (0, 15] with N(0, 0.1) noise.

    Simulated here with SciPy's Radau at 1e-10 from y0 = (2, 0), fixed seed; x'' = mu (1 - x^2) x' - x.
    """
    from scipy.integrate import solve_ivp

    ts = np.linspace(0.5, 15.0, 30)
    sol = solve_ivp(lambda t, y: [y[1], VDP_MU * (1 - y[0] ** 2) * y[1] - y[0]], (0.0, 15.0), [2.0, 0.0],
                    method="Radau", t_eval=ts, rtol=1e-10, atol=1e-10)  # fmt: skip
    noise = np.random.default_rng(VDP_SEED).normal(0.0, VDP_SIGMA, ts.size)
    return {"ts": ts, "y": sol.y[0] + noise, "y0": np.array([2.0, 0.0])}


ROBERTSON_K, ROBERTSON_SIGMA, ROBERTSON_SEED = (0.04, 3.0e7, 1.0e4), 0.05, 20261205


def robertson() -> dict:
    """Robertson's chemical reactions (Hairer & Wanner, Solving ODEs II, the classic stiff test):

    y1' = -k1 y1 + k3 y2 y3, y2' = k1 y1 - k3 y2 y3 - k2 y2^2, y3' = k2 y2^2, y0 = (1, 0, 0),
    k = (0.04, 3e7, 1e4): rates 9 orders of magnitude apart. All three species at 15
    log-spaced times in [0.1, 1000] with multiplicative LogNormal(0, 0.05) noise; SciPy's
    Radau at rtol 1e-11, atol 1e-16, fixed seed.
    """
    from scipy.integrate import solve_ivp

    k1, k2, k3 = ROBERTSON_K

    def rhs(t, y):
        return [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2, k2 * y[1] ** 2]

    ts = np.logspace(-1.0, 3.0, 15)
    sol = solve_ivp(rhs, (0.0, ts[-1]), [1.0, 0.0, 0.0], method="Radau", t_eval=ts, rtol=1e-11, atol=1e-16)
    noise = np.random.default_rng(ROBERTSON_SEED).normal(0.0, ROBERTSON_SIGMA, sol.y.T.shape)
    return {"ts": ts, "y": sol.y.T * np.exp(noise), "y0": np.array([1.0, 0.0, 0.0])}


HYBRID_FEATURES = ((1.0, 0.0), (-1.0, 0.5), (0.5, -0.5))  # (a_j, c_j) of the fixed hidden units tanh(a_j y + c_j)
HYBRID_SIGMA, HYBRID_SEED = 0.05, 20261204


def hybrid_decay() -> dict:
    """A decay whose law misses a saturating inflow: truth y' = -0.5 y + 0.6 y / (1 + y), y0 = 2.

    The model knows the decay (-k y) and corrects it with a small network (fixed hidden tanh
    units ``HYBRID_FEATURES``, learned output weights). 20 noisy readings in (0, 10], SciPy at 1e-10.
    """
    from scipy.integrate import solve_ivp

    ts = np.linspace(0.5, 10.0, 20)
    sol = solve_ivp(lambda t, y: -0.5 * y + 0.6 * y / (1 + y), (0.0, 10.0), [2.0], t_eval=ts, rtol=1e-10, atol=1e-10)
    noise = np.random.default_rng(HYBRID_SEED).normal(0.0, HYBRID_SIGMA, ts.size)
    return {"ts": ts, "y": sol.y[0] + noise, "y0": 2.0, "features": HYBRID_FEATURES}


SEIR_N, SEIR_LATENT_RATE, SEIR_TRUTH, SEIR_SEED = 1000.0, 0.5, {"beta": 1.0, "gamma": 0.5, "phi": 10.0}, 20261206


def seir_incidence() -> dict:
    """An SEIR outbreak seen through daily new cases (simulated here, fixed seed).

    S' = -beta I S / N, E' = beta I S / N - a E, I' = a E - gamma I, R' = gamma I with N = 1000,
    a = 0.5 / day known (a 2-day latent period), beta = 1, gamma = 0.5 (R0 = 2); t0 = 0,
    y0 = (997, 0, 3, 0). New cases on day i are the onsets in (i - 1, i], the fall of S + E
    (as in Grinsztajn et al. 2021's SEIR), ~ NegBinomial2(mean, phi = 10), days 1..42 (the
    whole wave: mean 0.6 on day 1, peak 40, 5 on day 42). SciPy's RK45 at 1e-10.
    """
    from scipy.integrate import solve_ivp

    n, a = SEIR_N, SEIR_LATENT_RATE
    beta, gamma, phi = SEIR_TRUTH["beta"], SEIR_TRUTH["gamma"], SEIR_TRUTH["phi"]

    def rhs(t, y):
        infection = beta * y[2] * y[0] / n
        return [-infection, infection - a * y[1], a * y[1] - gamma * y[2], gamma * y[2]]

    y0, ts = np.array([997.0, 0.0, 3.0, 0.0]), np.arange(1.0, 43.0)
    sol = solve_ivp(rhs, (0.0, ts[-1]), y0, t_eval=ts, rtol=1e-10, atol=1e-10)
    not_yet_infectious = sol.y[0] + sol.y[1]  # S + E
    mean = -np.diff(np.concatenate([[y0[0] + y0[1]], not_yet_infectious]))
    cases = np.random.default_rng(SEIR_SEED).negative_binomial(phi, phi / (phi + mean)).astype(float)
    return {"ts": ts, "cases": cases, "N": n, "a": a, "y0": y0, "t0": 0.0}
