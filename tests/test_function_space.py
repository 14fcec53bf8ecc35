"""Function-space diagnostics and the plain-words situation (bayesode.diagnostics.function_space)."""

import functools

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer import Predictive

import bayesode as bo
from bayesode.diagnostics.function_space import function_space_draws, function_space_report

TIMES = np.array([1, 2, 2.5, 3, 4, 5, 5.5, 6], dtype=float)


@functools.cache
def _oscillator():
    """y1 = cos(omega t): omega near 0.9 and near 5.3 give different functions (one model for the
    module, so its compiled programs are shared)."""
    field = bo.MechanisticField(lambda t, y, p, a: jnp.stack([y[1], -p["omega"] ** 2 * y[0]]), {"omega": 1.0}, 2)
    model = bo.make_model(field, param_priors={"omega": dist.Uniform(0.3, 8.0)}, y0=jnp.array([1.0, 0.0]),
                          observation_fn=lambda y: y[:1], likelihood=bo.NormalNoise(sigma=0.3))  # fmt: skip
    data = bo.make_data(TIMES, np.cos(TIMES)[:, None], t0=0.0)
    return model, data


def _posterior(model, data, omega):
    """A Posterior whose chains hold the given (chain, draw) omega draws."""
    return bo.Posterior(samples={"omega": np.asarray(omega, dtype=np.float32)}, sample_stats={}, data=data,
                        model=model, settings={})  # fmt: skip


def _chains(centres, draws=60, sd=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([c + sd * rng.standard_normal(draws) for c in centres])


def test_chains_in_different_modes_say_so_in_plain_words():
    model, data = _oscillator()
    report = function_space_report(_posterior(model, data, _chains([0.9, 0.9, 5.3, 5.3])), grid=np.zeros((0, 2)))
    assert report["situation"] == "chains in different modes"
    assert report["modes"] == [[0, 1], [2, 3]]
    assert "the 4 chains sit in 2 different modes (chains 0, 1; chains 2, 3)" in report["message"]
    assert "not a posterior estimate" in report["message"]
    # iid draws within each chain: every chain mixes inside its own mode.
    assert report["rhat_within_max"] < 1.05


def test_one_mode_that_mixes_and_several_weighted_modes():
    model, data = _oscillator()
    one = function_space_report(_posterior(model, data, _chains([0.9, 0.9, 0.9])), grid=np.zeros((0, 2)))
    assert one["situation"] in ("one mode that mixes", "one mode, not yet mixed")
    assert one["modes"] == [[0, 1, 2]]
    assert one["message"].startswith(one["situation"] + ": all 3 chains agree")
    weighted = function_space_report(
        _posterior(model, data, _chains([0.9, 5.3, 5.3])), groups=[0, 1, 2], weights=[0.3, 0.5, 0.2],
        dropped=[{"start": 4, "reason": "the log density at the fitted point is not finite"}], grid=np.zeros((0, 2)),
    )
    assert weighted["situation"] == "several modes, weighted"
    assert "member 0 weight 0.30; members 1, 2 weight 0.70" in weighted["message"]
    assert "Start 4 was dropped: the log density at the fitted point is not finite." in weighted["message"]


def _permute_hidden(samples, perm):
    """The same networks with hidden units reordered: rows of layer 0, columns of layer 1."""
    out = dict(samples)
    out["field.layers[0].weight"] = samples["field.layers[0].weight"][..., perm, :]
    out["field.layers[0].bias"] = samples["field.layers[0].bias"][..., perm]
    out["field.layers[1].weight"] = samples["field.layers[1].weight"][..., :, perm]
    return out


def test_function_space_diagnostics_are_invariant_to_permuting_hidden_units():
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.neural(data=data, width=4, depth=1)
    prior = Predictive(functools.partial(model, latents_only=True), num_samples=40)(bo.checks.as_key(0),
                                                                                   data.model_data())  # fmt: skip
    # Small weights: prior draws of every weight at scale 1 can make the solve blow up.
    samples = {k: np.asarray(v).reshape((2, 20) + v.shape[1:]) * (0.3 if k.startswith("field") else 1.0)
               for k, v in prior.items()}  # fmt: skip
    perm = np.array([2, 0, 3, 1])
    base = _posterior(model, data, 0)
    base.samples = samples
    permuted = _posterior(model, data, 0)
    permuted.samples = _permute_hidden(samples, perm)
    assert not np.allclose(permuted.samples["field.layers[0].weight"], samples["field.layers[0].weight"])
    ts = np.linspace(1921.0, 1925.0, 5)
    a = function_space_draws(base, forecast_ts=ts)
    b = function_space_draws(permuted, forecast_ts=ts)
    assert set(a) == {"trajectory", "forecast", "field"}
    for k in a:
        # float32 sums in another order: round-off, which can flip an adaptive step's accept/reject
        # decision and so move a trajectory by up to about the solver's rtol (1e-4), amplified.
        np.testing.assert_allclose(a[k], b[k], rtol=5e-3, atol=1e-5)
    ra, rb = function_space_report(base, quantities=a), function_space_report(permuted, quantities=b)
    assert ra["situation"] == rb["situation"] and ra["modes"] == rb["modes"]
    np.testing.assert_allclose(ra["rhat_within_max"], rb["rhat_within_max"], rtol=1e-3)


def test_posterior_diagnostics_carry_the_full_weight_situation_through_save_and_load(tmp_path):
    model, data = _oscillator()
    post = _posterior(model, data, _chains([0.9, 0.9]))
    message = "several modes, weighted: the 3 members sit in 2 distinct modes."
    post.settings = {"ensemble": {"report": {"situation": "several modes, weighted", "message": message,
                                             "rhat_within_max": 1.004}}}  # fmt: skip
    d = post.diagnostics()
    assert d["situation"] == "several modes, weighted" and message in d["warnings"]
    post.save(tmp_path / "fit.nc", key=0)
    loaded = bo.Posterior.load(tmp_path / "fit.nc", model=model).diagnostics()
    assert loaded["situation"] == "several modes, weighted" and message in loaded["warnings"]
    post.settings["ensemble"]["report"]["situation"] = "one mode that mixes"
    post._idata = None
    assert "situation" in post.diagnostics() and message not in post.diagnostics()["warnings"]
