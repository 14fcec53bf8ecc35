"""Shared test set-up: a warm compile cache, strict promotion for our own layers, test ordering."""

import os

import jax
import pytest

import bayesode as bo

# Compiled programs are cached on disk so separate test modules (and CI re-runs)
# do not pay the ~30 s NUTS+diffrax compile again.
bo.enable_compilation_cache(os.environ.get("BAYESODE_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")))


@pytest.fixture
def strict_jax():
    """Strict dtype promotion and raising rank promotion, for tests of bayesode's own layers.

    Not autouse: NumPyro's internals (e.g. ``init_to_median`` with sample shapes) rely on
    rank promotion, so whole-model tests would fail for reasons outside bayesode. The jit
    cache keys on these settings, so mixing them in one process also forces re-tracing.
    """
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def pytest_collection_modifyitems(config, items):
    """Run unit/smoke tests first, then `slow`, then `notebooks` (stable within each group).

    Under pytest-xdist (``--dist loadgroup``, see scripts/test.sh) each test module
    stays on one worker, so its module-scoped fixtures (compiled fits) are built
    once; notebook tests carry no group and spread over the workers.
    """
    for item in items:
        if not item.get_closest_marker("notebooks"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def rank(item):
        if item.get_closest_marker("notebooks"):
            return 2
        if item.get_closest_marker("slow"):
            return 1
        return 0

    items.sort(key=rank)
