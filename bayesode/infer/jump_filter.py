"""Fitting the neural jump ODE filter (SVI, NUTS or SVI then NUTS), online filtering, and the paper's point fit.

- :func:`fit_jump_filter`: the Bayesian fit. Every method starts with a MAP fit
  (as :func:`~bayesode.infer.fit_events` does); ``method="laplace"`` (default) then
  draws from a Gaussian at the MAP (:mod:`~bayesode.infer.laplace`); ``"svi"`` fits
  a mean-field Normal guide centred there and keeps draws from it; ``"nuts"``
  samples with NUTS from the MAP; ``"svi+nuts"`` starts NUTS at the guide's median.
  Which to use is measured in ``benchmarks/njode.py``.
- :func:`filter_online`: feed new observations to a fitted filter without
  refitting: each posterior draw's hidden state continues from where the data
  left it.
- :func:`fit_njode_point`: the point-estimate NJ-ODE of Herrera et al. trained
  with optax on the paper's loss, the baseline of the benchmark.
"""

from __future__ import annotations

import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import init_to_median

from ..checks import as_key, positive_int, positive_number
from ..datasets import IrregularData
from ..errors import ConfigError, DataError, FitFailedError
from ..model import Normal, make_jump_filter_model, net_from_draw, net_sites
from ..results.jump_filter import Forecast, JumpFilterFit, check_new_observations, forecast_from
from ..results.posterior import package_versions
from ..solving import FilterState, filter_config, filter_observations
from .event_checkpoint import EventCheckpoint, fingerprint
from .event_map import fit_map, map_stage
from .event_nuts import sample_nuts
from .event_svi import SviSettings, draw_svi, fit_svi
from .laplace import LaplaceGaussian, failed_draws, gauss_newton, one_step_coverage, tune_prior_precision, tuning_split

METHODS = ("laplace", "svi", "nuts", "svi+nuts")
MIN_TUNING_ENTRIES = 10  # held-out entries below which the Laplace prior precision is not tuned


def _model_arrays(data: IrregularData):
    if not isinstance(data, IrregularData):
        raise DataError(f"`data` must be an IrregularData (bayesode.datasets.make_irregular); got {type(data)}.")
    return jnp.asarray(data.ts), jnp.asarray(np.nan_to_num(data.ys)), jnp.asarray(data.mask)


