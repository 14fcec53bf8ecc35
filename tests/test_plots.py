"""Plots, headless: what each function draws (lines, bands, meshes) checked against
quantities computed here independently; ArviZ's own plots on ``post.to_arviz()``.

The posteriors are built by hand (draws scattered around known parameters), so no
sampler is compiled; only prediction is.
"""

import importlib.util
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection, QuadMesh
from numpyro import handlers

import bayesode as bo
from bayesode.model.priors import field_sites
from bayesode.plots import field_draws, plot_phase, plot_prior_predictive, plot_vector_field

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TS = np.linspace(0.0, 6.0, 11)
TRUE = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024}
CLEAN = np.asarray(bo.solve(bo.lotka_volterra_field(**TRUE), jnp.array([30.0, 4.0]), TS).ys)
YS = CLEAN * np.exp(0.1 * np.random.default_rng(0).standard_normal(CLEAN.shape))
CHAINS, DRAWS = 2, 25
# Every prediction uses N_PRED times so the compiled predictive program is built once.
N_PRED = 31


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return bo.make_data(TS + 1900.0, YS, state_names=["hare", "lynx"])


@pytest.fixture(scope="module")
def post(data):
    """LV draws scattered 5% around the truth: a stand-in posterior (plots test drawing, not inference)."""
    rng = np.random.default_rng(1)
    jitter = lambda shape: np.exp(0.05 * rng.standard_normal((CHAINS, DRAWS) + shape))  # noqa: E731
    samples = {k: (v * jitter(())).astype(np.float32) for k, v in TRUE.items()}
    samples["y0"] = (np.array([30.0, 4.0]) * jitter((1, 2))).astype(np.float32)
    samples["sigma"] = (0.1 * jitter((2,))).astype(np.float32)
    return bo.Posterior(samples, {}, data, bo.models.lotka_volterra(), {"method": "test"})


def _band(coll, n):
    """(x, lower, upper) of a fill_between polygon over ``n`` times: start, along y1, end, back along y2."""
    v = coll.get_paths()[0].vertices
    return v[1 : n + 1, 0], v[1 : n + 1, 1], v[n + 2 : 2 * n + 2, 1][::-1]


def _quantiles(x, prob):
    return np.quantile(x, [(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2], axis=0)


# ------------------------------------------------------------------ trajectories
def test_trajectory_bands_match_independent_quantiles(post, data):
    ts = np.linspace(1900.0, 1909.0, N_PRED)  # past 1906: a forecast
    (ax,) = bo.plot_trajectories(post, ts=ts, prob=0.8, key=3)
    pred = post.predict(ts, key=3)  # same key: the same noisy draws
    obs = pred["obs"].values.reshape(-1, ts.size, 2)  # one series
    traj = pred["trajectory"].values.reshape(-1, ts.size, 2)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4  # per state: predictive band, trajectory band
    for k in range(2):
        for coll, values in ((bands[2 * k], obs[..., k]), (bands[2 * k + 1], traj[..., k])):
            x, lo, hi = _band(coll, ts.size)
            q = _quantiles(values, 0.8)
            np.testing.assert_allclose(x, ts)
            np.testing.assert_allclose(lo, q[0], rtol=1e-5)
            np.testing.assert_allclose(hi, q[2], rtol=1e-5)
            assert np.all(lo <= hi)
    lines = ax.get_lines()
    # per state: median, data points; then the end-of-data marker
    assert len(lines) == 5
    np.testing.assert_allclose(lines[0].get_ydata(), np.median(traj[..., 0], axis=0), rtol=1e-5)
    np.testing.assert_allclose(lines[1].get_ydata(), YS[:, 0])
    np.testing.assert_allclose(lines[3].get_ydata(), YS[:, 1])
    np.testing.assert_allclose(lines[4].get_xdata(), [1906.0, 1906.0])
    # on average over time the trajectory band is narrower than the band of noisy observations
    # (pointwise it need not be with 50 draws)
    (_, tlo, thi), (_, olo, ohi) = _band(bands[1], ts.size), _band(bands[0], ts.size)
    assert np.mean(thi - tlo) < np.mean(ohi - olo)


def test_trajectories_without_forecast_has_no_marker(post):
    (ax,) = bo.plot_trajectories(post, num_points=N_PRED, key=0)
    assert len(ax.get_lines()) == 4
    assert ax.get_lines()[0].get_xdata()[-1] == pytest.approx(1906.0)


def test_trajectories_draws_on_given_axes(post):
    fig, given = plt.subplots(1, 2)
    axes = bo.plot_trajectories(post, num_points=N_PRED, ax=given, key=0)
    assert axes[0] is given[0] and axes[0].figure is fig
    assert axes[0].get_legend() is not None and not fig.legends  # the caller's layout: legend inside


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prob=1.5), r"`prob` must be in \(0, 1\).*got 1.5"),
        (dict(series=3), r"`series` index 3 is out of range; the data have 1 series"),
        (dict(series="lynx"), r"`series` names 'lynx', which is not a series"),
        (dict(until=1800.0), r"`until`=1800.0 is not after the data start 1900.0"),
    ],
)
def test_trajectories_errors(post, kwargs, match):
    with pytest.raises(bo.ConfigError, match=match):
        bo.plot_trajectories(post, key=0, **kwargs)


