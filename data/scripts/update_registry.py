"""Refresh the ``sha256`` and ``rows`` fields of ``data/registry.json`` from the files on disk.

Run after regenerating a simulated dataset on purpose (``python data/scripts/make_<name>.py``),
then review the diff: every other field (units, sources, seeds, true parameters) is kept
as written by hand.

    python data/scripts/update_registry.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1]


def file_facts(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, number of data rows below the header) of a CSV file."""
    raw = path.read_bytes()
    rows = sum(1 for line in raw.decode("utf-8").splitlines()[1:] if line.strip())
    return hashlib.sha256(raw).hexdigest(), rows


def main() -> None:
    reg_path = DATA_DIR / "registry.json"
    registry = json.loads(reg_path.read_text(encoding="utf-8"))
    for entry in registry["datasets"]:
        for part in [entry] + ([entry["events"]] if entry.get("events") else []):
            part["sha256"], part["rows"] = file_facts(DATA_DIR / part["file"])
    reg_path.write_text(json.dumps(registry, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"updated {reg_path}")


if __name__ == "__main__":
    main()
