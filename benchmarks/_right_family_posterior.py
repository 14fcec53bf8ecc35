"""The right parametric family's own posterior, as a reference for the neural fits' bands.

For each process of the synthetic suite: NUTS (NumPyro, 2 chains x (500 + 1000), float64) on the
closed-form likelihood of the right family over the history, priors ``LogNormal(0, 1.5)`` on every
positive parameter (the power law's ``sigma`` fixed at its true 1, as in the ML fit), then the
intensity at every event of the full sequences (left limits) for each draw. Its 90% band's coverage
of the true intensity at held-out events says what a correctly specified Bayesian model achieves on
this one realisation: the coverage at event times is correlated (one parameter draw moves every
event), so it can sit well below 90% for the right model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

PARAMETERS = {"poisson": ("rate",), "hawkes_exponential": ("mu", "alpha", "beta"),
              "hawkes_power_law": ("mu", "alpha", "beta"), "self_correcting": ("mu", "beta")}  # fmt: skip
SIGMA = 1.0  # the power law's onset lag, fixed


def intensity_at_events(kind: str, p: dict, t, m):
    """(event,) intensity just before each event of one padded sequence ``t`` (mask ``m``)."""
    if kind == "poisson":
        return jnp.full(t.shape, p["rate"])
    if kind == "hawkes_exponential":

        def step(carry, x):
            excite, last = carry
            ti, mi = x
            excite = jnp.where(mi, excite * jnp.exp(-p["beta"] * (ti - last)), excite)
            return (jnp.where(mi, excite + p["alpha"], excite), jnp.where(mi, ti, last)), p["mu"] + excite

        return jax.lax.scan(step, (jnp.zeros(()), jnp.zeros(())), (t, m))[1]
    if kind == "hawkes_power_law":
        lag = t[:, None] - t[None, :]
        on = (lag > SIGMA) & m[None, :]
        kernel = p["alpha"] * (p["beta"] / SIGMA) * (jnp.where(on, lag, SIGMA) / SIGMA) ** (-p["beta"] - 1)
        return p["mu"] + jnp.sum(jnp.where(on, kernel, 0.0), 1)
    if kind == "self_correcting":
        return jnp.exp(p["mu"] * t - p["beta"] * jnp.arange(t.size))
    raise ValueError(kind)


def compensator(kind: str, p: dict, t, m, T: float):
    """``Lambda(T)`` of one padded sequence on [0, T]."""
    if kind == "poisson":
        return p["rate"] * T
    if kind == "hawkes_exponential":
        return p["mu"] * T + jnp.sum(jnp.where(m, p["alpha"] / p["beta"] * (1 - jnp.exp(-p["beta"] * (T - t))), 0.0))
    if kind == "hawkes_power_law":
        tail = (jnp.maximum(T - t, SIGMA) / SIGMA) ** (-p["beta"])
        return p["mu"] * T + jnp.sum(jnp.where(m, p["alpha"] * (1 - tail), 0.0))
    if kind == "self_correcting":
        n = jnp.sum(m)
        edges = jnp.concatenate([jnp.zeros(1), jnp.where(m, t, T), jnp.full(1, T)])
        k = jnp.minimum(jnp.arange(edges.size - 1), n)  # events before each interval
        pieces = jnp.exp(-p["beta"] * k) * (jnp.exp(p["mu"] * edges[1:]) - jnp.exp(p["mu"] * edges[:-1])) / p["mu"]
        return jnp.sum(pieces)
    raise ValueError(kind)


def _padded(events):
    return jnp.asarray(np.where(events.mask, events.times, 0.0)), jnp.asarray(events.mask)


def band_coverage(kind: str, history, full, t_end: float, true_intensity: np.ndarray, held: np.ndarray,
                  seed: int = 0) -> float:  # fmt: skip
    """Share of held-out events whose true intensity the right family's 90% posterior band covers."""
    with jax.enable_x64(True):
        th, mh = _padded(history)

        def model():
            p = {name: numpyro.sample(name, dist.LogNormal(0.0, 1.5)) for name in PARAMETERS[kind]}
            lam = jax.vmap(lambda t, m: intensity_at_events(kind, p, t, m))(th, mh)
            comp = jax.vmap(lambda t, m: compensator(kind, p, t, m, t_end))(th, mh)
            numpyro.factor("loglik", jnp.sum(jnp.where(mh, jnp.log(lam), 0.0)) - jnp.sum(comp))

        mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=1000, num_chains=2, chain_method="sequential",
                    progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.PRNGKey(seed))
        draws = mcmc.get_samples()
        tf, mf = _padded(full)
        # Batched over draws: all 2,000 at once hold (draw, sequence, event, event) lag matrices for the
        # power law (13 GB on the bundled suite); 50 at a time keep it near the sampler's own footprint.
        lam = jax.lax.map(lambda p: jax.vmap(lambda t, m: intensity_at_events(kind, p, t, m))(tf, mf), draws,
                          batch_size=50)  # fmt: skip
        lo, hi = np.quantile(np.asarray(lam), [0.05, 0.95], axis=0)
    truth = true_intensity[held]
    return float(np.mean((lo[held] <= truth) & (truth <= hi[held])))
