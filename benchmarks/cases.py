"""Benchmark cases. Each case function takes ``quick`` and returns a list of result rows (dicts).

Rows share the keys ``case``, ``tool`` and ``variant``; see README.md for the figures.
A case runs in its own process (``run.py`` spawns one per case and repeat), so
``peak_rss_mb`` is that case's own peak.
"""

from __future__ import annotations

import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import PhaseClock, ess_figures, posterior_figures, time_gradient

import bayesode as bo


def lynx_hare():
    return bo.datasets.load("lynx_hare").to_data()


def _nuts_row(case, tool, variant, fit, warmup, after=None, **extra):
    """Run ``fit()`` (a run_nuts/run_svi_nuts call) under a PhaseClock and return its row."""
    clock = PhaseClock(warmup)
    with clock:
        post = fit()
    row = {"case": case, "tool": tool, "variant": variant, **extra}
    row.update(posterior_figures(post, clock))
    if after is not None:  # figures a case adds from the posterior (after the clock)
        row.update(after(post))
    if "svi_wall_time_s" in post.settings:
        # SVI ran before NUTS inside the clock: it is part of the run, counted apart.
        row["svi_s"] = post.settings["svi_wall_time_s"]
    return row


# ---------------------------------------------------------------- 1. Lotka-Volterra, lynx-hare
def lv_sizes(quick):
    return (
        dict(num_chains=2, num_warmup=200, num_samples=200)
        if quick
        else dict(num_chains=4, num_warmup=1000, num_samples=1000)
    )


def case_lv(
    quick, *, variant="parallel, one device per core", dense_mass=False, target_accept_prob=0.8, chain_method="parallel", **model_kw
):
    data = lynx_hare()
    model = bo.models.lotka_volterra(**model_kw)
    sz = lv_sizes(quick)

    def fit():
        return bo.run_nuts(
            model,
            data,
            key=jr.key(1),
            progress=False,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            chain_method=chain_method,
            **sz,
        )

    return [_nuts_row("lv", "bayesode", variant, fit, sz["num_warmup"], **sz)]


def case_lv_report_every_gradient(quick):
    """Diagnostic: LV with the failure-report host callback on at every gradient (the design before
    replaying diverged iterations; see ``bayesode.solving.failures``). Same draws and counts, slower."""
    import bayesode.infer.chunks

    bayesode.infer.chunks._REPORT_EVERY_ITERATION = True
    return [dict(r, case="lv") for r in case_lv(quick, variant="failure report at every gradient (diagnostic)")]


def case_lv_settings(quick):
    """NUTS settings that run_nuts exposes, on the LV model (throughput, not just speed)."""
    rows = []
    for variant, kw in [
        ("dense_mass", dict(dense_mass=True)),
        ("target_accept=0.95", dict(target_accept_prob=0.95)),
        ("checkpoint adjoint", dict(adjoint="checkpoint")),
        ("rtol=1e-5,atol=1e-3 (Stan case study)", dict(rtol=1e-5, atol=1e-3)),
    ]:
        rows += [dict(r, case="lv-settings") for r in case_lv(quick, variant=variant, **kw)]
    return rows


def case_lv_parallel(quick):
    """chain_method='parallel' (one device per chain group; run with 2 host devices)."""
    return [
        dict(r, case="lv-chains")
        for r in case_lv(quick, variant=f"parallel ({jax.device_count()} devices)", chain_method="parallel")
    ]


def case_lv_vectorized(quick):
    return [dict(r, case="lv-chains") for r in case_lv(quick, variant="vectorized", chain_method="vectorized")]


def case_lv_sequential(quick):
    """One chain at a time, unbatched: each pays its own tree, and its solves run without vmap's selects."""
    return [dict(r, case="lv-chains") for r in case_lv(quick, variant="sequential", chain_method="sequential")]


def case_lv_forward_mode(quick):
    """The LV preset with diffrax.ForwardMode() (jacfwd over the log density) instead of ForwardSensitivity."""
    return [dict(r, case="lv-adjoint") for r in case_lv(quick, variant="diffrax ForwardMode", adjoint="forward")]


# ---------------------------------------------------------------- 2. spiral Bayesian neural ODE
class CubedInput(eqx.Module):
    """``du/dt = mlp(u**3)``: the DiffEqFlux tutorial's field (cubing is the first layer there)."""

    mlp: bo.MLPField
    state_dim: int = eqx.field(static=True)

    def __init__(self, mlp):
        self.mlp = mlp
        self.state_dim = mlp.state_dim

    def __call__(self, t, y, args):
        return self.mlp.network(y**3)