@pytest.mark.slow  # a second data shape: compiles prediction again
def test_series_with_different_starts_are_predicted_from_their_own_start():
    """Series A starts at 0, B at 3: each panel's band starts at its own t0, from its own y0."""
    ts_a, ts_b = TS[:8], TS[5:]
    two = bo.make_data([ts_a, ts_b], [YS[:8], YS[5:]], state_names=["hare", "lynx"], series_names=["A", "B"])
    rng = np.random.default_rng(3)
    n = (CHAINS, DRAWS)
    samples = {k: (v * np.exp(0.05 * rng.standard_normal(n))).astype(np.float32) for k, v in TRUE.items()}
    samples["y0"] = np.broadcast_to(np.stack([YS[0], YS[5]]), n + (2, 2)).astype(np.float32)
    samples["sigma"] = np.full(n + (2,), 0.1, np.float32)
    post2 = bo.Posterior(samples, {}, two, bo.models.lotka_volterra(), {"method": "test"})
    preds = bo.series_predictions(post2, until=8.0, num_points=N_PRED, key=0)
    assert [p["ts"][0] for p in preds] == [0.0, TS[5]]
    assert all(p["ts"][-1] == 8.0 and p["obs"].shape == (CHAINS * DRAWS, N_PRED, 2) for p in preds)
    # at its start each trajectory equals its series' y0
    np.testing.assert_allclose(preds[1]["trajectory"][:, 0], samples["y0"][:, :, 1].reshape(-1, 2), rtol=1e-5)
    axes = bo.plot_trajectories(post2, until=8.0, num_points=N_PRED, key=0)
    x, _, _ = _band([c for c in axes[1].collections if isinstance(c, PolyCollection)][0], N_PRED)
    assert x[0] == pytest.approx(TS[5])
    with pytest.raises(bo.ConfigError, match=r"`until`=2.0 is not after series 'B' starts at 3.0"):
        bo.series_predictions(post2, until=2.0, key=0)


# ------------------------------------------------------------------ phase
def test_phase_draws_one_line_per_draw_plus_data(post):
    ts = np.linspace(1900.0, 1906.0, N_PRED)
    ax = plot_phase(post, x="lynx", y="hare", ts=ts, num_draws=7, key=0)
    lines = ax.get_lines()
    assert len(lines) == 7 + 1
    traj = post.predict(ts, key=0)["trajectory"].values.reshape(-1, ts.size, 2)
    # draws spread evenly over all 50: the first and the last are drawn
    np.testing.assert_allclose(lines[0].get_xdata(), traj[0, :, 1], rtol=1e-5)
    np.testing.assert_allclose(lines[0].get_ydata(), traj[0, :, 0], rtol=1e-5)
    np.testing.assert_allclose(lines[6].get_ydata(), traj[-1, :, 0], rtol=1e-5)
    np.testing.assert_allclose(lines[-1].get_xdata(), YS[:, 1])  # data: lynx across
    assert ax.get_xlabel() == "lynx" and ax.get_ylabel() == "hare"


