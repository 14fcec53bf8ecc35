"""Loud failure (bayesode.infer.fit_failures): a fit whose solves or transitions mostly fail stops
with the cause named, or, with on_failure="continue", finishes and carries the message everywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import numpyro.distributions as dist
import pytest

import bayesode as bo
import bayesode.infer.chunks
from bayesode.errors import ConfigError, FitFailedError
from bayesode.infer import fit_failures
from bayesode.infer.programs import NUM_START_CANDIDATES, get_sampler

TS = np.linspace(0.0, 5.0, 11)
YS = (np.exp(0.3 * TS) + 0.05 * np.random.default_rng(0).standard_normal(11))[:, None]


def growth(t, y, p, args):
    return p["a"] * y


def growth_model(a_prior, **solver):
    """dy/dt = a y from y0 ~ 1 over [0, 5], a blow-up past |y| = 1e3 (a > ~1.38): the prior on
    ``a`` sets the share of prior draws whose solve fails."""
    return bo.make_model(
        bo.MechanisticField(growth, {"a": 0.3}, state_dim=1),
        param_priors={"a": a_prior},
        y0_prior=dist.LogNormal(0.0, 0.1),
        likelihood=bo.NormalNoise(sigma_prior=dist.LogNormal(np.log(0.05), 0.5)),
        solver=bo.SolverConfig(max_abs_state=1e3, **solver),
    )


def test_every_solve_failing_stops_before_sampling_with_the_cause_and_fixes(monkeypatch):
    # max_steps=1: no solve can finish. The start's candidates screen it; the prior check names the cause.
    model = growth_model(dist.Normal(0.3, 0.3), max_steps=1)
    sampled = []
    monkeypatch.setattr(bayesode.infer.chunks.ChunkRunner, "run", lambda *a: sampled.append(a))
    # Not one prior draw solves: the no-start error (an InitializationError is a FitFailedError), without retries.
    with pytest.raises(FitFailedError, match=r"100% gave a failed solve; by cause: \{'max_steps': 100\}") as err:
        bo.run_nuts(model, TS, YS, key=0, num_warmup=20, num_samples=20, num_chains=2, progress=False)
    assert isinstance(err.value, bo.InitializationError) and "raise SolverConfig(max_steps=...)" in str(err.value)
    assert sampled == []  # stopped before the sampler's chunk program was even compiled


@pytest.mark.slow  # compiles the start and the prior check (~1 min on the busy 2-core machine)
def test_most_prior_draws_failing_stops_before_sampling_with_the_cause_and_fixes(monkeypatch):
    model = growth_model(dist.Normal(2.0, 1.0))  # about 75% of prior draws blow up
    sampled = []
    monkeypatch.setattr(bayesode.infer.chunks.ChunkRunner, "run", lambda *a: sampled.append(a))
    with pytest.raises(FitFailedError, match=r"^run_nuts stopped: the ODE solve fails for 7\d% of 100 prior draws") as err:
        bo.run_nuts(model, TS, YS, key=1, num_warmup=20, num_samples=20, num_chains=1, progress=False)
    assert "'blow_up'" in str(err.value) and "raise max_abs_state" in str(err.value)
    assert "float64" in str(err.value) and "on_failure='continue'" in str(err.value)
    assert sampled == []


@pytest.mark.slow  # two fits of ~1-2.5 min each on the busy 2-core machine (compiles)
def test_a_minority_of_failing_prior_draws_still_fits():
    # a ~ N(0, 1): about 10% of prior draws blow up (prior_failure_rate: 11 of 100).
    model = growth_model(dist.Normal(0.0, 1.0))
    post = bo.run_nuts(model, TS, YS, key=1, num_warmup=50, num_samples=50, num_chains=1, progress=False)
    assert post.settings["fit_failures"] == [] and post.settings["on_failure"] == "stop"
    assert not any(w.startswith("FIT FAILED") for w in post.diagnostics()["warnings"])
    # The screen really saw failures, fewer than half (the same compiled start program: no compile).
    sampler = get_sampler(model, post.data.model_data(), {k: post.settings[k] for k in (
        "num_warmup", "target_accept_prob", "max_tree_depth", "dense_mass", "forward_mode")})  # fmt: skip
    keys = jax.random.split(jax.random.split(jax.random.key(1))[0], 1)
    failed = np.asarray(sampler.start(keys, post.data.model_data(), 0.0, with_failed=True)[1])
    assert 0 < failed.sum() <= fit_failures.FAILURE_SHARE_MAX * (NUM_START_CANDIDATES - 1), failed


@pytest.mark.slow
def test_continue_finishes_and_the_message_survives_save_and_load(tmp_path, capsys):
    # a ~ N(2, 1): about 75% of prior draws blow up; the posterior (a ~ 0.3) solves fine.
    model = growth_model(dist.Normal(2.0, 1.0))
    post = bo.run_nuts(model, TS, YS, key=1, num_warmup=30, num_samples=20, num_chains=1, progress=False,
                       on_failure="continue")  # fmt: skip
    message = post.settings["fit_failures"][0]  # the prior check's (a window may add its own)
    assert "prior draws" in message and "'blow_up'" in message and "raise max_abs_state" in message
    assert "fit failed (continuing" in capsys.readouterr().err  # printed in the console
    diag = post.diagnostics()
    assert diag["warnings"][0] == f"FIT FAILED: {message}" and diag["fit_failures"] == post.settings["fit_failures"]
    path = tmp_path / "fit.nc"
    post.to_arviz(key=0, prior_draws=0)
    post.save(path)
    loaded = bo.Posterior.load(path, model=model)
    assert loaded.settings["fit_failures"] == post.settings["fit_failures"]
    assert loaded.diagnostics()["warnings"][0] == f"FIT FAILED: {message}"
    assert json.loads(loaded.to_arviz().posterior.attrs["bayesode_fit_failures"]) == post.settings["fit_failures"]


def test_window_message_names_phase_share_causes_and_fixes():
    diverging = np.zeros((2, 50), bool)
    diverging[:, :26] = True  # 52%
    fails = {c: np.zeros((2, 50), int) for c in ("max_steps", "nonfinite", "blow_up", "dt_min", "other")}
    fails["dt_min"][:, :20] = 1
    fails["max_steps"][0, 20] = 1
    msg = fit_failures.window_message(diverging, fails, 100, 1000, "iterations")
    assert msg.startswith("52% of iterations 100-149 (warmup, 2 chain(s)) diverged")
    assert "41 of 52 divergent transitions ended at a failed ODE solve, by cause: {'max_steps': 1, 'dt_min': 40}" in msg
    # the most frequent cause's fix first, then the general ones (tolerances, priors, precision)
    assert msg.index("step size collapsed") < msg.index("raise SolverConfig(max_steps") < msg.index("float64")
    no_solve_failed = fit_failures.window_message(diverging, {c: v * 0 for c, v in fails.items()}, 990, 1000, "kept draws")
    assert "(warmup and sampling" in no_solve_failed and "no solve failed" in no_solve_failed
    assert "target_accept_prob" in no_solve_failed
    diverging[:, 25] = False  # exactly half: not "more than half"
    assert fit_failures.window_message(diverging, fails, 100, 1000, "iterations") is None
    with pytest.raises(FitFailedError, match=r"^run_nuts at iteration 7 stopped: boom\. To finish anyway"):
        fit_failures.handle("boom.", "stop", [], "run_nuts at iteration 7")


def test_on_failure_must_be_stop_or_continue():
    with pytest.raises(ConfigError, match=r"`on_failure`='ignore' is unknown; choose one of \('stop', 'continue'\)"):
        bo.run_nuts(growth_model(dist.Normal(0.0, 1.0)), TS, YS, key=0, on_failure="ignore")


@pytest.mark.slow  # a fresh process compiles the start and the prior check: ~1-3 min on the busy 2-core machine
def test_command_line_stops_a_planted_bad_model_with_the_cause_and_no_traceback(tmp_path):
    # Lotka-Volterra over 20,000 time units: hundreds of cycles, far past max_steps for every prior draw.
    rng = np.random.default_rng(0)
    rows = [f"{t},{30 + rng.uniform(0, 5):.3f},{10 + rng.uniform(0, 3):.3f}" for t in np.linspace(0, 20000, 21)]
    (tmp_path / "long.csv").write_text("time,hare,lynx\n" + "\n".join(rows) + "\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(bo.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]), PYTHONWARNINGS="ignore")
    argv = ["fit", "--csv", "long.csv", "--model", "lotka-volterra", "--method", "nuts", "--warmup", "50",
            "--samples", "50", "--chains", "2", "--out", "run", "--no-progress"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", "import sys, bayesode.cli as c; sys.exit(c.main())", *argv],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "bayesode fit: error: no starting point with a finite log density was found" in proc.stderr
    # Every draw fails and the cause is named. Most hit max_steps; a CI run also saw some end in dt_min
    # (the "step size collapsed" advice), so the split between the two causes is not pinned.
    assert "Of 100 prior draws, 100% gave a failed solve; by cause: {" in proc.stderr
    assert re.search(r"by cause: \{[^}]*'max_steps': \d+", proc.stderr), proc.stderr
    assert not (tmp_path / "run").exists()  # nothing written, no empty folder left


def _planted_check_model():
    """dy/dt = -k y whose field carries a runtime check of its own (``equinox.error_if``, as lineax's
    derivative solves do) that raises for k > 3: the prior puts 14% of its mass there."""
    import equinox as eqx
    import jax.numpy as jnp
    import numpyro

    def decay(ts, ys, mask):
        k = numpyro.sample("k", dist.LogNormal(0.0, 1.0))
        field = lambda t, y, args: eqx.error_if(-k * y, k > 3.0, "planted check: k above 3")  # noqa: E731
        sol = bo.record_solve(bo.solve(field, jnp.ones(1), ts))
        bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.3}, ys, mask)

    return bo.numpyro_model(decay)


def test_a_library_check_raised_while_sampling_stops_the_fit_naming_it_and_keeps_the_draws(tmp_path):
    # Started at k = 1, warmup's first long trajectories reach k > 3 (seed 1: in the chunk at 60-79).
    ts = np.linspace(0.0, 2.0, 8)
    data = bo.make_data(ts, np.exp(-ts)[:, None])
    with pytest.raises(FitFailedError) as err:
        bo.run_nuts(_planted_check_model(), data, key=1, num_warmup=100, num_samples=100, num_chains=1, chunk_size=20,
                    init_params={"k": np.array([1.0])}, checkpoint_dir=str(tmp_path), progress=False)  # fmt: skip
    message = str(err.value)
    found = re.match(r"run_nuts stopped in iterations (\d+)-(\d+) of 200; the (\d+) iterations before it are saved", message)
    assert found and int(found[1]) == int(found[3]) > 0, message
    assert "'planted check: k above 3'" in message and "EQX_ON_ERROR=nan" in message
    assert isinstance(err.value.__cause__, jax.errors.JaxRuntimeError)
    assert os.listdir(tmp_path)  # the chunks before it were checkpointed


def test_other_runtime_errors_are_not_relabelled():
    oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: out of memory while trying to allocate 9 GiB")
    assert fit_failures.library_check_error(oom, "run_nuts stopped") is None
    with pytest.raises(jax.errors.JaxRuntimeError, match="RESOURCE_EXHAUSTED"):
        with fit_failures.library_checks_stop_the_fit("run_nuts stopped"):
            raise oom
