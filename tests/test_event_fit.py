"""Fitting event sequences: plumbing of fit_events, the posterior intensity, forecasts, held-out
likelihood, InferenceData, the time-rescaling check and `bayesode events` (smoke: tiny fits)."""

import json
import os
import re
import sys
from dataclasses import replace

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesode.cli.main import main as cli_main
from bayesode.datasets import load_events, make_event_sequences
from bayesode.diagnostics import posterior_time_rescaling
from bayesode.errors import ConfigError, FitFailedError
from bayesode.infer import (
    fit_events,
    forecast_events,
    held_out_log_likelihood,
    intensity_bands,
    solve_draws,
    to_inference_data,
)
from bayesode.infer.event_draws import nuts_start
from bayesode.model import Normal
from bayesode.solving import SolverConfig

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _keypress import press_ctrl_c_at  # noqa: E402
from _nuts_start import driver_start  # noqa: E402

EVENTS = make_event_sequences([[0.4, 1.1, 1.3, 2.8, 3.5], [0.9, 2.0]], marks=[[0, 1, 0, 0, 1], [1, 1]], t_end=[4.0, 3.0])


@pytest.fixture(scope="module")
def fit():
    # Plumbing only: 20 MAP and 20 SVI steps, 2 x 4 draws from the guide.
    return fit_events(EVENTS, key=0, method="svi", map_steps=20, svi_steps=20, num_samples=4, num_chains=2, width=4)


def test_fit_shapes_bands_and_inference_data(fit):
    assert fit.samples["field.z0"].shape == (2, 4, 2)
    assert np.all(np.isfinite(fit.stats["svi_loss"]))
    ts = np.linspace(0.0, 4.0, 9)
    bands = intensity_bands(fit, ts)
    assert bands["mean"].shape == (2, 9, 2) and bands["draws"].shape == (8, 2, 9, 2)
    assert np.all(bands["lower"] <= bands["mean"] + 1e-6) and np.all(bands["mean"] <= bands["upper"] + 1e-6)
    assert np.all(bands["lower"] > 0)
    idata = to_inference_data(fit, ts)
    assert idata.posterior_predictive["intensity"].dims == ("chain", "draw", "sequence", "time", "mark")
    np.testing.assert_allclose(idata.posterior_predictive["time"].values, ts)
    ll = idata.log_likelihood["events"]
    assert ll.shape == (2, 4, 7)  # the 7 real events, no padding
    np.testing.assert_allclose(idata.constant_data["event_time"].values, [0.4, 1.1, 1.3, 2.8, 3.5, 0.9, 2.0])
    # The intensity at the save times is the one the per-event terms use: positive and finite.
    assert np.all(np.isfinite(ll.values))


def test_forecast_held_out_and_time_rescaling(fit):
    sim = forecast_events(fit, 2.0, key=1, max_events=50, num_draws=4)
    assert sim.times.shape == (4, 2, 50)
    t_end = np.array([4.0, 3.0])[None, :, None]
    times, mask = np.asarray(sim.times), np.asarray(sim.mask)
    assert np.all(~mask | ((times > t_end) & (times <= t_end + 2.0)))
    hist, fut = EVENTS.split(2.5)
    held = held_out_log_likelihood(fit, hist, fut)
    assert np.isfinite(held["total"]) and held["per_sequence"].shape == (2,)
    check = posterior_time_rescaling(fit, num_draws=4)
    assert check.increments.shape == (7,) and 0 <= check.pvalue <= 1


