"""Fixed points, Lyapunov exponents and posterior stability (bayesode.diagnostics.fixed_points, .lyapunov, .stability).

Tolerances: fixed points of linear and Lotka-Volterra fields are exact up to
float32 rounding (1e-4 relative). Lyapunov exponents are finite-time
estimates; with averaging time T the bias of a regular orbit is about
log(transient growth) / T, so 0.05 at T = 40-100 for the linear and
oscillator systems. For Lorenz the finite-time spread at T = 100 is a few
hundredths; +-0.1 around 0.906 (Sprott 2003) leaves room for it.
"""

from __future__ import annotations

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib
import numpy as np
import numpyro.distributions as dist
import pytest

import bayesode as bo
from bayesode.diagnostics.fixed_points import (
    CENTRE,
    KIND_NAMES,
    KIND_NONE,
    SADDLE,
    STABLE_FOCUS,
    STABLE_NODE,
    UNSTABLE_FOCUS,
    UNSTABLE_NODE,
    fixed_points,
)
from bayesode.diagnostics.lyapunov import lyapunov_exponent
from bayesode.diagnostics.stability import STABILITY_PROGRAMS, posterior_stability
from bayesode.plots.stability import plot_stability

matplotlib.use("Agg")


class Counter:
    """Hashable (by identity) mutable trace counter."""

    def __init__(self):
        self.n = 0


_SHARED = Counter()


class Linear(eqx.Module):
    """dy/dt = A y; counts how often it is traced."""

    matrix: jax.Array
    state_dim: int = eqx.field(static=True)
    traces: Counter = eqx.field(static=True)

    def __init__(self, matrix, traces=None):
        self.matrix = jnp.asarray(matrix, jnp.float32)
        self.state_dim = self.matrix.shape[-1]
        self.traces = _SHARED if traces is None else traces  # one structure: one compile across tests

    def __call__(self, t, y, args):
        self.traces.n += 1
        return self.matrix @ y


def _box(d, r):
    return (-r * jnp.ones(d), r * jnp.ones(d))


# ----------------------------------------------------------------------------- fixed points
@pytest.mark.parametrize(
    "matrix, kind, eig",
    [
        ([[-1.0, 0.0], [0.0, -0.3]], STABLE_NODE, [-0.3, -1.0]),
        ([[-0.5, 2.0], [-2.0, -0.5]], STABLE_FOCUS, [-0.5, -0.5]),
        ([[0.2, 1.0], [-1.0, 0.2]], UNSTABLE_FOCUS, [0.2, 0.2]),
        ([[1.0, 2.0], [2.0, 1.0]], SADDLE, [3.0, -1.0]),
        ([[0.0, 1.0], [-1.0, 0.0]], CENTRE, [0.0, 0.0]),
    ],
)
def test_linear_fixed_point_is_origin_with_known_kind(matrix, kind, eig):
    fp = fixed_points(Linear(matrix), key=jr.key(0), num_starts=8, bounds=_box(2, 5.0))
    assert int(fp.valid.sum()) == 1
    assert bool(fp.valid[0]) and not bool(fp.valid[1:].any())
    np.testing.assert_allclose(fp.points[0], 0.0, atol=1e-5)
    assert int(fp.kind[0]) == kind, KIND_NAMES[int(fp.kind[0])]
    np.testing.assert_allclose(np.real(fp.eigenvalues[0]), eig, atol=1e-5)
    assert np.all(np.isnan(fp.points[1:])) and np.all(fp.kind[1:] == KIND_NONE)
    assert KIND_NAMES[KIND_NONE] == "none"


