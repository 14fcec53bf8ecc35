"""Jump fits are never lost: `fit_events(checkpoint_dir=...)` and `bayesode events --checkpoint` resume a run
stopped by Ctrl-C or killed (SIGKILL, a real second process) and give the draws of an unbroken run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

import bayesode as bo
from bayesode.cli.main import main as cli_main
from bayesode.datasets import read_events_csv
from bayesode.errors import ConfigError
from bayesode.infer import event_map, event_nuts, fit_events
from bayesode.infer.console import Progress

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _keypress import press_ctrl_c_at  # noqa: E402
from _nuts_start import driver_start  # noqa: E402

EVENT_ROWS = "time\n0.5\n1.2\n2.0\n2.6\n3.1\n3.3\n"
# Tiny on purpose: the checks are about the bookkeeping, and every number must match exactly.
SETTINGS = dict(method="svi+nuts", map_steps=20, svi_steps=20, num_warmup=10, num_samples=20, num_chains=2, width=4,
                latent_dim=2)  # fmt: skip
FLAGS = ["--method", "svi+nuts", "--map-steps", "20", "--svi-steps", "20", "--warmup", "10", "--samples", "20",
         "--chains", "2", "--width", "4", "--latent-dim", "2", "--t0", "0", "--t-end", "4", "--points", "20"]  # fmt: skip


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "ev.csv"
    path.write_text(EVENT_ROWS)
    return path


@pytest.fixture(scope="module")
def unbroken(csv):
    """The run as it is without interruption or checkpoint (seed 0, as the command's default)."""
    return fit_events(read_events_csv(str(csv), t0=0.0, t_end=4.0), key=0, **SETTINGS)


def _assert_same_draws(a: dict, b: dict):
    assert set(a) == set(b)
    for site in a:
        np.testing.assert_array_equal(np.asarray(a[site]), np.asarray(b[site]), err_msg=site)


@pytest.mark.slow
def test_ctrl_c_then_the_same_fit_resumes_to_the_unbroken_draws(csv, unbroken, tmp_path, monkeypatch):
    events, ckpt = read_events_csv(str(csv), t0=0.0, t_end=4.0), tmp_path / "ckpt"
    monkeypatch.setattr(event_nuts, "Progress", press_ctrl_c_at(20))  # after 10 warmup + 10 sampling iterations
    with pytest.warns(RuntimeWarning, match="interrupted"):
        part = fit_events(events, key=0, checkpoint_dir=str(ckpt), **SETTINGS)
    assert part.stats["interrupted"] and part.num_draws == 10
    assert sorted(os.listdir(ckpt)) == ["map.npz", "meta.json", "nuts.npz", "svi.npz"]
    assert int(np.load(ckpt / "nuts.npz")["done"]) == 20
    # The finished stages are loaded, not rerun: the MAP would fail loudly if called.
    monkeypatch.setattr(event_map, "fit_map", lambda *a, **k: pytest.fail("the MAP stage ran again"))
    monkeypatch.setattr(event_nuts, "Progress", Progress)
    resumed = fit_events(events, key=0, checkpoint_dir=str(ckpt), **SETTINGS)
    assert not resumed.stats["interrupted"] and resumed.num_draws == 20
    _assert_same_draws(resumed.samples, unbroken.samples)
    np.testing.assert_array_equal(resumed.stats["diverging"], unbroken.stats["diverging"])
    np.testing.assert_array_equal(resumed.stats["svi_loss"], unbroken.stats["svi_loss"])
    assert np.ptp(unbroken.samples["field.z0"][0], axis=0).max() > 0  # the chain moved: not a vacuous comparison
    # Another run's folder is refused before any work, naming what differs.
    with pytest.raises(ConfigError, match=r"different svi_steps"):
        fit_events(events, key=0, checkpoint_dir=str(ckpt), **dict(SETTINGS, svi_steps=21))
    with pytest.raises(ConfigError, match=r"different data"):
        fit_events(bo.datasets.make_event_sequences([[0.5, 1.0]], t_end=4.0), key=0, checkpoint_dir=str(ckpt), **SETTINGS)
    with pytest.raises(ConfigError, match=r"different key"):
        fit_events(events, key=1, checkpoint_dir=str(ckpt), **SETTINGS)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"is a file, not a folder"):
        fit_events(events, key=0, checkpoint_dir=str(tmp_path / "a_file"), **SETTINGS)


def _checkpointed_iterations(path) -> int:
    try:
        with np.load(path) as z:
            return int(z["done"])
    except (OSError, ValueError, KeyError):  # not written yet
        return 0


