#!/usr/bin/env bash
# The whole test suite in one pytest run. tests/conftest.py orders it cheapest
# first (unit and smoke, then statistical `slow`, then `notebooks`) and -x stops
# at the first failure, so a cheap failure ends the run early.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
exec python -m pytest -x "$@"
