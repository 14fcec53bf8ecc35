#!/usr/bin/env bash
# The whole test suite in one pytest run: unit and smoke tests, statistical `slow`
# tests and `notebooks`. tests/conftest.py hands the heaviest modules and notebooks
# to the workers first, so the run ends on short tests; -x stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
# One worker per core (pytest-xdist): compiling JAX programs is single-threaded,
# so two workers on two cores roughly halve the wall time. Each test module stays
# on one worker (conftest.py) so module fixtures compile once. --no-loadscope-reorder
# keeps conftest's heaviest-first order (xdist would otherwise sort groups by test
# count, which put the seven one-test notebooks last). --durations: the 30 slowest
# tests close the log, so a run over its time budget shows where the time went.
exec python -m pytest -x -n "${BAYESODE_TEST_WORKERS:-auto}" --dist loadgroup --no-loadscope-reorder --durations=30 "$@"