def spiral_data(heldout=False):
    """The tutorial's 40 points on t <= 1 (``heldout=True``: the rest of the spiral, 1 < t <= 1.5)."""
    d = bo.datasets.load("spiral")
    keep = np.flatnonzero(d.ts <= 1.0)[:40]
    if heldout:
        keep = np.flatnonzero(d.ts > d.ts[keep[-1]])
    return bo.make_data(d.ts[keep], d.ys[keep], state_names=d.state_names)


def spiral_model(cubed, tutorial=True):
    """``tutorial=True``: the DiffEqFlux tutorial's model. Its log density is ``-sum(err^2) - sum(theta^2)``:
    weights ~ N(0, 1/sqrt 2) and a *known* noise scale 1/sqrt 2; Tsit5 at DifferentialEquations.jl's
    default tolerances (rtol 1e-3, atol 1e-6). ``tutorial=False``: the noise scale is learned
    (bayesode's default prior) and rtol = atol = 1e-6: the data pin the trajectory to their own
    (~0.005) noise, a much sharper posterior."""
    mlp = bo.MLPField(2, width=50, depth=1, activation="tanh", form="additive", key=jr.key(0))
    field = CubedInput(mlp) if cubed else mlp
    if tutorial:
        return bo.make_model(field, weight_prior=bo.Normal(0.7071), likelihood=bo.NormalNoise(sigma=0.7071),
                             solver=bo.SolverConfig(rtol=1e-3, atol=1e-6))  # fmt: skip
    return bo.make_model(field, weight_prior=bo.Normal(0.7071), likelihood=bo.NormalNoise())


def heldout_coverage(post, level=0.9) -> dict:
    """Share of the held-out spiral points (t > 1) inside the posterior predictive ``level`` interval
    (noisy ``obs``), and inside the band of the trajectory itself (the field's uncertainty alone)."""
    test = spiral_data(heldout=True)
    pred = post.predict(test.ts[0], key=0)
    out = {}
    for var, label in (("obs", ""), ("trajectory", "_trajectory")):
        v = pred[var].values[:, :, 0]  # (chain, draw, time, state)
        lo, hi = np.quantile(v.reshape(-1, *v.shape[2:]), [(1 - level) / 2, (1 + level) / 2], axis=0)
        out[f"heldout{label}_coverage_90"] = float(np.mean((test.ys[0] >= lo) & (test.ys[0] <= hi)))
        out[f"heldout{label}_interval_width"] = float(np.mean(hi - lo))
    return out


def case_spiral(quick, cubed=False):
    """Yields rows as they finish, so a timeout keeps the finished ones (the learned-noise variant is last:
    it is the slow one). With 2+ devices (``run.py`` gives this case two CPU devices) the tutorial model
    also runs with ``chain_method="parallel"``: one chain per core."""
    data = spiral_data()
    nuts = (
        dict(num_chains=2, num_warmup=100, num_samples=100)
        if quick
        else dict(num_chains=2, num_warmup=500, num_samples=500)
    )
    svi_steps = 300 if quick else 2000
    name = "NN(u^3)" if cubed else "NN(u)"
    methods = (["parallel"] if jax.device_count() >= 2 else []) + ["vectorized"]
    for tutorial in (True, False):
        model = spiral_model(cubed, tutorial)
        n_weights = sum(int(np.size(x)) for x in jax.tree.leaves(eqx.filter(model.spec.field, eqx.is_inexact_array)))
        noise = "tutorial model, known noise" if tutorial else "learned noise, rtol 1e-6"
        fits = []
        for method in methods if tutorial else ["vectorized"]:
            fits.append((f"NUTS {method}", functools.partial(bo.run_nuts, model, data, key=jr.key(1), progress=False,
                                                             chain_method=method, **nuts), {}))  # fmt: skip
        if not tutorial:
            fit = functools.partial(bo.run_svi_nuts, model, data, key=jr.key(1), svi_steps=svi_steps, progress=False,
                                    **nuts)  # fmt: skip
            fits.append(("SVI+NUTS", fit, {"svi_steps": svi_steps}))
        for method, fit, extra in fits:
            yield _nuts_row("spiral", "bayesode", f"{name} {method}, {noise}", fit, nuts["num_warmup"],
                            after=heldout_coverage, weights=n_weights, **extra, **nuts)  # fmt: skip


def case_spiral_cubed(quick):
    yield from case_spiral(quick, cubed=True)


