#!/usr/bin/env bash
# Run the benchmark suite on an NVIDIA GPU, in its own virtual environment with jax[cuda].
#
#   bash benchmarks/gpu.sh            # full suite plus the many-series case
#   bash benchmarks/gpu.sh --quick    # any run.py options are passed on
#
# Not run on the development machine (it has no GPU): expect to fix small things on first use.
# Results go to benchmarks/out/gpu/. Compare with a CPU run of the same cases.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu.sh: no NVIDIA GPU found (nvidia-smi -L failed); run benchmarks/run.py for the CPU suite." >&2
  exit 1
fi
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q -e .
# jax[cudaNN] must match the jax that bayesode resolved; try CUDA 12 then 13 wheels.
JAX_VERSION=$("$VENV/bin/python" -c "import jax; print(jax.__version__)")
"$VENV/bin/pip" install -q "jax[cuda12]==$JAX_VERSION" || "$VENV/bin/pip" install -q "jax[cuda13]==$JAX_VERSION"
"$VENV/bin/python" -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print('devices:', jax.devices())"
"$VENV/bin/pip" install -q pystan || echo "pystan not installed: the Stan peer will be skipped"

# The GPU's memory is preallocated by default; let cases share it with the peers' processes.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
"$VENV/bin/python" benchmarks/run.py \
  --cases lv lv-numpyro spiral neural-lh scaling many-series solver \
  --out benchmarks/out/gpu "$@"
