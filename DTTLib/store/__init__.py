"""Persistence: one :class:`Store` interface, an embedded and a server backend.

``open_store()`` picks the backend: a ``postgresql://`` URL (argument or ``DATABASE_URL``)
opens the server store; anything else is a path to an embedded SQLite store. Nothing here
touches the network unless such a URL is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from DTTLib.store.base import sha256_file
from DTTLib.store.protocol import Store
from DTTLib.store.records import (
    AuditEntry, Embedding, GrowthFit, Lesion, LesionLink, MaskFile, Measurement, Narrative, Patient,
    RecistOverride, RecistResult, Scenario, SimilarHit, Study, Timepoint)

DEFAULT_PATH = Path("~/.local/share/dtt/store.sqlite")


def is_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def default_location() -> str:
    return os.environ.get("DATABASE_URL") or os.environ.get("DTT_STORE") or str(DEFAULT_PATH.expanduser())


def open_store(db: str | os.PathLike[str] | None = None, *, readonly: bool = False) -> Store:
    """The store at ``db`` (path or URL); default ``DATABASE_URL``, ``DTT_STORE``, then a home path."""
    location = str(db) if db is not None else default_location()
    if is_url(location):
        from DTTLib.store.postgres_backend import ServerStore  # noqa: PLC0415
        return ServerStore(location)
    from DTTLib.store.sqlite_backend import EmbeddedStore  # noqa: PLC0415
    path = Path(location).expanduser()
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True) if db is None else None
    return EmbeddedStore(path, readonly=readonly)


__all__ = ["AuditEntry", "Embedding", "GrowthFit", "Lesion", "LesionLink", "MaskFile", "Measurement",
           "Narrative", "Patient", "RecistOverride", "RecistResult", "Scenario", "SimilarHit", "Store",
           "Study", "Timepoint", "is_url", "open_store", "sha256_file"]
