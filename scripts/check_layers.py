"""Check that imports inside the package point down the wings, never up or into another wing's privates.

The wings, lowest first (a module may import from its own wing and from any wing below it)::

    base (errors, checks, caching) < datasets < fields < solving < model < results < infer < diagnostics < plots < cli

Two rules, checked on every ``import`` statement in ``bayesode/`` (function-level imports included):

1. **Arrows point down.** A module in wing W imports nothing from a wing above W.
2. **Privates stay home.** A module imports no underscore name (module or attribute) from another wing.

The command line, the top wing, may also ``import bayesode`` itself. Top-level modules other than the base ones (``bayesode/__init__.py``, the ``models`` alias) sit above every
wing: they re-export. Run ``python scripts/check_layers.py`` (CI does); it prints each offence with its file
and line and exits 1, or prints a one-line summary and exits 0. ``--root`` checks another package tree
(the test suite plants an upward import in a copy and expects the failure).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "bayesode"
BASE = ("errors", "checks", "caching")
WINGS = ("datasets", "fields", "solving", "model", "results", "infer", "diagnostics", "plots", "cli")
TOP = len(WINGS) + 1  # __init__, the models alias: above every wing


def rank_of(module: tuple[str, ...]) -> int:
    """Rank of a module path inside the package, e.g. ('infer', 'nuts') -> 6; base modules rank 0."""
    if not module:
        return TOP
    head = module[0]
    if head in BASE:
        return 0
    if head in WINGS:
        return WINGS.index(head) + 1
    return TOP


def wing_of(module: tuple[str, ...]) -> str:
    return module[0] if module and module[0] in WINGS else ""


def resolve(current: tuple[str, ...], is_package: bool, level: int, target: str | None) -> tuple[str, ...]:
    """Absolute module path (without the package name) of a relative or absolute import."""
    if level == 0:
        parts = tuple((target or "").split("."))
        return parts[1:] if parts and parts[0] == PACKAGE else ()
    here = current if is_package else current[:-1]
    base = here[: len(here) - (level - 1)] if level > 1 else here
    return base + (tuple(target.split(".")) if target else ())


def offences(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        is_package = rel.name == "__init__"
        current = tuple(rel.parts[:-1]) if is_package else tuple(rel.parts)
        me_rank, me_wing = rank_of(current), wing_of(current)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and not (node.module or "").startswith(PACKAGE):
                    continue
                target = resolve(current, is_package, node.level, node.module)
                # `from . import x` / `from ..wing import module`: each name may itself be a module.
                targets = [(target, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [
                    (resolve(current, is_package, 0, alias.name), None)
                    for alias in node.names
                    if alias.name.split(".")[0] == PACKAGE
                ]
            else:
                continue
            for module, name in targets:
                full = module + ((name,) if name and not module else ())
                where = f"{path}:{node.lineno}"
                if not full and me_wing == WINGS[-1]:
                    continue  # the command line is the top wing: it may use the package's public names
                if rank_of(full) > me_rank and me_rank != TOP:
                    found.append(f"{where}: upward import: {'.'.join(current)} imports {'.'.join(full)}")
                other_wing = wing_of(full) != me_wing or me_wing == ""
                if other_wing and rank_of(full) != 0 and me_rank != TOP:
                    private = [p for p in full if p.startswith("_") and p != "__init__"]
                    if name and name.startswith("_"):
                        private.append(name)
                    if private:
                        found.append(f"{where}: private name of another wing: {'.'.join(current)} imports {private}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / PACKAGE)
    args = parser.parse_args(argv)
    found = offences(args.root)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import(s) against the wings' order ({' < '.join(('base',) + WINGS)}).")
        return 1
    print(f"layers ok: {sum(1 for _ in args.root.rglob('*.py'))} modules, wings {' < '.join(('base',) + WINGS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
