"""Versioned schema migrations, kept as data in ``schema.json``.

Both backends read the same file; each migration is applied once, inside one transaction,
and recorded in ``schema_version`` so an older store is brought forward on open and a newer
one (written by a later DTT) is refused rather than misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from DTTLib.errors import InputError

SCHEMA_FILE = Path(__file__).with_name("schema.json")
CREATE_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at TEXT NOT NULL)")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


@lru_cache(maxsize=None)
def _document() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def migrations(dialect: str, vector_type: str = "vector") -> list[Migration]:
    """The migrations for ``dialect`` ('sqlite' or 'postgres') in version order."""
    out = []
    for item in sorted(_document()["migrations"], key=lambda m: m["version"]):
        statements = tuple(s.replace("{vtype}", vector_type) for s in item[dialect])
        out.append(Migration(item["version"], item["description"], statements))
    return out


def latest_version() -> int:
    return max(m["version"] for m in _document()["migrations"])


def check_not_newer(current: int) -> None:
    if current > latest_version():
        raise InputError(f"the store has schema version {current}, newer than this DTT knows "
                         f"({latest_version()})", "update DigitalTwinTumor before opening this store")
