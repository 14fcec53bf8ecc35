"""Run a test script in a fresh process with N simulated CPU devices (fixed when JAX starts)."""

import json
import os
import subprocess
import sys

import jax


def run_on_cpu_devices(script: str, num_devices: int, timeout: float = 900) -> dict:
    """Run ``script`` (which prints one line ``RESULT<json>``) with ``num_devices`` CPU devices.

    The script gets this session's compile-cache folder (or "") as ``sys.argv[1]``.
    """
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script, jax.config.jax_compilation_cache_dir or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])