def test_map_warm_start_fits_a_poisson_rate():
    # 160 events of a homogeneous Poisson process (rate 4 on [0, 40]): at the MAP the intensity
    # should sit near the ML rate n / T, whatever the network (for any model with a free scale the
    # ML compensator equals n; the Normal(1) prior moves it little at 160 events). Tolerance 10%:
    # the posterior sd of a rate from 160 events is 8%, and the MAP may bend within it.
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0.0, 40.0, 160))
    ev = make_event_sequences([times], t_end=40.0)
    fit = fit_events(ev, key=1, method="svi", map_steps=150, svi_steps=1, num_samples=2, num_chains=1, width=4)
    assert fit.stats["map_loss"].shape == (150,)
    assert np.mean(fit.stats["map_loss"][-20:]) < fit.stats["map_loss"][0] - 10  # it moved, downhill
    point = replace(fit, samples={k: v[None, None] for k, v in fit.stats["map"].items()})
    rates = intensity_bands(point, np.linspace(0.0, 40.0, 81))["mean"][0, :, 0]
    assert abs(np.mean(rates) / 4.0 - 1.0) < 0.10, np.mean(rates)
    with pytest.raises(ConfigError, match="`map_steps` must be"):
        fit_events(ev, key=0, map_steps=-1)


def test_map_warm_start_keeps_the_last_weights_with_a_finite_density():
    # Adam (step 0.5) climbs x towards a cliff at 1 where the log density becomes -inf (as where
    # a solve fails); NumPyro's stable update then stays on the cliff. The warm start must hand
    # SVI / NUTS the last point before it, never the failing one.
    import jax.numpy as jnp
    import jax.random as jr
    import numpyro
    import numpyro.distributions as dist

    from bayesode.infer.event_map import fit_map

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 10.0))
        numpyro.factor("cliff", jnp.where(x < 1.0, 20.0 * x, -jnp.inf))

    values, losses, final = fit_map(model, {"x": jnp.array(0.0)}, {}, jr.key(0), steps=40, learning_rate=0.5)
    assert not np.all(np.isfinite(losses))  # it did step over the cliff
    assert 0.0 < float(values["x"]) < 1.0 and final.shape == (1,) and np.isfinite(final[0])


def test_map_starts_keep_the_deepest_optimum():
    # A double well, log density -10 (x^2 - 1)^2 + x: the well at +1 is 2 nats deeper than the one at
    # -1. The template starts in the shallow well and stays there; redraws at the template's scale
    # land on either side. The warm start must return the deeper well and report every start.
    import jax.numpy as jnp
    import jax.random as jr
    import numpyro
    import numpyro.distributions as dist

    from bayesode.infer.event_map import fit_map, start_points

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 100.0))
        numpyro.factor("wells", -10.0 * (x**2 - 1.0) ** 2 + x)

    starts = start_points({"x": jnp.array(-1.0), "z0": jnp.zeros(3)}, 6, jr.key(2))
    assert float(starts[0]["x"]) == -1.0 and all(np.all(s["z0"] == 0) for s in starts)  # zeros stay zeros
    assert len({round(float(s["x"]), 6) for s in starts}) == 6  # redraws differ

    def model2():
        model()
        numpyro.sample("z0", dist.Normal(0.0, 1.0).expand([3]).to_event(1))

    values, losses, final = fit_map(model2, starts, {}, jr.key(0), steps=200, learning_rate=0.05)
    ends = final - final.min()
    assert final.shape == (6,) and losses.shape == (200,)
    assert np.any(ends > 1.5)  # some start (the template's) ended in the shallow well: not vacuous
    assert abs(float(values["x"]) - 1.0) < 0.1 and np.isclose(losses[-1], final.min(), atol=0.1)


def test_fit_errors_name_the_argument():
    with pytest.raises(ConfigError, match="`method`='mcmc' is unknown"):
        fit_events(EVENTS, key=0, method="mcmc")
    with pytest.raises(ConfigError, match="`events` must be EventSequences"):
        fit_events([0.1, 0.2], key=0)
    with pytest.raises(ConfigError, match="`key` is required"):
        fit_events(EVENTS, key=None)
    for bad in (0.0, -0.1, float("nan"), float("inf"), "0.02", True):  # a string or bool is not silently a number
        with pytest.raises(ConfigError, match="`learning_rate` must be a positive finite number"):
            fit_events(EVENTS, key=0, learning_rate=bad)