def fit_jump_filter(net, data: IrregularData, *, key, method: str = "laplace", weight_prior=None, config=None,
                    map_steps: int = 1000, map_starts: int = 1, svi_steps: int = 1000, learning_rate: float = 0.01,
                    num_draws: int = 200, num_warmup: int = 200, num_samples: int = 200, num_chains: int = 1,
                    prior_precision: float | None = None, progress: bool = False,
                    checkpoint_dir: str | None = None) -> JumpFilterFit:  # fmt: skip
    """Fit a Bayesian neural jump ODE to irregular, partly observed series.

    Parameters
    ----------
    net : NeuralJumpODE
        Architecture; its current weights start the MAP fit.
    data : IrregularData
    key : PRNG key or int seed (keyword-only).
    method : {"laplace", "svi", "nuts", "svi+nuts"}
        ``"laplace"``: a Gaussian over every weight at the MAP (:mod:`~bayesode.infer.laplace`); its
        posterior-mean forecast stays by the MAP's where mean-field SVI's moved away from it
        (``benchmarks/njode.py``; docs/decisions.md, 2026-12-06 evening). Needs ``map_steps > 0`` and a
        ``Normal`` weight prior.
    weight_prior, config : see :func:`bayesode.model.make_jump_filter_model`.
    map_steps : Adam steps of the MAP warm start (0: none; SVI then starts at ``net``'s weights and NUTS
        at the prior median), on a cosine schedule from ``learning_rate`` to 1% of it. Why: SVI from
        the template's weights spent its steps getting to the data, and its posterior-mean forecast
        ended farther from the true conditional expectation than from the MAP (``benchmarks/njode.py``;
        docs/decisions.md, 2026-12-06 morning).
    map_starts : MAP fits from this many starting points (``net``'s weights, then redraws at the same
        per-layer scale: :func:`~bayesode.infer.event_map.start_points`), side by side on the CPU cores;
        the one with the highest log density is kept.
    svi_steps, learning_rate : SVI's Adam steps and peak step size (cosine schedule to 10% of it; gradients
        clipped at norm 10; the ELBO's KL to a Normal prior is analytic, ``TraceMeanField_ELBO``). The
        guide starts narrow (scale 0.01) around the MAP.
    num_draws : draws kept from the SVI guide or the Laplace Gaussian; a Laplace draw whose solve fails
        on the data is dropped (counted in ``settings["laplace_failed_draws"]``, warned).
    prior_precision : the Laplace Gaussian's prior precision ``alpha`` (``method="laplace"``); None (default):
        tuned on held-out data: a second MAP fit without every fifth series (with fewer than 5 series:
        without the last 20% of each one's observations), and the smallest ``alpha`` (at least the weight
        prior's ``1 / scale^2``) whose one-step 90% bands cover no more than 90% of those (:mod:`~bayesode.infer.laplace`; every tried ``(alpha, coverage)`` in
        ``settings["laplace_tuning"]``). Tuning costs one more MAP fit. With fewer than 10 held-out observed
        entries it is not tuned: the weight prior's own precision is used, with a warning.
    num_warmup, num_samples, num_chains : NUTS settings (NumPyro's kernel, the chains taking turns:
        :mod:`~bayesode.infer.event_nuts`). Ctrl-C while it samples keeps the draws made so far (the
        same number per chain), warns, and sets ``settings["interrupted"]``.
    progress : show a line before and after SVI (one compiled program: no bar) and NUTS's progress lines.
    checkpoint_dir : a folder where the finished SVI stage and, every few iterations, the NUTS
        states and draws are saved (:mod:`~bayesode.infer.event_checkpoint`); the same fit with the
        same folder continues where it ended, with the draws of an unbroken run.

    Returns
    -------
    JumpFilterFit
        ``settings["method"]``, ``["wall_time_s"]``, ``["map_final_loss"]`` (the MAP's negative log
        density); for NUTS also ``["divergences"]``; for SVI ``losses`` per step; for Laplace
        ``["prior_precision"]``, ``["laplace_tuning"]`` and ``["laplace_failed_draws"]``.
    """
    if method not in METHODS:
        raise ConfigError(f"`method`={method!r} is unknown; choose one of {list(METHODS)}.")
    for name, value in (("svi_steps", svi_steps), ("num_draws", num_draws), ("num_warmup", num_warmup),
                        ("num_samples", num_samples), ("num_chains", num_chains)):  # fmt: skip
        positive_int(name, value)
    positive_int("map_steps", map_steps, allow_zero=True)
    positive_int("map_starts", map_starts)
    if method == "laplace":
        if not map_steps:
            raise ConfigError("`method`='laplace' is a Gaussian at the MAP: give `map_steps` > 0.")
        if not isinstance(weight_prior, (Normal, type(None))):
            raise ConfigError(f"`method`='laplace' needs a Normal `weight_prior` (a Gaussian prior on every weight); "
                              f"got {type(weight_prior).__name__}. Use method='svi' or 'nuts' for it.")  # fmt: skip
        if prior_precision is not None:
            prior_precision = positive_number("prior_precision", prior_precision)
    learning_rate = positive_number("learning_rate", learning_rate)
    if net.obs_dim != data.obs_dim:
        raise ConfigError(f"`net` observes {net.obs_dim} coordinates but `data` has {data.obs_dim}.")
    key = as_key(key)
    config = filter_config() if config is None else config
    model = make_jump_filter_model(net, weight_prior=weight_prior, config=config)
    arrays = _model_arrays(data)
    k_map, k_svi, k_draw, k_nuts = jax.random.split(key, 4)
    settings = dict(method=method, versions=package_versions())
    fixed = dict(method=method, map_steps=map_steps, map_starts=map_starts, svi_steps=svi_steps,
                 learning_rate=float(learning_rate), num_draws=num_draws, num_warmup=num_warmup,
                 num_samples=num_samples, num_chains=num_chains, prior_precision=prior_precision)  # fmt: skip
    named = dict(zip(("ts", "ys", "mask"), arrays))
    checkpoint = EventCheckpoint(checkpoint_dir, {**fixed, **fingerprint(named, net, weight_prior, config, key)})
    samples, losses = None, None
    start = time.time()
    weights = jax.tree.leaves(eqx.partition(net, eqx.is_inexact_array)[0])
    init = {name: leaf for (name, _), leaf in zip(net_sites(net), weights)}
    template = init
    if map_steps:
        init, _, start_loss = map_stage(model, init, named, k_map, steps=map_steps, starts=map_starts,
                                        learning_rate=learning_rate, checkpoint=checkpoint, progress=progress,
                                        caller="fit_jump_filter")  # fmt: skip
        settings.update(map_steps=map_steps, map_starts=map_starts, map_final_loss=float(np.min(start_loss)),
                        map_start_loss=start_loss.tolist())  # fmt: skip
    if method == "laplace":
        prior_scale = 1.0 if weight_prior is None else float(weight_prior.scale)
        found = checkpoint.stage("laplace", lambda: _laplace(net, model, prior_scale, template, init,
                                                             arrays, data.lengths, config, k_draw, num_draws,
                                                             prior_precision, map_steps, float(learning_rate)),
                                 what=f"Laplace at the MAP ({num_draws} draws, {{how}})", progress=progress)  # fmt: skip
        samples = {k: np.asarray(v)[None] for k, v in found["draws"].items()}
        failed = int(found["failed"])
        settings.update(num_draws=int(num_draws - failed), prior_precision=float(found["alpha"]),
                        laplace_tuning=np.asarray(found["tried"]).tolist(), laplace_failed_draws=failed)  # fmt: skip
        if failed:
            warnings.warn(f"fit_jump_filter: {failed} of {num_draws} Laplace draws had a failed solve on the data and "
                          f"were dropped{'; most of the posterior is unusable' if failed > num_draws // 2 else ''}.",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
    if method in ("svi", "svi+nuts"):
        svi_settings = SviSettings(svi_steps, float(learning_rate), init_scale=0.01)  # analytic KL, cosine to 10%

        def run_svi():
            result = fit_svi(model, init, named, k_svi, svi_settings)
            return {"params": result["params"], "losses": result["svi_loss"], "centre": result["start"]}

        found = checkpoint.stage("svi", run_svi, what=f"SVI ({svi_steps} Adam steps, {{how}})", progress=progress)
        losses = np.asarray(found["losses"])
        settings.update(svi_steps=svi_steps, learning_rate=learning_rate, final_loss=float(losses[-1]))
        if method == "svi":
            params = {k: jnp.asarray(v) for k, v in found["params"].items()}
            draws = draw_svi(model, init, params, named, k_draw, num_draws, svi_settings)
            samples = {k: np.asarray(v)[None] for k, v in draws.items() if k.startswith("njode")}
            settings.update(num_draws=num_draws)
        else:
            centre = {k: jnp.asarray(v) for k, v in found["centre"].items()}
    if method in ("nuts", "svi+nuts"):
        if method == "svi+nuts":
            init = centre
        elif not map_steps:
            init = init_to_median()
        draws, diverging, interrupted = sample_nuts(model, init, named, k_nuts, num_warmup=num_warmup,
                                                    num_samples=num_samples, num_chains=num_chains, max_tree_depth=8,
                                                    progress=progress, checkpoint=checkpoint, name="fit_jump_filter")  # fmt: skip
        samples = {k: np.asarray(v) for k, v in draws.items() if k.startswith("njode")}
        settings.update(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                        divergences=int(diverging.sum()), interrupted=interrupted)  # fmt: skip
        if interrupted:
            warnings.warn(f"fit_jump_filter interrupted: kept {num_chains} x {diverging.shape[1]} NUTS draws (chains x "
                          f"draws) of {num_chains} x {num_samples}.", RuntimeWarning, stacklevel=2)  # fmt: skip
    settings["wall_time_s"] = time.time() - start
    return JumpFilterFit(net=net, samples=samples, data=data, config=config, settings=settings, losses=losses)


def _laplace(net, model, prior_scale, template, centre, arrays, lengths, config, key, num_draws, prior_precision,
             map_steps, learning_rate):  # fmt: skip
    """The Laplace stage: ``alpha`` (given, or tuned on held-out observations), then ``num_draws`` draws at
    the MAP ``centre`` (those whose solve fails on the data dropped). ``template``: the MAP's start."""
    ts, ys, mask = arrays
    k_map, k_tune, k_draw = jax.random.split(key, 3)
    alpha, tried = prior_precision, np.zeros((0, 2))
    if alpha is None:
        fit_mask, later = tuning_split(mask, lengths)
        if later.sum() < MIN_TUNING_ENTRIES:
            alpha = 1.0 / prior_scale**2
            warnings.warn(f"fit_jump_filter: the observations held out to tune on hold {int(later.sum())} observed "
                          f"entries, too few to tune the Laplace prior precision on (at least {MIN_TUNING_ENTRIES}); "
                          f"used the weight prior's own, {alpha:g}: the Laplace approximation of the stated prior, "
                          "whose bands are wide. Give `prior_precision` to choose.", RuntimeWarning, stacklevel=3)  # fmt: skip
        else:
            values, _, _ = fit_map(model, template, dict(ts=ts, ys=ys, mask=jnp.asarray(fit_mask)), k_map, map_steps,
                                   learning_rate, caller="fit_jump_filter")  # fmt: skip
            tune_centre = {k: jnp.asarray(values[k]) for k in template}
            tune_gaussian = LaplaceGaussian(tune_centre, gauss_newton(net, tune_centre, ts, ys, fit_mask, config))
            coverage_of = lambda draws: one_step_coverage(net, draws, ts, ys, mask, config, 0.9, later)  # noqa: E731
            tuned = tune_prior_precision(tune_gaussian, coverage_of, 1.0 / prior_scale**2, k_tune, 0.9)
            alpha, tried = tuned["alpha"], np.asarray(tuned["tried"], np.float64).reshape(-1, 2)
    gaussian = LaplaceGaussian(centre, gauss_newton(net, centre, ts, ys, mask, config))
    draws = gaussian.draws(alpha, jax.random.normal(k_draw, (num_draws, gaussian.size)))
    failed = failed_draws(net, draws, ts, ys, mask, config)
    if failed.all():
        raise FitFailedError(f"fit_jump_filter: every one of the {num_draws} Laplace draws (prior precision {alpha:g}) "
                             "had a failed solve on the data; give a larger `prior_precision` or `config` a larger "
                             "`max_steps`.")  # fmt: skip
    kept = {k: np.asarray(v)[~failed] for k, v in draws.items()}
    return {"draws": kept, "alpha": np.asarray(alpha), "tried": tried, "failed": np.asarray(failed.sum())}


def filter_online(fit: JumpFilterFit, ts, ys, mask=None, *, query_ts, series=0, states: FilterState | None = None,
                  prob: float = 0.9, max_draws: int | None = 200) -> tuple[Forecast, FilterState]:  # fmt: skip
    """Update a fitted filter with new observations and forecast, without refitting.

    Parameters
    ----------
    fit : JumpFilterFit
    ts, ys, mask : (k,), (k, D), (k, D) new observations of ``series``, at or after
        its last observation; NaN in ``ys`` (or ``mask`` False) marks a missing entry.
    query_ts : (q,) times to forecast at, not before the last fitted observation.
    states : FilterState, optional
        Where the filter stands (per draw), as returned by the previous call;
        default: after the fitted data of ``series``.

    Returns
    -------
    (Forecast, FilterState)
        The forecast given every observation so far, and the states to pass to
        the next call. Equal, up to solver round-off, to refiltering all
        observations from the start (:meth:`JumpFilterFit.with_observations`).
    """
    i = fit.series_index(series)
    ts, ys, mask = check_new_observations(fit.data, i, ts, ys, mask)
    last = fit.data.ts[i, fit.data.lengths[i] - 1]
    if np.min(query_ts) < last:
        raise DataError(f"`query_ts` must not precede the last fitted observation ({last}); got {np.min(query_ts)}.")
    states = fit.filter_states(series=i, max_draws=max_draws) if states is None else states
    draws = fit.flat_draws(max_draws)
    forecast = forecast_from(fit.net, draws, ts, np.nan_to_num(ys), mask, query_ts, config=fit.config, prob=prob,
                             states=states)  # fmt: skip
    new_states = jax.vmap(lambda w, s: filter_observations(net_from_draw(fit.net, w), ts, np.nan_to_num(ys), mask,
                                                           state=s, config=fit.config).final)(draws, states)  # fmt: skip
    return forecast, new_states


def njode_loss(net, ts, ys, mask, config=None):
    """The paper's loss (Herrera et al. 2021, eq. 5, with a mask as in Krach et al.), averaged over series:

    ``mean_i (|m_i (x_i - Y(t_i))| + |m_i (Y(t_i) - Y(t_i-))|)^2`` over each series'
    real observations, with ``Y = readout(h)`` just after and just before each jump.
    """
    config = filter_config() if config is None else config

    def one(t, y, m):
        f = filter_observations(net, t, y, m, config=config)
        after = jax.vmap(net.readout)(f.h_after)
        before = jax.vmap(net.readout)(f.h_before)
        norm = lambda v: jnp.sqrt(jnp.sum(jnp.where(m, v, 0.0) ** 2, axis=-1) + 1e-12)  # noqa: E731
        seen = jnp.any(m, -1)
        terms = jnp.where(seen, (norm(y - after) + norm(after - before)) ** 2, 0.0)
        failed = jnp.any((f.status != 0) & seen)
        return jnp.where(failed, jnp.inf, jnp.sum(terms) / jnp.maximum(jnp.sum(seen), 1))

    return jnp.mean(jax.vmap(one)(ts, ys, mask))


def fit_njode_point(net, data: IrregularData, *, steps: int = 2000, learning_rate: float = 0.01, config=None):
    """Train ``net`` by Adam on :func:`njode_loss` (full batch): the point-estimate NJ-ODE.

    The paper's NJ-ODE is ``NeuralJumpODE(anchored=False)``: its loss's second term asks for what
    an anchored net does by construction (on an anchored net that term is zero).

    Deterministic given ``net``'s initial weights. Returns ``(trained net, losses (steps,))``;
    a step with a non-finite loss (a failed solve) is skipped.
    """
    steps = positive_int("steps", steps)
    arrays = _model_arrays(data)
    config = filter_config() if config is None else config
    optim = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(learning_rate))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    loss_of = lambda p: njode_loss(eqx.combine(p, static), *arrays, config)  # noqa: E731

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, new_state = optim.update(grads, opt_state, params)
        ok = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        return keep(optax.apply_updates(params, updates), params), keep(new_state, opt_state), loss

    opt_state = optim.init(params)
    losses = np.empty(steps)
    for s in range(steps):
        params, opt_state, loss = step(params, opt_state)
        losses[s] = float(loss)
    return eqx.combine(params, static), losses

