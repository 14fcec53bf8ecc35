"""The inference wing's state: the compiled-program cache and the NumPyro adapter (fast, no fit)."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import autoguide
from numpyro.infer.initialization import init_to_median

import bayesode as bo
from bayesode.infer.numpyro_adapter import guide_init_locs
from bayesode.infer.programs import SHAPES, ProgramCache, latent_sites, unconstrained_size


def test_program_cache_builds_once_per_key_and_keeps_the_most_recent():
    cache, built = ProgramCache(max_entries=2), []

    def build(tag):
        return lambda: built.append(tag) or tag

    def model_a():
        pass

    def model_b():
        pass

    assert cache.get(model_a, "nuts", (1,), build("a1")) == "a1"
    assert cache.get(model_a, "nuts", (1,), build("again")) == "a1"  # found, not built
    assert cache.get(model_b, "nuts", (1,), build("b1")) == "b1"  # another model: its own entry
    assert cache.get(model_a, "svi", (1,), build("a-svi")) == "a-svi"  # another kind: its own entry
    assert built == ["a1", "b1", "a-svi"] and len(cache) == 2  # the oldest (a1) was dropped
    assert cache.get(model_a, "nuts", (1,), build("a1 rebuilt")) == "a1 rebuilt"
    # A key that cannot be hashed (an optax object holding arrays, say) is built afresh each time.
    assert cache.get(model_a, "svi", ([1],), build("u1")) == "u1"
    assert cache.get(model_a, "svi", ([1],), build("u2")) == "u2"
    assert len(cache) == 2


def test_the_cache_lives_in_the_inference_wing_not_on_the_users_model():
    model = bo.models.lotka_volterra()
    md = bo.datasets.load("lynx_hare").to_data().model_data()
    before = len(SHAPES)
    assert latent_sites(model, md) == {"alpha", "beta", "gamma", "delta", "sigma", "y0"}
    assert unconstrained_size(model, md) == 4 + 2 + 2
    assert len(SHAPES) == before + 1
    assert not [k for k in vars(model) if k.startswith("_bayesode")], vars(model).keys()


def _toy():
    numpyro.sample("a", dist.Normal(np.zeros(2), 1.0))
    numpyro.sample("b", dist.LogNormal(0.5, 1.0))


@pytest.mark.parametrize("guide_class", [autoguide.AutoNormal, autoguide.AutoMultivariateNormal])
def test_numpyro_adapter_reads_the_guide_init_locs(guide_class):
    # Fails loudly when NumPyro changes where a set-up AutoGuide keeps its initial locations
    # (see bayesode/infer/numpyro_adapter.py): then the adapter must be updated.
    guide = guide_class(_toy, init_loc_fn=init_to_median(num_samples=15))
    with pytest.raises(RuntimeError, match="NumPyro changed how an AutoGuide keeps its initial locations"):
        guide_init_locs(guide)  # not set up yet
    with handlers.trace() as tr:
        handlers.seed(guide, rng_seed=0)()
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "param"}
    locs = guide_init_locs(guide)
    assert set(locs) == {"a", "b"} and np.shape(locs["a"]) == (2,) and np.shape(locs["b"]) == ()
    # Unconstrained: the guide's median (constrained) is the locations mapped through the supports.
    median = guide.median(params)
    np.testing.assert_allclose(median["a"], locs["a"], rtol=1e-6)
    np.testing.assert_allclose(median["b"], np.exp(locs["b"]), rtol=1e-5)
    if guide_class is autoguide.AutoNormal:
        for k in ("a", "b"):
            np.testing.assert_array_equal(params[f"{k}_auto_loc"], locs[k])
    assert jax.tree.structure(locs) == jax.tree.structure({"a": 0, "b": 0})


def test_clear_program_caches_empties_every_cache_of_every_wing():
    from bayesode.caching import clear_program_caches
    from bayesode.diagnostics import sbc_fits, stability
    from bayesode.infer import programs
    from bayesode.results import predictive

    caches = [programs.PROGRAMS, SHAPES, predictive.DRAW_PROGRAMS, stability.STABILITY_PROGRAMS, sbc_fits.QUIET_MODELS]
    mine = ProgramCache()
    for i, cache in enumerate([*caches, mine]):
        cache.get(len, "test", i, lambda: "program")
        assert len(cache) >= 1
    clear_program_caches()
    assert all(len(cache) == 0 for cache in [*caches, mine])
