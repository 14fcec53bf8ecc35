"""Results are never lost: a run killed by a real signal resumes bit-identically; Ctrl-C keeps the draws.

The fits run in separate processes (``tests/_resume_worker.py``) so that the
signals are real: SIGKILL gives the process no chance to clean up, SIGINT is
what Ctrl-C sends. They share the compile cache with this process.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import bayesode as bo
import bayesode.infer.checkpoint as checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_resume_worker.py")
sys.path.insert(0, HERE)
import _resume_worker as worker  # noqa: E402

TOTAL = worker.NUTS["num_warmup"] + worker.NUTS["num_samples"]
CHUNK = worker.NUTS["chunk_size"]


def start(mode, out, checkpoint_dir, log):
    # The worker imports the same bayesode as this process (not another install on the path).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bo.__file__)))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, BAYESODE_CACHE_DIR=jax.config.jax_compilation_cache_dir or "", PYTHONPATH=path)
    return subprocess.Popen(
        [sys.executable, WORKER, mode, str(out), str(checkpoint_dir)], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def checkpoint_iteration(path) -> int:
    try:
        with open(os.path.join(path, "meta.json")) as fh:
            return int(json.load(fh)["iteration"])
    except (OSError, ValueError):  # not written yet, or being replaced
        return 0


def wait_for(proc, path, at_least, timeout=600):
    """Poll until the checkpoint in ``path`` has reached ``at_least`` iterations; return it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        it = checkpoint_iteration(path)
        if it >= at_least:
            return it
        assert proc.poll() is None, "the worker ended before the checkpoint appeared"
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no checkpoint with {at_least} iterations within {timeout}s")


def samples(path):
    z = np.load(path)
    return {k[7:]: z[k] for k in z.files if k.startswith("sample_")}


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_draws(tmp_path):
    ckpt, log_path = tmp_path / "ckpt", tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = start("run", tmp_path / "killed.npz", ckpt, log)
        wait_for(proc, ckpt, 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = checkpoint_iteration(ckpt)
    assert 0 < saved < TOTAL, saved  # killed mid-run
    # The progress bar is printed after each chunk, just before its checkpoint: at most one chunk was lost.
    done = max(int(m) for m in re.findall(rf"(\d+)/{TOTAL}", Path(log_path).read_text()))
    assert saved <= done <= saved + CHUNK, (saved, done)

    with open(tmp_path / "resume.log", "w") as log:
        proc = start("resume", tmp_path / "resumed.npz", ckpt, log)
        assert proc.wait(timeout=600) == 0, (tmp_path / "resume.log").read_text()
    assert f"resuming from iteration {saved} of {TOTAL}" in (tmp_path / "resume.log").read_text()
    resumed, reference = samples(tmp_path / "resumed.npz"), samples(tmp_path / "resumed_reference.npz")
    assert set(resumed) == {"k", "y0", "sigma"}
    for k in reference:
        np.testing.assert_array_equal(resumed[k], reference[k])  # bit-identical
    print(f"killed at checkpoint {saved} (progress {done}) of {TOTAL}; resumed draws identical")


@pytest.mark.slow
def test_ctrl_c_returns_the_draws_made_so_far_with_a_warning(tmp_path):
    ckpt = tmp_path / "ckpt"
    with open(tmp_path / "interrupt.log", "w") as log:
        proc = start("interrupt", tmp_path / "partial.npz", ckpt, log)
        wait_for(proc, ckpt, worker.NUTS["num_warmup"] + 2 * CHUNK)  # some sampling done
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, (tmp_path / "interrupt.log").read_text()
    assert "Ctrl-C: stopping after this chunk" in (tmp_path / "interrupt.log").read_text()
    z = np.load(tmp_path / "partial.npz")
    assert bool(z["interrupted"])
    (message,) = json.loads(str(z["warnings"]))
    m = re.search(
        r"interrupted at iteration (\d+) of (\d+); returning the (\d+) draws made; run again with "
        r"checkpoint_dir=.* to resume",
        message,
    )
    assert m, message
    stopped, kept = int(m.group(1)), int(m.group(3))
    assert int(m.group(2)) == worker.NUTS["num_warmup"] + worker.INTERRUPT_SAMPLES
    assert kept == stopped - worker.NUTS["num_warmup"] and kept > 0 and kept % CHUNK == 0
    partial = samples(tmp_path / "partial.npz")
    assert partial["k"].shape == (2, kept)
    # The kept draws are exactly the draws of an uninterrupted run of that length (same seed, same chunks).
    model, data = worker.build()
    full = bo.run_nuts(model, data, progress=False, **dict(worker.NUTS, num_samples=kept))
    for k, v in partial.items():
        np.testing.assert_array_equal(v, full.samples[k][:, :kept])


@pytest.mark.slow
def test_kill_between_the_two_checkpoint_files_still_resumes_exactly(tmp_path, monkeypatch):
    # A kill after state.npz is replaced but before meta.json is (a window of microseconds, but real).
    model, data = worker.build()
    reference = bo.run_nuts(model, data, progress=False, **worker.NUTS)
    real_replace, calls = os.replace, []

    class Killed(BaseException):
        pass

    def replace(src, dst):
        calls.append(dst)
        if str(dst).endswith("meta.json") and sum(str(c).endswith("meta.json") for c in calls) == 3:
            raise Killed  # the third checkpoint's state is written, its meta is not
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(Killed):
        bo.run_nuts(model, data, progress=False, checkpoint_dir=str(tmp_path), **worker.NUTS)
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    resumed = bo.run_nuts(model, data, progress=False, checkpoint_dir=str(tmp_path), **worker.NUTS)
    for k in reference.samples:
        np.testing.assert_array_equal(resumed.samples[k], reference.samples[k])