def test_phase_caps_num_draws_and_errors(post):
    ax = plot_phase(post, num_draws=500, num_points=N_PRED, key=0)
    assert len(ax.get_lines()) == CHAINS * DRAWS + 1
    with pytest.raises(bo.ConfigError, match=r"`x` and `y` are the same state \('hare'\)"):
        plot_phase(post, x=0, y="hare", key=0)
    with pytest.raises(bo.ConfigError, match=r"`y`='wolf' is not a state; the states are \['hare', 'lynx'\]"):
        plot_phase(post, y="wolf", key=0)
    with pytest.raises(bo.ConfigError, match=r"`num_draws` must be a positive int; got 0"):
        plot_phase(post, num_draws=0, key=0)


# ------------------------------------------------------------------ vector field
def _lv_rhs_numpy(p, u, v):
    return (p["alpha"] - p["beta"] * v) * u, (-p["gamma"] + p["delta"] * u) * v


def test_vector_field_spread_matches_numpy_lotka_volterra(post):
    grid = 6
    ax = plot_vector_field(post, grid=grid, num_draws=1000)
    fig = ax.figure
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    # default window: data range widened by 10%, kept positive
    lo, hi = YS[:, 0].min(), YS[:, 0].max()
    assert ax.get_xlim() == pytest.approx((max(lo - 0.1 * (hi - lo), 0.5 * lo), hi + 0.1 * (hi - lo)))
    gx, gy = np.linspace(*ax.get_xlim(), grid), np.linspace(*ax.get_ylim(), grid)
    U, V = np.meshgrid(gx, gy)
    p = {k: post.samples[k].reshape(-1, 1, 1).astype(np.float64) for k in TRUE}
    du, dv = _lv_rhs_numpy(p, U[None], V[None])  # (draws, grid_y, grid_x)
    expected = np.sqrt(du.var(axis=0) + dv.var(axis=0))
    np.testing.assert_allclose(np.asarray(meshes[0].get_array()).reshape(grid, grid), expected, rtol=2e-3)
    streams = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(streams) == 1 and len(streams[0].get_segments()) > 0
    assert len(ax.get_lines()) == 1  # the data
    assert len(fig.axes) == 2  # plot + colour bar


def test_vector_field_relative_and_errors(post):
    ax = plot_vector_field(post, grid=4, relative=True, data=False, xlim=(10, 60), ylim=(2, 40))
    assert ax.get_xlim() == (10.0, 60.0)
    assert len(ax.get_lines()) == 0
    rel = np.asarray([c for c in ax.collections if isinstance(c, QuadMesh)][0].get_array())
    assert np.all(np.isfinite(rel)) and np.all(rel > 0)
    with pytest.raises(bo.ConfigError, match=r"`grid` must be an int >= 2; got 1"):
        plot_vector_field(post, grid=1)
    with pytest.raises(bo.ConfigError, match=r"`fixed` must have one value per state, shape \(2,\); got \(3,\)"):
        plot_vector_field(post, fixed=[1.0, 2.0, 3.0])


