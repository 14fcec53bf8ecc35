"""Robustness: bad input gets a clear error before anything compiles; failed solves never break a fit.

Bad-input cases already tested elsewhere (not repeated here): ``make_data`` in
``test_data.py`` (23 + 2), ``make_model``/fields/priors in ``test_model.py``
(9 + 3 + 8 + 6), ``SolverConfig`` in ``test_solve.py`` (7), ``run_nuts`` and
``Posterior.predict`` in ``test_infer.py`` (7 + 1).

"Before compilation" is checked directly: the function that would build (and
so trace and compile) the sampler or the SVI loop is replaced by one that
fails the test. Checks that need the model's sites (``init_params``, the mass
matrix) trace the model abstractly (``jax.eval_shape``, no compile: about a
second for a diffrax model on an idle machine); the rest must answer within half a second.
"""

import json
import time

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import bayesode as bo
import bayesode.infer.chunks
import bayesode.infer.nuts
import bayesode.infer.preflight
import bayesode.infer.programs
import bayesode.infer.svi
import bayesode.results.predictive
from bayesode.solving.diffeq import STATUS_BLOW_UP, STATUS_DT_MIN, STATUS_MAX_STEPS, STATUS_NONFINITE, STATUS_OK
from bayesode.solving.failures import FailureLog

TS = np.arange(5.0)
YS = np.ones((5, 1))
DECAY = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
MODEL = bo.make_model(DECAY, param_priors={"k": dist.LogNormal(0.0, 1.0)}, y0_prior=dist.LogNormal(0.0, 1.0))
MLP = bo.MLPField(1, 4, 1, key=jr.key(0))
DATA = bo.make_data(TS, YS)
K = {"param_priors": {"k": dist.LogNormal(0.0, 1.0)}}
# Inputs that take time to build (eager JAX ops) are built here, outside the timed calls.
MLP2_MODEL = bo.make_model(bo.MLPField(2, 4, 1, key=jr.key(0)))
MLP2_NO_HIDDEN = bo.MLPField(2, 2, 0, key=jr.key(0))
VECTOR_FIELD = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": np.ones(2)}, state_dim=2)
PRIOR_3 = dist.Normal(np.zeros(3), 1.0)
MVN_2 = dist.MultivariateNormal(np.zeros(2), np.eye(2))
NUMPYRO_NORMAL = dist.Normal(0.0, 1.0)


class WouldCompile(AssertionError):
    """Raised by the stand-ins for the sampler/SVI builders: the error came too late."""


def _would_compile(*args, **kwargs):
    raise WouldCompile("reached a sampler/SVI/solve builder: the argument was not checked before compilation")


class _NoHandlers:
    def __getattr__(self, name):
        _would_compile()


@pytest.fixture
def no_compile(monkeypatch):
    """Replace everything that traces the model for compilation by a test failure."""
    monkeypatch.setattr(bayesode.infer.nuts, "get_sampler", _would_compile)
    monkeypatch.setattr(bayesode.infer.svi, "SVI", _would_compile)
    monkeypatch.setattr(bayesode.infer.preflight, "handlers", _NoHandlers())  # prior_failure_rate's compiled trace
    monkeypatch.setattr(bayesode.results.predictive, "_draws_fn", _would_compile)


def fake_posterior(model=MODEL):
    """A Posterior that was never fitted (enough for argument checks)."""
    samples = {"k": np.ones((1, 2)), "y0": np.ones((1, 2, 1, 1)), "sigma": np.ones((1, 2, 1))}
    return bo.Posterior(samples=samples, sample_stats={}, data=DATA, model=model, settings={})