@pytest.mark.slow
def test_events_command_killed_then_rerun_gives_the_unbroken_draws(csv, unbroken, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["events", "--csv", str(csv), *FLAGS, "--checkpoint", "--out", str(out)]
    # A second process that stops (sleeps) when its 20th NUTS iteration is reported, before that iteration's
    # checkpoint: the kill below lands with exactly 10 iterations saved, whatever the machine's speed.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bo.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    code = ("import sys, time; from bayesode.infer import event_nuts; from bayesode.infer.console import Progress\n"
            "class Hang(Progress):\n"
            "    def update(self, done, *a, **k):\n"
            "        super().update(done, *a, **k)\n"
            "        if done == 20: time.sleep(600)\n"
            "event_nuts.Progress = Hang\n"
            "from bayesode.cli.main import main; sys.exit(main(sys.argv[1:]))\n")  # fmt: skip
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 900
        while _checkpointed_iterations(out / "checkpoint" / "nuts.npz") < 10:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.time() < deadline, "no NUTS checkpoint within 900 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _checkpointed_iterations(out / "checkpoint" / "nuts.npz") == 10
    assert not (out / "posterior.nc").exists()  # killed before any result was written
    # The same command again: the stages come from the checkpoint, NUTS continues at iteration 10.
    capsys.readouterr()
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert "MAP warm start (1 start(s) x 20 Adam steps, from the checkpoint)" in err, err
    import arviz as az

    saved = az.from_netcdf(str(out / "posterior.nc"))
    assert saved.posterior.sizes["draw"] == 20 and saved.attrs["interrupted"] == 0
    _assert_same_draws({k: saved.posterior[k].values for k in unbroken.samples}, unbroken.samples)
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["num_samples"] == 20 and meta["method"] == "svi+nuts"


@pytest.mark.slow
def test_jump_filter_nuts_is_numpyros_and_resumes_after_ctrl_c(tmp_path, monkeypatch):
    """The observation-driven jump fit samples through the same driver: its draws are NumPyro MCMC's (the
    sampler it used before), Ctrl-C keeps them, and the same fit with the checkpoint folder finishes them."""
    import jax.random as jr
    from numpyro.infer import MCMC, NUTS, init_to_value

    from bayesode.datasets import make_irregular
    from bayesode.infer import fit_jump_filter, jump_filter
    from bayesode.model import make_jump_filter_model
    from bayesode.solving import NeuralJumpODE, filter_config

    data = make_irregular([[0.0, 0.3, 0.7, 1.1], [0.0, 0.2, 0.9]],
                          [[[1.0, np.nan], [np.nan, 2.0], [1.5, 2.5], [1.2, 2.2]], [[0.5, 1.0], [0.7, np.nan], [0.6, 1.1]]])  # fmt: skip
    net = NeuralJumpODE(2, hidden_dim=2, width=4, key=jr.key(0), y_loc=np.array([1.0, 1.8]), y_scale=np.array([0.4, 0.6]))
    kw = dict(key=jr.key(5), method="svi+nuts", map_steps=20, svi_steps=20, num_warmup=10, num_samples=20, num_chains=2)
    unbroken = fit_jump_filter(net, data, **kw)
    # NumPyro's MCMC from the same SVI centre and NUTS key: the draws the fit took before it had its own driver.
    k_map, k_svi, k_draw, k_nuts = jr.split(jr.key(5), 4)
    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(event_nuts, "Progress", press_ctrl_c_at(20))
    with pytest.warns(RuntimeWarning, match="fit_jump_filter interrupted: kept 2 x 10 NUTS draws"):
        part = fit_jump_filter(net, data, checkpoint_dir=str(ckpt), **kw)
    assert part.settings["interrupted"] and next(iter(part.samples.values())).shape[:2] == (2, 10)
    centre = {k: v for k, v in np.load(ckpt / "svi.npz").items() if k.startswith("centre/")}
    model = make_jump_filter_model(net, config=filter_config())
    centre = {k[7:]: jnp.asarray(v) for k, v in centre.items()}
    mcmc = MCMC(NUTS(model, init_strategy=init_to_value(values=centre), max_tree_depth=8),
                num_warmup=10, num_samples=20, num_chains=2, chain_method="sequential", progress_bar=False)  # fmt: skip
    named = dict(zip(("ts", "ys", "mask"), jump_filter._model_arrays(data)))
    start = driver_start(model, centre, named, k_nuts, num_chains=2, num_warmup=10, max_tree_depth=8)
    mcmc.run(k_nuts, **named, init_params=start)
    theirs = mcmc.get_samples(group_by_chain=True)
    for site, value in unbroken.samples.items():
        np.testing.assert_allclose(value, np.asarray(theirs[site]), rtol=1e-5, atol=1e-6, err_msg=site)
    # Resumed from the checkpoint: the unbroken run's draws exactly.
    monkeypatch.setattr(event_nuts, "Progress", Progress)
    resumed = fit_jump_filter(net, data, checkpoint_dir=str(ckpt), **kw)
    assert not resumed.settings["interrupted"]
    _assert_same_draws(resumed.samples, unbroken.samples)
    np.testing.assert_array_equal(resumed.losses, unbroken.losses)
    assert np.ptp(next(iter(unbroken.samples.values()))[0], axis=0).max() > 0  # the chains moved
    with pytest.raises(ConfigError, match=r"different num_warmup"):
        fit_jump_filter(net, data, checkpoint_dir=str(ckpt), **dict(kw, num_warmup=11))
