"""The full-weight Laplace mixture (bayesode.infer.laplace_mixture, fit_full_weight(method="laplace"))."""

import json
import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.scipy.stats import norm

import bayesode as bo
from bayesode.errors import ConfigError
from bayesode.infer.laplace_members import _draws, _fit_members, _Members, forward_twin
from bayesode.infer.laplace_mixture import held_out_before, run_laplace_mixture, validation_origins
from bayesode.solving.precision import precision_scope

TIMES = np.array([1, 2, 2.5, 3, 4, 5, 5.5, 6], dtype=float)
SIGMA = 0.3


def _oscillator_data():
    y = np.cos(TIMES)
    y[TIMES == 5.5] = np.cos((2 * np.pi - 1) * 5.5)  # one point from another frequency: two basins
    return bo.make_data(TIMES, y[:, None], t0=0.0)


def _oscillator_model(adjoint=None):
    field = bo.MechanisticField(lambda t, y, p, a: jnp.stack([y[1], -p["omega"] ** 2 * y[0]]), {"omega": 1.0}, 2)
    solver = bo.SolverConfig(rtol=1e-8, atol=1e-8, **({} if adjoint is None else {"adjoint": adjoint}))
    return bo.make_model(field, param_priors={"omega": dist.Uniform(0.3, 8.0)}, y0=jnp.array([1.0, 0.0]),
                         observation_fn=lambda y: y[:1], likelihood=bo.NormalNoise(sigma=SIGMA), solver=solver,
                         precision="float64")  # fmt: skip


def _closed_form_potential(u, y):
    """The oscillator's potential in NumPyro's unconstrained coordinate (omega = 0.3 + 7.7 sigmoid(u)):
    y = cos(omega t) exactly, so no solve; the Jacobian term is the Uniform prior's change of variables."""
    s = jax.nn.sigmoid(u)
    omega = 0.3 + 7.7 * s
    log_lik = jnp.sum(norm.logpdf(y, jnp.cos(omega * TIMES), SIGMA))
    return -(log_lik + jnp.log(7.7 * s * (1 - s)) - jnp.log(7.7))


@pytest.mark.slow  # MAP fits and their Hessians, compiled
def test_the_hessian_through_the_solve_is_the_closed_form_curvature():
    """Exact, not a difference quotient: at every member's point the forward-over-forward Hessian through
    the ODE solve equals the second derivative of the closed-form potential. Tolerance 1e-4 relative: the
    solve runs at tolerances 1e-8 in float64, so its error in the curvature is far below that."""
    data = _oscillator_data()
    with precision_scope("float64"):
        members = _fit_members(_oscillator_model(), _oscillator_model(diffrax.ForwardMode()), data,
                               jax.random.key_data(jax.random.key(1)), 4, 200)  # fmt: skip
        assert members.num_kept >= 2
        y = jnp.asarray(np.asarray(data.ys)[0, :, 0])
        exact = jax.hessian(_closed_form_potential)
        for centre, eigenvalues in zip(members.centres, members.eigenvalues):
            np.testing.assert_allclose(eigenvalues, [exact(centre[0], y)], rtol=1e-4)
    # The members sit in different basins (the data hold two frequencies' points), not all at one.
    assert np.ptp(members.centres[:, 0]) > 0.1


def test_draws_have_the_floored_inverse_hessian_as_covariance():
    """Draws from N(centre, (V diag(max(w, floor)) V^T)^-1): 40,000 of them give the covariance to about
    1% (a sample variance's relative sd is sqrt(2 / n) = 0.7%); 5% leaves room and fails on a wrong floor."""
    rng = np.random.default_rng(0)
    vectors, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    w = np.array([-5.0, 0.5, 400.0])  # a negative and a small eigenvalue, floored; a stiff one kept
    members = _Members(np.array([[1.0, -2.0, 0.5]]), w[None], vectors[None], None, [])
    us = _draws(members, 4.0, rng.standard_normal((1, 40_000, 3)))[0]
    want = vectors @ np.diag(1 / np.maximum(w, 4.0)) @ vectors.T
    np.testing.assert_allclose(np.cov(us.T), want, rtol=0.05, atol=0.05 * np.abs(want).max())
    np.testing.assert_allclose(us.mean(axis=0), [1.0, -2.0, 0.5], atol=0.02)


