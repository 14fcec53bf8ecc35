"""Chains across processes with JAX's multi-process runtime (``jax.distributed``) on one machine.

Two processes join one job through a coordinator on localhost (CPU collectives: gloo), each runs
one of the two chains with ``run_nuts_distributed``, and the draws are gathered. Chain ``c`` gets the
same key and start as in a one-process run, and a group of one chain is the same compiled program
in either, so the gathered posterior must equal a one-process run with ``chain_method="sequential"``
bit for bit (process 0 runs that reference after the job, reusing the compiled program).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import pytest

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    port, rank, cache, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    import numpy as np
    import numpyro.distributions as dist
    import bayesode as bo

    bo.enable_compilation_cache(cache or None)
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    model = bo.make_model(field, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.5))
    ts = np.linspace(0.0, 3.0, 7)
    ys = (1.5 * np.exp(-0.7 * ts))[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((7, 1)))
    kw = dict(key=3, num_warmup=40, num_samples=30, num_chains=2, progress=False, chunk_size=35)
    post = bo.run_nuts_distributed(model, ts, ys, checkpoint_dir=ckpt, **kw)
    out = {"rank": rank, "processes": jax.process_count(), "settings_processes": post.settings.get("processes"),
           "shape": list(post.samples["k"].shape),
           "samples": {k: np.asarray(v).tolist() for k, v in post.samples.items()},
           "stats": {k: np.asarray(v).tolist() for k, v in post.sample_stats.items()},
           "own_checkpoint": sorted(__import__("os").listdir(ckpt))}
    if rank == 0:
        ref = bo.run_nuts(model, ts, ys, chain_method="sequential", **kw)
        out["ref_samples"] = {k: np.asarray(v).tolist() for k, v in ref.samples.items()}
        out["ref_stats"] = {k: np.asarray(v).tolist() for k, v in ref.sample_stats.items()}
    print("RESULT" + json.dumps(out), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_the_chains_and_match_a_one_process_run_bitwise(tmp_path):
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    cache = jax.config.jax_compilation_cache_dir or ""
    ckpt = str(tmp_path / "ckpt")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, port, str(rank), cache, ckpt],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :]))
    a, b = outs
    assert a["processes"] == b["processes"] == 2 and a["settings_processes"] == 2
    assert a["shape"] == [2, 30]  # both chains, every draw, on each process
    assert a["samples"] == b["samples"] and a["stats"] == b["stats"]  # every process returns the same posterior
    for site, v in a["ref_samples"].items():
        assert a["samples"][site] == v, site  # bit-identical to the one-process run
    for name in ("diverging", "num_steps", "step_size", "potential_energy", "solver_failures"):
        assert a["stats"][name] == a["ref_stats"][name], name
    k = a["samples"]["k"]
    assert k[0] != k[1]  # two distinct chains, not one copied
    # each process checkpointed its own share in its own folder
    assert a["own_checkpoint"] == ["process-0", "process-1"]
