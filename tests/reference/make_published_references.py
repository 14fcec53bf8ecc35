"""Independent reference posteriors for the published models of ``tests/test_published.py``.

Each model is its paper's (or Stan example's) program in a ``.stan`` file next to this
script, compiled and sampled by Stan (rk45 at rtol = atol = 1e-8, or BDF for the stiff ones, in
float64, NUTS 4 x (1000 + 1000)); no bayesode code is involved (the data come from
``published_data.py``, NumPy only). Writes ``published_reference.json``: per model, per quantity
the mean, sd, Monte Carlo standard error of the mean, R-hat and bulk ESS (positive parameters
also as ``log(name)``; entries made before these were added lack them); and three posterior points with
Stan's log density there (constrained scale, no Jacobian), for the fast CI check that
bayesode's model has the same log density up to a constant.

``van_der_pol`` is not in the JSON: its run (2026-12-03) did not converge (R-hat 1.53, chains
in different modes of mu: 4.1 +- 3.4), so it is no reference yet; a tighter prior on mu or a
shorter, denser window should make the posterior unimodal.

Needs pystan 3 (``pip install pystan``), not a dependency of bayesode: the JSON is committed.
Run: ``python tests/reference/make_published_references.py [model ...]`` (a few minutes each
on 2 cores, mostly compiling; pystan's g++ call has a 1 s timeout that can fail under load,
so the build is retried).
"""

import json
import os
import sys
import time

import arviz as az
import numpy as np
import stan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import published_data  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "published_reference.json")
NUM_CHAINS, NUM_WARMUP, NUM_SAMPLES, SEED = 4, 1000, 1000, 20261203
TOL = 1e-8
VECTOR_PARAMS = {"w"}  # parameters declared as Stan vectors (the hybrid's output weights)


def _influenza():
    d = published_data.influenza()
    data = {"n_days": d["ts"].size, "y0": d["y0"].tolist(), "t0": d["t0"], "ts": d["ts"].tolist(), "N": d["N"],
            "cases": d["cases"].astype(int).tolist(), "tol": TOL}  # fmt: skip
    return "sir_influenza.stan", data, ["beta", "gamma", "phi_inv"]


def _seir_incidence():
    d = published_data.seir_incidence()
    data = {"n_days": d["ts"].size, "y0": d["y0"].tolist(), "t0": d["t0"], "ts": d["ts"].tolist(), "N": d["N"],
            "a": d["a"], "cases": d["cases"].astype(int).tolist(), "tol": TOL}  # fmt: skip
    return "seir_incidence.stan", data, ["beta", "gamma", "phi_inv"]


def _pk():
    d = published_data.pk()
    data = {"N": d["ts"].size, "ts": d["ts"].tolist(), "conc": d["conc"].tolist(), "dose": d["dose"], "tol": TOL}
    return "pk_one_compartment.stan", data, ["ka", "ke", "sigma"]


def _pk_multi_dose():
    d = published_data.pk_multidose()
    assert set(d["compartment"]) == {"gut"}
    data = {"N": d["ts"].size, "ts": d["ts"].tolist(), "conc": d["conc"].tolist(), "J": d["dose_times"].size,
            "dose_times": d["dose_times"].tolist(), "amounts": d["amounts"].tolist(), "tol": TOL}  # fmt: skip
    return "pk_multi_dose.stan", data, ["ka", "ke", "F", "sigma"]


def _van_der_pol():
    d = published_data.van_der_pol()
    data = {"N": d["ts"].size, "ts": d["ts"].tolist(), "y": d["y"].tolist(), "y0": d["y0"].tolist(), "tol": TOL}
    return "van_der_pol.stan", data, ["mu", "sigma"]


def _robertson():
    d = published_data.robertson()
    # y2 is ~1e-6 late on: an absolute tolerance far below it, so the solve is accurate to ~1e-8 relative
    data = {"N": d["ts"].size, "ts": d["ts"].tolist(), "y": d["y"].tolist(), "y0": d["y0"].tolist(), "rtol": 1e-10,
            "atol": 1e-14}  # fmt: skip
    return "robertson.stan", data, ["k1", "k2", "k3", "sigma"]