def test_lotka_volterra_fixed_points_saddle_and_centre():
    a, b, g, d = 1.1, 0.4, 0.4, 0.1
    fp = fixed_points(bo.lotka_volterra_field(a, b, g, d), key=jr.key(1), num_starts=32, bounds=(0.0, 10.0))
    pts = np.asarray(fp.points)[np.asarray(fp.valid)]
    kinds = np.asarray(fp.kind)[np.asarray(fp.valid)]
    assert pts.shape == (2, 2)
    # Sorted by the first coordinate: the origin, then (gamma/delta, alpha/beta).
    np.testing.assert_allclose(pts[0], [0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(pts[1], [g / d, a / b], rtol=1e-4)
    assert kinds.tolist() == [SADDLE, CENTRE]
    # Centre: eigenvalues +-i sqrt(alpha gamma).
    np.testing.assert_allclose(np.abs(np.imag(fp.eigenvalues[1])), np.sqrt(a * g), rtol=1e-4)


def test_explicit_starts_and_time_argument():
    # dy/dt = y - t has its root at y = t: the time argument is honoured.
    field = lambda t, y, args: y - t * args  # noqa: E731
    fp = fixed_points(field, starts=jnp.array([[0.0], [3.0]]), t=2.0, args=1.5)
    assert int(fp.valid.sum()) == 1
    np.testing.assert_allclose(fp.points[0], [3.0], rtol=1e-6)


def test_fixed_points_vmaps_over_fields_and_compiles_once():
    traces = Counter()
    base = Linear(jnp.zeros((2, 2)), traces)
    mats = jnp.stack([-jnp.eye(2), jnp.eye(2), jnp.array([[1.0, 0.0], [0.0, -1.0]])])

    def one(m):
        return fixed_points(eqx.tree_at(lambda f: f.matrix, base, m), starts=jnp.ones((4, 2)))

    kinds = jax.vmap(one)(mats).kind[:, 0]
    assert kinds.tolist() == [STABLE_NODE, UNSTABLE_NODE, SADDLE]
    fixed_points(eqx.tree_at(lambda f: f.matrix, base, -jnp.eye(2)), starts=jnp.ones((4, 2)))
    n = traces.n
    fixed_points(eqx.tree_at(lambda f: f.matrix, base, -2 * jnp.eye(2)), starts=jnp.ones((4, 2)))
    assert traces.n == n, "a new parameter value retraced the search"


def test_fixed_points_errors():
    with pytest.raises(bo.ConfigError, match="needs starting points"):
        fixed_points(Linear(jnp.eye(2)), num_starts=4)
    with pytest.raises(bo.ConfigError, match="no `state_dim`"):
        fixed_points(lambda t, y, a: -y, key=jr.key(0), bounds=(0.0, 1.0))
    with pytest.raises(bo.ConfigError, match=r"`starts` must have shape \(num_starts, state\)"):
        fixed_points(Linear(jnp.eye(2)), starts=jnp.ones(2))


# ----------------------------------------------------------------------------- Lyapunov exponents
# One run length for the linear systems, so they share one compiled program: 4 burn-in and 80 averaging windows.
RUN = dict(t_burn=2.0, t_total=42.0, dt_renorm=0.5)


def test_stable_linear_exponent_is_max_real_eigenvalue():
    res = lyapunov_exponent(Linear([[-0.5, 2.0], [-2.0, -0.5]]), jnp.ones(2), **RUN)
    assert int(res.status) == 0
    assert abs(float(res.exponent) - (-0.5)) < 0.05
    assert res.running.shape == (80,) and res.ys.shape == (80, 2)
    assert float(res.running[-1]) == float(res.exponent)


def test_saddle_exponent_at_equilibrium():
    # At y* = 0 the state stays put and the tangent grows like exp(3 t).
    res = lyapunov_exponent(Linear([[1.0, 2.0], [2.0, 1.0]]), jnp.zeros(2), **RUN)
    assert abs(float(res.exponent) - 3.0) < 0.05


def test_harmonic_oscillator_exponent_is_zero():
    res = lyapunov_exponent(Linear([[0.0, 1.0], [-1.0, 0.0]]), jnp.array([1.0, 0.0]), **RUN)
    assert abs(float(res.exponent)) < 0.05


def test_lorenz_largest_exponent():
    def lorenz(t, y, args):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (28.0 - y[2]) - y[1], y[0] * y[1] - 8.0 / 3.0 * y[2]])

    config = bo.SolverConfig(rtol=1e-8, atol=1e-8, max_steps=4096)
    with jax.enable_x64(True):
        res = lyapunov_exponent(
            lorenz, jnp.array([1.0, 1.0, 20.0]), t_burn=10.0, t_total=110.0, dt_renorm=0.5, config=config
        )
        assert res.exponent.dtype == jnp.float64
        assert int(res.status) == 0
        assert abs(float(res.exponent) - 0.906) < 0.1
        print(f"Lorenz largest Lyapunov exponent {float(res.exponent):.3f} (literature 0.906)")


