"""Structured fields: each guarantee holds for weights drawn as the prior draws them.

Weights are replaced by ``Normal(0, 1)`` draws (what ``weight_prior=Normal(1.0)``
samples), so the properties are checked where inference will look, not only
at the small initial weights.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import bayesode as bo
from bayesode.errors import ConfigError
from bayesode.fields.basic import _ACTIVATIONS
from bayesode.fields.bounded import LipschitzField, StableField
from bayesode.fields.conservative import AntisymmetricField, HamiltonianField


def prior_draw(field, key, scale=1.0):
    """``field`` with every inexact leaf replaced by a ``Normal(0, scale)`` draw."""
    params, static = eqx.partition(field, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    new = [
        scale * jr.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(jr.split(key, len(leaves)), leaves, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, new), static)


def field_fn(f):
    return lambda y: f(0.0, y, None)


# Jitted, with the field as an argument: one compilation per field structure,
# reused across weight draws (op-by-op evaluation of these nets is ~4x slower).
@eqx.filter_jit
def evaluate(f, ys):
    """``f(0, y)`` for each row of ``ys`` (point, state)."""
    return jax.vmap(field_fn(f))(ys)


@eqx.filter_jit
def jacobians(f, ys):
    """(point, state, state) Jacobians ``∂f/∂y``."""
    return jax.vmap(jax.jacfwd(field_fn(f)))(ys)


@eqx.filter_jit
def value_and_grad(fn, ys):
    """A scalar function (e.g. ``f.energy``) and its gradient at each row of ``ys``."""
    return jax.vmap(jax.value_and_grad(fn))(ys)


def oscillator_energy(q, p, prm):
    return 0.5 * prm["k"] * jnp.sum(q**2) + 0.5 * jnp.sum(p**2)


# --- antisymmetric -----------------------------------------------------------


@eqx.filter_jit
def _psd_factor(f, y):
    """The P of the docstring: D (width=None) or Kᵀ D K, in scaled coordinates."""
    act = _ACTIVATIONS[f.activation]
    x = y / jnp.asarray(f.y_scale)
    pre = f.matrix() @ x + f.bias if f.lift is None else f.lift @ x + f.bias
    d = jax.vmap(jax.grad(act))(pre)
    return jnp.diag(d) if f.lift is None else f.lift.T @ (d[:, None] * f.lift)


@pytest.mark.parametrize("width", [None, 2, 7])
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_antisymmetric_jacobian_eigenvalues_in_strip(width, activation):
    # Bound: -γ λmax(P) <= t_scale Re λ <= -γ λmin(P). Eigenvalues are computed in
    # float64 from the float32 Jacobian; tolerance 1e-4 (1 + ||J||) covers the
    # float32 rounding of J (~1e-7 ||J||) amplified by eigenvector conditioning.
    gamma, t_scale = 0.7, 2.0
    f = AntisymmetricField(4, gamma, width, activation, key=jr.key(0), y_scale=[1.0, 2.0, 0.5, 3.0], t_scale=t_scale)
    for seed in range(6):
        g = prior_draw(f, jr.key(seed))
        ys = 2.0 * jr.normal(jr.key(100 + seed), (8, 4))
        jac = np.asarray(jacobians(g, ys), dtype=np.float64)
        re = t_scale * np.linalg.eigvals(jac).real  # (point, state)
        p_eigs = np.linalg.eigvalsh(np.asarray(jax.vmap(_psd_factor, (None, 0))(g, ys), dtype=np.float64))
        tol = 1e-4 * (1.0 + np.linalg.norm(jac, axis=(1, 2)))[:, None]
        assert np.all(re <= -gamma * np.maximum(p_eigs[:, :1], 0.0) + tol), (re, p_eigs)
        assert np.all(re >= -gamma * p_eigs[:, -1:] - tol), (re, p_eigs)


def test_antisymmetric_gamma_zero_is_purely_imaginary_and_gamma_damps():
    f = prior_draw(AntisymmetricField(4, gamma=0.0, key=jr.key(0)), jr.key(1))
    y = jr.normal(jr.key(2), (4,))
    lam = np.linalg.eigvals(np.asarray(jacobians(f, y[None])[0], dtype=np.float64))
    assert np.max(np.abs(lam.real)) < 1e-5
    assert np.max(np.abs(lam.imag)) > 0.1  # not the zero matrix
    # With tanh, D > 0, so the upper bound is strictly negative: every mode decays.
    g = prior_draw(AntisymmetricField(4, gamma=1.0, key=jr.key(0)), jr.key(1))
    lam = np.linalg.eigvals(np.asarray(jacobians(g, y[None])[0], dtype=np.float64))
    d_min = float(jnp.min(jnp.diag(_psd_factor(g, y))))
    assert d_min > 1e-3 and np.all(lam.real <= -d_min + 1e-5)


# --- Hamiltonian -------------------------------------------------------------


def test_hamiltonian_dH_dt_is_zero_pointwise():
    for f in [
        prior_draw(HamiltonianField(4, 16, 2, key=jr.key(0), y_scale=[1.0, 3.0, 0.5, 2.0], t_scale=0.5), jr.key(1)),
        HamiltonianField(
            4, hamiltonian=lambda q, p, prm: jnp.sum(jnp.cos(q)) * prm["a"] + jnp.sum(p**4), params={"a": 2.0}
        ),
    ]:
        ys = jr.normal(jr.key(3), (50, 4))
        grad_h, dy = value_and_grad(f.energy, ys)[1], evaluate(f, ys)
        # Exactly 0 in exact arithmetic; float32 rounding of the dot product is ~1e-7 |∇H| |f|.
        scale = jnp.linalg.norm(grad_h, axis=1) * jnp.linalg.norm(dy, axis=1)
        assert bool(jnp.all(jnp.abs(jnp.sum(grad_h * dy, axis=1)) <= 1e-5 * scale + 1e-7))
        assert float(jnp.min(scale)) > 0  # the field moves


def test_hamiltonian_user_energy_matches_harmonic_oscillator():
    f = HamiltonianField(2, hamiltonian=oscillator_energy, params={"k": 4.0})
    ts = jnp.linspace(0.0, 3.0, 31)
    sol = bo.solve(f, jnp.array([1.0, 0.0]), ts, config=bo.SolverConfig(rtol=1e-7, atol=1e-7))
    assert int(sol.status) == 0
    np.testing.assert_allclose(sol.ys[:, 0], jnp.cos(2.0 * ts), atol=1e-4)
    np.testing.assert_allclose(sol.ys[:, 1], -2.0 * jnp.sin(2.0 * ts), atol=2e-4)


def test_hamiltonian_energy_drift_of_long_solve_is_small():
    # A prior draw with a closed orbit (~30 revolutions, ~3700 Tsit5 steps). Tsit5
    # is not symplectic, so the bound is the solver's: with rtol = atol = 1e-7
    # (float32 eps = 1.2e-7) per-step errors are ~1e-7 relative; measured drift is
    # 1.1e-5 of |H(y0)|, and 1e-4 leaves room for platform rounding while a
    # field that does not conserve H (e.g. an MLPField) changes H by O(1).
    f = prior_draw(HamiltonianField(2, 16, 2, key=jr.key(0)), jr.key(0))
    ts = jnp.linspace(0.0, 50.0, 201)
    sol = bo.solve(f, jnp.array([1.0, 0.0]), ts, config=bo.SolverConfig(rtol=1e-7, atol=1e-7, max_steps=20_000))
    assert int(sol.status) == 0
    energy = value_and_grad(f.energy, sol.ys)[0]
    assert float(jnp.ptp(sol.ys[:, 0])) > 1.0  # the orbit is not a fixed point
    assert float(jnp.max(jnp.abs(energy - energy[0]))) <= 1e-4 * abs(float(energy[0]))


def test_hamiltonian_dissipation_energy_non_increasing():
    f = prior_draw(HamiltonianField(2, 16, 2, key=jr.key(0), dissipation=True), jr.key(0))
    rate = f.dissipation_rate()
    assert rate.shape == (1,) and bool(jnp.all(rate > 0))
    ys = jr.normal(jr.key(5), (50, 2))  # pointwise: dH/dt = -r (∂H/∂p)² <= 0
    grad_h = value_and_grad(f.energy, ys)[1]
    dh = jnp.sum(grad_h * evaluate(f, ys), axis=1)
    assert bool(jnp.all(dh <= 1e-6 * jnp.sum(grad_h**2, axis=1)))
    np.testing.assert_allclose(dh, -rate[0] * grad_h[:, 1] ** 2, rtol=1e-4, atol=1e-6)
    ts = jnp.linspace(0.0, 20.0, 201)
    sol = bo.solve(f, jnp.array([1.0, 0.0]), ts, config=bo.SolverConfig(rtol=1e-7, atol=1e-7))
    assert int(sol.status) == 0
    energy = value_and_grad(f.energy, sol.ys)[0]
    # Non-increasing up to the solver/rounding error of the conservative test above.
    assert float(jnp.max(jnp.diff(energy))) <= 1e-4 * abs(float(energy[0]))
    assert float(energy[-1]) < float(energy[0]) - 0.1  # and it does dissipate


# --- Lipschitz ---------------------------------------------------------------


@pytest.mark.parametrize("parametrisation, flat", [("spectral", 0.05), ("orthogonal", 0.2)])
@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus", "elu"])
def test_lipschitz_bound_holds_on_random_pairs(activation, parametrisation, flat):
    lip = 2.5
    f = LipschitzField(3, lip, 16, 2, activation, key=jr.key(0), parametrisation=parametrisation)
    worst = 0.0
    for seed in range(5):
        g = prior_draw(f, jr.key(seed))
        a, b = jr.normal(jr.key(10 + seed), (2, 500, 3)) * jnp.array([[[3.0]], [[0.1]]])
        b = a + b  # near pairs and far pairs both appear
        fa, fb = evaluate(g, a), evaluate(g, b)
        ratio = jnp.linalg.norm(fa - fb, axis=1) / jnp.linalg.norm(a - b, axis=1)
        worst = max(worst, float(jnp.max(ratio)))
        # 1e-4: float32 rounding of the difference of two O(1) outputs over O(0.1) gaps.
        assert float(jnp.max(ratio)) <= lip * (1 + 1e-4)
    assert worst > flat * lip  # prior draws are not trivially flat (see the docstring's numbers)


@pytest.mark.parametrize("parametrisation", ["spectral", "orthogonal"])
def test_lipschitz_bound_is_attained_and_scaled(parametrisation):
    # Aligned weights of norm >= 1, zero biases, tanh: near x = 0 the map is L x.
    f = LipschitzField(2, 1.5, 4, 2, key=jr.key(0), parametrisation=parametrisation, y_scale=[1.0, 10.0], t_scale=3.0)
    eye = jnp.eye(4, 2)
    f = eqx.tree_at(
        lambda m: [m.layers[0].weight, m.layers[1].weight, m.layers[2].weight] + [la.bias for la in m.layers],
        f,
        [5.0 * eye, 2.0 * jnp.eye(4), 7.0 * eye.T, jnp.zeros(4), jnp.zeros(4), jnp.zeros(2)],
    )
    s = jnp.array([1.0, 10.0])
    a, b = jnp.array([1e-3, 0.0]), jnp.array([-1e-3, 0.0])
    ratio = jnp.linalg.norm((f(0.0, a, None) - f(0.0, b, None)) / s) / jnp.linalg.norm((a - b) / s)
    assert 0.99 * 1.5 / 3.0 <= float(ratio) <= 1.5 / 3.0 * (1 + 1e-4)
    # Plain 2-norm bound with non-uniform y_scale: (L / t_scale) max(s) / min(s).
    g = prior_draw(f, jr.key(1), 2.0)
    pa, pb = jr.normal(jr.key(2), (2, 300, 2)) * s[None, None, :]
    ratio = jnp.linalg.norm(evaluate(g, pa) - evaluate(g, pb), axis=1) / jnp.linalg.norm(pa - pb, axis=1)
    assert float(jnp.max(ratio)) <= 1.5 / 3.0 * 10.0 * (1 + 1e-4)


# --- stable ------------------------------------------------------------------


def _stable_draw(seed):
    return prior_draw(
        StableField(3, alpha=0.5, width=16, depth=2, key=jr.key(0), y_scale=[1.0, 2.0, 0.5]), jr.key(seed)
    )


def test_stable_lyapunov_decrease_at_random_points():
    for seed in range(3):
        f = _stable_draw(seed)
        ys = 3.0 * jr.normal(jr.key(10 + seed), (500, 3))
        v, grad_v = value_and_grad(f.lyapunov, ys)
        fy = evaluate(f, ys)
        dv = jnp.sum(grad_v * fy, axis=1)
        assert bool(jnp.all(v > 0))
        # dV/dt <= -αV up to float32 rounding of ∇V·f (~1e-7 ||∇V|| ||f||); measured < 5e-7 relative.
        scale = jnp.linalg.norm(grad_v, axis=1) * jnp.linalg.norm(fy, axis=1) + 0.5 * v
        assert bool(jnp.all(dv <= -0.5 * v + 1e-4 * scale))
        # Not vacuous: the projection is active (equality) at a share of the points.
        assert float(jnp.mean(dv >= -0.5 * v - 1e-3 * scale)) > 0.1


def test_stable_trajectory_converges_to_origin():
    f = _stable_draw(1)
    y0 = jnp.array([3.0, -4.0, 1.0])
    ts = jnp.linspace(0.0, 20.0, 101)
    sol = bo.solve(f, y0, ts, config=bo.SolverConfig(rtol=1e-5, atol=1e-6, max_steps=20_000))
    assert int(sol.status) == 0
    v = value_and_grad(f.lyapunov, sol.ys)[0]
    bound = v[0] * jnp.exp(-0.5 * ts)
    # V(y(t)) <= V(y0) e^{-αt} up to the solver error (rtol 1e-5) and the float32
    # cancellation in V = g(x) - g(0) - ∇g(0)ᵀx (|g| ~ 1e2): measured excess 1.1e-5 at V = 0.014.
    assert bool(jnp.all(v <= bound * (1 + 1e-3) + 1e-4))
    x_end = sol.ys[-1] / jnp.array([1.0, 2.0, 0.5])
    assert float(jnp.sum(x_end**2)) <= float(bound[-1]) / f.eps * (1 + 1e-3) + 1e-5
    assert float(jnp.linalg.norm(sol.ys[-1])) < 0.05 * float(jnp.linalg.norm(y0))


def test_stable_field_is_continuous_at_the_origin():
    f = _stable_draw(0)
    # Near the origin the field is O(||y||): no rounding blow-up from the division
    # by ||∇V||² (a V built by subtracting g(0) and ∇g(0) gave O(1) errors here).
    radii = jnp.logspace(-7, -1, 13)
    directions = jr.normal(jr.key(0), (13, 3))
    points = radii[:, None] * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    values = evaluate(f, jnp.concatenate([jnp.zeros((1, 3)), points]))
    assert float(jnp.max(jnp.abs(values[0]))) <= 1e-6
    ratio = jnp.linalg.norm(values[1:], axis=1) / radii
    assert float(jnp.max(ratio)) < 100.0, ratio
    assert bool(jnp.all(jnp.isfinite(jacobians(f, points))))


# --- inside a model, and gradients through solve ------------------------------


FIELDS = {
    "antisymmetric": (lambda: AntisymmetricField(2, 0.1, key=jr.key(0)), {}),
    "antisymmetric_wide": (lambda: AntisymmetricField(2, 0.1, width=5, key=jr.key(0)), {}),
    "hamiltonian": (lambda: HamiltonianField(2, 8, 1, key=jr.key(0), dissipation=True), {}),
    "hamiltonian_user": (
        lambda: HamiltonianField(2, hamiltonian=oscillator_energy, params={"k": 1.0}),
        {"k": dist.LogNormal(0.0, 1.0)},
    ),
    "lipschitz": (lambda: LipschitzField(2, 2.0, 8, 1, key=jr.key(0)), {}),
    "lipschitz_orthogonal": (lambda: LipschitzField(2, 2.0, 8, 1, key=jr.key(0), parametrisation="orthogonal"), {}),
    "stable": (lambda: StableField(2, width=8, depth=2, key=jr.key(0)), {}),
}
EXPECTED_SITES = {
    "antisymmetric": {"field.weight": (2, 2), "field.bias": (2,)},
    "antisymmetric_wide": {"field.weight": (2, 2), "field.bias": (5,), "field.lift": (5, 2)},
    "hamiltonian": {
        "field.layers[0].weight": (8, 2),
        "field.layers[0].bias": (8,),
        "field.layers[1].weight": (1, 8),
        "field.layers[1].bias": (1,),
        "field.raw_dissipation": (1,),
    },
    "hamiltonian_user": {"k": ()},
    "lipschitz": {
        "field.layers[0].weight": (8, 2),
        "field.layers[0].bias": (8,),
        "field.layers[1].weight": (2, 8),
        "field.layers[1].bias": (2,),
    },
    "lipschitz_orthogonal": {"field.layers[0].weight": (8, 2), "field.layers[1].weight": (2, 8)},
    "stable": {
        "field.nominal[0].weight": (8, 2),
        "field.nominal[2].bias": (2,),
        "field.lyapunov_weight": (8, 2),
        "field.lyapunov_bias[1]": (8,),
        "field.lyapunov_pos[0]": (8, 8),
        "field.lyapunov_pos[1]": (8,),
    },
}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_field_in_model_has_expected_sites(name):
    make, param_priors = FIELDS[name]
    field = make()
    data = bo.make_data([0.0, 0.5, 1.0], [[1.0, 0.0], [0.9, -0.4], [0.6, -0.8]])
    model = bo.make_model(field, param_priors=param_priors)

    def sample_values():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data())
        return {k: site["value"] for k, site in trace.items() if site["type"] == "sample"}

    # Traced abstractly: the whole model (solve included) is built, but not
    # compiled, which would cost 5-20 s per field; the gradient tests run it.
    samples = jax.eval_shape(sample_values)
    for site, shape in EXPECTED_SITES[name].items():
        assert samples[site].shape == shape, site
    # Every inexact leaf is a site, and nothing else is sampled from the field.
    n_leaves = len(jax.tree.leaves(eqx.filter(field, eqx.is_inexact_array)))
    field_sites = [k for k in samples if k.startswith("field.") or k in param_priors]
    assert len(field_sites) == n_leaves
    assert samples["obs"].shape == (1, 3, 2)


@pytest.mark.slow  # compiling a reverse pass through diffrax takes 10-25 s per field here
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_gradient_through_solve_is_finite(name):
    field = prior_draw(FIELDS[name][0](), jr.key(1), scale=0.5)
    params, static = eqx.partition(field, eqx.is_inexact_array)
    ts = jnp.linspace(0.0, 2.0, 11)

    def loss(p):
        sol = bo.solve(eqx.combine(p, static), jnp.array([0.5, -0.5]), ts)
        return jnp.sum(sol.ys**2), sol.status

    grads, status = jax.grad(loss, has_aux=True)(params)
    assert int(status) == 0
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


# --- configuration errors ----------------------------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: AntisymmetricField(0, key=jr.key(0)), r"`state_dim` must be a positive int; got 0"),
        (lambda: AntisymmetricField(2, gamma=-1.0, key=jr.key(0)), r"`gamma` must be a non-negative"),
        (lambda: AntisymmetricField(2, activation="gelu", key=jr.key(0)), r"`activation`='gelu' is not allowed"),
        (lambda: AntisymmetricField(2, width=0, key=jr.key(0)), r"`width` must be a positive int"),
        (lambda: AntisymmetricField(2, key=jr.key(0), y_scale=[1.0]), r"`y_scale` has 1 entries"),
        (lambda: HamiltonianField(3, key=jr.key(0)), r"`state_dim` must be even"),
        (lambda: HamiltonianField(2, activation="relu", key=jr.key(0)), r"∇H must be continuous"),
        (lambda: HamiltonianField(2, depth=0, key=jr.key(0)), r"`depth` must be a positive int; got 0"),
        (lambda: HamiltonianField(2), r"needs `key=`"),
        (lambda: HamiltonianField(2, key=jr.key(0), params={"k": 1.0}), r"`params` is only used with `hamiltonian=`"),
        (lambda: HamiltonianField(2, key=jr.key(0), dissipation=1), r"`dissipation` must be True or False"),
        (lambda: HamiltonianField(2, hamiltonian=3.0), r"`hamiltonian` must be callable"),
        (lambda: HamiltonianField(2, hamiltonian=lambda q, p, prm: q * p), r"must return a scalar energy"),
        (lambda: HamiltonianField(2, hamiltonian=lambda q, p, prm: prm["x"]), r"calling `hamiltonian\(q, p, params\)`"),
        (lambda: HamiltonianField(2, hamiltonian=oscillator_energy, params={"k": 1.0}, t_scale=2.0), r"neural Hamil"),
        (
            lambda: HamiltonianField(2, hamiltonian=oscillator_energy, params={"1k": 1.0}),
            r"must be a Python identifier",
        ),
        (lambda: LipschitzField(2, lipschitz=0.0, key=jr.key(0)), r"`lipschitz` must be a positive finite"),
        (lambda: LipschitzField(2, activation="swish", key=jr.key(0)), r"1-Lipschitz activation"),
        (lambda: LipschitzField(2, depth=-1, key=jr.key(0)), r"`depth` must be an int >= 0"),
        (lambda: LipschitzField(2, key=jr.key(0), parametrisation="qr"), r"`parametrisation`='qr' is unknown"),
        (lambda: LipschitzField(2, key=jr.key(0), y_scale="big"), r"`y_scale` must be a positive number"),
        (lambda: StableField(2, alpha=0.0, key=jr.key(0)), r"`alpha` must be a positive finite number; got 0.0"),
        (lambda: StableField(2, eps=float("inf"), key=jr.key(0)), r"`eps` must be a positive finite"),
        (lambda: StableField(2, activation="sin", key=jr.key(0)), r"`activation`='sin' is unknown"),
        (lambda: StableField(2, t_scale=-1.0, key=jr.key(0)), r"`t_scale` must be a positive"),
    ],
)
def test_config_errors_name_the_argument(build, match):
    with pytest.raises(ConfigError, match=match):
        build()