BAD_INPUT = [
    # ---- make_data (cases beyond tests/test_data.py)
    pytest.param(
        lambda: bo.make_data(TS, [[1.0], [1.0, 2.0], [1.0], [1.0], [1.0]]),
        bo.DataError,
        r"`ys` could not be read as a numeric array",
        id="make_data-ragged-ys",
    ),
    pytest.param(
        lambda: bo.make_data([TS, TS], YS),
        bo.DataError,
        r"`ts` is a list of series but `ys` is not",
        id="make_data-list-ts-array-ys",
    ),
    pytest.param(
        lambda: bo.make_data([TS, TS], [YS, np.full((5, 1), np.nan)]),
        bo.DataError,
        r"`ys\[1\]` is entirely missing",
        id="make_data-one-series-all-nan",
    ),
    pytest.param(
        lambda: bo.make_data(TS, YS, t0=[0.0, 0.0]),
        bo.DataError,
        r"`t0` must be a finite scalar or one value per series \(1\)",
        id="make_data-t0-length",
    ),
    pytest.param(
        lambda: bo.make_data([TS, TS], [YS, YS], series_names=["a", "a"]),
        bo.DataError,
        r"`series_names` repeat",
        id="make_data-series-names-repeat",
    ),
    pytest.param(
        lambda: bo.make_data(TS, np.ones(5), state_names=["a", "b"]),
        bo.DataError,
        r"`ys` must be 2-D \(time, observed\); got shape \(5,\)",
        id="make_data-1d-ys-two-names",
    ),
    pytest.param(
        lambda: bo.make_data(1.0, YS),
        bo.DataError,
        r"`ts` must be 1-D \(time,\); got shape \(\)",
        id="make_data-scalar-ts",
    ),
    pytest.param(
        lambda: bo.make_data(np.arange(5).astype("datetime64[D]"), YS),
        bo.DataError,
        r"`ts` must be numeric; got dtype datetime64\[D\]. Convert strings/dates",
        id="make_data-datetimes",
    ),
    # ---- data handed to the fitting functions
    pytest.param(lambda: bo.run_nuts(MODEL, TS, key=0), bo.DataError, r"`ys` is required", id="run_nuts-no-ys"),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, YS, key=0),
        bo.DataError,
        r"either a `Data` object or `ts` and `ys`, not both",
        id="run_nuts-data-and-ys",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, num_draws=100),
        bo.ConfigError,
        r"unexpected keyword argument\(s\) \['num_draws'\]",
        id="run_nuts-misspelt-argument",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, state_names=["x"]),
        bo.DataError,
        r"data option\(s\) \['state_names'\] were given with a `Data` object",
        id="run_nuts-option-with-Data",
    ),
    pytest.param(
        lambda: bo.run_nuts(MLP2_MODEL, TS, np.c_[YS, np.full(5, np.nan)], key=0),
        bo.DataError,
        r"state\(s\) \['y1'\] are never observed.*give `y0_prior=`",
        id="run_nuts-never-observed-state",
    ),
    pytest.param(
        lambda: bo.run_nuts(
            bo.make_model(DECAY, likelihood=bo.PoissonNoise(), y0_prior=dist.LogNormal(), **K), TS, YS * 0.5, key=0
        ),
        bo.DataError,
        r"must hold non-negative integer counts for PoissonNoise",
        id="run_nuts-poisson-fractions",
    ),
    # ---- make_model, fields, likelihoods (beyond tests/test_model.py)
    pytest.param(
        lambda: bo.make_model(lambda t, y, a: -y),
        bo.ConfigError,
        r"has no `state_dim` attribute",
        id="make_model-plain-function-field",
    ),
    pytest.param(
        lambda: bo.make_model(VECTOR_FIELD, param_priors={"k": PRIOR_3}),
        bo.ConfigError,
        r"`param_priors\['k'\]` has shape \(3,\); the parameter has shape \(2,\)",
        id="make_model-prior-shape",
    ),
    pytest.param(
        lambda: bo.make_model(DECAY, likelihood=bo.NormalNoise, **K),
        bo.ConfigError,
        r"`likelihood` must be a bayesode likelihood.*got <class",
        id="make_model-likelihood-class",
    ),
    pytest.param(
        lambda: bo.make_model(DECAY, solver=diffrax.Tsit5(), **K),
        bo.ConfigError,
        r"`solver` must be a bayesode.SolverConfig; got Tsit5",
        id="make_model-bare-diffrax-solver",
    ),
    pytest.param(
        lambda: bo.make_model(DECAY, y0_prior=MVN_2, **K),
        bo.ConfigError,
        r"`y0_prior` has shape \(2,\); expected \(\) or \(state,\) = \(1,\)",
        id="make_model-y0-event-shape",
    ),
    pytest.param(
        lambda: bo.make_model(MLP, weight_prior=NUMPYRO_NORMAL),
        bo.ConfigError,
        r"`weight_prior` must be bayesode.Normal",
        id="make_model-numpyro-weight-prior",
    ),
    pytest.param(
        lambda: bo.make_model(DECAY, y0_prior=dist.LogNormal(), observation_fn=lambda y: y[None], **K),
        bo.FieldError,
        r"`observation_fn\(y\)` must return a 1-D array",
        id="make_model-observation-fn-2d",
    ),
    pytest.param(
        lambda: bo.make_model(DECAY, y0_prior=dist.LogNormal(), observation_fn=lambda y: y @ jnp.ones((3, 3)), **K),
        bo.FieldError,
        r"calling `observation_fn\(y\)` with y of shape \(1,\) failed",
        id="make_model-observation-fn-fails",
    ),
    pytest.param(
        lambda: bo.make_model(bo.MechanisticField(lambda t, y, p, a: [-p["k"] * y[0]], {"k": 1.0}, 1), **K),
        bo.FieldError,
        r"must return dy/dt with the shape of y, \(1,\); got list",
        id="field-returns-list",
    ),
    pytest.param(
        lambda: bo.make_model(
            bo.MechanisticField(lambda t, y, p, a: (-p["k"] * y).astype(jnp.complex64), {"k": 1.0}, 1), **K
        ),
        bo.FieldError,
        r"must return floats; got dtype complex64",
        id="field-returns-complex",
    ),
    pytest.param(
        lambda: bo.make_model(bo.MechanisticField(lambda t, y, p, a: -p["k"] * y[0], {"k": 1.0}, 1), **K),
        bo.FieldError,
        r"with the shape of y, \(1,\); got \(\)",
        id="field-returns-scalar",
    ),
    pytest.param(
        lambda: bo.MechanisticField(lambda t, y, p, a: y, {"1k": 1.0}, state_dim=1),
        bo.ConfigError,
        r"parameter name '1k' in `params` must be a Python identifier",
        id="field-parameter-name",
    ),
    pytest.param(
        lambda: bo.MechanisticField(None, {"k": 1.0}, state_dim=1),
        bo.ConfigError,
        r"`fn` must be callable",
        id="field-fn-not-callable",
    ),
    pytest.param(
        lambda: bo.HybridField(DECAY, MLP2_NO_HIDDEN),
        bo.ConfigError,
        r"`mechanistic` has state_dim=1 but `correction` has 2",
        id="hybrid-state-dims",
    ),
    pytest.param(
        lambda: bo.NormalNoise(sigma_prior=0.1),
        bo.ConfigError,
        r"`sigma_prior` must be a numpyro distribution or None; got float",
        id="likelihood-float-prior",
    ),
    pytest.param(
        lambda: bo.NormalNoise(sigma=0.0),
        bo.ConfigError,
        r"`sigma` must be a positive finite number or one per observed column .*got 0\.0",
        id="likelihood-known-sigma-zero",
    ),
    pytest.param(
        lambda: bo.LogNormalNoise(sigma=[0.1, float("nan")]),
        bo.ConfigError,
        r"`sigma` must be a positive finite number .*got \[0\.1, nan\]",
        id="likelihood-known-sigma-nan",
    ),
    pytest.param(
        lambda: bo.StudentTNoise(sigma=0.1, sigma_prior=dist.HalfNormal(1.0)),
        bo.ConfigError,
        r"StudentTNoise: give `sigma` \(known noise\) or `sigma_prior` \(learned noise\), not both",
        id="likelihood-known-and-prior-sigma",
    ),
    pytest.param(
        lambda: bo.StudentTNoise(df=0.0),
        bo.ConfigError,
        r"`StudentTNoise\(df=...\)` must be positive",
        id="likelihood-df-zero",
    ),
    # ---- SolverConfig (beyond tests/test_solve.py)
    pytest.param(
        lambda: bo.SolverConfig(max_steps=100.0),
        bo.ConfigError,
        r"`SolverConfig\(max_steps=...\)` must be a positive int; got 100.0",
        id="solver-float-max-steps",
    ),
    pytest.param(
        lambda: bo.SolverConfig(max_abs_state=float("inf")),
        bo.ConfigError,
        r"max_abs_state=.*got inf",
        id="solver-infinite-bound",
    ),
    pytest.param(
        lambda: bo.SolverConfig(solver=diffrax.Tsit5),
        bo.ConfigError,
        r"must be a diffrax solver such as diffrax.Tsit5\(\); got <class",
        id="solver-class-not-instance",
    ),
    pytest.param(
        lambda: bo.SolverConfig(atol="1e-6"),
        bo.ConfigError,
        r"`SolverConfig\(atol=...\)`.*got '1e-6'",
        id="solver-string-tolerance",
    ),
    pytest.param(
        lambda: bo.SolverConfig(adjoint=diffrax.ForwardMode),
        bo.ConfigError,
        r"`SolverConfig\(adjoint=...\)` must be a diffrax adjoint",
        id="solver-adjoint-class",
    ),
    # ---- run_nuts settings (beyond tests/test_infer.py)
    pytest.param(
        lambda: bo.run_nuts(lambda d: None, TS, YS, key=0),
        bo.ConfigError,
        r"`model` must come from bayesode.make_model",
        id="run_nuts-plain-model",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, num_chains=2, chains=[2]),
        bo.ConfigError,
        r"`chains` must be increasing indices in \[0, num_chains=2\) without repeats; got \[2\]",
        id="nuts-chains-out-of-range",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, num_chains=4, chains=[0.5]),
        bo.ConfigError,
        r"`chains` must be a non-empty sequence of chain indices \(ints\); got \[0.5\]",
        id="nuts-chains-not-ints",
    ),
    pytest.param(
        lambda: bo.run_nuts_distributed(MODEL, DATA, key=0, num_chains=0),
        bo.ConfigError,
        r"`num_chains`=0 must be a positive multiple of the number of processes \(1\)",
        id="distributed-num-chains",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, chunk_size=0),
        bo.ConfigError,
        r"`chunk_size` must be a positive int",
        id="run_nuts-chunk-size",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, max_tree_depth=0),
        bo.ConfigError,
        r"`max_tree_depth` must be a positive int",
        id="run_nuts-tree-depth",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, num_chains=True),
        bo.ConfigError,
        r"`num_chains` must be a positive int; got True",
        id="run_nuts-bool-chains",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0.5),
        bo.ConfigError,
        r"`key` must be a PRNG key or an int seed",
        id="run_nuts-float-key",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, num_chains=2, init_params={"k": np.ones(2)}),
        bo.ConfigError,
        r"`init_params` lacks site\(s\) \['sigma', 'y0'\]",
        id="run_nuts-init-params-missing",
    ),
    pytest.param(
        lambda: bo.run_nuts(
            MODEL,
            DATA,
            key=0,
            num_chains=2,
            init_params={"k": np.ones(3), "y0": np.ones((3, 1, 1)), "sigma": np.ones((3, 1))},
        ),
        bo.ConfigError,
        r"leading axis of num_chains=2; got \(3,\)",
        id="run_nuts-init-params-chains",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, inverse_mass_matrix=np.ones(7)),
        bo.ConfigError,
        r"`inverse_mass_matrix` has shape \(7,\); expected \(3,\)",
        id="run_nuts-mass-matrix-shape",
    ),
    pytest.param(
        lambda: bo.run_nuts(MODEL, DATA, key=0, checkpoint_dir=__file__),
        bo.ConfigError,
        r"`checkpoint_dir`=.* is a file",
        id="run_nuts-checkpoint-dir-is-file",
    ),
    # ---- run_svi and prior_failure_rate
    pytest.param(
        lambda: bo.run_svi(MODEL, DATA, key=0, guide="fullrank"),
        bo.ConfigError,
        r"`guide`='fullrank' is unknown; choose one of",
        id="run_svi-guide-typo",
    ),
    pytest.param(
        lambda: bo.run_svi(MODEL, DATA, key=0, num_steps=0),
        bo.ConfigError,
        r"`num_steps` must be a positive int",
        id="run_svi-no-steps",
    ),
    pytest.param(
        lambda: bo.run_svi(MODEL, DATA, key=0, guide="low-rank", rank=0),
        bo.ConfigError,
        r"`rank` must be a positive int",
        id="run_svi-rank",
    ),
    pytest.param(
        lambda: bo.run_svi(MODEL, DATA, key=0, num_particles=0),
        bo.ConfigError,
        r"`num_particles` must be a positive int",
        id="run_svi-particles",
    ),
    pytest.param(
        lambda: bo.run_svi(MODEL, DATA, key=0, optimizer="adam"),
        bo.ConfigError,
        r"`optimizer` must be an optax optimizer",
        id="run_svi-optimizer-string",
    ),
    pytest.param(
        lambda: bo.prior_failure_rate(MODEL, DATA, key=0, num_draws=0),
        bo.ConfigError,
        r"`num_draws` must be a positive int",
        id="prior_failure_rate-no-draws",
    ),
    # ---- Posterior.predict (beyond tests/test_infer.py)
    pytest.param(
        lambda: fake_posterior().predict([0.0, 2.0, 1.0], key=0),
        bo.DataError,
        r"`ts` is not sorted: 2.0 at index 1",
        id="predict-unsorted",
    ),
    pytest.param(
        lambda: fake_posterior().predict(np.ones((2, 2)), key=0), bo.DataError, r"`ts` must be 1-D", id="predict-2d-times"
    ),
    pytest.param(
        lambda: fake_posterior().predict([0.0, np.nan], key=0),
        bo.DataError,
        r"non-finite time nan at index 1",
        id="predict-nan-time",
    ),
    pytest.param(
        lambda: fake_posterior(model=None).predict([0.0, 1.0], key=0),
        bo.ConfigError,
        r"loaded without its model; pass `model=` to Posterior.load",
        id="predict-without-model",
    ),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUT)
