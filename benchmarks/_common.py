"""Shared helpers for the benchmark suite: machine description, timers, gradient timing."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def machine() -> dict:
    """CPU model, core count, memory and library versions of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    import diffrax
    import numpyro

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "numpyro": numpyro.__version__,
        "diffrax": diffrax.__version__ if hasattr(diffrax, "__version__") else "?",
        "x64": bool(jax.config.jax_enable_x64),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def block(x):
    return jax.block_until_ready(x)


def time_call(fn, *args, repeats: int = 20, min_time: float = 0.2) -> float:
    """Median seconds per call of an already-compiled ``fn`` (each timing covers >= ``min_time``)."""
    block(fn(*args))
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        block(out)
        if time.perf_counter() - t >= min_time / 10 or n >= 1 << 16:
            break
        n *= 2
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        block(out)
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def potential_of(model, md, key=0, **model_kwargs):
    """``(potential_fn, z)``: the model's potential (negative log density, unconstrained) and a start.

    ``model_kwargs`` go to the model (e.g. ``chain_id=0, iteration=0`` as ``run_nuts`` passes them).
    """
    from numpyro.infer.util import initialize_model

    forward = bool(model.spec.solver.forward_mode)
    info = initialize_model(
        jax.random.PRNGKey(key),
        model,
        model_args=(md,),
        model_kwargs=model_kwargs,
        forward_mode_differentiation=forward,
    )
    z = info.param_info.z
    return info.potential_fn, z


def grad_fn(potential_fn, forward: bool):
    """Jitted ``z -> (potential, grad)``; forward-mode (``jacfwd``) when ``forward``."""
    if forward:

        def f(z):
            return potential_fn(z), jax.jacfwd(potential_fn)(z)

        return jax.jit(f)
    return jax.jit(jax.value_and_grad(potential_fn))


def time_gradient(model, md, *, repeats: int = 20, key: int = 0) -> dict:
    """Compile time and median seconds of one potential+gradient evaluation of ``model`` on ``md``."""
    potential_fn, z = potential_of(model, md, key)
    forward = bool(model.spec.solver.forward_mode)
    f = grad_fn(potential_fn, forward)
    t = time.perf_counter()
    v, g = block(f(z))
    compile_s = time.perf_counter() - t
    finite = bool(np.isfinite(float(v))) and all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
    per = time_call(f, z, repeats=repeats)
    return {
        "compile_s": compile_s,
        "grad_s": per,
        "finite": finite,
        "dim": int(sum(np.size(x) for x in jax.tree.leaves(z))),
    }


def median_of(rows: list[dict]) -> dict:
    """Median over repeated runs of every numeric figure; other values from the first run."""
    out = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and r[k] == r[k]]
            out[k] = float(statistics.median(vals)) if vals else float("nan")
    out["repeats"] = len(rows)
    return out


# ------------------------------------------------------------ compile-time accounting
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_SPANS: list[tuple[float, float]] = []


def _listener(event, duration, **kwargs):
    if event in _COMPILE_EVENTS:
        end = time.perf_counter()
        _SPANS.append((end - duration, end))


jax.monitoring.register_event_duration_secs_listener(_listener)


def compile_seconds(start: float, stop: float) -> float:
    """Wall seconds within ``[start, stop]`` (perf_counter) spent tracing, lowering or compiling.

    Nested events (a jit traced inside another) are merged, so nothing counts twice.
    """
    spans = sorted((max(a, start), min(b, stop)) for a, b in _SPANS if b > start and a < stop)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            total += 0.0 if cur_b is None else cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    return total + (0.0 if cur_b is None else cur_b - cur_a)


class PhaseClock:
    """Times the phases of one ``bayesode.run_nuts`` call (init+compile, warmup, sampling).

    ``run_nuts`` reports its init+compile time; this adds timestamps at each chunk
    (through its progress bar) and subtracts tracing/compilation done inside the
    chunk loop, which belongs to compile.
    """

    def __init__(self, num_warmup: int):
        import bayesode.infer.nuts as infer

        self.num_warmup = num_warmup
        self.marks: list[tuple[int, float]] = []
        self._infer = infer
        clock = self

        class _Recording(infer.Progress):
            def __init__(self, *a, **k):
                clock.init_end = time.perf_counter()  # built right after init and compile (compile_s)
                super().__init__(*a, **k)

            def update(self, done, *a, **k):
                clock.marks.append((int(done), time.perf_counter()))
                return super().update(done, *a, **k)

        self._recording = _Recording

    def __enter__(self):
        self._orig = self._infer.Progress
        self._infer.Progress = self._recording
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.stop = time.perf_counter()
        self._infer.Progress = self._orig

    def phases(self, init_and_compile_s: float) -> dict:
        init_end = self.init_end
        warm_end = next((t for d, t in self.marks if d >= self.num_warmup), init_end) if self.num_warmup else init_end
        loop_end = self.marks[-1][1] if self.marks else self.stop
        c_warm = compile_seconds(init_end, warm_end)
        c_samp = compile_seconds(warm_end, loop_end)
        c_post = compile_seconds(loop_end, self.stop)
        return {
            "compile_init_s": init_and_compile_s + c_warm + c_samp + c_post,
            "warmup_s": warm_end - init_end - c_warm,
            "sampling_s": loop_end - warm_end - c_samp,
            "total_s": self.stop - self.start,
        }


def ess_figures(samples: dict) -> dict:
    """Min bulk and tail ESS over every scalar of every site in ``samples`` ((chain, draw, ...) arrays)."""
    import arviz as az

    ds = az.convert_to_dataset({k: np.asarray(v) for k, v in samples.items()})
    bulk = az.ess(ds, method="bulk")
    tail = az.ess(ds, method="tail")
    rhat = az.rhat(ds)
    mins = lambda d: float(min(np.nanmin(d[v].values) for v in d.data_vars))  # noqa: E731
    return {
        "ess_bulk_min": mins(bulk),
        "ess_tail_min": mins(tail),
        "rhat_max": float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
    }


def posterior_figures(post, clock: PhaseClock) -> dict:
    """The per-run figures of a bayesode NUTS posterior (see README for definitions)."""
    ss, st = post.sample_stats, post.settings
    row = clock.phases(st.get("compile_s", st["init_and_compile_s"]))  # compile_s: starts and chunk programs
    row["grads_sampling"] = int(np.sum(ss["num_steps"]))
    row["grads"] = row["grads_sampling"]  # run_nuts keeps no warmup tree sizes
    row["grads_counted"] = "sampling"
    row["time_per_grad_us"] = 1e6 * row["sampling_s"] / max(row["grads_sampling"], 1)
    row.update(ess_figures(post.samples))
    row["ess_per_s"] = row["ess_bulk_min"] / row["total_s"]
    row["divergences"] = int(np.sum(ss["diverging"]))
    row["solver_failures"] = int(np.sum(ss["solver_failures"])) + int(
        sum(v for k, v in st.get("warmup_solver_failures", {}).items() if k == "total")
    )
    return row
