"""Independent series split across devices (``make_model(series_devices=...)``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError


def resolve_devices(series_devices) -> tuple | None:
    """``make_model(series_devices=...)`` as a tuple of two or more devices, or None (one device)."""
    if series_devices is None:
        return None
    available = jax.devices()
    if isinstance(series_devices, str):
        if series_devices != "all":
            raise ConfigError(f'`series_devices`={series_devices!r}: give "all", a device count or a list of devices.')
        devices = tuple(available)
    elif isinstance(series_devices, (int, np.integer)) and not isinstance(series_devices, bool):
        if not 1 <= series_devices <= len(available):
            raise ConfigError(
                f"`series_devices`={series_devices} but jax sees {len(available)} device(s) ({available[0].platform}); "
                "give a count between 1 and that (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "set before jax starts gives N devices)."
            )
        devices = tuple(available[: int(series_devices)])
    else:
        devices = tuple(series_devices) if isinstance(series_devices, (list, tuple)) else None
        if not devices or not all(isinstance(d, jax.Device) for d in devices) or len(set(devices)) != len(devices):
            raise ConfigError(
                f'`series_devices` must be "all", a device count or a list of distinct jax devices; got {series_devices!r}.'
            )
    return devices if len(devices) > 1 else None


def split_across_devices(fn, shared, per_series, devices):
    """``fn(shared, per_series)`` with the series axis (leading, of every leaf of ``per_series``)
    split across ``devices``.

    Each device runs ``fn`` on its share in its own program (``jax.shard_map``), so a
    device's adaptive-step loop never waits on another's. ``shared`` (the field's weights)
    goes in as one copy per device: reverse mode then returns one gradient per copy and the
    copying sums them (a replicated ``PartitionSpec()`` input relies on ``check_vma=True``
    for that sum, a check diffrax's loops do not pass). The series are
    padded with copies of the last one to a multiple of the device count; the padding is
    cut from the result.
    """
    from jax.sharding import Mesh, PartitionSpec

    num_series = jax.tree.leaves(per_series)[0].shape[0]
    pad = -num_series % len(devices)
    if pad:
        per_series = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), per_series)
    mesh = Mesh(np.asarray(devices), ("series",))
    by_series = PartitionSpec("series")
    copies = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(devices), *x.shape)), shared)

    def on_device(copies, per_series):
        return fn(jax.tree.map(lambda x: x[0], copies), per_series)

    out = jax.shard_map(on_device, mesh=mesh, in_specs=(by_series, by_series), out_specs=by_series, check_vma=False)(
        copies, per_series
    )
    return jax.tree.map(lambda x: x[:num_series], out) if pad else out