def test_events_command_writes_the_run_and_rejects_a_missing_file(tmp_path, capsys):
    csv = tmp_path / "ev.csv"
    csv.write_text("time,sequence\n0.5,a\n1.2,a\n2.0,b\n2.6,a\n")
    out = tmp_path / "run"
    status = cli_main(["events", "--csv", str(csv), "--t0", "0", "--t-end", "3", "--method", "svi", "--map-steps", "5", "--map-starts", "2",
                       "--svi-steps", "5", "--decay", "0.3",
                       "--samples", "3", "--chains", "1", "--width", "4", "--points", "20", "--out", str(out)])  # fmt: skip
    assert status == 0
    assert az.from_netcdf(out / "posterior.nc").attrs["latent_decay"] == 0.3  # --decay reached the fitted process
    for name in ("posterior.nc", "intensity.png", "time_rescaling.png", "time_rescaling.txt"):
        assert (out / name).is_file(), name
    assert "time-rescaling KS test: 4 events" in (out / "time_rescaling.txt").read_text()
    assert cli_main(["events", "--csv", str(tmp_path / "nope.csv"), "--out", str(out), "--overwrite"]) == 2
    assert "no such file" in capsys.readouterr().err
    # --batch-size reaches fit_events, which checks it before any work
    assert cli_main(["events", "--csv", str(csv), "--batch-size", "3", "--out", str(out), "--overwrite"]) == 2
    assert "`batch_size`=3 is more than the 2 sequences" in capsys.readouterr().err


def test_calendar_clock_gives_the_same_fit_as_time_since_start(fit):
    # The same events on a calendar clock (year 1900 + t): the process sees time since the window
    # start, so draws solve exactly as on the small clock (float32 at 1900 would resolve only 1e-4).
    ts, marks = [EVENTS.event_list(i)[0] for i in range(2)], [EVENTS.event_list(i)[1] for i in range(2)]
    shifted = make_event_sequences([t + 1900.0 for t in ts], marks, t0=1900.0, t_end=[1904.0, 1903.0])
    moved = replace(fit, events=shifted)
    assert moved.origin == 1900.0
    a, b = solve_draws(fit), solve_draws(moved)
    np.testing.assert_allclose(np.asarray(b.log_rates), np.asarray(a.log_rates), rtol=1e-5, atol=1e-5)
    grid = np.linspace(0.0, 4.0, 9)
    np.testing.assert_allclose(intensity_bands(moved, grid + 1900.0)["mean"], intensity_bands(fit, grid)["mean"],
                               rtol=1e-5)  # fmt: skip
    sim = forecast_events(moved, 2.0, key=1, max_events=50, num_draws=4)
    times, mask = np.asarray(sim.times), np.asarray(sim.mask)
    t_end = np.array([1904.0, 1903.0])[None, :, None]
    assert mask.any() and np.all(~mask | ((times > t_end) & (times <= t_end + 2.0)))  # back on the calendar


def test_bundled_events_load_with_their_window():
    coal = load_events("coal_explosions")
    assert coal.num_events.tolist() == [191]
    assert coal.t0.tolist() == [1851.0] and coal.t_end.tolist() == [1962.25]


def test_held_out_score_leaves_out_failed_draws_and_says_so(fit):
    # A draw whose start is NaN fails its solve (status nonfinite): it is left out of the
    # log-mean-exp with a warning, never a NaN score.
    bad = {k: v.copy() for k, v in fit.samples.items()}
    bad["field.z0"][0, 0] = np.nan
    broken = replace(fit, samples=bad)
    hist, fut = EVENTS.split(2.5)
    with pytest.warns(RuntimeWarning, match="left out of the held-out score"):
        held = held_out_log_likelihood(broken, hist, fut)
    assert held["failed_draws"] >= 1 and np.isfinite(held["total"])


