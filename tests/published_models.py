"""Published ODE models written with bayesode's public API, as their papers or Stan programs state them.

Each entry of ``MODELS`` builds ``(model, data)`` and names the quantities compared with the
Stan reference in ``tests/reference/published_reference.json`` (made by
``tests/reference/make_published_references.py`` from the ``.stan`` programs there). Shared by
``tests/test_published.py`` (the fast log-density check and the slow posterior comparison) and
``benchmarks/published.py`` (the per-parameter table).
"""

import json
import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import bayesode as bo

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import published_data  # noqa: E402

REFERENCE = os.path.join(HERE, "reference", "published_reference.json")


def sir_influenza():
    """Grinsztajn et al. (2021): SIR, N = 763, in-bed counts ~ NegBinomial2(I, phi).

    Priors as in the paper: beta ~ N(2, 1), gamma ~ N(0.4, 0.5) (both > 0), 1/phi ~ Exp(5)
    (``NegativeBinomialNoise``'s default, site ``phi_inv``).
    """
    d = published_data.influenza()
    n = d["N"]

    def sir(t, y, p, args):
        infection = p["beta"] * y[1] * y[0] / n
        return jnp.stack([-infection, infection - p["gamma"] * y[1], p["gamma"] * y[1]])

    field = bo.MechanisticField(sir, {"beta": 2.0, "gamma": 0.4}, state_dim=3)
    priors = {"beta": dist.TruncatedNormal(2.0, 1.0, low=0.0), "gamma": dist.TruncatedNormal(0.4, 0.5, low=0.0)}
    in_bed = bo.Observation(lambda ts, ys, y0, field: ys[:, 1:2], families=bo.NegativeBinomialNoise())
    model = bo.make_model(field, param_priors=priors, y0=d["y0"], observation=in_bed)
    data = bo.make_data(d["ts"], d["cases"][:, None], state_names=["in_bed"], t0=d["t0"])
    return model, data


def pk_one_compartment():
    """One-compartment oral PK (theophylline-like): 100 mg into the gut at t0 = 0, first-order absorption.

    The dose at the start is the known initial state ``y0 = (100, 0)``; concentration (V = 1 L)
    ~ LogNormal(log central, sigma), ka ~ LogNormal(0, 1), ke ~ LogNormal(log 0.2, 1),
    sigma ~ HalfNormal(0.5).
    """
    d = published_data.pk()

    def one_compartment(t, y, p, args):
        return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["ke"] * y[1]])

    field = bo.MechanisticField(one_compartment, {"ka": 1.0, "ke": 0.2}, state_dim=2)
    priors = {"ka": dist.LogNormal(0.0, 1.0), "ke": dist.LogNormal(float(np.log(0.2)), 1.0)}
    concentration = bo.Observation(
        lambda ts, ys, y0, field: ys[:, 1:2], families=bo.LogNormalNoise(sigma_prior=dist.HalfNormal(0.5))
    )
    model = bo.make_model(field, param_priors=priors, y0=[d["dose"], 0.0], observation=concentration)
    data = bo.make_data(d["ts"], d["conc"][:, None], state_names=["central"], t0=0.0)
    return model, data


class FixedFeatureCorrection(eqx.Module):
    """A small neural correction: ``sum_j w_j tanh(a_j y + c_j)``, hidden units fixed, output weights ``w`` learned.

    ``a``, ``c`` are Python floats (static, so no prior); ``w`` (hidden,) is the one array leaf,
    so it takes the model's ``weight_prior`` (site ``field.correction.w``).
    """

    w: jax.Array
    features: tuple = eqx.field(static=True)
    state_dim: int = eqx.field(static=True, default=1)

    def __call__(self, t, y, args):
        a = jnp.asarray([f[0] for f in self.features], y.dtype)
        c = jnp.asarray([f[1] for f in self.features], y.dtype)
        return jnp.sum(self.w * jnp.tanh(a * y[0] + c))[None]


def hybrid_decay():
    """Known decay ``-k y`` plus ``FixedFeatureCorrection`` (3 hidden tanh units): k ~ LogNormal(log 0.5, 0.5),
    w ~ Normal(0, 0.3) (``bo.Normal(0.3)``), y ~ Normal(z, sigma), sigma ~ HalfNormal(0.2), y0 = 2 known."""
    d = published_data.hybrid_decay()
    law = bo.MechanisticField(lambda t, y, p, args: -p["k"] * y, {"k": 0.5}, state_dim=1)
    correction = FixedFeatureCorrection(jnp.zeros(len(d["features"])), d["features"])
    field = bo.HybridField(law, correction)
    model = bo.make_model(
        field,
        weight_prior=bo.Normal(0.3),
        param_priors={"k": dist.LogNormal(float(np.log(0.5)), 0.5)},
        y0=[d["y0"]],
        likelihood=bo.NormalNoise(sigma_prior=dist.HalfNormal(0.2)),
    )
    return model, bo.make_data(d["ts"], d["y"][:, None], state_names=["y"], t0=0.0)


MODELS = {"sir_influenza": sir_influenza, "pk_one_compartment": pk_one_compartment, "hybrid_decay": hybrid_decay}
# quantity -> (bayesode site, index into its trailing axis or None), where they differ
SITE_OF = {f"w[{i}]": ("field.correction.w", i) for i in range(3)}


def draws_of(post, quantity):
    """(chain, draw) draws of a reference quantity from a bayesode fit."""
    site, index = SITE_OF.get(quantity, (quantity, None))
    x = np.asarray(post.samples[site])
    return (x if index is None else x[..., index]).reshape(post.num_chains, post.num_draws)


def site_values(values: dict, dtype) -> dict:
    """A reference point (Stan's parameter names) as bayesode site values."""
    out = {}
    for name, v in values.items():
        if name == "w":
            out["field.correction.w"] = jnp.asarray(v, dtype)
        else:
            out[name] = jnp.asarray(v, dtype)
    return out


def reference(name) -> dict:
    with open(REFERENCE) as fh:
        return json.load(fh)[name]


def compare(name, post) -> list[dict]:
    """Per quantity: Stan and bayesode mean, MCSE and sd; z of the mean difference; sd ratio."""
    import arviz as az

    rows = []
    for q, r in reference(name)["posterior"].items():
        x = draws_of(post, q)
        mcse = float(az.mcse(x, method="mean"))
        z = (x.mean() - r["mean"]) / np.hypot(mcse, r["mcse_mean"])
        rows.append({"model": name, "quantity": q, "stan_mean": r["mean"], "stan_sd": r["sd"],
                     "mean": float(x.mean()), "sd": float(x.std()), "mcse": mcse, "z": float(z),
                     "sd_ratio": float(x.std() / r["sd"]), "ess_bulk": float(az.ess(x, method="bulk"))})  # fmt: skip
    return rows


def passes(row) -> bool:
    """The issue's criterion: mean within 4 combined MCSE, sd ratio in [0.85, 1.15]."""
    return abs(row["z"]) < 4 and 0.85 <= row["sd_ratio"] <= 1.15