def test_bad_input_gives_a_clear_error_before_compiling(call, error, match, no_compile, request):
    start = time.perf_counter()
    with pytest.raises(error, match=match):
        call()
    needs_sites = "init-params" in request.node.callspec.id or "mass-matrix" in request.node.callspec.id
    assert time.perf_counter() - start < (20.0 if needs_sites else 0.5)  # an abstract trace: ~1 s idle, more under load


# ---------------------------------------------------------------- solver failures
def hazard(t, y, p, a):
    """``y' = -r y + q y^2`` on ``t < c - 1`` only (NaN beyond, like a field with a singularity)."""
    return -p["r"] * y + p["q"] * y**2 + 0.0 * jnp.sqrt(p["c"] - 1.0 - t)


HAZARD_PRIORS = {"r": dist.LogNormal(0.0, 1.0), "q": dist.Normal(0.0, 0.5), "c": dist.LogNormal(np.log(8.0), 0.5)}
MAX_STEPS = 256
# One parameter set per outcome on t in [0, 5] from y0 = 1.
CASES = {
    "ok": ((1.0, 0.0, 100.0), (STATUS_OK,)),
    "max_steps": ((1e3, 0.0, 100.0), (STATUS_MAX_STEPS,)),  # stiff: Tsit5 needs > 256 steps
    "blow_up": ((1.0, 3.0, 100.0), (STATUS_BLOW_UP, STATUS_DT_MIN)),  # finite-time blow-up (q y0 > r)
    "nan_mid_solve": ((1.0, 0.0, 2.0), (STATUS_DT_MIN,)),  # field NaN for t > 1
    "nan_at_start": ((1.0, 0.0, 0.5), (STATUS_NONFINITE,)),  # field NaN already at t0 = 0
}
CAUSE_OF = {
    STATUS_MAX_STEPS: "max_steps",
    STATUS_BLOW_UP: "blow_up",
    STATUS_DT_MIN: "dt_min",
    STATUS_NONFINITE: "nonfinite",
}


