"""The wings' import order (scripts/check_layers.py): the package passes, and a planted offence fails."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_layers.py"


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True)


def test_the_package_imports_only_down_the_wings():
    result = _check(ROOT / "bayesode")
    assert result.returncode == 0, result.stdout


def test_a_planted_upward_import_fails(tmp_path):
    tree = tmp_path / "bayesode"
    shutil.copytree(ROOT / "bayesode", tree, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tree / "solving" / "jumps.py", "a") as f:
        f.write("\nfrom ..infer import run_nuts  # planted\n")
    result = _check(tree)
    assert result.returncode == 1
    assert "upward import: solving.jumps imports infer" in result.stdout


def test_a_planted_private_import_from_another_wing_fails(tmp_path):
    tree = tmp_path / "bayesode"
    shutil.copytree(ROOT / "bayesode", tree, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tree / "plots" / "__init__.py", "a") as f:
        f.write("\ndef _late():\n    from ..results.posterior import _hidden  # planted\n")
    result = _check(tree)
    assert result.returncode == 1
    assert "private name of another wing: plots imports ['_hidden']" in result.stdout


def test_the_api_page_lists_every_public_name_once_and_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_api_doc", ROOT / "scripts" / "make_api_doc.py")
    make_api_doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api_doc)
    import bayesode

    names = [n for _, group in make_api_doc.groups() for n in group]
    assert sorted(names) == sorted(set(names)), "a name is listed twice in __all__"
    assert sorted(names) == sorted(bayesode.__all__)
    assert (ROOT / "docs" / "api.md").read_text() == make_api_doc.render(), "run python scripts/make_api_doc.py"


def test_every_public_name_has_a_wing_and_imports():
    import bayesode

    mapped = set(bayesode._WING_OF) | set(bayesode._SUBMODULES)
    assert mapped == set(bayesode.__all__)
    missing = [name for name in bayesode.__all__ if not hasattr(bayesode, name)]
    assert not missing