# ---------------------------------------------------------------- 3. neural ODE on lynx-hare
def case_neural_lh(quick):
    data = lynx_hare()
    model = bo.models.neural(data=data)
    nuts = (
        dict(num_chains=2, num_warmup=100, num_samples=100)
        if quick
        else dict(num_chains=4, num_warmup=500, num_samples=500)
    )
    svi_steps = 300 if quick else 2000

    def fit():
        return bo.run_svi_nuts(model, data, key=jr.key(1), svi_steps=svi_steps, progress=False, **nuts)

    def fit_neural_linear():  # what `bayesode fit` does
        return bo.run_neural_linear(model, data, key=jr.key(1), hidden_svi_steps=svi_steps, progress=False,
                                    max_tree_depth=6, **nuts)  # fmt: skip

    return [
        _nuts_row("neural-lh", "bayesode", "SVI+NUTS width 8", fit, nuts["num_warmup"], svi_steps=svi_steps, **nuts),
        _nuts_row("neural-lh", "bayesode", "neural-linear (main job)", fit_neural_linear, nuts["num_warmup"],
                  svi_steps=svi_steps, **nuts),  # fmt: skip
    ]


# ---------------------------------------------------------------- 4. scaling of the gradient
def _simulated(num_series, num_times, key=0):
    """Noisy Lotka-Volterra series (positive, O(10)) on t in [0, 10]."""
    rng = np.random.default_rng(key)
    field = bo.lotka_volterra_field(0.55, 0.028, 0.8, 0.024)
    ts = np.linspace(0.0, 10.0, num_times)
    y0 = rng.uniform(10.0, 40.0, size=(num_series, 2))
    sol = bo.solve_series(
        field,
        jnp.asarray(y0, jnp.float32),
        jnp.tile(jnp.asarray(ts, jnp.float32), (num_series, 1)),
        jnp.zeros(num_series, jnp.float32),
    )
    ys = np.asarray(sol.ys) * np.exp(0.1 * rng.standard_normal(sol.ys.shape))
    if num_series == 1:
        return bo.make_data(ts, ys[0])
    return bo.make_data([ts] * num_series, list(ys))


def case_scaling(quick, grids=None, case="scaling"):
    grids = grids or {
        "times": [10, 100] if quick else [10, 30, 100, 300, 1000],
        "width": [16, 64] if quick else [16, 32, 64, 128, 256],
        "series": [1, 10] if quick else [1, 10, 100, 1000],
    }
    rows = []
    for axis, values in grids.items():
        for v in values:
            n_times, width, n_series = 20, 16, 1
            if axis == "times":
                n_times = v
            elif axis == "width":
                width = v
            else:
                n_series = v
            data = _simulated(n_series, n_times)
            for kind in ("neural", "lotka-volterra"):
                if kind == "lotka-volterra" and axis == "width":
                    continue
                model = bo.models.neural(data=data, width=width) if kind == "neural" else bo.models.lotka_volterra()
                r = time_gradient(model, data.model_data(), repeats=5 if quick else 15)
                rows.append(
                    {
                        "case": case,
                        "tool": "bayesode",
                        "variant": f"{kind} {axis}={v}",
                        "axis": axis,
                        "value": v,
                        "model": kind,
                        "num_times": n_times,
                        "width": width,
                        "num_series": n_series,
                        "dim": r["dim"],
                        "time_per_grad_us": 1e6 * r["grad_s"],
                        "compile_init_s": r["compile_s"],
                        "grad_finite": r["finite"],
                    }
                )
    return rows


def case_series_devices(quick):
    """Series split across devices (``bo.shard_series``) vs one device: time per gradient, same process.

    Run with 2 host devices (one per core); the two programs are timed in alternation so
    that load on the shared machine hits both alike.
    """
    from _common import block, grad_fn, potential_of, time_call

    rows = []
    n_devices = jax.device_count()
    for n_series in [10, 100] if quick else [10, 100, 1000]:
        data = _simulated(n_series, 20)
        md = data.model_data()
        for kind in ("lotka-volterra", "neural"):
            # the LV preset's forward mode would take one direction per series' initial state
            base = (
                bo.models.neural(data=data, width=16)
                if kind == "neural"
                else bo.models.lotka_volterra(adjoint="checkpoint")
            )
            fns = {}
            for label, model in [("1 device", base), (f"{n_devices} devices", bo.shard_series(base))]:
                potential_fn, z = potential_of(model, md)
                f = grad_fn(potential_fn, False)
                t = time.perf_counter()
                block(f(z))
                fns[label] = (f, z, time.perf_counter() - t)
            times = {label: [] for label in fns}
            for _ in range(3 if quick else 7):  # interleaved rounds
                for label, (f, z, _) in fns.items():
                    times[label].append(time_call(f, z, repeats=3))
            one = float(np.median(times["1 device"]))
            for label, (_, _, compile_s) in fns.items():
                per = float(np.median(times[label]))
                rows.append(
                    {
                        "case": "series-devices",
                        "tool": "bayesode",
                        "variant": f"{kind} series={n_series} {label}",
                        "model": kind,
                        "num_series": n_series,
                        "devices": 1 if label == "1 device" else n_devices,
                        "time_per_grad_us": 1e6 * per,
                        "speedup_vs_1_device": one / per,
                        "compile_init_s": compile_s,
                    }
                )
    return rows


