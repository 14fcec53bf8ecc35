"""Shared test set-up: a warm compile cache, strict promotion for our own layers, test ordering."""

import gc
import os

import jax
import pytest

import bayesode as bo
from bayesode.caching import clear_program_caches

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


# Seconds each heavy unit took in one two-worker run on the 2-core machine (2026-12-07, an Intel Xeon:
# `bash .ci/run` with `--durations=0`, cold compile cache; units under 20 s are left out and so run last).
# pytest-xdist hands out units (a module, or one notebook) in collection order as workers free
# up, so the heaviest go first (longest-processing-time order) and the short unit tests fill
# the gaps at the end instead of one long module running alone on one worker.
UNIT_SECONDS = {
    "test_event_fit": 359, "test_infer": 257, "test_cli": 256, "test_event_checkpoint": 243, "test_readme": 222,
    "test_sbc": 200, "test_observation_jumps": 172, "test_plain_model": 156, "test_series_devices": 145,
    "08_jump_ode_regression": 132, "test_event_delay": 122, "test_parallel": 117, "test_adjoints": 107,
    "test_solve": 97, "test_jumps": 95, "test_laplace": 95, "test_ensemble": 89, "test_laplace_mixture": 65, "test_event_laplace": 90, "test_fit_failures": 86,
    "01_quickstart": 84, "test_structured": 82, "test_precision": 82, "test_draws_pinned": 81,
    "test_robustness": 77, "test_cache": 76, "test_lv_reference": 71, "test_resume": 67, "test_exact": 67,
    "test_model": 63, "02_mechanistic_neural_hybrid": 59, "06_dosing": 51, "04_svi_vs_nuts": 49,
    "03_time_series": 49, "05_structured_fields": 48, "test_distributed": 47, "07_sir_influenza": 43,
    "test_event_jumps": 43, "test_hierarchy": 34, "test_plots": 33, "test_observation": 31, "test_stability": 27,
    "test_event_grid": 26, "test_results": 26,
}  # fmt: skip


def _unit(item) -> str:
    if item.get_closest_marker("notebooks"):
        return item.callspec.id if hasattr(item, "callspec") else item.name
    return item.module.__name__.rsplit(".", 1)[-1]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the group marks added here
def pytest_collection_modifyitems(config, items):
    """Order test units heaviest first (see ``UNIT_SECONDS``); within a module, unit tests
    before ``slow`` ones, so a cheap failure in a module shows before its long fits.

    Under pytest-xdist (``--dist loadgroup``, see scripts/test.sh) each test module
    stays on one worker, so its module-scoped fixtures (compiled fits) are built
    once; each notebook is a unit of its own.
    """
    if config.pluginmanager.hasplugin("xdist"):  # the mark is only registered with pytest-xdist loaded
        for item in items:
            if not item.get_closest_marker("notebooks"):
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def rank(item):
        return (-UNIT_SECONDS.get(_unit(item), 0), _unit(item), bool(item.get_closest_marker("slow")))

    items.sort(key=rank)


def pytest_collection_finish(session):
    """Fail loudly if pytest-xdist's ``loadgroup`` did not apply the groups: it marks a grouped
    test by appending ``@group`` to ``item._nodeid``, which pytest 9 no longer reads (its node
    ids come from ``item._id``), so every test was scheduled alone and each worker rebuilt the
    module fixtures and compiled the same programs (why pyproject pins ``pytest<9``)."""
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]  # notebooks are not
    if getattr(session.config.option, "loadgroup", False) and grouped and "@" not in grouped[0].nodeid:
        raise pytest.UsageError("pytest-xdist --dist loadgroup did not group the tests (pytest >= 9?); see tests/conftest.py")


def _memory_maps() -> int | None:
    try:
        with open("/proc/self/maps") as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux
        return None


MAX_MAPS_AFTER_A_MODULE = 30_000  # Linux's default vm.max_map_count is 65,530


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop each module's compiled programs when it ends.

    Every program XLA compiles (or loads from the disk cache) is linked into the process as
    machine code, about three memory maps each, kept while JAX's and bayesode's in-memory
    caches hold it. A worker runs some twenty modules in one process and used to reach
    Linux's limit of 65,530 maps (vm.max_map_count) late in a full run, where the next
    compile or cache load died with a segmentation fault or an abort inside XLA. The disk
    cache still serves a later module that needs the same program. The check after the
    clear-out turns a leak (something else holding programs) into a clear error here.
    """
    yield
    clear_program_caches()
    jax.clear_caches()
    gc.collect()
    maps = _memory_maps()
    if maps is not None and maps > MAX_MAPS_AFTER_A_MODULE:
        pytest.fail(f"this test process holds {maps} memory maps after freeing its compiled programs (Linux's "
                    f"limit is vm.max_map_count, 65,530 by default): something keeps compiled programs alive")

