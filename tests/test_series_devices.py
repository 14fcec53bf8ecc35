"""Independent series split across devices (``make_model(series_devices=...)``, ``shard_series``).

Runs in a fresh process with four simulated CPU devices (the device count is fixed when
JAX starts). Five series on four devices exercises the padding (to eight, two per device).
Sharded and unsharded programs solve the same series with the same steps, but a device's
loop runs over a batch of 2 rather than 5, and XLA vectorises the two differently, so
floats agree to rounding (measured: 1e-4 relative in the gradient), not bit for bit.
"""

import textwrap

import jax
import pytest
from _devices import run_on_cpu_devices

import bayesode as bo
from bayesode import ConfigError

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import bayesode as bo
    from numpyro.infer.util import potential_energy, unconstrain_fn
    from bayesode.errors import ConfigError

    bo.enable_compilation_cache(sys.argv[1] or None)
    rng = np.random.default_rng(0)
    field = bo.lotka_volterra_field(0.55, 0.028, 0.8, 0.024)
    ts = np.linspace(0.0, 8.0, 9)
    y0 = rng.uniform(10.0, 40.0, size=(5, 2))
    sol = bo.solve_series(field, jnp.asarray(y0, jnp.float32), jnp.tile(jnp.asarray(ts, jnp.float32), (5, 1)),
                          jnp.zeros(5, jnp.float32))
    ys = np.asarray(sol.ys) * np.exp(0.1 * rng.standard_normal(sol.ys.shape))
    data = bo.make_data([ts] * 5, list(ys))
    md = data.model_data()
    # Points near the truth: far out (the default random start) float32 solves reach tiny
    # states whose reverse-mode cotangents overflow, which compares the guards, not the split.
    truth = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024, "sigma": np.array([0.1, 0.1]),
             "y0": ys[:, 0, :]}
    out = {"devices": len(jax.devices())}
    for adjoint in ("forward", "checkpoint", "sensitivity"):  # sensitivity: the LV preset's default
        base = bo.models.lotka_volterra(adjoint=adjoint)
        sharded = bo.shard_series(base)
        values = []
        for model in (base, sharded):
            # NumPyro's potential at the truth, in unconstrained space (the latent sites alone give the transforms:
            # initialize_model's eager set-up of the whole model was most of this script's time).
            z0 = unconstrain_fn(model, (md,), {"latents_only": True}, truth)
            potential_fn = lambda z, model=model: potential_energy(model, (md,), {}, z)
            points = [jax.tree.map(lambda x, k=k: x + 0.05 * k * jnp.ones_like(x), z0) for k in range(3)]
            d = jax.jacfwd if adjoint == "forward" else jax.grad
            f = jax.jit(lambda z: (potential_fn(z), d(potential_fn)(z)))
            values.append([[float(v)] + [float(x) for x in jax.tree.leaves(jax.tree.map(jnp.ravel, g))
                                         for x in x] for v, g in map(f, points)])
        out[adjoint] = values
        out[adjoint + "_sharded_devices"] = len(sharded.spec.series_devices)
        if adjoint == "checkpoint":
            hlo = jax.jit(jax.grad(lambda z: potential_energy(sharded, (md,), {}, z))).lower(z0).as_text()
            out["hlo_manual"] = "manual" in hlo.lower() and "num_partitions = 4" in hlo
            kw = dict(key=2, num_warmup=4, num_samples=3, num_chains=2, progress=False)
            runs = [bo.run_nuts(m, data, **kw) for m in (base, sharded)]
            out["nuts"] = [{k: np.asarray(v).tolist() for k, v in p.samples.items()} for p in runs]
            out["nuts_failures"] = [p.sample_stats["solver_failures"].tolist() for p in runs]
            try:
                bo.run_nuts(sharded, data, chain_method="parallel", **kw)
                out["parallel_error"] = None
            except ConfigError as e:
                out["parallel_error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    return run_on_cpu_devices(SCRIPT, 4)


def _close(a, b, rtol):
    import numpy as np

    return np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-3)


@pytest.mark.parametrize("adjoint", ["forward", "checkpoint", "sensitivity"])
def test_sharded_series_give_the_same_log_density_and_gradient(four_devices, adjoint):
    assert four_devices["devices"] == 4
    assert four_devices[adjoint + "_sharded_devices"] == 4
    plain, sharded = four_devices[adjoint]
    # float32 solves at rtol 1e-6: the two programs differ by rounding (measured: 1e-4
    # relative in the gradient at worst); 1e-3 still catches a series dropped, duplicated or
    # misaligned by the padding, or a shared gradient not summed over the devices (off by 4x).
    for p, s in zip(plain, sharded):
        assert _close(p, s, rtol=1e-3), (p[:4], s[:4])
    assert plain[0] != plain[1]  # the three points differ


def test_sharded_program_is_split_four_ways(four_devices):
    assert four_devices["hlo_manual"]


def test_nuts_on_sharded_series_follows_the_unsharded_chains(four_devices):
    plain, sharded = four_devices["nuts"]
    # 4 warmup + 3 draws from the same start and keys: the paths have not yet amplified the
    # rounding differences (they do over hundreds of iterations, as any two float programs).
    for site in plain:
        assert _close(plain[site], sharded[site], rtol=1e-3), site
    assert four_devices["nuts_failures"][0] == four_devices["nuts_failures"][1]


def test_parallel_chains_with_sharded_series_are_refused_by_name(four_devices):
    assert "series_devices" in four_devices["parallel_error"]


def test_series_devices_bad_values_name_the_argument():
    model = bo.models.lotka_volterra()
    for bad in ("some", 10_000, 0, [0, 1], True):
        with pytest.raises(ConfigError, match="series_devices"):
            bo.shard_series(model, devices=bad)
    # one device: the plain vmapped solve
    assert bo.shard_series(model, devices=1).spec.series_devices is None
    assert bo.shard_series(model, devices=jax.devices()[:1]).spec.series_devices is None
    with pytest.raises(ConfigError, match="`model`"):
        bo.shard_series(lambda data: None)