def hazard_model(adjoint=None, y0_prior=None, **priors):
    return bo.make_model(
        bo.MechanisticField(hazard, {"r": 1.0, "q": 0.0, "c": 100.0}, state_dim=1),
        param_priors=dict(HAZARD_PRIORS, **priors),
        y0_prior=y0_prior or dist.LogNormal(0.0, 0.1),
        likelihood=bo.NormalNoise(sigma_prior=dist.LogNormal(np.log(0.05), 0.5)),
        solver=bo.SolverConfig(max_steps=MAX_STEPS, adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint()),
    )


def case_params():
    values = np.array([v for v, _ in CASES.values()], dtype=np.float32)
    n = len(CASES)
    return {
        "r": values[:, 0],
        "q": values[:, 1],
        "c": values[:, 2],
        "y0": np.ones((n, 1, 1), np.float32),
        "sigma": np.full((n, 1), 0.05, np.float32),
    }


# Reverse mode compiles the checkpointed adjoint (~15 s on 2 cores): slow. Forward mode and forward
# sensitivities (reverse mode over a custom_vjp: a failed solve's cotangent is NaN there) stay in the quick loop.
@pytest.mark.parametrize("adjoint", [pytest.param("reverse", marks=pytest.mark.slow), "forward", "sensitivity"])
def test_every_failure_cause_gives_exactly_minus_inf_finite_gradients_and_one_count(adjoint):
    forward = adjoint == "forward"
    solver_adjoint = {"forward": diffrax.ForwardMode(), "sensitivity": bo.ForwardSensitivity()}.get(adjoint)
    model = hazard_model(solver_adjoint)
    md = bo.make_data(np.linspace(0.0, 5.0, 6), np.ones((6, 1))).model_data()

    def lp(p, chain):  # as the sampler calls it: with chain and iteration, so failures are reported
        return log_density(model, (md,), {"chain_id": chain, "iteration": 0}, p)[0]

    grad = jax.jacfwd(lp) if forward else jax.grad(lp)

    run = jax.jit(jax.vmap(lambda p, chain: (lp(p, chain), grad(p, chain))))
    with FailureLog() as log:
        values, grads = jax.device_get(run(case_params(), jnp.arange(len(CASES))))
    # as if every case were a divergent transition of one leapfrog step
    counts = log.counts(np.ones((len(CASES), 1), bool), np.ones((len(CASES), 1), int), 0)
    for i, (name, (_, expected)) in enumerate(CASES.items()):
        if name == "ok":
            assert np.isfinite(values[i]) and counts["total"][i, 0] == 0
        else:
            assert values[i] == -np.inf, name  # exactly -inf, not NaN or a large negative number
            # counted once (value and gradient evaluate the same proposal), under its own cause
            assert counts["total"][i, 0] == 1, name
            assert sum(counts[CAUSE_OF[code]][i, 0] for code in expected) == 1, (name, counts)
        for site, g in grads.items():
            assert np.all(np.isfinite(g[i])), (name, site, g[i])


