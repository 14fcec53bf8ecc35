"""Reference draws that pin the inference code's output bit for bit (``tests/test_draws_pinned.py``).

Two short fits, each with a fixed seed, both through the public API only (so the same script
runs against any version of the package):

- ``lotka_volterra``: ``bo.run_nuts`` of ``bo.models.lotka_volterra()`` on the bundled lynx-hare
  data (2 chains, 30 warmup + 20 draws, chunks of 25, sequential chains);
- ``neural_linear``: the main job as ``bayesode fit`` runs it by default (``--model neural
  --width 8 --depth 1 --likelihood lognormal --method svi+nuts --bayesian-layers last``, so
  ``bo.run_neural_linear``: SVI over every weight, then ``run_svi_nuts`` on the output layer),
  shrunk to 150 + 50 SVI steps and 2 chains of 20 warmup + 10 draws, tree depth 6.

For each it records the sha256 of the posterior draws' bytes (sites in sorted order, each
as float32 C-order bytes) and of the sampler statistics that NUTS produced, plus a few values
in plain numbers so that a mismatch shows how far apart the runs are.

The committed ``draws_reference.json`` was made from commit 54bbd31 (the last commit before the
package was split into wings) with::

    git worktree add /tmp/before 54bbd31
    PYTHONPATH=/tmp/before python tests/reference/make_draws_reference.py

Bit-identity holds on one machine and one JAX/XLA build: XLA compiles for the host CPU's
instruction set, so the same code and seed give other floats on a CPU with other vector
instructions (seen: an AVX-512 machine and an AMD EPYC without it gave alpha 0.78 and 1.16 as
the first draw). So the file keeps one reference per machine (``machine_key``: the CPU
architecture, its vector and bit-manipulation instruction sets, the jax and jaxlib versions);
running the script adds or replaces this machine's. Make one for a new machine the same way,
from the pre-change commit.
"""

import hashlib
import inspect
import json
import os
import platform
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STATS = ("diverging", "num_steps", "step_size", "potential_energy")


# The instruction-set families that decide what XLA's CPU code generator emits.
ISA_FLAGS = re.compile(r"^(sse\S*|ssse3|avx\S*|fma\S*|f16c|amx\S*|bmi\d|popcnt|lzcnt|abm|movbe|gfni|vaes|vpclmulqdq|sha_ni)$")


def machine_key() -> str:
    """What the reference's bits depend on besides the code: e.g. ``x86_64 avx,avx2,... jax 0.10.2 jaxlib 0.10.2``."""
    import jax
    import jaxlib

    flags = []
    try:
        with open("/proc/cpuinfo") as fh:
            line = next((line for line in fh if line.startswith(("flags", "Features"))), "")
        flags = sorted({f for f in line.split(":", 1)[-1].split() if ISA_FLAGS.match(f)})
    except OSError:  # not Linux: the architecture and versions alone
        pass
    return f"{platform.machine()} {','.join(flags)} jax {jax.__version__} jaxlib {jaxlib.__version__}"


def _keep_going(bo) -> dict:
    """Newer code stops a fit whose draws mostly diverged; these tiny fits are fingerprints, not posteriors,
    so they run to the end in every version (the pre-change code has no such stop and no argument for it)."""
    return {"on_failure": "continue"} if "on_failure" in inspect.signature(bo.run_nuts).parameters else {}


def lotka_volterra_fit(bo):
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.lotka_volterra()
    return bo.run_nuts(model, data, key=0, num_warmup=30, num_samples=20, num_chains=2, chunk_size=25,
                       chain_method="sequential", progress=False, **_keep_going(bo))


def neural_linear_fit(bo):
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.for_data("neural", data, width=8, depth=1, likelihood="lognormal")
    return bo.run_neural_linear(model, data, key=0, method="svi+nuts", hidden_svi_steps=150, hidden_guide="full-rank",
                                svi_steps=50, num_warmup=20, num_samples=10, num_chains=2, max_tree_depth=6,
                                chunk_size=10, chain_method="sequential", progress=False, **_keep_going(bo))


FITS = {"lotka_volterra": lotka_volterra_fit, "neural_linear": neural_linear_fit}


def fingerprint(post) -> dict:
    """sha256 of the draws and NUTS statistics, and a few of their values."""
    h_draws, h_stats = hashlib.sha256(), hashlib.sha256()
    for k in sorted(post.samples):
        h_draws.update(k.encode())
        h_draws.update(np.ascontiguousarray(np.asarray(post.samples[k])).tobytes())
    for k in STATS:
        h_stats.update(k.encode())
        h_stats.update(np.ascontiguousarray(np.asarray(post.sample_stats[k])).tobytes())
    first = {k: np.asarray(v).reshape(-1)[:3].tolist() for k, v in sorted(post.samples.items())}
    return {
        "draws_sha256": h_draws.hexdigest(),
        "stats_sha256": h_stats.hexdigest(),
        "shapes": {k: list(np.shape(v)) for k, v in sorted(post.samples.items())},
        "first_values": first,
        "divergences": int(np.asarray(post.sample_stats["diverging"]).sum()),
        "svi_final_loss": None if post.losses is None else float(np.asarray(post.losses)[-1]),
    }


def main() -> None:
    import bayesode as bo

    bo.enable_compilation_cache(os.environ.get("BAYESODE_CACHE_DIR", os.path.join(HERE, "..", "..", ".jax_cache")))
    ref = {"machine": machine_key(), "made_from": sys.argv[1] if len(sys.argv) > 1 else "54bbd31"}
    ref.update({name: fingerprint(fit(bo)) for name, fit in FITS.items()})
    path = os.path.join(HERE, "draws_reference.json")
    with open(path) as fh:
        refs = [r for r in json.load(fh) if r["machine"] != ref["machine"]]
    with open(path, "w") as fh:
        json.dump(refs + [ref], fh, indent=1)
    print(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main()
