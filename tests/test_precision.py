"""The ``precision=`` setting: checked, reaching the solve, kept apart in the program cache, recorded,
saved and loaded, on the command line; and the process-wide ``jax_enable_x64`` left as it was."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import bayesode as bo
from bayesode.cli.main import build_parser
from bayesode.errors import ConfigError
from bayesode.infer.programs import PROGRAMS, ProgramCache
from bayesode.solving.precision import check_precision, current_precision, precision_scope

TS = np.linspace(0.0, 2.0, 6)
YS = (3.0 * np.exp(-0.7 * TS))[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((6, 1)))


def decay_model(**kw):
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    return bo.make_model(field, param_priors={"k": dist.LogNormal(0.0, 0.5)}, likelihood=bo.LogNormalNoise(), **kw)


@pytest.fixture(scope="module")
def data():
    return bo.make_data(TS, YS, state_names=["y"])


@pytest.fixture(scope="module")
def fits(data):
    """The same model fitted by SVI in its default precision and in float64 (10 steps: dtypes, not quality)."""
    model = decay_model()
    before = bool(jax.config.jax_enable_x64)
    low = bo.run_svi(model, data, key=0, num_steps=10, num_draws=20, progress=False)
    high = bo.run_svi(model, data, key=0, num_steps=10, num_draws=20, progress=False, precision="float64")
    return model, low, high, before


@pytest.mark.parametrize("bad", ["float16", "double", 64, True])
def test_a_bad_precision_is_a_config_error_naming_it(data, bad):
    with pytest.raises(ConfigError, match="`precision`"):
        bo.run_nuts(decay_model(), data, key=0, precision=bad)
    with pytest.raises(ConfigError, match="`precision`"):
        decay_model(precision=bad)
    with pytest.raises(ConfigError, match="`precision`"):
        bo.models.lotka_volterra(precision=bad)


def test_the_default_is_the_models_and_the_presets_choose_per_kind():
    from bayesode.model.presets import DEFAULT_PRECISION

    assert decay_model().spec.precision == "float32"
    assert decay_model(precision="float64").spec.precision == "float64"
    for kind, build in (("lotka-volterra", bo.models.lotka_volterra), ("neural", lambda **k: bo.models.neural(2, **k))):
        assert build().spec.precision == DEFAULT_PRECISION[kind]
        other = "float64" if DEFAULT_PRECISION[kind] == "float32" else "float32"
        rebuilt = bo.models.from_recipe(build(precision=other).spec.recipe)  # as `bayesode predict` does
        assert rebuilt.spec.precision == other
    assert check_precision(None, allow_none=True) is None


def test_the_setting_reaches_the_solve_and_is_recorded(fits):
    model, low, high, before = fits
    assert low.settings["precision"] == low.precision == "float32"
    assert high.settings["precision"] == high.precision == "float64"
    assert all(v.dtype == np.float32 for v in low.samples.values())
    assert all(v.dtype == np.float64 for v in high.samples.values())
    # The noise-free solve at the data times runs in the posterior's precision, whatever the global one.
    assert high.fitted()["trajectory"].dtype == jnp.float64
    assert low.fitted()["trajectory"].dtype == jnp.float32
    assert bool(jax.config.jax_enable_x64) == before  # the fits changed no global setting
    assert current_precision() == ("float64" if before else "float32")


def test_float32_programs_are_not_reused_for_float64(fits):
    model = fits[0]
    svi_entries = [k for k in PROGRAMS._entries if k[0] is model and k[1] == "svi"]
    assert sorted(k[-1] for k in svi_entries) == ["float32", "float64"]  # one program per precision

    cache, builds = ProgramCache(), []
    for precision in ("float32", "float64", "float32"):
        with precision_scope(precision):
            cache.get("model", "kind", ("shapes",), lambda: builds.append(precision) or len(builds))
    assert builds == ["float32", "float64"]  # the third call reused the float32 entry


def test_precision_is_saved_and_loaded(fits, data, tmp_path):
    model, _, high, _ = fits
    idata = high.to_arviz(key=1, prior_draws=0)
    assert idata.posterior.attrs["bayesode_precision"] == "float64"
    path = tmp_path / "fit.nc"
    high.save(path)
    loaded = bo.Posterior.load(path, model=model)
    assert loaded.settings["precision"] == loaded.precision == "float64"
    assert az.from_netcdf(str(path)).posterior.attrs["bayesode_precision"] == "float64"
    assert loaded.fitted()["trajectory"].dtype == jnp.float64  # a loaded fit predicts in its precision


def test_nuts_runs_in_the_precision_asked(data):
    before = bool(jax.config.jax_enable_x64)
    post = bo.run_nuts(decay_model(), data, key=0, num_warmup=5, num_samples=5, num_chains=1, progress=False,
                       on_failure="continue", precision="float64")  # fmt: skip
    assert post.settings["precision"] == "float64"
    assert all(v.dtype == np.float64 for v in post.samples.values())
    assert post.sample_stats["potential_energy"].dtype == np.float64
    assert bool(jax.config.jax_enable_x64) == before


def test_cli_precision_parses_and_reaches_the_model(data):
    from bayesode.cli.fit import _model_for

    parse = build_parser().parse_args
    assert parse(["fit"]).precision is None  # the kind's default
    args = parse(["fit", "--model", "lotka-volterra", "--precision", "float64"])
    model = _model_for(args, bo.make_data(TS, np.hstack([YS, YS]), state_names=["prey", "predator"]))
    assert model.spec.precision == "float64" and model.spec.recipe["precision"] == "float64"
    with pytest.raises(SystemExit):
        parse(["fit", "--precision", "float16"])


def test_the_failure_advice_names_the_setting_and_its_flag():
    from bayesode.cli.common import command_line_advice
    from bayesode.infer.fit_failures import GENERAL_ADVICE

    assert "precision='float64'" in GENERAL_ADVICE
    assert "--precision float64" in command_line_advice(GENERAL_ADVICE)


PARALLEL_SCRIPT = """
import json, sys
import jax
import numpy as np
import numpyro.distributions as dist
import bayesode as bo

bo.enable_compilation_cache(sys.argv[1] or None)
field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
model = bo.make_model(field, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.5))
ts = np.linspace(0.0, 3.0, 7)
ys = (1.5 * np.exp(-0.7 * ts))[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((7, 1)))
kw = dict(key=3, num_warmup=20, num_samples=10, num_chains=2, progress=False, on_failure="continue",
          precision="float64")
out = {"devices": len(jax.devices()), "x64": bool(jax.config.jax_enable_x64)}
for method in ("parallel", "sequential"):
    post = bo.run_nuts(model, ts, ys, chain_method=method, **kw)
    out[method] = {k: np.asarray(v).tolist() for k, v in post.samples.items()}
    out[method + "_dtypes"] = sorted({str(v.dtype) for v in post.samples.values()})
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow  # a fresh process with two CPU devices, two NUTS compiles
def test_parallel_chains_run_in_the_fits_precision_in_their_threads():
    from _devices import run_on_cpu_devices

    out = run_on_cpu_devices(PARALLEL_SCRIPT, 2)
    assert out["devices"] == 2 and out["x64"] is False
    # The worker threads entered the fit's float64 scope: float64 draws, the same as one chain at a time.
    assert out["parallel_dtypes"] == out["sequential_dtypes"] == ["float64"]
    assert out["parallel"] == out["sequential"]