def test_failure_log_counts_only_a_chains_own_leapfrog_points():
    # Points are logged in evaluation order; a chain-iteration with num_steps leapfrog steps owns
    # its first num_steps distinct points. Later ones are the discarded evaluations a batched
    # while-loop makes after the chain's tree has stopped (while another chain's still grows).
    ok, blow_up, max_steps = np.array([STATUS_OK]), np.array([STATUS_BLOW_UP]), np.array([STATUS_MAX_STEPS])
    log = FailureLog()
    for chain, points in {
        0: [(1.0, ok), (2.0, blow_up)],  # its second (last) step failed: counted
        1: [(1.0, ok), (2.0, ok), (3.0, max_steps)],  # the failure came after its 2 steps: not counted
        2: [(1.0, ok), (1.0, blow_up), (2.0, ok)],  # a repeated point keeps its first status: none failed
        3: [(5.0, max_steps)],  # failed, but the iteration did not diverge: not counted
    }.items():
        for fingerprint, status in points:
            log.record(chain, 7, status, fingerprint)
    diverging = np.array([[True], [True], [True], [False]])
    counts = log.counts(diverging, np.array([[2], [2], [2], [1]]), 7)
    assert counts["total"][:, 0].tolist() == [1, 0, 0, 0]
    assert counts["blow_up"][0, 0] == 1 and counts["max_steps"].sum() == 0
    assert log.counts(diverging, np.array([[2], [3], [2], [1]]), 7)["max_steps"][:, 0].tolist() == [0, 1, 0, 0]
    assert log.counts(diverging, np.array([[2], [2], [2], [1]]), 8)["total"].sum() == 0  # other iterations


