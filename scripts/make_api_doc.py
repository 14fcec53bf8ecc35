"""Write docs/api.md: every public name of bayesode, once, grouped as in `bayesode/__init__.py`'s `__all__`.

The groups are the comment lines in `__all__` (``# vector fields`` ...); each name gets the first line of its
docstring. Run ``python scripts/make_api_doc.py`` after changing the public API (a test checks the page is current).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def groups() -> list[tuple[str, list[str]]]:
    """(group title, names) in the order of `__all__`, titles from its comment lines."""
    source = (ROOT / "bayesode" / "__init__.py").read_text()
    start = source.index("__all__ = [")
    out: list[tuple[str, list[str]]] = []
    for line in source[start:].splitlines()[1:]:
        line = line.strip()
        if line.startswith("]"):
            break
        if line.startswith("#"):
            out.append((line.lstrip("# ").strip(), []))
        elif line:
            names = ast.literal_eval("[" + line + "]")
            out[-1][1].extend(names)
    return out


def summary(obj) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    if isinstance(obj, (tuple, list, dict, str, int, float)):
        return "constant"
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first.replace("|", "\\|")


def render() -> str:
    sys.path.insert(0, str(ROOT))
    bo = importlib.import_module("bayesode")
    lines = [
        "# API",
        "",
        "Every public name of `bayesode`, once, grouped by concept (written by `scripts/make_api_doc.py` from",
        "`bayesode/__init__.py`; each line is the first line of the name's docstring). `import bayesode as bo`.",
    ]
    for title, names in groups():
        lines += ["", f"## {title[:1].upper() + title[1:]}", "", "| name | what it is |", "|---|---|"]
        for name in names:
            lines.append(f"| `bo.{name}` | {summary(getattr(bo, name))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "docs" / "api.md").write_text(render())
    print(f"wrote {ROOT / 'docs' / 'api.md'}")