def test_origins_and_held_out_data_keep_the_shapes():
    data = _oscillator_data()
    # 8 times: 60% -> the 5th time (3 after it), 70% -> the 6th (2 after), 80% -> the 7th (1 after: skipped)
    assert validation_origins(data, (0.6, 0.7, 0.8)) == [4.0, 5.0]
    early = held_out_before(data, 4.0)
    assert early.ys.shape == data.ys.shape and early.mask.sum() == 5
    np.testing.assert_array_equal(early.ys[0, :5], data.ys[0, :5])


@pytest.mark.slow  # MAP fits and their Hessians, compiled
def test_full_weight_laplace_posterior_is_one_inference_data_with_its_floor_and_members():
    import arviz as az

    from bayesode.cli.common import diagnostics_table
    from bayesode.diagnostics import SITUATIONS, fit_full_weight

    floors = (0.01, 1.0, 100.0, 1e4)
    post = fit_full_weight(_oscillator_model(), _oscillator_data(), key=0, num_members=3, map_steps=150,
                           floors=floors, draws_per_member=40, forward_model=_oscillator_model(diffrax.ForwardMode()),
                           progress=False)  # fmt: skip
    info = post.settings["ensemble"]
    # the floor is the one with the best mean held-out density over the origins
    table = {row[0]: row[1] for row in info["validation"]}
    assert set(table) == set(floors) and info["floor"] == max(table, key=table.get)
    assert info["origins"] == [4.0, 5.0] and all(len(row[2]) == 2 for row in info["validation"])
    kept = [s for s in info["starts"] if s["kept"]]
    assert len(info["weights"]) == len(kept) and np.allclose(info["weights"], 1 / len(kept))
    assert all("negative_eigenvalues" in s for s in kept)
    # independent draws: no R-hat or ESS warning, and the situation says what the fit is
    d = post.diagnostics()
    assert d["situation"] in SITUATIONS
    assert not any("R-hat is" in w or "effective sample size" in w for w in d["warnings"])
    assert "Laplace approximations" in info["report"]["message"]
    assert "Laplace mixture: independent draws" in diagnostics_table(post)
    idata = post.to_arviz()
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == len(kept) * 40 // 4
    # every pooled draw names its member: each member gives exactly draws_per_member of them
    np.testing.assert_array_equal(np.bincount(idata.sample_stats["member"].values.ravel()), [40] * len(kept))
    np.testing.assert_allclose(idata.stacking["stacking_weight"].values, info["weights"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of a few points may exceed ArviZ's bound
        assert np.isfinite(az.loo(idata).elpd_loo)
    assert json.loads(idata.posterior.attrs["bayesode_settings"])["ensemble"]["floor"] == info["floor"]


@pytest.mark.slow  # MAP fits and their Hessians, compiled
def test_a_given_floor_skips_the_choice_and_draws_the_same_members():
    model, twin, data = _oscillator_model(), _oscillator_model(diffrax.ForwardMode()), _oscillator_data()
    kw = dict(key=3, num_members=2, map_steps=100, draws_per_member=20, forward_model=twin, progress=False)
    a = run_laplace_mixture(model, data, floor=10.0, **kw)
    b = run_laplace_mixture(model, data, floor=10.0, **kw)
    assert a.pooled.settings["ensemble"]["validation"] == [] and not a.pooled.settings["ensemble"]["floor_chosen"]
    np.testing.assert_array_equal(a.pooled.samples["omega"], b.pooled.samples["omega"])  # the key fixes everything
    c = run_laplace_mixture(model, data, floor=1e4, **kw)
    # a higher floor: the same centres, narrower draws around them
    assert np.std(c.members.samples["omega"], axis=1).max() < np.std(a.members.samples["omega"], axis=1).max()


@pytest.mark.slow  # four member fits and their Hessians
def test_stacking_weights_the_members_by_their_own_held_out_densities():
    """weighting="stacking": the weights are stacking_weights of the members' held-out densities at the chosen
    floor, recomputed here from the same members and draws (so exactly, up to the optimiser's tolerance)."""
    from bayesode.infer.laplace_members import _constrained
    from bayesode.infer.laplace_mixture import _held_out_lpd
    from bayesode.infer.stacking import stacking_weights

    model, twin, data = _oscillator_model(), _oscillator_model(diffrax.ForwardMode()), _oscillator_data()
    ens = run_laplace_mixture(model, data, key=5, num_members=3, map_steps=150, floors=(1.0, 100.0), draws_per_member=30,
                              weighting="stacking", forward_model=twin, progress=False)  # fmt: skip
    info = ens.pooled.settings["ensemble"]
    assert info["weighting"].startswith("stacking") and np.isclose(sum(info["weights"]), 1.0)
    # recompute: the same key gives the same member fits, normals and scoring at every origin
    k_fit, k_draw, _ = jax.random.split(jax.random.PRNGKey(5), 3)
    rng = np.random.default_rng(np.asarray(k_draw).tolist())
    md, lpds = data.model_data(), []
    with precision_scope("float64"):
        for j, cut in enumerate(info["origins"]):
            early = _fit_members(model, twin, held_out_before(data, cut), k_fit, 3, 150)
            if j == 0:
                normals = rng.standard_normal((3, 30, early.centres.shape[1]))
            params = _constrained(model, md, early, _draws(early, info["floor"], normals))
            params = {k: v.reshape((-1,) + v.shape[2:]) for k, v in params.items()}
            held = (data.ts > cut)[..., None] & data.mask
            lpds.append(_held_out_lpd(model, md, params, held, 3)[1])
    np.testing.assert_allclose(info["weights"], stacking_weights(np.concatenate(lpds)), atol=1e-6)
    with pytest.raises(ConfigError, match="leave `floor=None`"):
        run_laplace_mixture(model, data, key=0, floor=10.0, weighting="stacking", forward_model=twin)
    with pytest.raises(ConfigError, match="`weighting`='best' is unknown"):
        run_laplace_mixture(model, data, key=0, weighting="best", forward_model=twin)


def test_bad_arguments_are_named_before_any_fit():
    from bayesode.diagnostics import fit_full_weight

    model, data = _oscillator_model(), _oscillator_data()
    twin = _oscillator_model(diffrax.ForwardMode())
    for kw, match in [
        (dict(floors=()), "`floors` is empty"),
        (dict(floors=(1.0, -2.0)), "`floors` must be a positive"),
        (dict(origins=(0.5, 1.5)), "`origins` must be fractions"),
        (dict(floor=0.0), "`floor` must be a positive"),
        (dict(num_members=0), "`num_members` must be a positive int"),
        (dict(forward_model=model), "`forward_model` must solve with SolverConfig\\(adjoint=diffrax.ForwardMode"),
    ]:
        with pytest.raises(ConfigError, match=match):
            run_laplace_mixture(model, data, key=0, **{"forward_model": twin, **kw})
    with pytest.raises(ConfigError, match="pass `forward_model=`"):
        run_laplace_mixture(model, data, key=0)  # a custom model has no recipe to rebuild in forward mode
    with pytest.raises(ConfigError, match="`method`='mcmc' is unknown"):
        fit_full_weight(model, data, key=0, method="mcmc")
    with pytest.raises(ConfigError, match="`validation` weights NUTS members"):
        fit_full_weight(model, data, key=0, method="laplace", validation="lfo")
    from bayesode.infer.laplace_members import MAX_LATENTS, _num_latents

    assert _num_latents(model, data.model_data()) == 1  # omega alone (y0 and the noise are fixed)
    # one state, width 40, two hidden layers: 80 + 1,640 + 41 weights, then y0 and the noise
    huge = bo.models.neural(data=data, width=40, depth=2, form="additive", likelihood="normal")
    assert _num_latents(huge, data.model_data()) == 1761 + 2 > MAX_LATENTS
    with pytest.raises(ConfigError, match="1763 latent values .* the Laplace mixture's exact Hessian"):
        run_laplace_mixture(huge, data, key=0)
    short = bo.make_data([1.0, 2.0, 3.0], [[1.0], [0.5], [0.2]], t0=0.0)
    with pytest.raises(ConfigError, match="too few observation times to choose the Laplace floor"):
        run_laplace_mixture(model, short, key=0, forward_model=twin, num_members=1, map_steps=5)


def test_a_presets_forward_twin_is_rebuilt_from_its_recipe_once():
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.neural(data=data, width=3)
    twin = forward_twin(model)
    assert twin.spec.solver.forward_mode and twin.spec.recipe == {**model.spec.recipe, "adjoint": "forward"}
    assert forward_twin(model) is twin  # kept: its compiled Hessian is reused by every fit of the model
    assert forward_twin(twin) is twin