def test_failure_log_records_round_trip_with_point_order():
    # A checkpoint stores the log as JSON records; the reloaded log must count exactly as the original.
    log = FailureLog()
    for fingerprint, status in [(2.0, np.array([STATUS_OK])), (1.0, np.array([STATUS_BLOW_UP]))]:
        log.record(0, 3, status, fingerprint)
    log.record(1, 4, np.array([STATUS_MAX_STEPS]), 5.0)
    again = FailureLog.from_records(json.loads(json.dumps(log.to_records())))
    assert again.to_records() == log.to_records()
    diverging, steps = np.ones((2, 2), bool), np.array([[1, 1], [1, 1]])
    for num_steps in (steps, 2 * steps):  # one step: only the first point (solved) counts; two: the failure
        want, got = log.counts(diverging, num_steps, 3), again.counts(diverging, num_steps, 3)
        assert all(np.array_equal(want[c], got[c]) for c in want)
    assert again.counts(diverging, 2 * steps, 3)["blow_up"][0, 0] == 1


def test_failed_solves_are_cheap():
    field = bo.MechanisticField(hazard, {"r": 1.0, "q": 0.0, "c": 100.0}, state_dim=1)
    ts = jnp.linspace(0.0, 5.0, 6)
    config = bo.SolverConfig(max_steps=MAX_STEPS)

    @jax.jit
    @jax.vmap
    def steps(r, q, c):
        sol = bo.solve(eqx_set(field, r, q, c), jnp.ones(1), ts, config=config)
        return sol.num_steps, sol.status

    p = case_params()
    n, codes = jax.device_get(steps(p["r"], p["q"], p["c"]))
    by_name = dict(zip(CASES, n, strict=True))
    assert by_name["nan_at_start"] == 0  # not integrated at all
    assert by_name["max_steps"] == MAX_STEPS  # bounded by the budget, never more
    for name in ("blow_up", "nan_mid_solve"):
        assert by_name[name] < 4 * max(by_name["ok"], 25), (name, by_name)  # stopped by the event / dt_min
    assert codes[0] == STATUS_OK


