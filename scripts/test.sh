#!/usr/bin/env bash
# The whole test suite in one pytest run. tests/conftest.py orders it cheapest
# first (unit and smoke, then statistical `slow`, then `notebooks`) and -x stops
# at the first failure, so a cheap failure ends the run early.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
# One worker per core (pytest-xdist): compiling JAX programs is single-threaded,
# so two workers on two cores roughly halve the wall time. Each test module stays
# on one worker (conftest.py) so module fixtures compile once.
exec python -m pytest -x -n "${BAYESODE_TEST_WORKERS:-auto}" --dist loadgroup "$@"
