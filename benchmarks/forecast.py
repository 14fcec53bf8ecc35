"""Held-out forecasting: every method side by side on problems with a held-out future.

    python benchmarks/forecast.py            # full sizes (hours on 2 shared cores)
    python benchmarks/forecast.py --quick    # small sizes, to see the table in minutes per cell
    python benchmarks/forecast.py --quick --problems lynx_hare --methods neural-linear,stacked

Problems (train on the early part, score the held-out later points):
  lynx_hare   bundled; train 1900-1914, hold out 1915-1920 (6 years)
  spiral      bundled cubic spiral; train on the first 2/3 of the times
  ude_lv      Lotka-Volterra simulated as in Rackauckas et al. 2020 (alpha 1.3, beta 0.9,
              gamma 0.8, delta 1.8, y0 (0.44, 4.6), 5% log-normal noise); train t <= 3, hold out
              3 < t <= 4.5; the neural methods fit the universal DE (LV law + neural correction)
  pendulum    bundled damped pendulum; train on the first 2/3
Methods:
  neural-linear   run_neural_linear (what `bayesode fit` does by default; models.neural only, so not ude_lv)
  map-ensemble    a deep ensemble: the members' MAP points (map_points), no sampling
  nuts-single     NUTS over every weight from one MAP start (one chain)
  stacked         fit_full_weight: members from MAP starts, NUTS each, stacking on leave-future-out
  laplace-mix     fit_full_weight(method="laplace") (`bayesode fit --bayesian-layers all`): an equal-weight
                  mixture of Laplace approximations at the members' MAP points (every latent, NumPyro's
                  unconstrained space; exact Hessian, forward over forward mode; eigenvalues floored at a
                  precision chosen by leave-future-out: members fitted without the training points after
                  60%, 70%, 80% of the training times, each floor scored on the rest)
  laplace-weighted  laplace-mix with weighting="stacking": members weighted by stacking on their own
                  held-out densities at the origins (the chosen floor)
  svi-mix         an equal-weight mixture of full-rank SVI fits of every weight from different seeds (the
                  fit neural-linear's hidden layer comes from), draws pushed through the net; prototype
  svi-nuts        run_svi_nuts over every weight (one full-rank SVI fit, 4 NUTS chains near it); prototype
  laplace-glm     the members and Gaussians of the prototype below (_laplace_components), with the predictive linearised in the latents: the observation
                  location is its value at each member's centre plus its Jacobian times the draw's offset (a GLM
                  predictive, Immer et al. 2021); the floor chosen the same way with this predictive; prototype
  laplace-stack   laplace-mix's members weighted by stacking on PSIS leave-future-out (the training points'
                  last third), draws resampled by the weights; prototype
  mechanistic     the Lotka-Volterra model (lynx_hare, ude_lv only)
Columns: cov50/cov90 (fraction of held-out points inside the central 50%/90% predictive
bands, noise included), mlpd (mean log predictive density per held-out point), crps (mean
continuous ranked probability score; lower is better), wall_s (fit, compile included),
compile_s (NUTS initialisation and compile, where reported), ess_s (median over members
or chains of the min bulk ESS of function-space quantities, per second of sampling per
member), rhat_fs (max within-member function-space R-hat).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn
from scipy.integrate import solve_ivp
from scipy.special import logsumexp

import bayesode as bo
from bayesode.diagnostics import fit_full_weight, function_space_report
from bayesode.infer import map_points
from bayesode.infer.ensemble import _default_lfo_start  # the start fit_full_weight(validation="lfo") uses
from bayesode.infer.laplace_members import _fit_members
from bayesode.infer.stacking import pointwise_lfo, stacking_weights
from bayesode.results.export import column_names

PROBLEMS = ("lynx_hare", "spiral", "ude_lv", "pendulum")
METHODS = ("neural-linear", "map-ensemble", "nuts-single", "stacked", "laplace-mix", "laplace-glm", "laplace-stack",
           "laplace-weighted", "svi-mix", "svi-nuts", "mechanistic")
SIZES = {
    "quick": dict(members=4, map_steps=300, warmup=100, samples=100, svi_steps=500, chains=2),
    "full": dict(members=8, map_steps=2000, warmup=500, samples=500, svi_steps=3000, chains=4),
}


def _split(data, train_until):
    """(train, full) Data: full keeps every point; train masks the held-out ones away."""
    ts, ys = data.ts[0], data.ys[0]
    keep = ts <= train_until
    train = bo.make_data(ts[keep], ys[keep], state_names=data.state_names, t0=float(data.t0[0]))
    full = bo.make_data(ts, ys, state_names=data.state_names, t0=float(data.t0[0]))
    return train, full


def _ude_lv():
    rng = np.random.default_rng(0)
    a, b, g, d = 1.3, 0.9, 0.8, 1.8
    ts = np.linspace(0.0, 4.5, 46)
    sol = solve_ivp(lambda t, y: [a * y[0] - b * y[0] * y[1], -g * y[1] + d * y[0] * y[1]], (0, 4.5), [0.44, 4.6],
                    t_eval=ts, rtol=1e-10, atol=1e-10)  # fmt: skip
    ys = sol.y.T * np.exp(0.05 * rng.standard_normal(sol.y.T.shape))
    return bo.make_data(ts, ys, state_names=["prey", "predator"]), 3.0


def problem(name, weight_scale=1.0):
    """(train, full, model_for(data), mechanistic model or None); ``weight_scale``: the neural
    models' weight prior N(0, weight_scale^2) (not the hybrid's correction)."""
    if name == "ude_lv":
        data, until = _ude_lv()
        train, full = _split(data, until)
        return train, full, lambda d, **kw: bo.models.hybrid(data=d, **kw), bo.models.lotka_volterra()
    data = bo.datasets.load({"pendulum": "damped_pendulum"}.get(name, name)).to_data()
    ts = data.ts[0]
    until = 1914.0 if name == "lynx_hare" else float(ts[int(len(ts) * 2 / 3) - 1])
    train, full = _split(data, until)
    if name == "lynx_hare":
        return train, full, lambda d, **kw: bo.models.neural(data=d, weight_scale=weight_scale, **kw), bo.models.lotka_volterra()
    return train, full, lambda d, **kw: bo.models.neural(data=d, form="additive", likelihood="normal", weight_scale=weight_scale, **kw), None


def _score_arrays(ll, draws, y):
    """Coverage, mlpd and CRPS from ``ll`` and ``draws`` (draw, point) of the held-out points ``y`` (point,)."""
    ok = np.all(np.isfinite(draws), axis=1)  # failed solves give no prediction
    ll, draws = ll[ok], draws[ok]
    q = np.quantile(draws, [0.05, 0.25, 0.75, 0.95], axis=0)
    srt = np.sort(draws, axis=0)
    n = srt.shape[0]
    # CRPS = E|X - y| - E|X - X'| / 2, the second term from the sorted draws in O(n log n).
    spread = (2 * np.arange(1, n + 1) - n - 1) @ srt / n**2
    crps = np.mean(np.abs(draws - y), axis=0) - spread
    return {
        "cov50": float(np.mean((y >= q[1]) & (y <= q[2]))),
        "cov90": float(np.mean((y >= q[0]) & (y <= q[3]))),
        "mlpd": float(np.mean(logsumexp(ll, axis=0) - np.log(ll.shape[0]))),
        "crps": float(np.mean(crps)),
        "failed_draws": int((~ok).sum()),
    }


def scores(post, full, train_until):
    """Held-out coverage, mlpd and CRPS from ``post``'s draws scored on every point of ``full``."""
    scored = bo.Posterior(samples=post.samples, sample_stats={}, data=full, model=post.model, settings={})
    idata = scored.to_arviz(key=0)
    held = np.asarray(idata.log_likelihood["obs_time"].values) > train_until
    ll = np.asarray(idata.log_likelihood["obs"].values)[..., held].reshape(-1, int(held.sum()))
    # One observed variable per column; the joint log-likelihood lists the columns one after another.
    names = column_names(full, reserved=list(post.samples))
    pp = np.concatenate([np.asarray(idata.posterior_predictive[n].values) for n in names], axis=-1)
    draws = pp[..., held].reshape(-1, int(held.sum()))
    y = np.concatenate([np.asarray(idata.observed_data[n].values) for n in names])[held]
    return _score_arrays(ll, draws, y)


