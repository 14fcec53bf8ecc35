"""Run the bayesode benchmark suite: ``python benchmarks/run.py [--quick] [--cases ...] [--repeats N]``.

Each case runs in its own process (so peak memory is per case, and JAX flags
such as the host device count can differ); each figure is the median over
``--repeats`` runs. Prints a table and writes ``benchmarks/out/results.{csv,json}``.

Every case process uses one persistent compilation cache, new for each invocation
(as ``bayesode fit`` and a user's ``bo.enable_compilation_cache()`` do): the first
run of a case compiles (its figures are kept as ``total_s_first`` and
``ess_per_s_first``), the repeats find its programs there, the peers' alike.
``--no-compile-cache`` compiles in every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# case -> extra environment for its process
# as `bayesode fit` runs: one CPU device per core, chains spread over them
ONE_DEVICE_PER_CORE = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={len(os.sched_getaffinity(0))}"}
CASE_ENV = {
    "lv": ONE_DEVICE_PER_CORE,
    "lv-report-every-gradient": ONE_DEVICE_PER_CORE,
    "lv-settings": ONE_DEVICE_PER_CORE,
    "lv-forward-mode": ONE_DEVICE_PER_CORE,
    "lv-parallel": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    # one chain per device: no chain waits for another's tree or solve (4 threads share the cores)
    "lv-parallel-4": {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    "solver-x64": {"JAX_ENABLE_X64": "1"},
    "series-devices": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    # 2 chains: one per core (the case also runs them vectorised on one device)
    "spiral": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    "spiral-cubed": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
}
DEFAULT_CASES = [
    "lv",
    "lv-report-every-gradient",
    "lv-numpyro",
    "lv-stan",
    "lv-parallel",
    "spiral",
    "spiral-cubed",
    "neural-lh",
    "scaling",
    "series-devices",
    "solver",
]
ALL_CASES = DEFAULT_CASES + [
    "many-series",
    "solver-x64",
    "lv-settings",
    "lv-vectorized",
    "lv-sequential",
    "lv-parallel-4",
    "lv-forward-mode",
]
TABLE = [
    ("case", "{}"),
    ("tool", "{}"),
    ("variant", "{}"),
    ("total_s", "{:.1f}"),
    ("compile_init_s", "{:.1f}"),
    ("svi_s", "{:.1f}"),
    ("warmup_s", "{:.1f}"),
    ("sampling_s", "{:.1f}"),
    ("grads", "{:.0f}"),
    ("time_per_grad_us", "{:.0f}"),
    ("ess_bulk_min", "{:.0f}"),
    ("ess_tail_min", "{:.0f}"),
    ("ess_per_s", "{:.1f}"),
    ("total_s_first", "{:.1f}"),
    ("ess_per_s_first", "{:.1f}"),
    ("divergences", "{:.0f}"),
    ("solver_failures", "{:.0f}"),
    ("peak_rss_mb", "{:.0f}"),
    ("rhat_max", "{:.3f}"),
    ("heldout_coverage_90", "{:.2f}"),
    ("heldout_trajectory_coverage_90", "{:.2f}"),
    ("speedup_vs_1_device", "{:.2f}"),
    ("vs_peer", "{}"),
]


def worker(case: str, quick: bool, out: str) -> None:
    sys.path.insert(0, HERE)
    from _common import peak_rss_mb
    from cases import CASES
    from peers import PEER_CASES

    import bayesode as bo  # imports jax with this process' flags

    if os.environ.get("BAYESODE_BENCH_CACHE"):
        bo.enable_compilation_cache(os.environ["BAYESODE_BENCH_CACHE"])

    fn = {**CASES, **PEER_CASES}[case]
    t = time.perf_counter()
    rows = []
    for r in fn(quick):  # a list, or a generator of rows: each is saved as it finishes
        r.setdefault("peak_rss_mb", peak_rss_mb())
        r["process_wall_s"] = time.perf_counter() - t
        rows.append(r)
        with open(out + ".tmp", "w") as fh:
            json.dump(rows, fh)
        os.replace(out + ".tmp", out)


def run_case(case: str, quick: bool, timeout: float, cache: str | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        env = dict(os.environ, **CASE_ENV.get(case, {}), BAYESODE_BENCH_CACHE=cache or "")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, "--out", out] + (
            ["--quick"] if quick else []
        )
        try:
            proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            done = json.load(open(out)) if os.path.exists(out) else []
            return done + [{"case": case, "tool": "?", "variant": "error", "note": f"timed out after {timeout:.0f} s"}]
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return [{"case": case, "tool": "?", "variant": "error", "note": " | ".join(tail)}]
        with open(out) as fh:
            return json.load(fh)


def add_ratios(rows: list[dict]) -> None:
    """``vs_peer``: bayesode's time per gradient and ESS/s relative to each peer on the same case."""
    for r in rows:
        if r.get("tool") != "bayesode" or "ess_per_s" not in r:
            continue
        parts = []
        for p in rows:
            if p["case"] == r["case"] and p.get("tool") not in ("bayesode", "?") and "ess_per_s" in p:
                tpg = r["time_per_grad_us"] / p["time_per_grad_us"]
                ess = r["ess_per_s"] / p["ess_per_s"]
                parts.append(f"{p['tool']}: grad x{tpg:.2f}, ESS/s x{ess:.2f}")
        r["vs_peer"] = "; ".join(parts)