def test_field_draws_of_neural_field_match_hand_written_mlp(data):
    """substitute + vmap over draws gives the same dy/dt as the MLP written out by hand."""
    model = bo.models.neural(data=data, width=4, depth=1)
    rng = np.random.default_rng(2)
    samples = {
        name: rng.normal(size=(2, 3) + shape).astype(np.float32) for name, shape, _ in field_sites(model.spec.field)
    }
    post = bo.Posterior(samples, {}, data, model, {"method": "test"})
    pts = np.array([[20.0, 5.0], [40.0, 10.0], [60.0, 30.0]])
    got = field_draws(post, pts)
    assert got.shape == (6, 3, 2)
    field = model.spec.field
    y_scale, t_scale = np.asarray(field.y_scale), field.t_scale
    w0, b0 = samples["field.layers[0].weight"].reshape(6, 4, 2), samples["field.layers[0].bias"].reshape(6, 4)
    w1, b1 = samples["field.layers[1].weight"].reshape(6, 2, 4), samples["field.layers[1].bias"].reshape(6, 2)
    x = np.log(pts / y_scale)  # (points, 2)
    h = np.tanh(np.einsum("dij,pj->dpi", w0, x) + b0[:, None])
    out = np.einsum("dij,dpj->dpi", w1, h) + b1[:, None]
    np.testing.assert_allclose(got, pts[None] * out / t_scale, rtol=1e-4, atol=1e-6)
    assert field_draws(post, pts, num_draws=2).shape == (2, 3, 2)
    with pytest.raises(bo.ConfigError, match=r"`points` must have shape \(points, state\) = \(n, 2\); got \(3,\)"):
        field_draws(post, pts[0].tolist() + [1.0])


# ------------------------------------------------------------------ prior predictive
@pytest.mark.slow  # compiles the prior predictive twice (vmapped and one draw per call): ~40 s on a busy 2-core box
def test_prior_predictive_band_matches_looped_draws(data):
    model = bo.models.lotka_volterra()
    ts = np.linspace(1900.0, 1906.0, 13)
    (ax,) = plot_prior_predictive(model, data, key=5, num_draws=40, ts=ts, prob=0.8, num_lines=6)
    md = data.model_data()
    pts = jnp.asarray((ts - 1900.0)[None], dtype=md.ts.dtype)
    obs, failed = [], []

    @jax.jit
    def one(k):  # one draw per call, no vmap
        tr = handlers.trace(handlers.seed(model, k)).get_trace(md, predict_ts=pts)
        return tr["obs_predict"]["value"][0], tr["predict_status"]["value"][0]

    for k in jax.random.split(jax.random.PRNGKey(5), 40):
        o, status = one(k)
        obs.append(np.asarray(o))
        failed.append(bool(status != 0))
    obs, ok = np.stack(obs), ~np.array(failed)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    for k in range(2):
        x, lo, hi = _band(bands[k], ts.size)
        q = _quantiles(obs[ok, :, k], 0.8)
        np.testing.assert_allclose(lo, q[0], rtol=1e-3)
        np.testing.assert_allclose(hi, q[2], rtol=1e-3)
    assert len(ax.get_lines()) == 2 * (6 + 1)  # per state: 6 prior trajectories, data
    assert ax.get_yscale() == "log"  # positive likelihood
    assert f"{int((~ok).sum())} of 40 draws failed" in ax.get_title()


def test_prior_predictive_errors(data):
    model = bo.models.lotka_volterra()
    with pytest.raises(bo.ConfigError, match=r"`yscale` must be 'log', 'linear' or 'symlog'; got 'cubic'"):
        plot_prior_predictive(model, data, key=0, yscale="cubic")
    with pytest.raises(bo.ConfigError, match=r"`num_draws` must be a positive int; got 0"):
        plot_prior_predictive(model, data, key=0, num_draws=0)
    with pytest.raises(bo.ConfigError, match=r"`model` must come from bayesode.make_model"):
        plot_prior_predictive(lambda md: None, data, key=0)


