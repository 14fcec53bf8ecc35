"""Compiled programs are the same in every process, so JAX's persistent cache serves a re-run.

Three things broke that and are fixed: numpyro's ``Trace_ELBO`` summed its sites in the
order of a Python ``set`` (string-hash order, different in each process), diffrax's
checks of the save times raise through a host callback, and the sampler's chunk program
held the failure-report callback: JAX never writes a program with a host callback to
the cache. NUTS now samples with a program free of callbacks and compiles the reporting
one only to replay iterations that diverged.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI, Trace_ELBO, autoguide
from numpyro.optim import Adam

import bayesode as bo
from bayesode.infer.svi import _TraceELBO

DECAY = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
TS = np.linspace(0.0, 2.0, 5)
YS = np.exp(-0.5 * TS)[:, None] + 0.01 * np.random.default_rng(0).standard_normal((5, 1))


def _model():
    return bo.make_model(DECAY, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.3))


def test_trace_elbo_in_site_order_equals_numpyro_trace_elbo():
    model, md = _model(), bo.make_data(TS, YS).model_data()
    guide = autoguide.AutoNormal(model)
    svi = SVI(model, guide, Adam(0.01), _TraceELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), md))
    for particles in (1, 3):
        ours = jax.jit(lambda key, p: _TraceELBO(num_particles=particles).loss(key, p, model, guide, md))  # noqa: B023
        theirs = jax.jit(lambda key, p: Trace_ELBO(num_particles=particles).loss(key, p, model, guide, md))  # noqa: B023
        for seed in range(3):
            a, b = ours(jax.random.PRNGKey(seed), params), theirs(jax.random.PRNGKey(seed), params)
            assert jnp.isfinite(a) and a != ours(jax.random.PRNGKey(seed + 10), params)  # a real, key-dependent estimate
            np.testing.assert_allclose(a, b, rtol=1e-5)


RUN_FIT = """
import sys, jax, numpy as np
sys.path.insert(0, {tests!r})
from test_cache import _model, TS, YS
import bayesode as bo
misses, callbacks = [], []
jax.monitoring.register_event_listener(lambda name, **kw: misses.append(name) if name.endswith("cache_misses") else None)
bo.enable_compilation_cache(sys.argv[1], min_compile_time_s=0.0)
post = bo.run_svi(_model(), TS, YS, key=0, num_steps=20, num_draws=10, progress=False)
print("result", np.asarray(post.losses).tobytes().hex() + np.asarray(post.samples["k"]).tobytes().hex(), end="")
import bayesode.infer.chunks
bayesode.infer.chunks.SEPARATE_REPORTING_MIN_ITERATIONS = 100  # as a long run does, on a short one
post = bo.run_nuts(_model(), TS, YS, key=0, num_warmup=60, num_samples=40, num_chains=2, progress=False)
# Warmup diverged: the replays compiled the failure-report program too (JAX does not look
# programs with a host callback up in its cache: no miss counted for it).
assert post.settings["warmup_divergences"] > 0
print(np.asarray(post.samples["k"]).tobytes().hex())
print("misses", len(misses))
"""  # noqa: E501


@pytest.mark.slow  # two fresh processes, each compiling a small SVI and a small NUTS fit
def test_second_process_compiles_nothing_for_the_same_fits_and_gets_the_same_numbers(tmp_path):
    script = tmp_path / "run_fit.py"
    script.write_text(RUN_FIT.format(tests=os.path.dirname(__file__)))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out, results = [], []
    for hash_seed in ("1", "2"):  # a different set/dict-of-str order in each process
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        out.append(int(res.stdout.split("misses")[-1]))
        results.append(res.stdout.split("result")[1].split()[0])
        # NUTS's sampling program itself is in the cache (JAX names entries by program)
        assert any(name.startswith("jit_run-") for name in os.listdir(tmp_path / "cache")), os.listdir(tmp_path / "cache")
    assert out[0] > 10, out  # the first process compiled (and cached) its programs
    assert out[1] == 0, out  # the second found every one of them
    # ... and they compute what the freshly compiled ones did: losses and draws bit for bit.
    assert results[0] == results[1]
