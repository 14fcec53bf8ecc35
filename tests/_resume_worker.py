"""Helper process for tests/test_resume.py: one NUTS run that the test kills, resumes or interrupts.

Usage: ``python _resume_worker.py MODE OUT.npz [CHECKPOINT_DIR]`` with MODE one of

- ``run``: sample with checkpoints (the test kills it with SIGKILL);
- ``resume``: sample with the same checkpoint folder (resumes), then run the same
  fit uninterrupted without checkpoints and save both;
- ``interrupt``: sample with checkpoints (the test sends SIGINT) and save what
  ``run_nuts`` returns together with the warnings it gave.

The compile cache folder comes from ``BAYESODE_CACHE_DIR``.
"""

import json
import sys
import warnings

import numpy as np

NUTS = dict(key=3, num_warmup=100, num_samples=200, num_chains=2, chunk_size=10)
# Interrupted runs are far too long to finish before the signal arrives (with a warm compile cache the
# 200-draw run can end between the test seeing a checkpoint and sending SIGINT).
INTERRUPT_SAMPLES = 1_000_000


def decay(t, y, p, args):
    return -p["k"] * y


def build():
    """The model and data of every run (identical in every process, so compiled programs are shared)."""
    import diffrax
    import numpyro.distributions as dist

    import bayesode as bo

    ts = np.linspace(0.0, 4.0, 8)
    model = bo.make_model(
        bo.MechanisticField(decay, {"k": 0.5}, state_dim=1),
        param_priors={"k": dist.LogNormal(np.log(0.5), 0.5)},
        y0_prior=dist.LogNormal(0.0, 0.5),
        likelihood=bo.NormalNoise(sigma_prior=dist.LogNormal(np.log(0.05), 0.5)),
        solver=bo.SolverConfig(adjoint=diffrax.ForwardMode()),
    )
    ys = np.exp(-0.5 * ts)[:, None] + 0.05 * np.random.default_rng(0).standard_normal((8, 1))
    return model, bo.make_data(ts, ys)


def _save(path, post, caught=()):
    np.savez(
        path,
        **{f"sample_{k}": v for k, v in post.samples.items()},
        **{f"stat_{k}": v for k, v in post.sample_stats.items()},
        interrupted=np.array(bool(post.settings.get("interrupted"))),
        warnings=np.array(json.dumps([str(w.message) for w in caught])),
    )


def main(mode, out, checkpoint_dir=None):
    import bayesode as bo

    bo.enable_compilation_cache()
    model, data = build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kw = dict(NUTS, num_samples=INTERRUPT_SAMPLES) if mode == "interrupt" else NUTS
        post = bo.run_nuts(model, data, checkpoint_dir=checkpoint_dir, progress=True, **kw)
    _save(out, post, [w for w in caught if "interrupted" in str(w.message)])
    if mode == "resume":
        _save(out.replace(".npz", "_reference.npz"), bo.run_nuts(model, data, progress=False, **NUTS))


if __name__ == "__main__":
    main(*sys.argv[1:])