def test_events_command_refuses_a_previous_fit_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "posterior.nc").write_text("a finished fit")
    assert cli_main(["events", "--csv", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a previous fit" in err and "--overwrite" in err  # refused before the file is even read
    assert (out / "posterior.nc").read_text() == "a finished fit"


def test_event_nuts_draws_what_numpyro_mcmc_draws_and_ctrl_c_keeps_them(monkeypatch):
    import jax
    from numpyro.infer import MCMC, NUTS, init_to_value

    from bayesode.infer import event_nuts
    from bayesode.infer.console import Progress
    from bayesode.infer.point_process import EVENT_SOLVER, _initial_values, make_event_process
    from bayesode.model import Normal, event_arrays, point_process_model

    process = make_event_process(EVENTS, key=jax.random.key(1), width=4)
    model = point_process_model(process, weight_prior=Normal(1.0), config=EVENT_SOLVER)
    data, init = event_arrays(EVENTS), _initial_values(process, Normal(1.0))
    key = jax.random.key(3)
    # Ctrl-C reported after iteration 30 of 20 warmup + 20 sampling: 10 draws per chain kept.
    monkeypatch.setattr(event_nuts, "Progress", press_ctrl_c_at(30))
    samples, diverging, interrupted = event_nuts.sample_nuts(model, init, data, key, num_warmup=20, num_samples=20,
                                                             num_chains=2, max_tree_depth=6, progress=False)  # fmt: skip
    assert interrupted and diverging.shape == (2, 10)
    # The same chains as NumPyro's own MCMC (sequential chains, same key and start), draw for draw.
    kernel = NUTS(model, init_strategy=init_to_value(values=init), target_accept_prob=0.8, max_tree_depth=6)
    mcmc = MCMC(kernel, num_warmup=20, num_samples=20, num_chains=2, chain_method="sequential", progress_bar=False)
    start = driver_start(model, init, data, key, num_chains=2, num_warmup=20, max_tree_depth=6)
    mcmc.run(key, **data, init_params=start, extra_fields=("diverging",))
    theirs = mcmc.get_samples(group_by_chain=True)
    for site in init:
        assert samples[site].shape[:2] == (2, 10)
        np.testing.assert_allclose(samples[site], np.asarray(theirs[site])[:, :10], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(diverging, np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])[:, :10])
    assert np.ptp(samples["field.z0"][0], axis=0).max() > 0  # the chain moved: not a vacuous comparison
    # One chain: MCMC uses the key as it is (it splits it only for several chains), and so does the driver.
    monkeypatch.setattr(event_nuts, "Progress", Progress)  # no Ctrl-C this time
    one, _, interrupted = event_nuts.sample_nuts(model, init, data, key, num_warmup=10, num_samples=5, num_chains=1,
                                                 max_tree_depth=6, progress=False)  # fmt: skip
    mcmc = MCMC(kernel, num_warmup=10, num_samples=5, num_chains=1, progress_bar=False)
    mcmc.run(key, **data, init_params=driver_start(model, init, data, key, num_chains=1, num_warmup=10, max_tree_depth=6,
                                                          check=False))  # checked above
    assert not interrupted
    np.testing.assert_allclose(one["field.z0"], np.asarray(mcmc.get_samples(group_by_chain=True)["field.z0"]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_event_nuts_from_an_init_strategy_draws_what_numpyro_mcmc_draws():
    """The driver's other start: an init strategy (``fit_jump_filter(method="nuts", map_steps=0)`` passes
    ``init_to_median()``), found per chain as ``NUTS.init`` finds it. A toy model (no solve: seconds) with a
    positive site, so the start and the draws go through a transform."""
    import jax
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, init_to_median

    from bayesode.infer import event_nuts

    def model(y, latents_only=False):
        loc = numpyro.sample("loc", dist.Normal(0.0, 3.0))
        scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        if latents_only:
            return
        numpyro.sample("y", dist.Normal(loc, scale), obs=y)

    data, key = {"y": np.array([0.3, 1.9, 1.1, 0.7, 2.4])}, jax.random.key(4)
    ours, _, _ = event_nuts.sample_nuts(model, init_to_median(), data, key, num_warmup=30, num_samples=20,
                                        num_chains=1, max_tree_depth=5, progress=False)  # fmt: skip
    mcmc = MCMC(NUTS(model, init_strategy=init_to_median(), max_tree_depth=5), num_warmup=30, num_samples=20,
                progress_bar=False)  # fmt: skip
    mcmc.run(key, **data)
    theirs = mcmc.get_samples(group_by_chain=True)
    # The same chain: the start is compiled here and eager in NumPyro, equal to float32 rounding (see
    # tests/_nuts_start.py), which 50 iterations carry to ~1e-4 relative; a different start, key or kernel setting
    # gives other draws altogether. The rejections (a draw repeated) fall on the same iterations.
    for site in ("loc", "scale"):
        np.testing.assert_allclose(ours[site], np.asarray(theirs[site]), rtol=2e-3, atol=1e-4, err_msg=site)
        np.testing.assert_array_equal(np.diff(ours[site]) == 0, np.diff(np.asarray(theirs[site])) == 0)
    assert np.ptp(ours["scale"]) > 0.3  # the chain moved


def test_events_command_keeps_the_nuts_draws_on_ctrl_c(tmp_path, monkeypatch, capsys):
    from bayesode.infer import event_nuts

    monkeypatch.setattr(event_nuts, "Progress", press_ctrl_c_at(20))  # after 10 warmup + 10 sampling iterations
    csv = tmp_path / "ev.csv"
    csv.write_text("time\n0.5\n1.2\n2.0\n2.6\n")
    out = tmp_path / "run"
    status = cli_main(["events", "--csv", str(csv), "--t0", "0", "--t-end", "3", "--method", "nuts", "--map-steps", "5",
                       "--warmup", "10", "--samples", "30", "--chains", "1", "--width", "4", "--points", "20",
                       "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 130, err
    assert err.strip().splitlines()[-1] == (f"bayesode events: interrupted: kept 1 x 10 draws (chains x draws) in {out / 'posterior.nc'}; "
                                          "add --checkpoint to make a run resumable.")
    assert "Warning" not in err and "Traceback" not in err, err
    # Each stage shows itself: the MAP as a line before and after, NUTS as progress lines.
    assert "MAP warm start (1 start(s) x 5 Adam steps, compiled on first use) ..." in err
    assert re.search(r"MAP warm start \(.*\): \d+\.\d s", err) and "phase=sample" in err, err

    saved = az.from_netcdf(str(out / "posterior.nc"))
    assert saved.posterior.sizes["draw"] == 10 and saved.attrs["interrupted"] == 1
    assert json.loads(saved.attrs["warnings"])[-1] == "fit_events interrupted: kept 1 x 10 NUTS draws (chains x draws) of 1 x 30."
    assert (out / "intensity.png").is_file()


class _Decay(eqx.Module):
    """z decays at rate k between events and jumps by 1 at each; intensity 1 + |z|. A large k is
    stiff for the explicit solver, so a small max_steps fails there and nowhere else."""

    k: jax.Array
    z0: jax.Array

    def field(self, t, z, args):
        return -self.k * z

    def jump_size(self, z, mark):
        return jnp.ones_like(z)

    def rates(self, z):
        return 1.0 + jnp.abs(z)


def test_nuts_start_falls_back_to_a_point_that_solves_and_says_so():
    config = SolverConfig(max_steps=16)
    process = _Decay(jnp.asarray(1.0), jnp.zeros(1))
    stiff, mild = {"field.k": np.asarray(2000.0), "field.z0": np.zeros(1)}, {"field.k": np.asarray(0.5), "field.z0": np.zeros(1)}
    values, note = nuts_start(process, Normal(1.0), config, EVENTS, [("A", stiff), ("B", mild)], "fit_events (nuts)")
    assert float(values["field.k"]) == 0.5
    assert note is not None and "starts from B" in note and "A: max_steps" in note
    values, note = nuts_start(process, Normal(1.0), config, EVENTS, [("B", mild)], "fit_events (nuts)")
    assert note is None
    # No start solves: a FitFailedError naming each start's cause, before NumPyro's opaque refusal.
    with pytest.raises(FitFailedError, match=r"every point NUTS could start from \(the template's weights: max_steps\)"):
        fit_events(EVENTS, key=0, method="nuts", map_steps=0, num_warmup=2, num_samples=2, num_chains=1,
                   process=_Decay(jnp.asarray(2000.0), jnp.zeros(1)), config=config, progress=False)  # fmt: skip


def test_a_refit_traces_nothing_and_gives_the_same_draws(monkeypatch):
    """fit_events keeps its compiled stages (MAP, SVI, NUTS start, step and constrain) by model, shapes and
    settings, with the data and starts as arguments: the same fit again builds none of them (each
    builder fails the test if called) and draws exactly what the first fit drew."""
    from bayesode.infer import event_map, event_nuts, event_svi

    settings = dict(method="svi+nuts", map_steps=10, svi_steps=10, num_warmup=5, num_samples=5, num_chains=1, width=4)
    first = fit_events(EVENTS, key=2, **settings)
    monkeypatch.setattr(event_map, "_map_program", lambda *a, **k: pytest.fail("the MAP program was rebuilt"))
    monkeypatch.setattr(event_svi, "_svi", lambda *a, **k: pytest.fail("the SVI program was retraced"))
    monkeypatch.setattr(event_nuts, "hmc", lambda *a, **k: pytest.fail("the NUTS programs were rebuilt"))
    again = fit_events(EVENTS, key=2, **settings)
    assert set(again.samples) == set(first.samples)
    for site in first.samples:
        np.testing.assert_array_equal(again.samples[site], first.samples[site], err_msg=site)
    np.testing.assert_array_equal(again.stats["svi_loss"], first.stats["svi_loss"])


def test_a_subsampled_likelihood_is_its_sequences_terms_scaled_up():
    # batch_size=2 of 5 sequences: the log density must be the prior plus 5/2 times the log-likelihood of exactly the
    # two sequences the plate drew (their terms as the full model computes them): an unbiased estimate. Float tolerance.
    import jax.random as jr
    from numpyro import handlers
    from numpyro.infer.util import log_density

    from bayesode.model import event_arrays, point_process_model
    from bayesode.solving import NeuralJumpProcess

    ev = make_event_sequences([[0.4, 1.1], [0.2, 0.9, 2.5], [1.7], [0.3, 0.6, 0.8, 2.9], [2.2, 2.4]], t_end=3.0)
    model = point_process_model(NeuralJumpProcess(2, width=4, key=jr.key(0)))
    data = event_arrays(ev)
    full = handlers.trace(handlers.seed(model, 1)).get_trace(**data)
    params = {k: s["value"] for k, s in full.items() if s["type"] == "sample" and not s["is_observed"]}
    per_sequence = np.asarray(full["events"]["fn"].log_factor)
    assert per_sequence.shape == (5,) and np.all(np.diff(per_sequence) != 0)  # distinct terms: a wrong subset shows
    prior, _ = log_density(model, (), {**data, "latents_only": True}, params)
    seen = set()
    for seed in range(6):
        with handlers.seed(rng_seed=seed):
            lp, sub = log_density(model, (), {**data, "batch_size": 2}, params)
        idx = np.asarray(sub["sequences"]["value"])
        seen.add(tuple(sorted(idx)))
        assert idx.shape == (2,) and sub["events"]["fn"].log_factor.shape == (2,) and sub["event_log_lik"]["value"].shape[0] == 2
        np.testing.assert_allclose(float(lp - prior), 2.5 * per_sequence[idx].sum(), rtol=1e-5)
    assert len(seen) > 1  # the subset is drawn afresh


def test_minibatch_fit_finds_a_poisson_rate_and_refuses_bad_batch_sizes():
    # 12 sequences of a rate-2 Poisson process, 3 per Adam step: the MAP's and the SVI posterior's mean intensity at
    # the ML rate n / T within 10% (the rate's posterior sd from ~250 events is 6%; the stochastic steps may add a
    # little). The full-batch MAP of this network fits structure that is not there (its training loss ~20 nats lower,
    # about k/2 for k weights); the subsampled one keeps nearer the prior: so no test of equal losses.
    rng = np.random.default_rng(5)
    ev = make_event_sequences([np.sort(rng.uniform(0, 10, rng.poisson(20))) for _ in range(12)], t_end=10.0)
    rate = ev.mask.sum() / 120.0
    fit = fit_events(ev, key=1, method="svi", map_steps=300, svi_steps=200, num_samples=20, num_chains=1, width=4,
                     batch_size=3)  # fmt: skip
    assert fit.stats["map_loss"].shape == (300,) and np.all(np.isfinite(fit.stats["map_start_loss"]))
    point = replace(fit, samples={k: v[None, None] for k, v in fit.stats["map"].items()})
    for what in (point, fit):
        mean = intensity_bands(what, np.linspace(0.0, 10.0, 41))["mean"][..., 0].mean()
        assert abs(mean / rate - 1.0) < 0.10, mean
    with pytest.raises(ConfigError, match="`batch_size`=13 is more than the 12 sequences"):
        fit_events(ev, key=0, batch_size=13)
    with pytest.raises(ConfigError, match="`batch_size` must be"):
        fit_events(ev, key=0, batch_size=0)
    with pytest.raises(ConfigError, match="`method='laplace'` fits its MAP on all sequences"):
        fit_events(ev, key=0, method="laplace", batch_size=3)


def test_a_minibatch_map_reports_a_point_that_fails_on_unseen_data_as_failed():
    # Four "sequences": three pull x up; the fourth's density is -inf from x = 1 on (a solve that fails there).
    # Steps that do not draw the fourth step over the cliff, and the last point finite on its subset can be
    # infinite on all four: the start's final loss is judged on all the data, never on the subset.
    import jax.numpy as jnp
    import jax.random as jr
    import numpyro
    import numpyro.distributions as dist

    from bayesode.errors import FitFailedError
    from bayesode.infer.event_map import fit_map

    def model(cliff, batch_size=None):
        x = numpyro.sample("x", dist.Normal(0.0, 10.0))
        with numpyro.plate("sequences", 4, subsample_size=batch_size) as idx:
            c = cliff[idx] if batch_size is not None else cliff
            numpyro.factor("terms", jnp.where(c, jnp.where(x < 1.0, 0.0, -jnp.inf), 20.0 * x))

    data = {"cliff": jnp.array([False, False, False, True])}
    values, _, final = fit_map(model, {"x": jnp.array(0.0)}, data, jr.key(0), steps=60, learning_rate=0.5)
    assert 0.0 < float(values["x"]) < 1.0 and np.isfinite(final[0])  # full batch: the last point before the cliff
    with pytest.raises(FitFailedError, match="no weights whose solve succeeds"):
        fit_map(model, {"x": jnp.array(0.0)}, data, jr.key(0), steps=60, learning_rate=0.5, batch_size=1)


def test_a_map_whose_steps_mostly_failed_or_ended_failing_is_reported():
    # A self-correcting fit at 300 sequences once ended with its last MAP steps all non-finite (the intensity
    # underflowed) and went on quietly. The result must say so: most steps failed, or all of the last tenth did.
    from bayesode.infer.event_map import stalled_message

    good = np.linspace(10.0, 1.0, 100)
    assert stalled_message(good, "fit_events") is None
    some = good.copy()
    some[::5] = np.nan  # scattered failed steps: a rough optimisation, not a stall
    assert stalled_message(some, "fit_events") is None
    stalled = good.copy()
    stalled[90:] = np.nan
    message = stalled_message(stalled, "fit_events")
    assert message.startswith("fit_events: 10 of 100 MAP steps had a non-finite loss") and "10 of the last 10" in message
    mostly = good.copy()
    mostly[1:80:2], mostly[40:70] = np.inf, np.inf
    assert "of 100 MAP steps had a non-finite loss" in stalled_message(mostly, "fit_events")
    assert stalled_message(np.zeros(0), "fit_events") is None


def test_the_guide_starts_narrower_the_more_events_the_fit_has():
    # The SVI guide's starting scale: 0.02 (where it was chosen) up to 900 events, then shrinking as a posterior
    # spread does, 1 / sqrt(events): 4 times the events, half the scale. Exact arithmetic, float tolerance.
    from bayesode.infer.event_svi import initial_scale

    assert initial_scale(1) == initial_scale(900) == 0.02
    np.testing.assert_allclose([initial_scale(3600), initial_scale(90_000)], [0.01, 0.002], rtol=1e-12)
    assert initial_scale(0) == 0.02  # no events: refused before by fit_events; never a division by zero


def test_tail_averaged_svi_lands_nearer_the_posterior_than_its_last_step():
    # Minibatched SVI on a Normal mean (1,000 observations, batches of 10, Adam at 0.05 held constant): the
    # last iterate wanders with the minibatch noise; the mean of the last half of the iterates (Polyak-Ruppert)
    # sits nearer the posterior mean. Exact posterior: N(n ybar / (n + 1/100), 1 / (n + 1/100)). Eight keys (fixed);
    # the averaged locations' mean error must be under half the last iterates' (here a third of it),
    # and within 3 posterior sds.
    import numpyro
    import numpyro.distributions as dist

    from bayesode.infer.event_svi import SviSettings, fit_svi

    def model(y, batch_size=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("data", y.shape[0], subsample_size=batch_size) as idx:
            numpyro.sample("obs", dist.Normal(mu, 1.0), obs=y[idx])

    y = jnp.asarray(np.random.default_rng(3).normal(1.5, 1.0, 1000), jnp.float32)
    precision = y.size + 1 / 100
    exact_mean, exact_sd = float(y.sum()) / precision, precision**-0.5
    centre, data = {"mu": jnp.asarray(0.0)}, {"y": y}
    errors = {}
    for average in (0.0, 0.5):
        settings = SviSettings(600, 0.05, init_scale=0.1, decay_to=None, batch_size=10, average_last=average)
        locs = [float(fit_svi(model, centre, data, jax.random.key(k), settings)["params"]["mu_auto_loc"]) for k in range(8)]
        errors[average] = np.abs(np.asarray(locs) - exact_mean)
    assert errors[0.5].mean() < 0.5 * errors[0.0].mean(), errors
    assert errors[0.5].max() < 3 * exact_sd, (errors[0.5], exact_sd)


def test_the_guide_locations_take_their_own_step_size():
    # `loc_learning_rate` applies to the `*_auto_loc` parameters alone: at 1e-6 over 50 Adam steps a location
    # can move at most 50 * 1e-6 (Adam's step is bounded by about its rate), while the scale, at 0.05, moves
    # (from 1.0 below 0.8, towards the posterior's 1 / sqrt(1000)); at one rate for both, the location moves too.
    import numpyro
    import numpyro.distributions as dist

    from bayesode.infer.event_svi import SviSettings, fit_svi

    def model(y, batch_size=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("data", y.shape[0], subsample_size=batch_size):
            numpyro.sample("obs", dist.Normal(mu, 1.0), obs=y)

    y = jnp.asarray(np.random.default_rng(4).normal(1.5, 1.0, 1000), jnp.float32)
    for loc_rate, moved in ((1e-6, False), (None, True)):
        settings = SviSettings(50, 0.05, init_scale=1.0, decay_to=None, loc_learning_rate=loc_rate)
        params = fit_svi(model, {"mu": jnp.asarray(0.0)}, {"y": y}, jax.random.key(0), settings)["params"]
        assert (abs(float(params["mu_auto_loc"])) > 0.5) == moved, params
        assert float(params["mu_auto_scale"]) < 0.8, params