def print_table(rows: list[dict], machine: dict, command: str) -> None:
    print(
        f"\nmachine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"jax {machine['jax']} ({machine['jax_backend']}), numpyro {machine['numpyro']}, load {machine['load_avg_1m']}"
    )
    print(f"command: {command}\n")
    cols = [(k, f) for k, f in TABLE if any(k in r for r in rows)]
    cells = [[k for k, _ in cols]]
    for r in rows:
        line = []
        for k, f in cols:
            v = r.get(k, "")
            try:
                line.append(f.format(v) if v != "" and v == v else "")
            except (ValueError, TypeError):
                line.append(str(v))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
    notes = [f"{r['case']}/{r['tool']}: {r['note']}" for r in rows if r.get("note")]
    for n in notes:
        print("note:", n)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, small sizes (a smoke run of the harness)")
    ap.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="CASE",
        help=f"cases to run (default: {' '.join(DEFAULT_CASES)}; also: {' '.join(ALL_CASES[len(DEFAULT_CASES) :])}; "
        "'all' for every case)",
    )
    ap.add_argument(
        "--repeats", type=int, default=None, help="runs per case; each figure is the median (default 3, --quick 1)"
    )
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per case process")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="folder for results.csv and results.json")
    ap.add_argument("--show", action="store_true", help="print the table of the last run (from --out) and exit")
    ap.add_argument(
        "--no-compile-cache", action="store_true", help="no persistent compilation cache: every run compiles"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.quick, args.out)
        return
    if args.show:
        with open(os.path.join(args.out, "results.json")) as fh:
            saved = json.load(fh)
        add_ratios(saved["rows"])
        print_table(saved["rows"], saved["machine"], saved["command"])
        return
    cases = args.cases or DEFAULT_CASES
    if cases == ["all"]:
        cases = ALL_CASES
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {ALL_CASES}")
    repeats = args.repeats or (1 if args.quick else 3)

    sys.path.insert(0, HERE)
    from _common import machine, median_of

    rows = []
    cache = None if args.no_compile_cache else tempfile.mkdtemp(prefix="bayesode-bench-cache-")
    for case in cases:
        runs = []
        for i in range(repeats):
            t = time.time()
            print(f"[{case}] run {i + 1}/{repeats} ...", end="", file=sys.stderr, flush=True)
            runs.append(run_case(case, args.quick, args.timeout, cache))
            print(f" {time.time() - t:.0f} s", file=sys.stderr, flush=True)
        # group the repeated runs row by row (same case/tool/variant), median of each figure
        for j in range(len(runs[0])):
            same = [r[j] for r in runs if len(r) == len(runs[0])]
            row = median_of(same)
            for k in ("total_s", "ess_per_s"):  # the first run: compiled (cold cache)
                if k in runs[0][j]:
                    row[f"{k}_first"] = runs[0][j][k]
            rows.append(row)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
    add_ratios(rows)
    info = machine()
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print_table(rows, info, command)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(
            {
                "machine": info,
                "command": command,
                "repeats": repeats,
                "quick": args.quick,
                "compile_cache": cache is not None,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "rows": rows,
            },
            fh,
            indent=1,
        )
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {args.out}/results.csv and results.json", file=sys.stderr)


if __name__ == "__main__":
    main()