def test_failed_integration_gives_nan_and_status():
    res = lyapunov_exponent(Linear(5.0 * jnp.eye(2)), jnp.ones(2), **RUN)
    assert int(res.status) == 3  # blow-up: the state leaves SolverConfig.max_abs_state
    assert np.isnan(float(res.exponent))


def test_lyapunov_errors():
    with pytest.raises(bo.ConfigError, match="t_total includes the burn-in"):
        lyapunov_exponent(Linear(-jnp.eye(2)), jnp.ones(2), t_burn=5.0, t_total=5.0, dt_renorm=1.0)
    with pytest.raises(bo.ConfigError, match="`dt_renorm` must be positive"):
        lyapunov_exponent(Linear(-jnp.eye(2)), jnp.ones(2), t_burn=0.0, t_total=5.0, dt_renorm=0.0)
    with pytest.raises(bo.ConfigError, match=r"`y0` must have shape \(state,\)"):
        lyapunov_exponent(Linear(-jnp.eye(2)), jnp.ones((1, 2)), t_burn=0.0, t_total=5.0, dt_renorm=1.0)


# ----------------------------------------------------------------------------- posterior
def _van_der_pol(t, y, p, args):
    return jnp.stack([y[1], p["mu"] * (1.0 - y[0] ** 2) * y[1] - y[0]])


def _fake_posterior(field, priors, values, y0, ts, ys):
    """A Posterior with hand-made draws: ``values`` maps site -> (chain, draw) array.

    ``ys`` only needs the right range and span (they set the region and the
    default run length), so closed-form curves stand in for a solve.
    """
    data = bo.make_data(ts, ys, state_names=["u", "v"])
    model = bo.make_model(field, param_priors=priors)
    shape = next(iter(values.values())).shape
    samples = {k: np.asarray(v, np.float32) for k, v in values.items()}
    samples["y0"] = np.broadcast_to(np.asarray(y0, np.float32), shape + (1, 2)).copy()
    samples["sigma"] = np.full(shape + (2,), 0.1, np.float32)
    return bo.Posterior(samples=samples, sample_stats={}, data=data, model=model, settings={})


@pytest.fixture(scope="module")
def vdp_stability():
    """Van der Pol draws: mu = 1 (stable limit cycle) in chain 0, mu = -0.5 (stable focus) in chain 1."""
    field = bo.MechanisticField(_van_der_pol, {"mu": 1.0}, state_dim=2)
    mu = np.array([[1.0, 1.0, 1.0], [-0.5, -0.5, -0.5]])
    ts = np.linspace(0.0, 10.0, 21)
    ys = np.stack([2.0 * np.cos(ts), -2.0 * np.sin(ts)], axis=1)  # about the mu = 1 cycle's size
    post = _fake_posterior(field, {"mu": dist.Normal(0.0, 1.0)}, {"mu": mu}, [1.0, 0.0], ts, ys)
    return posterior_stability(post, key=jr.key(0), num_starts=8, batch_size=4)


def test_posterior_stability_van_der_pol(vdp_stability):
    ds = vdp_stability
    assert dict(ds.sizes) == {"chain": 2, "draw": 3, "fixed_point_id": 1, "state": 2, "eigen": 2, "window": 180}
    assert ds["fixed_point"].dims == ("chain", "draw", "fixed_point_id", "state")
    np.testing.assert_allclose(ds["fixed_point"].values, 0.0, atol=1e-5)
    assert (ds["fixed_point_kind"].sel(chain=0) == UNSTABLE_FOCUS).all()
    assert (ds["fixed_point_kind"].sel(chain=1) == STABLE_FOCUS).all()
    # mu = -0.5: the orbit spirals into the origin at Re(eig) = mu / 2.
    np.testing.assert_allclose(ds["lyapunov_exponent"].sel(chain=1), -0.25, atol=0.03)
    assert np.all(np.abs(ds["lyapunov_exponent"].sel(chain=0)) < ds.attrs["lyapunov_tol"])
    assert ds["limit_cycle"].sel(chain=0).all() and not ds["limit_cycle"].sel(chain=1).any()
    assert ds.attrs["p_stable_fixed_point"] == 0.5
    assert ds.attrs["p_limit_cycle"] == 0.5
    assert ds.attrs["p_chaos"] == 0.0
    assert ds.attrs["p_lyapunov_failed"] == 0.0
    # Default run length: span 10, so burn-in 10, total 100, windows of 0.5.
    assert (ds.attrs["t_burn"], ds.attrs["t_total"], ds.attrs["dt_renorm"]) == (10.0, 100.0, 0.5)


