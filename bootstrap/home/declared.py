"""What a user declared for a local worker key (the seed's GPU type and capacity), kept in the node's home
beside what the node measured: ``declared_workers.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DECLARED_FILE = "declared_workers.json"


def _path(home: str | Path) -> Path:
    return Path(home) / DECLARED_FILE


def read_declared(home: str | Path) -> dict[str, Any]:
    """Every declaration, by key name ({} when none was written or the file is unreadable)."""
    try:
        return json.loads(_path(home).read_text())
    except (OSError, ValueError):
        return {}


def write_declared(home: str | Path, name: str, declared: dict[str, Any]) -> None:
    """Record ``declared`` for key ``name`` (written whole, then renamed into place)."""
    data = read_declared(home)
    data[name] = declared
    path = _path(home)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
