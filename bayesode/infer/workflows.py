"""Workflows built from ``run_svi`` and ``run_nuts``: SVI then NUTS, and neural-linear fits."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import autoguide
from numpyro.infer.util import constrain_fn, unconstrain_fn

from ..checks import as_key, seed_of
from ..datasets import as_data, make_data
from ..errors import ConfigError
from ..results.posterior import Posterior
from ..solving.precision import float_dtype
from .nuts import run_nuts
from .precision import fits_in_precision
from .programs import latent_sites
from .svi import run_svi

# make_data's options (state_names, series_names, t0, time_name, ...), read from its signature so
# that a new option reaches the data here too instead of going on to run_nuts/run_svi.
DATA_OPTIONS = tuple(n for n, p in inspect.signature(make_data).parameters.items() if p.kind is p.KEYWORD_ONLY)


def _pop_data_options(kwargs: dict) -> dict:
    """Take make_data's options out of ``kwargs`` (the rest go to the fits)."""
    return {k: kwargs.pop(k) for k in DATA_OPTIONS if k in kwargs}


@fits_in_precision
def run_svi_nuts(
    model,
    ts,
    ys=None,
    *,
    key,
    svi_steps: int = 2000,
    guide: str = "full-rank",
    optimizer=None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    init_spread: float = 0.1,
    progress: bool = True,
    precision: str | None = None,
    **nuts_kwargs,
) -> Posterior:
    """SVI first, then NUTS started near the SVI fit's centre (one start per chain).

    For neural fields NUTS from the prior median or random points often
    spends its warmup in tiny step sizes; starting near the mode, with the
    SVI covariance as the starting mass matrix (dense for ``full-rank`` and
    ``low-rank`` guides), removes most of that. The SVI losses are kept on
    the result.

    ``init_spread`` scales the guide's spread for the chain starts (in
    unconstrained space): ``1`` starts from plain guide draws, ``0`` starts
    every chain at the guide's centre. The default ``0.1`` keeps the chains in
    the mode SVI found: a neural ODE's posterior has many modes (hidden-unit
    permutations, and trajectories that fit the data in other ways), and a
    wide guide's draws scatter the chains over several of them, which NUTS
    cannot cross, so R-hat on the trajectories would report the scatter, not
    the sampler. The price: modes SVI did not find are not explored.

    ``precision`` (default None: the model's) is that of both stages (see :func:`run_nuts`).
    """
    data = as_data(ts, ys, **_pop_data_options(nuts_kwargs))
    k_svi, k_nuts = jax.random.split(as_key(key))
    if not (isinstance(init_spread, (int, float)) and 0 <= init_spread <= 1):
        raise ConfigError(f"`init_spread` must be a number in [0, 1]; got {init_spread!r}.")
    svi = run_svi(model, data, key=k_svi, guide=guide, optimizer=optimizer, num_steps=svi_steps,
                  num_draws=num_chains, progress=progress, precision=precision)
    _stop_if_interrupted(svi, "the SVI stage of run_svi_nuts")
    inits = _starts_near_mode(model, data.model_data(float_dtype(precision)), svi, init_spread)
    dense = guide != "mean-field"
    nuts_kwargs.setdefault("dense_mass", dense)
    if nuts_kwargs["dense_mass"] == dense and "inverse_mass_matrix" not in nuts_kwargs:
        nuts_kwargs["inverse_mass_matrix"] = _guide_covariance(*svi.guide_state, dense)
    post = run_nuts(model, data, key=k_nuts, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    init_params=inits, progress=progress, precision=precision, **nuts_kwargs)
    post.losses = svi.losses
    post.settings.update(method="svi+nuts", svi_steps=svi_steps, svi_guide=guide, seed=seed_of(key),
                         svi_wall_time_s=svi.settings["wall_time_s"])
    return post