def case_many_series(quick):
    """Thousands of series sharing one field, vectorised: where an accelerator should win."""
    return case_scaling(quick, {"series": [100, 1000] if quick else [1000, 4000, 10000]}, case="many-series")


# ---------------------------------------------------------------- 5. solver configurations (per gradient)
def solver_configs():
    import diffrax

    F, C = diffrax.ForwardMode(), diffrax.RecursiveCheckpointAdjoint
    return {
        "sensitivity (LV preset)": dict(adjoint=bo.ForwardSensitivity()),
        "sensitivity Stan tolerances": dict(adjoint=bo.ForwardSensitivity(), rtol=1e-5, atol=1e-3),
        "forward Tsit5 rtol1e-6 f32": dict(adjoint=F),
        "forward Dopri5": dict(adjoint=F, solver=diffrax.Dopri5()),
        "forward rtol1e-5": dict(adjoint=F, rtol=1e-5, atol=1e-5),
        "forward rtol1e-5 atol1e-3 (Stan)": dict(adjoint=F, rtol=1e-5, atol=1e-3),
        "forward max_steps=256": dict(adjoint=F, max_steps=256),
        "checkpoint (default)": dict(adjoint=C()),
        "checkpoint checkpoints=16": dict(adjoint=C(checkpoints=16)),
        "checkpoint checkpoints=64": dict(adjoint=C(checkpoints=64)),
        "checkpoint checkpoints=256": dict(adjoint=C(checkpoints=256)),
        "checkpoint max_steps=256": dict(adjoint=C(), max_steps=256),
        "checkpoint Dopri5": dict(adjoint=C(), solver=diffrax.Dopri5()),
        "checkpoint rtol1e-5": dict(adjoint=C(), rtol=1e-5, atol=1e-5),
    }


def lv_model_with(cfg):
    import numpyro.distributions as dist

    return bo.make_model(
        bo.lotka_volterra_field(),
        param_priors=bo.models.lotka_volterra_priors(),
        y0_prior=dist.LogNormal(np.log(10.0), 1.0),
        likelihood=bo.LogNormalNoise(),
        solver=cfg,
    )


def case_solver(quick, rounds=None):
    """Per-gradient cost of the LV potential under SolverConfig choices, timed in interleaved rounds."""
    from _common import block, grad_fn, potential_of, time_call

    md = lynx_hare().model_data()
    x64 = bool(jax.config.jax_enable_x64)
    fns = {}
    for name, kw in solver_configs().items():
        if quick and name not in ("sensitivity (LV preset)", "forward Tsit5 rtol1e-6 f32", "checkpoint (default)"):
            continue
        model = lv_model_with(bo.SolverConfig(**kw))
        pf, z = potential_of(model, md)
        f = grad_fn(pf, model.spec.solver.forward_mode)
        t = time.perf_counter()
        block(f(z))
        fns[name] = (f, z, time.perf_counter() - t, [])
    # Interleave the timings so a burst of load on a shared machine hits every config alike.
    for _ in range(rounds or (2 if quick else 7)):
        for f, z, _, times in fns.values():
            times.append(time_call(f, z, repeats=3, min_time=0.1))
    return [
        {
            "case": "solver",
            "tool": "bayesode",
            "variant": name + (" x64" if x64 else ""),
            "x64": x64,
            "time_per_grad_us": 1e6 * min(times),
            "time_per_grad_median_us": 1e6 * float(np.median(times)),
            "compile_init_s": c,
        }
        for name, (f, z, c, times) in fns.items()
    ]


CASES = {
    "lv": case_lv,
    "lv-report-every-gradient": case_lv_report_every_gradient,
    "lv-settings": case_lv_settings,
    "lv-vectorized": case_lv_vectorized,
    "lv-parallel": case_lv_parallel,
    "lv-parallel-4": case_lv_parallel,
    "lv-sequential": case_lv_sequential,
    "lv-forward-mode": case_lv_forward_mode,
    "spiral": case_spiral,
    "spiral-cubed": case_spiral_cubed,
    "neural-lh": case_neural_lh,
    "scaling": case_scaling,
    "many-series": case_many_series,
    "series-devices": case_series_devices,
    "solver": case_solver,
    "solver-x64": case_solver,
}
__all__ = ["CASES", "ess_figures"]
