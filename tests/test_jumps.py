"""Jumps, change points and state events: segment splitting against closed forms, gradients, model sites, recovery."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import bayesode as bo
from bayesode.solving.diffeq import STATUS_OK, STATUS_OTHER
from bayesode.solving.events import StateEvent, solve_with_events
from bayesode.solving.jump_solve import Regime, solve_with_jumps
from bayesode.solving.jumps import Jumps, doses_from_events

K = 0.7  # decay rate of the test system dy/dt = -K y
TIGHT = bo.SolverConfig(rtol=1e-8, atol=1e-8)


def decay(t, y, args):
    return -K * y


def decay_with_doses(ts, t0, y0, times, amounts):
    """Closed form of dy/dt = -K y with y(t_j) += amount_j (right-continuous)."""
    ts = np.asarray(ts, dtype=float)
    out = y0 * np.exp(-K * (ts - t0))
    for tj, a in zip(times, amounts):
        tj = max(tj, t0)
        out = out + np.where(ts >= tj, a * np.exp(-K * np.clip(ts - tj, 0.0, None)), 0.0)
    return out


# ---------------------------------------------------------------- splitting
@pytest.mark.usefixtures("strict_jax")
def test_doses_match_closed_form_incl_first_time_same_time_padding_and_late_jumps():
    ts = jnp.linspace(0.0, 6.0, 13)  # 0, 0.5, ..., 6
    times = jnp.array([3.0, 0.0, 1.5, 1.5, 9.0, 2.0])  # unsorted; two at 1.5; one after the end; one padded
    sizes = jnp.array([[2.0], [1.0], [0.5], [0.25], [100.0], [100.0]])
    mask = jnp.array([True, True, True, True, True, False])
    sol = jax.jit(lambda: solve_with_jumps(decay, jnp.array([0.3]), ts, times, sizes, jump_mask=mask, config=TIGHT))()
    exact = decay_with_doses(ts, 0.0, 0.3, [3.0, 0.0, 1.5, 1.5], [2.0, 1.0, 0.5, 0.25])
    assert int(sol.status) == STATUS_OK
    # float32 with rtol 1e-8: ~1e-6 relative agreement.
    np.testing.assert_allclose(sol.ys[:, 0], exact, rtol=2e-5, atol=1e-6)
    # right-continuous: the save point at a dose time sees the dose
    assert float(sol.ys[0, 0]) == pytest.approx(1.3, rel=1e-6)
    assert float(sol.ys[6, 0]) == pytest.approx(exact[6], rel=2e-5)  # t = 3.0, dose of 2 included


@pytest.mark.usefixtures("strict_jax")
def test_jump_before_t0_acts_at_t0_and_t0_before_first_save():
    ts = jnp.array([1.0, 2.0])
    sol = solve_with_jumps(decay, jnp.array([1.0]), ts, jnp.array([-1.0]), jnp.array([[1.0]]), t0=0.0, config=TIGHT)
    np.testing.assert_allclose(sol.ys[:, 0], 2.0 * np.exp(-K * np.array([1.0, 2.0])), rtol=2e-5)


@pytest.mark.usefixtures("strict_jax")
def test_per_series_dosing_vmaps_with_padding():
    ts = jnp.broadcast_to(jnp.linspace(0.0, 4.0, 9), (2, 9))
    times = jnp.array([[0.0, 1.0, 2.0], [0.5, 3.0, 0.0]])
    amounts = jnp.array([[1.0, 1.0, 1.0], [2.0, 0.5, 0.0]])
    mask = jnp.array([[True, True, True], [True, True, False]])
    solve_all = jax.jit(
        jax.vmap(
            lambda t, jt, a, m: solve_with_jumps(decay, jnp.zeros(1), t, jt, a[:, None], jump_mask=m, config=TIGHT)
        )
    )
    sol = solve_all(ts, times, amounts, mask)
    assert sol.ys.shape == (2, 9, 1) and sol.status.tolist() == [0, 0]
    np.testing.assert_allclose(
        sol.ys[0, :, 0], decay_with_doses(ts[0], 0.0, 0.0, [0, 1, 2], [1, 1, 1]), rtol=2e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        sol.ys[1, :, 0], decay_with_doses(ts[1], 0.0, 0.0, [0.5, 3.0], [2, 0.5]), rtol=2e-5, atol=1e-6
    )


@pytest.mark.usefixtures("strict_jax")
def test_gradient_wrt_jump_time_and_size_matches_closed_form_and_finite_differences():
    with jax.enable_x64(True):
        ts = jnp.array([0.0, 1.0, 2.0, 3.0])
        cfg = bo.SolverConfig(rtol=1e-10, atol=1e-10)

        @jax.jit
        def loss(tau, size):
            sol = solve_with_jumps(decay, jnp.ones(1), ts, tau[None], size[None, None], config=cfg)
            return jnp.sum(sol.ys)

        tau, size = jnp.asarray(1.3), jnp.asarray(0.8)
        g_tau, g_size = jax.jit(jax.grad(loss, argnums=(0, 1)))(tau, size)
        # d/dtau sum_{t > tau} size exp(-K (t - tau)) = K * size * sum exp(-K (t - tau))
        later = np.array([2.0, 3.0])
        np.testing.assert_allclose(g_tau, K * 0.8 * np.sum(np.exp(-K * (later - 1.3))), rtol=1e-6)
        np.testing.assert_allclose(g_size, np.sum(np.exp(-K * (later - 1.3))), rtol=1e-6)
        eps = 1e-6
        fd = (loss(tau + eps, size) - loss(tau - eps, size)) / (2 * eps)
        np.testing.assert_allclose(g_tau, fd, rtol=1e-5)


def regime_decay(t, y, args):
    rates = jnp.array([0.2, 1.5], dtype=y.dtype)
    return -rates[args.index] * y


@pytest.mark.usefixtures("strict_jax")
def test_change_point_in_dynamics_matches_closed_form_and_gradient():
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 4.0, 9)
        cfg = bo.SolverConfig(rtol=1e-10, atol=1e-10)

        def run(tau):
            return solve_with_jumps(
                regime_decay, jnp.ones(1), ts, tau[None], jnp.zeros((1, 1)), config=cfg, regime=True
            )

        tau = jnp.asarray(1.7)
        sol = jax.jit(run)(tau)
        t = np.asarray(ts)
        exact = np.where(t < 1.7, np.exp(-0.2 * t), np.exp(-0.2 * 1.7 - 1.5 * (t - 1.7)))
        np.testing.assert_allclose(sol.ys[:, 0], exact, rtol=1e-7)
        # Gradient flows through the segment boundary: d y(t)/d tau = (1.5 - 0.2) y(t) for t > tau.
        g = jax.jit(jax.grad(lambda s: jnp.sum(run(s).ys)))(tau)
        np.testing.assert_allclose(g, 1.3 * exact[t > 1.7].sum(), rtol=1e-6)


@pytest.mark.usefixtures("strict_jax")
def test_solve_with_jumps_errors_name_the_argument():
    with pytest.raises(bo.ConfigError, match=r"`jump_sizes` must have shape \(jump, state\) = \(2, 1\); got \(2,\)"):
        solve_with_jumps(decay, jnp.ones(1), jnp.ones(3), jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(bo.ConfigError, match=r"`jump_mask` must have the shape of `jump_times`"):
        solve_with_jumps(decay, jnp.ones(1), jnp.ones(3), jnp.zeros(2), jnp.zeros((2, 1)), jump_mask=jnp.ones(3, bool))


# ---------------------------------------------------------------- state events
TAU_M, DRIVE = 1.0, 1.5  # integrate-and-fire: dv/dt = (DRIVE - v) / TAU_M, spike at v = 1, reset to 0


def lif(t, y, args):
    return (DRIVE - y) / TAU_M


FIRE = StateEvent(lambda t, y, a: y[0] - 1.0, lambda t, y, a: jnp.zeros_like(y), max_events=6, direction=True)


@pytest.mark.usefixtures("strict_jax")
def test_integrate_and_fire_matches_analytic_spike_times_and_voltages():
    period = -TAU_M * np.log(1.0 - 1.0 / DRIVE)  # time from reset (v=0) to threshold
    ts = jnp.linspace(0.0, 5.0, 41)
    sol = jax.jit(lambda: solve_with_events(lif, jnp.zeros(1), ts, FIRE, config=TIGHT))()
    n = int(np.floor(5.0 / period))
    assert int(sol.status) == STATUS_OK and int(sol.num_events) == n
    np.testing.assert_allclose(sol.event_times[:n], period * np.arange(1, n + 1), rtol=1e-5)
    assert bool(jnp.all(jnp.isinf(sol.event_times[n:])))
    since = np.mod(np.asarray(ts), period)
    np.testing.assert_allclose(sol.ys[:, 0], DRIVE * (1.0 - np.exp(-since / TAU_M)), atol=2e-5)


@pytest.mark.usefixtures("strict_jax")
def test_more_events_than_max_events_fails_with_status_other():
    ts = jnp.linspace(0.0, 5.0, 11)
    few = StateEvent(FIRE.cond_fn, FIRE.reset_fn, max_events=2, direction=True)
    sol = jax.jit(lambda: solve_with_events(lif, jnp.zeros(1), ts, few))()
    assert int(sol.status) == STATUS_OTHER and bool(jnp.all(jnp.isfinite(sol.ys)))


@pytest.mark.usefixtures("strict_jax")
def test_event_time_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 3.0, 7)
        cfg = bo.SolverConfig(rtol=1e-10, atol=1e-10)

        @jax.jit
        def loss(drive):
            field = lambda t, y, a: (drive - y) / TAU_M  # noqa: E731
            return jnp.sum(solve_with_events(field, jnp.zeros(1), ts, FIRE, config=cfg).ys)

        eps = 1e-5
        drive = jnp.asarray(DRIVE)
        fd = (loss(drive + eps) - loss(drive - eps)) / (2 * eps)
        np.testing.assert_allclose(jax.jit(jax.grad(loss))(drive), fd, rtol=1e-4)


@pytest.mark.usefixtures("strict_jax")
def test_state_event_errors():
    with pytest.raises(bo.ConfigError, match="cannot differentiate through events"):
        solve_with_events(
            lif, jnp.zeros(1), jnp.ones(2), FIRE, config=bo.SolverConfig(adjoint=diffrax.BacksolveAdjoint())
        )
    with pytest.raises(bo.ConfigError, match="`max_events` must be a positive int; got 0"):
        StateEvent(FIRE.cond_fn, FIRE.reset_fn, max_events=0)


# ---------------------------------------------------------------- jump schedules in models
def pk_rhs(t, y, p, a):
    return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["ke"] * y[1]])


PK_FIELD = bo.MechanisticField(pk_rhs, {"ka": 1.0, "ke": 0.2}, state_dim=2)
PK_PRIORS = {"ka": dist.LogNormal(0.0, 0.5), "ke": dist.LogNormal(-1.6, 0.5)}


def pk_closed_form(ts, ka, ke, doses):
    """The superposition from data/scripts/make_pk_multidose.py, (time, 2)."""
    gut, central = np.zeros_like(ts), np.zeros_like(ts)
    for td, amount in doses:
        dt = np.clip(ts - td, 0.0, None)
        on = ts >= td
        gut += np.where(on, amount * np.exp(-ka * dt), 0.0)
        central += np.where(on, amount * ka / (ka - ke) * (np.exp(-ke * dt) - np.exp(-ka * dt)), 0.0)
    return np.stack([gut, central], axis=-1)


def trace_values(model, md, **kw):
    def run():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(md, **kw)
        return {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}

    return jax.jit(run)()


def test_pk_multidose_doses_per_series_match_the_data_generator():
    ds = bo.datasets.load("pk_multidose")
    data = ds.to_data()
    doses = doses_from_events(ds.events, data)
    assert doses.times.shape == (3, 4) and doses.mask.sum(axis=1).tolist() == [4, 3, 4]
    model = bo.make_model(
        PK_FIELD,
        param_priors=PK_PRIORS,
        y0=[0.0, 0.0],
        jumps=doses,
        likelihood=bo.LogNormalNoise(),
        solver=bo.SolverConfig(rtol=1e-7, atol=1e-7),
    )
    fixed = handlers.substitute(model, data={"ka": 1.0, "ke": 0.2})
    tr = trace_values(fixed, data.model_data())
    assert "y0" not in tr and tr["trajectory"].shape == (3, 22, 2)
    for i, s in enumerate(data.series_names):
        ts = data.series(i)[0]
        rows = np.asarray(ds.events["subject"]) == s
        expected = pk_closed_form(ts, 1.0, 0.2, zip(ds.events["time"][rows], ds.events["amount"][rows]))
        np.testing.assert_allclose(tr["trajectory"][i, : ts.size], expected, rtol=1e-4, atol=1e-3)


def test_forecast_applies_doses_in_the_forecast_window():
    data = bo.make_data(
        [0.5, 1.0, 2.0], [[np.nan, 50.0], [np.nan, 60.0], [np.nan, 55.0]], state_names=["gut", "central"]
    )
    doses = Jumps(times=[0.0, 10.0], amounts=[100.0, 100.0], state=0, name="dose")
    model = bo.make_model(PK_FIELD, param_priors=PK_PRIORS, y0=[0.0, 0.0], jumps=doses, likelihood=bo.LogNormalNoise())
    new = jnp.linspace(0.0, 20.0, 21)[None]
    tr = trace_values(handlers.substitute(model, data={"ka": 1.0, "ke": 0.2}), data.model_data(), predict_ts=new)
    expected = pk_closed_form(np.linspace(0.0, 20.0, 21), 1.0, 0.2, [(0.0, 100.0), (10.0, 100.0)])
    np.testing.assert_allclose(tr["trajectory_predict"][0], expected, rtol=1e-3, atol=1e-2)
    assert tr["trajectory_predict"][0, 10, 0] > 99.0  # the second dose, at t = 10 in the forecast window


def test_learned_scales_have_readable_site_names_and_shapes():
    data = bo.make_data([[1.0, 2.0], [1.0, 2.0, 3.0]], [[[1.0], [2.0]], [[1.0], [2.0], [3.0]]], state_names=["y"])
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    for per, shape in [("model", ()), ("series", (2,)), ("jump", (2, 2))]:
        jumps = Jumps(
            times=[[0.0, 1.5], [0.0, 2.5]],
            amounts=[[1.0, 1.0], [2.0, 0.0]],
            state=0,
            mask=[[True, True], [True, False]],
            scale_prior=dist.LogNormal(0.0, 0.3),
            scale_per=per,
            name="dose",
        )
        model = bo.make_model(field, param_priors={"k": dist.LogNormal(0, 1)}, y0=[0.0], jumps=jumps)
        tr = trace_values(model, data.model_data())
        assert tr["dose_scale"].shape == shape
        assert jumps.sites() == {"dose_scale": jumps.scale_shape("series")}


def test_inferred_change_time_site_and_regime_args():
    data = bo.make_data(np.linspace(1.0, 4.0, 4), np.ones((4, 1)))
    field = bo.MechanisticField(
        lambda t, y, p, a: -jnp.stack([p["k0"], p["k1"]])[a.index] * y, {"k0": 0.2, "k1": 1.0}, 1
    )
    change = Jumps(time_prior=dist.Uniform(0.0, 5.0), regime=True, name="change")
    model = bo.make_model(
        field,
        param_priors={"k0": dist.LogNormal(-1, 1), "k1": dist.LogNormal(0, 1)},
        y0_prior=dist.LogNormal(0.0, 1.0),
        jumps=change,
    )
    tr = trace_values(model, data.model_data())
    assert tr["change_time"].shape == () and tr["trajectory"].shape == (1, 4, 1)
    assert isinstance(Regime(jnp.zeros((), jnp.int32), None), tuple)


def test_jumps_config_errors():
    with pytest.raises(bo.ConfigError, match="give exactly one of `times`"):
        Jumps(amounts=[1.0], state=0)
    with pytest.raises(
        bo.ConfigError, match=r"`amounts` has shape \(3,\); expected \(jump,\) or \(series, jump\) with jump = 2"
    ):
        Jumps(times=[0.0, 1.0], amounts=[1.0, 2.0, 3.0], state=0)
    with pytest.raises(bo.ConfigError, match=r"`scale_per`='dose' is unknown"):
        Jumps(times=[0.0], amounts=[1.0], state=0, scale_per="dose")
    with pytest.raises(bo.ConfigError, match="`state`=3 is out of range"):
        bo.make_model(PK_FIELD, param_priors=PK_PRIORS, y0=[0.0, 0.0], jumps=Jumps(times=[0.0], amounts=[1.0], state=3))
    doses = Jumps(times=[[0.0], [1.0]], amounts=[[1.0], [1.0]], state=0)
    model = bo.make_model(PK_FIELD, param_priors=PK_PRIORS, y0=[0.0, 0.0], jumps=doses)
    with pytest.raises(bo.DataError, match="has 2 series .* but the data have 1"):
        model.spec.check_data(bo.make_data([1.0, 2.0], [[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(bo.ConfigError, match="`jumps` and `events` cannot be combined"):
        bo.make_model(PK_FIELD, param_priors=PK_PRIORS, y0=[0.0, 0.0], jumps=doses, events=FIRE)


# ---------------------------------------------------------------- recovery (NUTS)
def simulate(model, data, truth, seed):
    tr = trace_values(handlers.substitute(model, data=truth), data.model_data())
    rng = np.random.default_rng(seed)
    return tr["trajectory"][0] + truth["sigma"][0] * rng.standard_normal(tr["trajectory"][0].shape)


def interval_contains(draws, truth, level=0.9):
    lo, hi = np.quantile(np.ravel(draws), [(1 - level) / 2, (1 + level) / 2])
    return lo <= truth <= hi, (lo, hi)


@pytest.mark.slow
def test_recovers_a_known_dose_size():
    # One-compartment decay with three doses of unknown common size (truth 2.0) and known rate.
    ts = np.linspace(0.25, 6.0, 24)
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": K}, state_dim=1)
    doses = Jumps(times=[0.0, 2.0, 4.0], state=0, scale_prior=dist.LogNormal(0.0, 1.0), name="dose")
    kw = dict(
        param_priors={"k": dist.LogNormal(np.log(K), 0.05)},
        y0=[0.0],
        jumps=doses,
        likelihood=bo.NormalNoise(dist.HalfNormal(0.5)),
        solver=bo.SolverConfig(adjoint=diffrax.ForwardMode()),
    )
    model = bo.make_model(field, **kw)
    skeleton = bo.make_data(ts, np.ones((ts.size, 1)))
    ys = simulate(model, skeleton, {"k": K, "dose_scale": 2.0, "sigma": jnp.array([0.1])}, seed=1)
    post = bo.run_nuts(model, ts, ys, key=3, num_warmup=200, num_samples=200, num_chains=2, progress=False)
    ok, interval = interval_contains(post.samples["dose_scale"], 2.0)
    assert ok, interval
    # 24 points with noise 0.1 pin the size to a few percent; a 90% interval wider than 0.5 means a broken fit.
    assert interval[1] - interval[0] < 0.5
    print(f"dose size: truth 2.0, 90% interval ({interval[0]:.3f}, {interval[1]:.3f})")


@pytest.mark.slow
def test_recovers_a_known_change_point_time():
    ts = np.linspace(0.25, 6.0, 24)
    field = bo.MechanisticField(
        lambda t, y, p, a: -jnp.stack([p["k0"], p["k1"]])[a.index] * y, {"k0": 0.2, "k1": 1.2}, 1
    )
    change = Jumps(time_prior=dist.Uniform(0.0, 6.0), regime=True, name="change")
    kw = dict(
        param_priors={"k0": dist.LogNormal(np.log(0.2), 0.05), "k1": dist.LogNormal(np.log(1.2), 0.05)},
        y0=[1.0],
        jumps=change,
        likelihood=bo.NormalNoise(dist.HalfNormal(0.1)),
        solver=bo.SolverConfig(adjoint=diffrax.ForwardMode()),
    )
    model = bo.make_model(field, **kw)
    skeleton = bo.make_data(ts, np.ones((ts.size, 1)))
    ys = simulate(model, skeleton, {"k0": 0.2, "k1": 1.2, "change_time": 2.6, "sigma": jnp.array([0.02])}, seed=2)
    post = bo.run_nuts(model, ts, ys, key=4, num_warmup=200, num_samples=200, num_chains=2, progress=False)
    ok, interval = interval_contains(post.samples["change_time"], 2.6)
    assert ok, interval
    assert interval[1] - interval[0] < 1.0  # the prior's 90% interval is 5.4 wide
    print(f"change time: truth 2.6, 90% interval ({interval[0]:.3f}, {interval[1]:.3f})")