def eqx_set(field, r, q, c):
    return bo.MechanisticField(field.fn, {"r": r, "q": q, "c": c}, state_dim=1)


def test_one_failing_series_leaves_the_others_untouched():
    # y' = -y + 0.5 y^2 blows up iff y0 > 2: series 1 fails, series 0 and 2 must be exactly as if alone.
    model = hazard_model()
    ts = np.linspace(0.0, 5.0, 6)
    data = bo.make_data([ts, ts, ts], [np.ones((6, 1))] * 3)
    md = data.model_data()
    p = {"r": 1.0, "q": 0.5, "c": 100.0, "y0": jnp.array([[1.0], [3.0], [1.5]]), "sigma": jnp.full(1, 0.05)}

    @jax.jit
    def run(p):
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), p)).get_trace(md)
        return tr["solver_status"]["value"], tr["trajectory"]["value"], tr["solver_failed"]["fn"].log_factor

    status, traj, factor = jax.device_get(run(p))
    assert status[0] == STATUS_OK and status[2] == STATUS_OK and status[1] in (STATUS_BLOW_UP, STATUS_DT_MIN)
    assert factor == -np.inf
    field = eqx_set(model.spec.field, 1.0, 0.5, 100.0)
    alone = jax.jit(lambda y0: bo.solve(field, y0, jnp.asarray(ts, jnp.float32), config=model.spec.solver).ys)
    for s in (0, 2):
        np.testing.assert_array_equal(traj[s], np.asarray(alone(p["y0"][s])))
    assert np.all(np.isfinite(traj[1]))  # the failed series holds a finite placeholder


def test_no_valid_start_error_lists_every_cause_and_a_fix():
    # c < 1: NaN field at t0; 1 < c < 6: NaN mid-solve; c > 6: r ~ 1000 is too stiff for max_steps.
    model = hazard_model(r=dist.LogNormal(np.log(1e3), 0.1), c=dist.Normal(-2.0, 4.0))
    data = bo.make_data(np.linspace(0.0, 5.0, 6), np.ones((6, 1)))
    err = bayesode.infer.preflight.init_error(model, data, jax.random.PRNGKey(0), RuntimeError("all starts failed"))
    msg = str(err)
    assert isinstance(err, bo.InitializationError)
    assert "100% gave a failed solve" in msg
    for cause in ("nonfinite", "dt_min", "max_steps"):
        assert f"'{cause}'" in msg, (cause, msg)
    assert "raise SolverConfig(max_steps=...)" in msg and "NaN/inf" in msg and "Fix:" in msg


