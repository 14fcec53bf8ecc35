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


def test_tree_key_counts_shapes_where_values_are_ignored_and_values_elsewhere():
    import equinox as eqx

    from bayesode.caching import tree_key

    class Net(eqx.Module):
        weight: jax.Array
        fixed: jax.Array
        scale: float

    ignore = Net(weight=True, fixed=False, scale=False)
    a = Net(np.zeros((2, 3), np.float32), np.ones(2, np.float32), 1.5)
    # Other weights, same shape: the same key (the prior replaces them).
    assert tree_key(a, ignore) == tree_key(Net(np.full((2, 3), 7.0, np.float32), a.fixed, 1.5), ignore)
    assert tree_key(a, ignore) != tree_key(Net(np.zeros((3, 3), np.float32), a.fixed, 1.5), ignore)  # shape
    assert tree_key(a, ignore) != tree_key(Net(a.weight, np.array([1.0, 2.0], np.float32), 1.5), ignore)  # fixed values
    assert tree_key(a, ignore) != tree_key(Net(a.weight, a.fixed, 2.5), ignore)  # a setting
    assert tree_key(a) != tree_key(Net(np.full((2, 3), 7.0, np.float32), a.fixed, 1.5))  # no filter: values count
    assert tree_key(Net(a.weight, a.fixed, lambda: 0), ignore) is not None  # a function hashes by identity
    assert tree_key(Net(a.weight, a.fixed, {1.0}), ignore) is None  # a set leaf cannot be hashed: no key


def test_point_process_model_is_shared_by_templates_of_one_shape():
    """fit_events's compiled programs are cached by model: a fresh template (another key) of the same
    structure must give the same model function, and any change of structure or prior another."""
    from bayesode.model import Normal, point_process_model
    from bayesode.solving import NeuralJumpProcess

    def process(key, width=4):
        return NeuralJumpProcess(2, width=width, key=jax.random.key(key), rate_scale=2.0, t_scale=0.5)

    model = point_process_model(process(0), weight_prior=Normal(1.0))
    assert point_process_model(process(1), weight_prior=Normal(1.0)) is model
    assert point_process_model(process(0, width=5), weight_prior=Normal(1.0)) is not model
    assert point_process_model(process(0), weight_prior=Normal(0.5)) is not model


def test_jump_filter_model_is_shared_by_nets_of_one_shape():
    from bayesode.model import Normal, make_jump_filter_model
    from bayesode.solving import NeuralJumpODE

    def net(key, width=4):
        return NeuralJumpODE(2, hidden_dim=2, width=width, key=jax.random.key(key))

    model = make_jump_filter_model(net(0), weight_prior=Normal(1.0))
    assert make_jump_filter_model(net(1), weight_prior=Normal(1.0)) is model
    assert make_jump_filter_model(net(0, width=5), weight_prior=Normal(1.0)) is not model


def test_latents_model_stops_bayesodes_models_before_the_solve_and_leaves_others_whole():
    import jax.random as jr

    from bayesode.infer.programs import latents_model
    from bayesode.model import event_arrays, make_jump_filter_model, point_process_model
    from bayesode.solving import NeuralJumpODE, NeuralJumpProcess

    events = event_arrays(bo.datasets.make_event_sequences([[0.5, 1.0]], t_end=2.0))
    irregular = dict(ts=np.array([[0.0, 0.5]]), ys=np.ones((1, 2, 1)), mask=np.ones((1, 2, 1), bool))
    for model, data in ((point_process_model(NeuralJumpProcess(2, width=4, key=jr.key(0))), events),
                        (make_jump_filter_model(NeuralJumpODE(1, hidden_dim=2, width=4, key=jr.key(0))), irregular)):  # fmt: skip
        whole = handlers.trace(handlers.seed(model, 0)).get_trace(**data)
        latent = handlers.trace(handlers.seed(latents_model(model), 0)).get_trace(**data)
        sampled = {k for k, s in whole.items() if s["type"] == "sample" and not s["is_observed"]}
        # Every latent site, and nothing of the solve (no factor, observation or deterministic site).
        assert set(latent) == sampled and len(sampled) > 3

    def plain(x=None):
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    assert latents_model(plain) is plain
