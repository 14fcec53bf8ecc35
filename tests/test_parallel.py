"""Parallel chains across devices, with the default (checkpointed, reverse-mode) adjoint.

``jax.pmap`` and ``shard_map`` both fail on reverse mode through
``diffeqsolve`` with ``RecursiveCheckpointAdjoint`` ("Closure-converted function
called with different dynamic arguments"), so NumPyro's
``chain_method="parallel"`` breaks. bayesode instead gives each device its own
thread (see docs/architecture.md); ``chain_method="auto"``, the default, picks
this when there are several CPU devices.

The check runs in a fresh process because the number of CPU devices is fixed
when JAX starts: two simulated devices, three chains. On CPU each device runs
its chains one at a time, unbatched (device 0 chains 0 and 1, device 1 chain
2), the same compiled program as a sequential run, so the parallel draws must
be bit-identical to running the chains one at a time.
"""

import json
import os
import subprocess
import sys
import textwrap

from _devices import run_on_cpu_devices

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    import numpyro.distributions as dist
    import bayesode as bo

    bo.enable_compilation_cache(sys.argv[1] or None)
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    model = bo.make_model(
        field,
        param_priors={"k": dist.LogNormal(0.0, 0.5)},
        y0_prior=dist.LogNormal(0.0, 0.5),
        solver=bo.SolverConfig(),  # default adjoint: RecursiveCheckpointAdjoint (reverse mode)
    )
    ts = np.linspace(0.0, 3.0, 7)
    ys = (1.5 * np.exp(-0.7 * ts))[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((7, 1)))
    kw = dict(key=3, num_warmup=40, num_samples=30, num_chains=3, progress=False)
    out = {"devices": len(jax.devices())}
    for method in ("parallel", "sequential", "parallel_separate"):
        if method == "parallel_separate":  # as a long run with the cache on: replays by a second program
            import bayesode.infer.chunks
            bayesode.infer.chunks.SEPARATE_REPORTING_MIN_ITERATIONS = 0
        post = bo.run_nuts(model, ts, ys, chain_method=method.split("_")[0], **kw)
        out[method] = {k: np.asarray(v).tolist() for k, v in post.samples.items()}
        out[method + "_finite"] = bool(all(np.isfinite(np.asarray(v)).all() for v in post.samples.values()))
        out[method + "_failures"] = [post.settings["warmup_divergences"], post.settings["warmup_solver_failures"],
                                     post.sample_stats["solver_failures"].tolist()]  # fmt: skip
    # The default picks parallel here; a checkpoint of a parallel run is resumed by a sequential one
    # (the same unbatched program on CPU): the finished run is returned from disk, not refused.
    import tempfile
    folder = tempfile.mkdtemp()
    post = bo.run_nuts(model, ts, ys, checkpoint_dir=folder, **kw)
    out["auto"] = {k: np.asarray(v).tolist() for k, v in post.samples.items()}
    out["auto_method"] = post.settings["chain_method"]
    again = bo.run_nuts(model, ts, ys, checkpoint_dir=folder, chain_method="sequential", **kw)
    out["resumed"] = {k: np.asarray(v).tolist() for k, v in again.samples.items()}
    print("RESULT" + json.dumps(out))
    """
)


def test_parallel_chains_on_two_devices_match_sequential_chains_bitwise_and_are_the_default():
    out = run_on_cpu_devices(SCRIPT, 2)
    assert out["devices"] == 2
    assert out["parallel_finite"] and out["sequential_finite"]
    assert set(out["parallel"]) == {"k", "y0", "sigma"}
    for site in out["parallel"]:
        assert out["parallel"][site] == out["sequential"][site], site
        assert out["parallel_separate"][site] == out["parallel"][site], site
        assert out["auto"][site] == out["parallel"][site] == out["resumed"][site], site
    assert out["auto_method"] == "parallel"
    # Warmup diverged (replays ran) and the separately compiled reporting program counted the same.
    assert out["parallel_failures"][0] > 0, out["parallel_failures"]
    assert out["parallel_separate_failures"] == out["parallel_failures"]
    # and the chains are distinct chains, not one chain copied
    k = out["parallel"]["k"]
    assert len(k) == 3 and k[0] != k[1] and k[1] != k[2]


def test_use_cpu_cores_sets_the_device_count_before_jax_starts_and_warns_after():
    script = textwrap.dedent(
        """
        import json, os, warnings
        os.environ.pop("XLA_FLAGS", None)
        import bayesode as bo
        import jax
        n = bo.use_cpu_cores(3)
        devices = len(jax.devices())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = bo.use_cpu_cores(2)  # too late: the backend runs
        try:
            bo.use_cpu_cores(0)
            bad = ""
        except bo.ConfigError as e:
            bad = str(e)
        print("RESULT" + json.dumps({"n": n, "devices": devices, "again": again, "bad": bad,
                                     "warned": [str(w.message) for w in caught]}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    assert out["n"] == 3 and out["devices"] == 3 and out["again"] == 3
    assert any("before the first computation" in w for w in out["warned"]), out["warned"]
    assert "`count` must be a positive int" in out["bad"]


COMPILES = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    import numpyro.distributions as dist
    import bayesode as bo

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compiles.append(secs) if event == "/jax/core/compile/backend_compile_duration" else None
    )

    def model():  # a new model each time: its compiled programs are cached on it
        field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
        return bo.make_model(field, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.5))

    ts = np.linspace(0.0, 3.0, 7)
    ys = (1.5 * np.exp(-0.7 * ts))[:, None]
    kw = dict(key=3, num_warmup=20, num_samples=20, num_chains=2, progress=False)
    bo.run_nuts(model(), ts, ys, chain_method="sequential", **kw)  # compiles the programs any model shares
    out = {}
    for method in ("sequential", "parallel"):
        before = len(compiles)
        bo.run_nuts(model(), ts, ys, chain_method=method, **kw)
        out[method] = len(compiles) - before
    print("RESULT" + json.dumps(out))
    """
)


def test_parallel_chains_on_cpu_devices_compile_the_sampler_once():
    # No disk cache here (the script never enables it): every program is compiled, and counted.
    # Each CPU device used to compile its own copy of the sampler; now the threads share one.
    out = run_on_cpu_devices(COMPILES, 2)
    assert out["sequential"] > 0 and out["parallel"] == out["sequential"], out