@fits_in_precision
def run_neural_linear(
    model,
    ts,
    ys=None,
    *,
    key,
    method: str = "svi+nuts",
    hidden_svi_steps: int = 2000,
    hidden_guide: str = "full-rank",
    statistic: str = "median",
    svi_steps: int | None = None,
    progress: bool = True,
    precision: str | None = None,
    **kwargs,
) -> Posterior:
    """Fit a neural model as a neural-linear model: what ``bayesode fit`` does by default.

    Stage 1 fits every weight of ``model`` (from :func:`bayesode.models.neural`)
    by SVI (``hidden_guide``, ``hidden_svi_steps``); stage 2 fixes the hidden
    layers at that fit's ``statistic`` (:func:`bayesode.models.freeze_hidden`)
    and fits the output layer, ``y0`` and the noise by ``method``
    (``"svi+nuts"``, ``"nuts"`` or ``"svi"``), with ``svi_steps`` (default a
    third of ``hidden_svi_steps``: the stage-2 SVI only centres the chains and
    sets the mass matrix for a few weights). ``kwargs`` go to the stage-2 fit.

    Why: NUTS over every weight of even a width-8 network on lynx-hare does not
    mix in minutes (chains settle in different modes); the neural-linear
    posterior does, at the price of leaving out the hidden layers' own
    uncertainty (see ``freeze_hidden``). The stage-1 fit is kept as
    ``post.settings["hidden_fit"]`` (its guide, steps and final loss).
    ``precision`` (default None: the model's) is that of both stages (see :func:`run_nuts`).
    """
    from ..model import presets as models

    if method not in ("svi+nuts", "nuts", "svi"):
        raise ConfigError(f"`method` must be one of ['svi+nuts', 'nuts', 'svi']; got {method!r}.")
    if not (isinstance(hidden_svi_steps, int) and hidden_svi_steps > 0):
        raise ConfigError(f"`hidden_svi_steps` must be a positive int; got {hidden_svi_steps!r}.")
    data = as_data(ts, ys, **_pop_data_options(kwargs))
    hidden = run_svi(model, data, key=key, guide=hidden_guide, num_steps=hidden_svi_steps, num_draws=100, progress=progress,
                     precision=precision)
    _stop_if_interrupted(hidden, "stage 1 of run_neural_linear (SVI over every weight)")
    frozen = models.freeze_hidden(model, hidden, statistic=statistic)
    steps = max(hidden_svi_steps // 3, 1) if svi_steps is None else svi_steps
    # The same key for both stages keeps `bayesode fit --seed S` reproducing earlier runs; the two
    # stages fit different parameter spaces, so sharing it couples nothing that matters.
    if method == "svi+nuts":
        post = run_svi_nuts(frozen, data, key=key, svi_steps=steps, progress=progress, precision=precision, **kwargs)
    elif method == "svi":
        post = run_svi(frozen, data, key=key, num_steps=steps, progress=progress, precision=precision, **kwargs)
    else:
        post = run_nuts(frozen, data, key=key, progress=progress, precision=precision, **kwargs)
    post.settings["hidden_fit"] = {"guide": hidden_guide, "svi_steps": hidden_svi_steps, "statistic": statistic,
                                   "final_loss": float(np.asarray(hidden.losses)[-1])}  # fmt: skip
    return post


def _stop_if_interrupted(svi, stage: str) -> None:
    """An SVI stage cut short by Ctrl-C: no draws of the workflow exist yet, so stop (loudly)."""
    if svi.settings.get("interrupted"):
        raise KeyboardInterrupt(f"interrupted during {stage}; no posterior draws were made")


def _starts_near_mode(model, md, svi, spread: float) -> dict:
    """Chain starts ``centre + spread * (draw - centre)`` in unconstrained space, constrained back."""
    guide, params = svi.guide_state
    centre = guide.median(params)
    draws = {k: jnp.asarray(v[0]) for k, v in svi.samples.items()}  # (chain, ...)
    latents = latent_sites(model, md)
    centre = {k: jnp.asarray(centre[k]) for k in latents}
    draws = {k: draws[k] for k in latents}

    @jax.jit
    def shrink(centre, draws):
        z_c = unconstrain_fn(model, (md,), {}, centre)
        z_d = jax.vmap(lambda d: unconstrain_fn(model, (md,), {}, d))(draws)
        z = jax.tree.map(lambda c, d: c + spread * (d - c), z_c, z_d)
        return jax.vmap(lambda u: constrain_fn(model, (md,), {}, u))(z)

    return {k: np.asarray(v) for k, v in shrink(centre, draws).items()}


def _guide_covariance(guide, params, dense: bool):
    """The guide's covariance over the flattened unconstrained latents (NUTS's order)."""
    if isinstance(guide, autoguide.AutoContinuous):
        cov = guide.get_posterior(params).covariance_matrix
        return cov if dense else jnp.diag(cov)
    # AutoNormal: per-site scales, flattened in sorted site order like ravel_pytree.
    var = [jnp.ravel(params[f"{k}_auto_scale"]) ** 2 for k in sorted(guide.prototype_trace) if f"{k}_auto_scale" in params]
    diag = jnp.concatenate(var)
    return jnp.diag(diag) if dense else diag