# ------------------------------------------------------------------ gallery
def _load_gallery():
    path = Path(__file__).resolve().parents[1] / "docs" / "gallery" / "make_gallery.py"
    spec = importlib.util.spec_from_file_location("make_gallery", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # compiles the prior predictive and a forecast grid: ~40 s on a busy 2-core box
def test_gallery_figures_are_labelled_legible_and_the_legend_hides_nothing(post, data, tmp_path):
    """docs/gallery/make_gallery.py renders every plot; each figure is inspected as a reader would see it."""
    drawn = _load_gallery().render_gallery(post, tmp_path, key=0, until=1909.0, prior_draws=20, num_points=N_PRED)
    assert set(drawn) == {"prior_predictive", "trajectories", "phase", "vector_field"}
    for name, axes in drawn.items():
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
        axes = np.atleast_1d(axes).ravel()
        fig = axes[0].figure
        w, h = fig.get_size_inches()
        assert w >= 6.0 and h >= 4.0, (name, w, h)  # legible: at least 720 x 480 px at the CLI's 120 dpi
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), name
            assert ax.title.get_fontsize() >= 10 and ax.xaxis.label.get_fontsize() >= 10, name
        legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
        assert legends, name
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert min(t.get_fontsize() for t in legend.get_texts()) >= 8, name
            for ax in axes:
                for text in ax.texts:  # e.g. the forecast label
                    assert not box.overlaps(text.get_window_extent(renderer)), (name, text.get_text())
                if legend in fig.legends:  # a figure legend sits beside the panels, covering none
                    assert not box.overlaps(ax.get_window_extent(renderer)), name
    (traj,) = drawn["trajectories"]
    assert traj.get_xlabel() == data.time_name and traj.get_ylabel() == "hare, lynx"
    assert [t.get_text().strip() for t in traj.texts] == ["forecast"]
    labels = drawn["trajectories"][0].figure.legends[0].get_texts()
    assert {"hare data", "lynx data", "hare median"} <= {t.get_text() for t in labels}
    assert (drawn["phase"].get_xlabel(), drawn["phase"].get_ylabel()) == ("hare", "lynx")
    assert drawn["prior_predictive"][0].get_ylabel() == "hare, lynx"


def test_axis_labels_carry_units_when_the_data_have_them(data):
    from bayesode.plots.core import time_label, values_label

    class WithUnits:  # the attributes a Data with units carries
        time_name, time_unit = "year", "a"
        state_names, state_units = ("hare", "lynx"), ("thousands", "thousands")

    assert time_label(data) == "time" and values_label(data, ["hare", "lynx"]) == "hare, lynx"
    assert time_label(WithUnits) == "year [a]"
    assert values_label(WithUnits, ["hare", "lynx"]) == "hare, lynx [thousands]"


# ------------------------------------------------------------------ ArviZ
# ArviZ 0.23 calls a matplotlib helper that matplotlib 3.11 deprecates (upstream, harmless).
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:matplotlib.MatplotlibDeprecationWarning")
def test_arviz_plots_work_on_to_arviz(post):
    idata = post.to_arviz(key=0)
    axes = az.plot_trace(idata, var_names=["alpha", "beta", "sigma"])
    assert axes.shape == (3, 2) and all(len(a.get_lines()) >= CHAINS for a in axes[:, 1])
    axes = az.plot_rank(idata, var_names=["alpha", "gamma"])
    assert len(np.ravel(axes)) == 2
    ax = az.plot_ppc(idata, var_names=["hare"], num_pp_samples=20, random_seed=0)
    assert len(np.ravel(ax)[0].get_lines()) >= 20 + 1  # predictive draws + observed (+ mean)
    # LOO-PIT over every observation: the per-state variables in log_likelihood's order (hare's, then lynx's)
    y = np.concatenate([idata.observed_data[n].values for n in ("hare", "lynx")])
    y_hat = np.concatenate([idata.posterior_predictive[n].values for n in ("hare", "lynx")], axis=-1)
    ax = az.plot_loo_pit(idata, y=y, y_hat=y_hat.reshape(-1, y.size).T)
    assert len(ax.get_lines()) >= 1