# ArviZ 0.23's plot_posterior calls a matplotlib 3.11 API that warns of its deprecation (upstream).
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping.*")
def test_posterior_stability_works_with_arviz(vdp_stability):
    summary = az.summary(vdp_stability, var_names=["lyapunov_exponent", "num_fixed_points"], kind="stats")
    assert list(summary.index) == ["lyapunov_exponent", "num_fixed_points"]
    np.testing.assert_allclose(summary.loc["num_fixed_points", "mean"], 1.0)
    axes = az.plot_posterior(vdp_stability, var_names=["lyapunov_exponent"])
    assert np.size(axes) == 1


def test_posterior_stability_lotka_volterra():
    a, b, g, d = 1.0, 0.1, 1.5, 0.075
    field = bo.lotka_volterra_field(a, b, g, d)
    priors = {k: dist.LogNormal(0.0, 1.0) for k in ("alpha", "beta", "gamma", "delta")}
    values = {k: np.full((1, 2), v) for k, v in dict(alpha=a, beta=b, gamma=g, delta=d).items()}
    ts = np.linspace(0.0, 15.0, 31)
    ys = np.stack([20.0 + 15.0 * np.cos(ts), 10.0 + 8.0 * np.sin(ts)], axis=1)  # orbits around (20, 10)
    post = _fake_posterior(field, priors, values, [10.0, 5.0], ts, ys)
    ds = posterior_stability(post, key=jr.key(3), num_draws=1, num_starts=16, lyapunov=False)
    assert dict(ds.sizes) == {"chain": 1, "draw": 1, "fixed_point_id": 2, "state": 2, "eigen": 2}
    assert "lyapunov_exponent" not in ds and "p_chaos" not in ds.attrs
    pts = ds["fixed_point"].values[0, 0]
    np.testing.assert_allclose(pts[1], [g / d, a / b], rtol=1e-4)
    assert ds["fixed_point_kind"].values[0, 0].tolist() == [SADDLE, CENTRE]
    # The centre lies inside the data's box, the origin on its widened edge (clipped at 0).
    assert ds["fixed_point_in_region"].values[0, 0].tolist() == [True, True]
    assert ds.attrs["p_stable_fixed_point"] == 0.0
    assert ds["draw"].values.tolist() == [0]


def test_stability_programs_live_in_the_diagnostics_wing_not_on_the_model():
    field = bo.lotka_volterra_field(1.0, 0.1, 1.5, 0.075)
    priors = {k: dist.LogNormal(0.0, 1.0) for k in ("alpha", "beta", "gamma", "delta")}
    values = {k: np.full((1, 2), v) for k, v in dict(alpha=1.0, beta=0.1, gamma=1.5, delta=0.075).items()}
    ts = np.linspace(0.0, 15.0, 31)
    ys = np.stack([20.0 + 15.0 * np.cos(ts), 10.0 + 8.0 * np.sin(ts)], axis=1)
    post = _fake_posterior(field, priors, values, [10.0, 5.0], ts, ys)

    def programs():
        return {k: v for k, v in STABILITY_PROGRAMS._entries.items() if k[0] is post.model}

    first = posterior_stability(post, key=jr.key(3), num_starts=4, lyapunov=False)
    kept = programs()
    assert len(kept) == 1  # one compiled program for this model and these settings
    second = posterior_stability(post, key=jr.key(3), num_starts=4, lyapunov=False)
    after = programs()
    assert after.keys() == kept.keys() and all(after[k] is kept[k] for k in kept)  # reused, not rebuilt
    np.testing.assert_array_equal(first["fixed_point"].values, second["fixed_point"].values)
    assert not [k for k in vars(post.model) if k.startswith("_bayesode")], vars(post.model).keys()