def _ess_rate(post, groups, sampling_s):
    rep = function_space_report(post, groups=groups, grid=np.zeros((0, post.model.spec.state_dim)))
    ess = [v["ess_bulk_min"] for v in rep["within"].values()]
    per_member_s = sampling_s / max(len(rep["within"]), 1)
    return float(np.nanmedian(ess)) / per_member_s, rep["rhat_within_max"]


LAPLACE_FLOORS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4)  # precision floors tried on validation
LAPLACE_ORIGINS = (0.6, 0.7, 0.8)  # leave-future-out: fit on this fraction of the training points, score the rest


def _laplace_components(model_for, data, size, seed):
    """Each finite MAP member: (centre, unravel, eigenvalues, eigenvectors) of the potential's exact Hessian at
    it, from the package's own member fits (bayesode.infer.laplace_members), for the prototypes below."""
    model, twin = model_for(data), model_for(data, adjoint="forward")
    members = _fit_members(model, twin, data, seed, size["members"], size["map_steps"])
    return model, [(np.asarray(c, members.dtype), members.unravel, w, v)
                   for c, w, v in zip(members.centres, members.eigenvalues, members.vectors)]  # fmt: skip


def _laplace_posterior(model, data, comps, floor, seed, draws=400):
    """Equal-weight mixture of Normal(centre, H^-1) with H's eigenvalues floored at ``floor``, as a Posterior."""
    md = data.model_data()
    rng = np.random.default_rng(seed)
    parts = []
    for flat, unravel, eigenvalues, vectors in comps:
        z = rng.standard_normal((draws // len(comps), flat.size))
        u = flat.astype(np.float64)[None] + (z / np.sqrt(np.maximum(eigenvalues, floor))) @ vectors.T
        parts.append(jax.vmap(lambda f: constrain_fn(model, (md,), {}, unravel(f)))(jnp.asarray(u, flat.dtype)))
    samples = {k: np.concatenate([np.asarray(p[k]) for p in parts])[None] for k in parts[0]}
    return bo.Posterior(samples=samples, sample_stats={}, data=data, model=model, settings={"method": "laplace-mix", "num_members": len(comps)})


def _stack_members(post, train):
    """``post``'s draws resampled by stacking weights of its member blocks (PSIS-LFO on the training points,
    the last third predicted, as ``fit_full_weight(validation="lfo")`` weights NUTS members); and the weights."""
    idata = post.to_arviz(key=0)  # the key draws the predictive; the log-likelihood does not use it
    ll = np.asarray(idata.log_likelihood["obs"].values)[0]  # (draw, point), members in blocks
    times = np.asarray(idata.log_likelihood["obs_time"].values, dtype=np.float64)
    num_members = post.settings["num_members"]
    per = ll.shape[0] // num_members
    start = _default_lfo_start(train)
    lpd = np.stack([pointwise_lfo(ll[m * per:(m + 1) * per][None], times, start=start)[0] for m in range(num_members)], 1)
    w = stacking_weights(lpd)
    counts = np.floor(w * ll.shape[0] + np.linspace(0, 1, num_members, endpoint=False)).astype(int)  # rounded
    take = np.concatenate([m * per + np.arange(c) % per for m, c in enumerate(counts)])
    samples = {k: v[:, take] for k, v in post.samples.items()}
    return bo.Posterior(samples=samples, sample_stats={}, data=train, model=post.model,
                        settings={"method": "laplace-stack"}), w  # fmt: skip


def laplace_mixture(train, model_for, size, seed, score):
    """(model, members' components, chosen floor, validation mlpd per floor): leave-future-out over several
    origins. At each origin in LAPLACE_ORIGINS (a fraction of the training points) the members are fitted on the
    points up to it and every floor is scored on the rest of the training points by
    ``score(model, data, comps, eval_data, cut) -> {floor: mlpd}``; the floor with the best mean over the origins
    goes with the members fitted on all of them. Earlier origins forecast further ahead, as the held-out future
    asks, so one late origin alone favours floors that are too narrow."""
    ts = train.ts[0]
    per_origin = []
    for fraction in LAPLACE_ORIGINS:
        cut = float(ts[int(np.ceil(fraction * ts.size)) - 1])
        early, _ = _split(train, cut)
        model_early, comps = _laplace_components(model_for, early, size, seed)
        per_origin.append(score(model_early, early, comps, train, cut))
    valid = {f: float(np.mean([v[f] for v in per_origin])) for f in LAPLACE_FLOORS}  # nan where any origin failed
    floor = max(valid, key=lambda f: valid[f] if np.isfinite(valid[f]) else -np.inf)
    model, comps = _laplace_components(model_for, train, size, seed)
    return model, comps, floor, valid


def _floor_note(floor, valid):
    return f"floor {floor:g} (valid mlpd " + ", ".join(f"{f:g}: {v:.3g}" for f, v in valid.items()) + ")"


def _nonlinear_score(seed):
    """Floors scored with the mixture's draws pushed through the model (``laplace-mix``)."""
    return lambda model, data, comps, eval_data, cut: {
        f: scores(_laplace_posterior(model, data, comps, f, seed), eval_data, cut)["mlpd"] for f in LAPLACE_FLOORS
    }


def _observation_site(model, md, params):
    """The observation site's distribution, unmasked: Normal or LogNormal over (series, time, observed)."""
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(md)
    fn = tr["obs"]["fn"]
    return getattr(fn, "base_dist", fn), tr


def _linearisation(model_for, data, comps, eval_data):
    """Per member: the observation location at its centre on ``eval_data``'s times and its Jacobian in the
    unconstrained latents (forward mode through the ForwardMode twin), and how to map draws to the noise scale."""
    twin = model_for(data, adjoint="forward")
    md = eval_data.model_data()
    unravel = comps[0][1]  # one structure: one compiled Jacobian for every member

    def loc(u):
        return _observation_site(twin, md, constrain_fn(twin, (md,), {}, unravel(u)))[0].loc

    jacobian = jax.jit(jax.jacfwd(loc))
    out = []
    for flat, _, _, _ in comps:
        base, tr = _observation_site(twin, md, constrain_fn(twin, (md,), {}, unravel(flat)))
        sigma_bij = biject_to(tr["sigma"]["fn"].support)
        jac = np.asarray(jacobian(jnp.asarray(flat)), np.float64)  # (series, time, observed, P)
        out.append((np.asarray(base.loc, np.float64), jac, type(base), sigma_bij))
    return out


def _linearised_draws(lin, comps, floor, eval_data, cut, seed, draws=400):
    """Log-likelihood and predictive draws (draw, point) of the held-out points (times after ``cut``) under the
    mixture whose observation location is linear in the latents around each member (a GLM predictive, Immer,
    Korzepa & Bauer 2021); the noise scale is each draw's own. Also the held-out observations (point,)."""
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    held = (eval_data.ts[0] > cut)[:, None] & eval_data.mask[0]
    y = np.asarray(eval_data.ys[0], np.float64)
    lls, preds = [], []
    for (flat, unravel, eigenvalues, vectors), (loc0, jac, family, sigma_bij) in zip(comps, lin):
        z = rng.standard_normal((draws // len(comps), flat.size))
        du = (z / np.sqrt(np.maximum(eigenvalues, floor))) @ vectors.T  # (draw, P)
        loc = loc0[None] + np.einsum("stop,np->nsto", jac, du)  # (draw, series, time, observed)
        sigma_u = np.stack([np.asarray(unravel(jnp.asarray(flat + d, flat.dtype))["sigma"]) for d in du])
        sigma = np.asarray(sigma_bij(jnp.asarray(sigma_u, flat.dtype)))
        d = family(jnp.asarray(loc, sigma.dtype), jnp.asarray(sigma)[:, None, None, :])
        key, sub = jax.random.split(key)
        lls.append(np.asarray(d.log_prob(jnp.asarray(y, sigma.dtype)[None, None]))[:, 0][:, held])
        preds.append(np.asarray(d.sample(sub))[:, 0][:, held])
    return np.concatenate(lls), np.concatenate(preds), y[held]


def _linearised_score(model_for, seed):
    """Floors scored with the linearised predictive (``laplace-glm``)."""
    def score(model, data, comps, eval_data, cut):
        lin = _linearisation(model_for, data, comps, eval_data)
        return {f: _score_arrays(*_linearised_draws(lin, comps, f, eval_data, cut, seed))["mlpd"]
                for f in LAPLACE_FLOORS}  # fmt: skip
    return score


def run_method(method, train, full, model_for, mechanistic, size, seed):
    """(posterior, extra columns) for one method, or None where it does not apply."""
    model = model_for(train)
    t0 = time.time()
    extra = {}
    if method == "neural-linear":
        if model.spec.recipe.get("kind") != "neural":  # freeze_hidden rebuilds models.neural only (not the hybrid)
            return None, {}
        post = bo.run_neural_linear(model, train, key=seed, hidden_svi_steps=size["svi_steps"],
                                    num_warmup=size["warmup"], num_samples=size["samples"],
                                    num_chains=size["chains"], progress=False)  # fmt: skip
        extra["ess_s"], extra["rhat_fs"] = _ess_rate(post, None, post.settings["wall_time_s"])
        extra["compile_s"] = post.settings["init_and_compile_s"]
    elif method == "map-ensemble":
        params, _, _ = map_points(model, train, key=seed, num_points=size["members"], num_steps=size["map_steps"])
        post = bo.Posterior(samples={k: v[None] for k, v in params.items()}, sample_stats={}, data=train,
                            model=model, settings={"method": "map-ensemble"})  # fmt: skip
    elif method == "nuts-single":
        params, _, _ = map_points(model, train, key=seed, num_points=1, num_steps=size["map_steps"])
        post = bo.run_nuts(model, train, key=seed, num_warmup=size["warmup"], num_samples=size["samples"],
                           num_chains=1, init_params=params, max_tree_depth=6, restart_stuck_chains=False,
                           progress=False)  # fmt: skip
        extra["ess_s"], extra["rhat_fs"] = _ess_rate(post, None, post.settings["wall_time_s"])
        extra["compile_s"] = post.settings["init_and_compile_s"]
    elif method == "stacked":
        post = fit_full_weight(model, train, key=seed, method="nuts", num_members=size["members"], map_steps=size["map_steps"],
                               num_warmup=size["warmup"], num_samples=size["samples"], validation="lfo",
                               progress=False)  # fmt: skip
        ens = post.settings["ensemble"]
        within = ens["report"]["within"]
        per_member_s = ens["nuts_wall_time_s"] / max(len(within), 1)
        extra["ess_s"] = float(np.nanmedian([v["ess_bulk_min"] for v in within.values()])) / per_member_s
        extra["rhat_fs"] = ens["report"]["rhat_within_max"]
        extra["compile_s"] = ens["nuts_init_and_compile_s"]
        extra["members"] = f"{len(within)}/{len(ens['starts'])}"
        extra["situation"] = ens["report"]["situation"]
    elif method == "laplace-mix":
        post = fit_full_weight(model, train, key=seed, method="laplace", num_members=size["members"],
                               map_steps=size["map_steps"], progress=False)  # fmt: skip
        ens = post.settings["ensemble"]
        extra["members"] = f"{len(ens['weights'])}/{size['members']}"
        extra["situation"] = _floor_note(ens["floor"], {row[0]: row[1] for row in ens["validation"]})
    elif method == "laplace-glm":
        model, comps, floor, valid = laplace_mixture(train, model_for, size, seed, _linearised_score(model_for, seed))
        lin = _linearisation(model_for, train, comps, full)
        extra["scores"] = _score_arrays(*_linearised_draws(lin, comps, floor, full, float(train.ts.max()), seed))
        post = comps  # not None: scored above, since this predictive is not the model's
        extra["members"] = f"{len(comps)}/{size['members']}"
        extra["situation"] = _floor_note(floor, valid)
    elif method == "laplace-stack":
        model, comps, floor, _ = laplace_mixture(train, model_for, size, seed, _nonlinear_score(seed))
        post, w = _stack_members(_laplace_posterior(model, train, comps, floor, seed), train)
        extra["members"] = f"{len(comps)}/{size['members']}"
        extra["situation"] = f"floor {floor:g}, weights " + " ".join(f"{x:.2f}" for x in w)
    elif method == "laplace-weighted":
        post = fit_full_weight(model, train, key=seed, method="laplace", weighting="stacking",
                               num_members=size["members"], map_steps=size["map_steps"], progress=False)  # fmt: skip
        ens = post.settings["ensemble"]
        extra["members"] = f"{len(ens['weights'])}/{size['members']}"
        extra["situation"] = f"floor {ens['floor']:g}; {ens['weighting']}; weights " + " ".join(
            f"{w:.2f}" for w in ens["weights"])
    elif method == "svi-mix":
        fits = [bo.run_svi(model, train, key=seed * 1000 + m, guide="full-rank", num_steps=size["svi_steps"],
                           num_draws=400 // size["members"], progress=False) for m in range(size["members"])]
        samples = {k: np.concatenate([np.asarray(f.samples[k]) for f in fits], axis=1) for k in fits[0].samples}
        post = bo.Posterior(samples=samples, sample_stats={}, data=train, model=model, settings={"method": "svi-mix"})
        extra["members"] = f"{len(fits)}"
        extra["situation"] = "final losses " + " ".join(f"{float(np.asarray(f.losses)[-1]):.4g}" for f in fits)
    elif method == "svi-nuts":
        post = bo.run_svi_nuts(model, train, key=seed, svi_steps=size["svi_steps"], num_warmup=size["warmup"],
                               num_samples=size["samples"], num_chains=size["chains"], max_tree_depth=6,
                               restart_stuck_chains=False, progress=False)  # fmt: skip
        extra["ess_s"], extra["rhat_fs"] = _ess_rate(post, None, post.settings["wall_time_s"])
        extra["compile_s"] = post.settings["init_and_compile_s"]
    elif method == "mechanistic":
        if mechanistic is None:
            return None, {}
        post = bo.run_nuts(mechanistic, train, key=seed, num_warmup=size["warmup"], num_samples=size["samples"],
                           num_chains=size["chains"], progress=False)  # fmt: skip
        extra["ess_s"], extra["rhat_fs"] = _ess_rate(post, None, post.settings["wall_time_s"])
        extra["compile_s"] = post.settings["init_and_compile_s"]
    else:
        raise ValueError(method)
    extra["wall_s"] = time.time() - t0
    return post, extra


COLUMNS = ("cov50", "cov90", "mlpd", "crps", "wall_s", "compile_s", "ess_s", "rhat_fs", "members", "situation")


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (see SIZES)")
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-scale", type=float, default=1.0, help="the neural models' weight prior scale (default 1)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    bo.enable_compilation_cache()
    size = SIZES["quick" if args.quick else "full"]
    rows = []
    header = f"{'problem':<10} {'method':<14} " + " ".join(f"{c:>9}" for c in COLUMNS)
    print(f"sizes: {size}; weight scale {args.weight_scale}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    print(header, flush=True)
    for name in args.problems.split(","):
        train, full, model_for, mechanistic = problem(name, args.weight_scale)
        until = float(train.ts.max())
        for method in args.methods.split(","):
            try:
                post, extra = run_method(method, train, full, model_for, mechanistic, size, args.seed)
                if post is None:
                    continue
                scored = extra.pop("scores") if "scores" in extra else scores(post, full, until)
                row = dict(problem=name, method=method, **scored, **extra)
            except Exception as e:  # one failing cell must not lose the table
                row = dict(problem=name, method=method, situation=f"error: {type(e).__name__}: {e}"[:200])
            rows.append(row)
            print(f"{name:<10} {method:<14} " + " ".join(f"{_fmt(row.get(c)):>9}" for c in COLUMNS), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
