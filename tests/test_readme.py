"""The README's Python examples run as printed (with smaller sampling budgets), in fresh processes.

Each ```python block is read from README.md, so an edit there is tested here. The only change made to
the printed code is the sampling budget (warmup, samples, chains, tree depth), shrunk so the
test takes minutes; the calls, arguments and order are the reader's.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    (r"num_warmup=\d+", "num_warmup=30"),
    (r"num_samples=\d+", "num_samples=30"),
    (r"num_chains=\d+", "num_chains=2"),
    # NUTS at depth 10 over every weight of a neural field (up to 1023 solves an iteration while
    # 30 warmup iterations adapt) made most of a 10-minute test. (200 instead of the default 2000
    # SVI steps left the chains so far from the mode that most iterations diverged.)
    (r"num_chains=2\)", "num_chains=2, max_tree_depth=6)"),
]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def fast(code: str) -> str:
    for pattern, repl in FAST:
        code = re.sub(pattern, repl, code)
    return code


def _run(script: str, cwd: Path, *args, timeout=1500) -> subprocess.CompletedProcess:
    path = cwd / "example.py"
    path.write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(path), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_readme_has_the_examples_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) >= 4
    assert "run_neural_linear" in blocks[0] and "make_model" in blocks[1] and "run_nuts_distributed" in blocks[2]
    assert "def my_model" in blocks[3]
    assert fast("num_warmup=500, num_samples=500, num_chains=4)") == "num_warmup=30, num_samples=30, num_chains=2, max_tree_depth=6)"


@pytest.mark.slow  # two fits (neural-linear, hybrid NUTS) compiled from scratch: minutes
def test_everyday_use_and_your_own_model_run_as_printed(tmp_path):
    blocks = python_blocks()
    # The second block continues the first (it reuses `data`), as in a notebook.
    script = fast(blocks[0] + "\n" + blocks[1]) + "\nprint('rhat', post.diagnostics().get('rhat_max'))\n"
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "fit.nc").stat().st_size > 0
    assert "rhat" in result.stdout


@pytest.mark.slow  # two processes, each compiling Lotka-Volterra NUTS
def test_the_distributed_example_runs_as_printed_on_two_processes(tmp_path):
    code = python_blocks()[2]
    port = str(4300 + os.getpid() % 600)  # free of other test runs on the machine
    script = fast(code.replace("num_chains=4)", "num_chains=4, num_warmup=30, num_samples=30)")).replace("4321", port)
    (tmp_path / "example.py").write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "example.py", str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]  # fmt: skip
    outs = [p.communicate(timeout=1500) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert (tmp_path / "fit.nc").stat().st_size > 0


@pytest.mark.slow  # bayesode's run_nuts over your own NumPyro model (a small MLP field): one compile
def test_the_building_blocks_model_samples_as_printed(tmp_path):
    code = python_blocks()[3]
    script = fast(code) + (
        "\nimport numpy as np\ns = post.samples\n"
        "assert s['y0'].shape == (2, 30, 2) and np.all(np.isfinite(s['y0']))\n"
        "assert forecast['trajectory'].shape == (2, 30, 1, 2, 2)\nprint('ok', len(s))\n"
    )
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