@pytest.mark.slow
def test_nuts_survives_failures_of_several_causes_in_warmup_and_sampling(monkeypatch):
    # Truth r=1, q=0.3, c irrelevant as long as c > 6. The posterior of c is its prior cut at 6, so
    # sampling keeps proposing c < 6 (NaN mid-solve); early warmup also tries stiff r and blow-ups.
    model = hazard_model(diffrax.ForwardMode())
    ts = np.linspace(0.0, 5.0, 9)
    clean = np.asarray(bo.solve(eqx_set(model.spec.field, 1.0, 0.3, 100.0), jnp.ones(1), jnp.asarray(ts)).ys)
    ys = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape)
    # Vectorised chains (not the CPU default): the harder case for counting, see below.
    post = bo.run_nuts(model, ts, ys, key=0, num_warmup=150, num_samples=100, num_chains=2, progress=False,
                        chain_method="vectorized")
    st = post.sample_stats
    warm = post.settings["warmup_solver_failures"]
    causes = ("max_steps", "nonfinite", "blow_up", "dt_min", "other")
    assert warm["total"] > 0 and st["solver_failures"].sum() > 0, (warm, st["solver_failures"].sum())
    assert sum(warm[c] for c in causes) == warm["total"]
    assert sum(st[f"solver_failures_{c}"] for c in causes).tolist() == st["solver_failures"].tolist()
    seen = {c for c in causes if warm[c] + st[f"solver_failures_{c}"].sum() > 0}
    assert len(seen) >= 2, (warm, {c: int(st[f"solver_failures_{c}"].sum()) for c in causes})
    # Failed proposals were rejected: every kept draw solves, has a finite log density, and c > 6.
    assert np.all(np.isfinite(st["potential_energy"]))
    assert np.all(post.samples["c"] > 6.0)
    assert np.all(post.fitted()["status"] == STATUS_OK)
    diag = post.diagnostics()
    assert diag["solver_failures"] == int(st["solver_failures"].sum())
    assert any("ODE solves failed during sampling" in w for w in diag["warnings"])
    print(f"failures: warmup {warm}, sampling {diag['solver_failures_by_cause']}")
    # Sampling runs without the per-gradient failure callback and replays the iterations that
    # diverged with it on (from the kept states, or the whole chunk when a chain diverged more
    # than REPLAY_SLOTS times in it: both happen here). Reporting from every iteration, or
    # replaying only from kept states, must count the same failures.
    # iterations 200-249 are one chunk; more divergences there than slots: the whole-chunk replay ran
    assert st["diverging"][:, 50:].sum(axis=1).max() > bayesode.infer.programs.REPLAY_SLOTS, st["diverging"][:, 50:].sum(axis=1)
    # Reporting from every iteration of the vectorised run also logs the discarded evaluations of
    # a chain whose tree stopped before the other chain's (more points than its leapfrog steps);
    # the count must not change (FailureLog keeps only a chain's own first num_steps points).
    # Second variant: as a long run with the compile cache on (as here), the run samples with a
    # program without the callback and replays with the one that has it, compiled in the
    # background: same draws, same counts.
    chunks, programs = bayesode.infer.chunks, bayesode.infer.programs
    variants = {
        "every iteration": [(chunks, "_REPORT_EVERY_ITERATION", True)],
        "kept states only, separate reporting program": [(programs, "REPLAY_SLOTS", 100),
                                                         (chunks, "SEPARATE_REPORTING_MIN_ITERATIONS", 0)],
    }
    for name, attrs in variants.items():
        with monkeypatch.context() as m, FailureLog() as watch:
            for module, attr, value in attrs:
                m.setattr(module, attr, value)
            other = bo.run_nuts(model, ts, ys, key=0, num_warmup=150, num_samples=100, num_chains=2, progress=False,
                                chain_method="vectorized")
        if name == "every iteration":
            points = np.array([[len(watch._seen[c, 150 + j]) for j in range(100)] for c in range(2)])
            assert np.all(points >= st["num_steps"]) and np.any(points > st["num_steps"]), (points, st["num_steps"])
        np.testing.assert_array_equal(other.samples["c"], post.samples["c"])
        assert other.settings["warmup_solver_failures"] == warm, name
        for c in causes:
            np.testing.assert_array_equal(other.sample_stats[f"solver_failures_{c}"], st[f"solver_failures_{c}"], name)