def _hybrid():
    d = published_data.hybrid_decay()
    a, c = (list(x) for x in zip(*d["features"]))
    data = {"N": d["ts"].size, "ts": d["ts"].tolist(), "y": d["y"].tolist(), "y0": d["y0"], "H": len(a), "a": a,
            "c": c, "tol": TOL}  # fmt: skip
    return "hybrid_decay.stan", data, ["k", "w", "sigma"]


MODELS = {"sir_influenza": _influenza, "seir_incidence": _seir_incidence, "pk_one_compartment": _pk, "pk_multi_dose": _pk_multi_dose,
          "van_der_pol": _van_der_pol, "robertson": _robertson, "hybrid_decay": _hybrid}  # fmt: skip
STIFF = {"van_der_pol": "ode_bdf_tol, rtol=atol=1e-08", "robertson": "ode_bdf_tol, rtol=1e-10, atol=1e-14"}


def build(program, data, attempts=30):
    # httpstan runs stanc with a 1 s timeout, which a loaded machine often exceeds: retry.
    for attempt in range(attempts):
        try:
            return stan.build(program, data=data, random_seed=SEED)
        except Exception:  # noqa: BLE001  (pystan raises bare Exception/RuntimeError)
            if attempt == attempts - 1:
                raise
            time.sleep(2.0)


def reference(name):
    file, data, params = MODELS[name]()
    with open(os.path.join(HERE, file)) as fh:
        posterior = build(fh.read(), data)
    t = time.time()
    fit = posterior.sample(num_chains=NUM_CHAINS, num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES)
    wall = time.time() - t

    def by_chain(p):  # (chains, draws, flat index)
        return np.transpose(fit._draws[list(fit._parameter_indexes(p))], (2, 1, 0))

    quantities = {}
    for p in params:
        x = by_chain(p)
        for i in range(x.shape[-1]):
            quantities[p if x.shape[-1] == 1 else f"{p}[{i}]"] = x[..., i]
    # Positive parameters also on the log scale (the one both samplers move on): a heavy right
    # tail (ka of the PK models) makes the natural-scale sd too noisy to compare from 4000 draws.
    for p in params:
        if p not in VECTOR_PARAMS:
            quantities[f"log({p})"] = np.log(by_chain(p)[..., 0])
    summary = {}
    for p, x in quantities.items():
        summary[p] = {"mean": float(x.mean()), "sd": float(x.std()), "mcse_mean": float(az.mcse(x, method="mean")),
                      "rhat": float(az.rhat(x)), "ess_bulk": float(az.ess(x, method="bulk"))}  # fmt: skip
    points = []
    for draw in (0, NUM_SAMPLES // 2, NUM_SAMPLES - 1):
        values = {p: by_chain(p)[0, draw].tolist() for p in params}
        values = {p: v if p in VECTOR_PARAMS else v[0] for p, v in values.items()}
        lp = posterior.log_prob(posterior.unconstrain_pars(values), adjust_transform=False)
        points.append({"values": values, "log_density": float(lp)})
    meta = {"program": file, "draws": f"{NUM_CHAINS} chains x ({NUM_WARMUP} + {NUM_SAMPLES})", "seed": SEED,
            "solver": f"Stan {STIFF.get(name, f'ode_rk45_tol, rtol=atol={TOL}')}, float64", "sampler": f"Stan NUTS via pystan {stan.__version__}",
            "divergences": int(by_chain("divergent__").sum()), "wall_s": round(wall)}  # fmt: skip
    return {"meta": meta, "posterior": summary, "points": points}


def main(names):
    for name in names:
        ref = reference(name)
        print(name, json.dumps(ref["meta"]), file=sys.stderr)
        for k, v in ref["posterior"].items():
            print(f"  {k:8s} mean {v['mean']:.5g}  sd {v['sd']:.4g}  mcse {v['mcse_mean']:.2g}  rhat {v['rhat']:.4f}")
        # Read just before writing, after each model: runs for different models may go in parallel,
        # and a later failure keeps the earlier ones.
        out = json.load(open(OUT)) if os.path.exists(OUT) else {}
        out[name] = ref
        with open(OUT, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
