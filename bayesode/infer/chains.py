"""How chains run on this process's devices: vectorised, one device each, or one after another."""

from __future__ import annotations

import warnings

import jax
import numpy as np

CHAIN_METHODS = ("auto", "vectorized", "parallel", "sequential")


def resolve_chain_method(chain_method: str, model, num_chains: int) -> str:
    """``"auto"`` -> the fastest way to run ``num_chains`` chains on this process's devices.

    Accelerators: one vectorised batch per device (a batch of chains costs about one chain
    there). CPU: unbatched chains, one device per core when there are several (``parallel``),
    else one after another (``sequential``): a vmapped adaptive loop (solver steps, NUTS trees)
    makes every chain wait for the longest and selects its whole state at every step. LV, 4
    chains on one core: 18.6 ESS/s sequential vs 9.3 vectorised. Both CPU choices give the same
    draws, so a seed's draws do not depend on the device count.
    """
    if chain_method != "auto":
        return chain_method
    if getattr(model.spec, "series_devices", None) is not None:
        return "vectorized"  # the devices share the series; chains cannot take one each
    devices = jax.local_devices()
    if len(devices) >= 2 and num_chains >= 2:
        return "parallel"
    return "vectorized" if devices[0].platform != "cpu" else "sequential"


def device_groups(num_chains: int, chain_method: str):
    # This process's own devices: in a multi-process (jax.distributed) job jax.devices() also
    # lists the other processes' devices, which this one cannot run on.
    if chain_method == "vectorized":
        return [(jax.local_devices()[0], np.arange(num_chains))]
    if chain_method == "sequential":
        return [(jax.local_devices()[0], np.array([c])) for c in range(num_chains)]
    devices = jax.local_devices()
    n = min(len(devices), num_chains)
    cpu = devices[0].platform == "cpu"
    if len(devices) < 2:
        warnings.warn(
            f"chain_method='parallel' found {len(devices)} device(s); running chains "
            + ("one after another (as 'sequential'). Call bayesode.use_cpu_cores() before JAX starts for one "
               "device per core." if cpu else "vectorized.")  # fmt: skip
            + " chain_method='auto' (the default) picks without a warning.",
            stacklevel=4,  # past run_nuts and its precision wrapper, to the caller
        )
    split = np.array_split(np.arange(num_chains), n)
    if cpu:
        # On CPU each device runs its chains one at a time, unbatched (see vmap_unless_one): each
        # chain then pays for its own trees only, not the longest of its batch. LV, 4 chains on
        # 2 cores: 145 us per gradient unbatched vs about 290 us per chain in a batch.
        return [(devices[i], idx[j : j + 1]) for i, idx in enumerate(split) for j in range(len(idx))]
    return [(devices[i], idx) for i, idx in enumerate(split)]
