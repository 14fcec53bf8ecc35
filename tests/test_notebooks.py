"""Every notebook in notebooks/ runs top to bottom in fast mode through a real Jupyter kernel.

Run with ``pytest -m notebooks tests/test_notebooks.py``. Each notebook gets
``BAYESODE_FAST=1``, a headless matplotlib, the shared compilation cache, and
``TIMEOUT_S`` seconds per cell. A notebook passes when no cell errors and its
closing diagnostics cell (the cell tagged ``diagnostics``, else the last code
cell) printed something. Cheap checks on the committed files (fast-mode switch in
the first code cell, no bulky outputs) run in the default suite.
"""

import os
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per cell; CI's job timeout bounds the whole run
MAX_COMMITTED_BYTES = 200_000  # committed notebooks keep outputs stripped or small
IDS = [p.stem for p in NOTEBOOKS]


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _diagnostics_cell(nb):
    cells = _code_cells(nb)
    tagged = [c for c in cells if "diagnostics" in c.get("metadata", {}).get("tags", [])]
    return (tagged or cells)[-1]


def _slowest_cells(nb, n=3):
    """``[(cell index, seconds, first line)]`` of the ``n`` slowest code cells (nbclient's timing metadata)."""
    from datetime import datetime

    timed = []
    for i, cell in enumerate(nb.cells):
        ex = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            t0, t1 = (
                datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                for k in ("iopub.execute_input", "shell.execute_reply")
            )
            timed.append((i, round((t1 - t0).total_seconds()), cell.source.splitlines()[0][:40] if cell.source else ""))
    return sorted(timed, key=lambda r: -r[1])[:n]


def _kernel_env():
    env = dict(os.environ)
    env["BAYESODE_FAST"] = "1"
    env["MPLBACKEND"] = "Agg"
    # Share the test suite's compilation cache (see conftest.py) so a second run starts warm.
    env.setdefault("BAYESODE_CACHE_DIR", str(ROOT / ".jax_cache"))
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_small_and_has_fast_switch(path):
    assert path.stat().st_size < MAX_COMMITTED_BYTES, f"{path.name}: strip outputs before committing (nbstripout)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = _code_cells(nb)[0].source
    assert 'os.environ.get("BAYESODE_FAST") == "1"' in first, (
        f"{path.name}: the first code cell must read BAYESODE_FAST"
    )


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_fast_mode(path, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",  # ipykernel of the running interpreter (jupyter_client maps "python" to it)
        resources={"metadata": {"path": str(tmp_path)}},  # files a notebook writes land in tmp_path
    )
    start = time.perf_counter()
    try:
        client.execute(env=_kernel_env())
    except CellExecutionError as e:
        pytest.fail(f"{path.name}: a cell raised:\n{str(e)[-3000:]}", pytrace=False)
    seconds = time.perf_counter() - start
    print(f"\n{path.name}: {seconds:.0f} s in fast mode; slowest cells: {_slowest_cells(nb)}")

    for cell in _code_cells(nb):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: cell errored: {errors[0].get('ename')}"
    outputs = _diagnostics_cell(nb).get("outputs", [])
    text = "".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert text.strip(), f"{path.name}: the closing diagnostics cell printed nothing"