def test_posterior_stability_neural_field_partially_observed():
    # MLP weights (sites field.*) and an observation_fn: the region comes from each draw's trajectory.
    from numpyro import handlers

    from bayesode.model.priors import field_sites

    field = bo.MLPField(2, width=4, depth=1, key=jr.key(0))
    model = bo.make_model(field, observation_fn=lambda y: y[:1], y0_prior=dist.Normal(0.0, 1.0))
    ts = np.linspace(0.0, 4.0, 9)
    data = bo.make_data(ts, np.sin(ts)[:, None], state_names=["u"])
    rng = np.random.default_rng(5)
    sites = {name: shape for name, shape, _ in field_sites(field)} | {"y0": (1, 2), "sigma": (1,)}
    samples = {k: rng.normal(size=(2, 2) + shape).astype(np.float32) for k, shape in sites.items()}
    samples["sigma"] = np.abs(samples["sigma"])
    post = bo.Posterior(samples=samples, sample_stats={}, data=data, model=model, settings={})
    ds = posterior_stability(post, key=jr.key(6), num_starts=8, lyapunov=False)
    assert ds["fixed_point"].dims == ("chain", "draw", "fixed_point_id", "state")
    assert ds["state"].values.tolist() == ["x0", "x1"]
    # Regions differ between draws (they follow each draw's trajectory).
    assert np.unique(ds["region_high"].values.reshape(4, 2), axis=0).shape[0] > 1
    assert int(ds["num_fixed_points"].sum()) >= 1  # these seeds give saddles in two of the four draws
    for c in range(2):
        for d in range(2):
            params = {k: v[c, d] for k, v in samples.items()}
            build = handlers.substitute(lambda: bo.sample_field(field, None, {}), data=params)
            f = handlers.seed(build, 0)()
            valid = ds["fixed_point_valid"].values[c, d]
            for y in ds["fixed_point"].values[c, d][valid]:
                assert np.max(np.abs(f(0.0, jnp.asarray(y), None))) < 1e-4


def test_posterior_stability_errors():
    field = bo.MechanisticField(_van_der_pol, {"mu": 1.0}, state_dim=2)
    ts = np.array([0.0, 1.0, 2.0])
    post = _fake_posterior(
        field, {"mu": dist.Normal(0.0, 1.0)}, {"mu": np.ones((1, 2))}, [1.0, 0.0], ts, np.ones((3, 2))
    )
    post.samples.pop("mu")
    with pytest.raises(bo.ConfigError, match=r"lacks the field site\(s\) \['mu'\]"):
        posterior_stability(post, key=jr.key(0))
    post.model = None
    with pytest.raises(bo.ConfigError, match="`post.model` is None"):
        posterior_stability(post, key=jr.key(0))


# ----------------------------------------------------------------------------- plot
def test_plot_stability_draws_histogram_and_eigenvalues(vdp_stability):
    import matplotlib.pyplot as plt

    axes = plot_stability(vdp_stability, bins=12)  # the package's convention: take ax, return the axes
    hist_ax, eig_ax = axes
    assert len(hist_ax.patches) == 12
    assert sum(p.get_height() for p in hist_ax.patches) == 6  # one count per draw
    points = sum(len(c.get_offsets()) for c in eig_ax.collections)
    assert points == 6 * 2  # one fixed point per draw, two eigenvalues each
    labels = [t.get_text() for t in eig_ax.get_legend().get_texts()]
    assert labels == ["stable focus", "unstable focus"]
    assert hist_ax.get_xlabel() == "exponent (1 / time)" and eig_ax.get_ylabel() == "Im(eigenvalue)"
    plt.close(hist_ax.figure)
    with pytest.raises(bo.ConfigError, match="two matplotlib Axes"):
        plot_stability(vdp_stability, ax=[hist_ax])
