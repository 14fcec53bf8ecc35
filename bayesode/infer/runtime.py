"""Process set-up: the opt-in persistent XLA compilation cache, and one CPU device per core.

Compiling NUTS over a diffrax solve takes tens of seconds on a small CPU;
the compiled program depends only on the model's structure and data shapes,
so caching it on disk makes the second process (a re-run of the command
line, the next test module, a restarted notebook) start at once.
"""

from __future__ import annotations

import os
import re

import jax

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "bayesode", "jax")


def enable_compilation_cache(path: str | None = None, min_compile_time_s: float = 0.0) -> str:
    """Cache compiled programs in ``path`` (default ``$BAYESODE_CACHE_DIR`` or ``~/.cache/bayesode/jax``).

    Returns the folder used. Call once, before the first fit.

    ``min_compile_time_s``: programs that compiled faster are not cached. The default keeps
    them all: a fit's set-up (NumPyro's guide and starting points) runs hundreds of small
    eager operations, each compiled once per process (~30 ms each, ~10 s for the quickstart's
    first SVI fit on 2 cores; ~1 s when read back from the cache). A few kB per entry.
    """
    path = path or os.environ.get("BAYESODE_CACHE_DIR") or DEFAULT_DIR
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def use_cpu_cores(count: int | None = None) -> int:
    """One JAX CPU device per core (or ``count``), so ``run_nuts(chain_method="parallel")`` uses them all.

    JAX fixes its CPU devices when it starts its backend (the first computation), so call
    this first thing, e.g. right after ``import bayesode``. Returns the number of CPU
    devices JAX will use; warns and changes nothing when the backend already runs; changes
    nothing when ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
    ``JAX_NUM_CPU_DEVICES`` already set the number.

    Examples
    --------
    >>> import bayesode as bo
    >>> bo.use_cpu_cores() >= 1   # doctest: +SKIP
    True
    """
    import warnings

    flag = re.search(r"xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if flag:
        return int(flag.group(1))
    if os.environ.get("JAX_NUM_CPU_DEVICES"):  # the user's own choice
        return int(os.environ["JAX_NUM_CPU_DEVICES"])
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not (isinstance(count, int) and count >= 1):
        from ..errors import ConfigError

        raise ConfigError(f"`count` must be a positive int (CPU devices); got {count!r}.")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        warnings.warn(
            "use_cpu_cores(): JAX's backend already runs, so its CPU device count is fixed; call it before the "
            "first computation (e.g. right after `import bayesode`).",
            stacklevel=2,
        )
        return len(jax.devices("cpu"))
    return count
