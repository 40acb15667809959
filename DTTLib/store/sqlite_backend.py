"""Embedded store: SQLite (WAL) as the system of record plus a derived ruvector index.

Why these settings: WAL lets readers run while one writer commits; ``BEGIN IMMEDIATE``
takes the write lock up front so concurrent writers (Slicer and a batch job) queue on
``busy_timeout`` instead of failing half-way; ``synchronous=FULL`` makes a commit durable
before it returns, so a record reported as saved survives ``kill -9`` and power loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, ResourceError
from DTTLib.store import migrations
from DTTLib.store.base import FILTER_JOIN, SqlStore
from DTTLib.store.records import utc_now
from DTTLib.store.vector_index import EXACT_MAX_ELEMENTS, IndexStamp, VectorIndex

BUSY_TIMEOUT_MS = 30_000
SAVE_AFTER_APPENDED = 1000


def _dict_factory(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _resource_error(error: sqlite3.Error, path: Path) -> Exception:
    text = str(error).lower()
    if "full" in text:
        return ResourceError(f"the disk holding {path} is full; nothing was written",
                             "free disk space and repeat the last action")
    if "readonly" in text or "read-only" in text or "query_only" in text:
        return ResourceError(f"the store {path} is read-only; nothing was written",
                             "open a writable copy, or make its folder writable")
    if "locked" in text or "busy" in text:
        return ResourceError(f"the store {path} stayed locked by another writer for "
                             f"{BUSY_TIMEOUT_MS // 1000} s; nothing was written",
                             "wait for the other program's write to finish and repeat")
    if "unable to open" in text:
        return ResourceError(f"cannot open the store {path}",
                             "check that the folder exists and is writable")
    if isinstance(error, sqlite3.IntegrityError):
        return InputError(f"the store refused the record: {error}",
                          "check that referenced ids exist and unique labels are not reused")
    if "malformed" in text or "not a database" in text:
        return ResourceError(f"{path} is damaged or not a DTT store ({error})",
                             "restore it from a backup or `dtt store export` copy")
    return error


class EmbeddedStore(SqlStore):
    """One SQLite file (``*.sqlite``); its vector index lives in ``<file>.index/``."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, readonly: bool = False, ef_search: int = 64,
                 exact_max_elements: int = EXACT_MAX_ELEMENTS, background_build: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.location = str(self.path)
        self.readonly = readonly
        self.ef_search = ef_search
        # exact search up to this many stored floats, HNSW above (see vector_index.py)
        self._index_options = {"exact_max_elements": exact_max_elements, "background": background_build}
        self.index_dir = self.path.with_name(self.path.name + ".index")
        self._indexes: dict[tuple[str, int], VectorIndex] = {}
        self._unsaved: dict[tuple[str, int], int] = {}
        if readonly and not self.path.exists():
            raise InputError(f"no store at {self.path}", "give the path of an existing store")
        if not readonly and not self.path.parent.is_dir():
            raise InputError(f"folder {self.path.parent} does not exist", "create it first")
        if not readonly and not os.access(self.path.parent, os.W_OK):
            raise ResourceError(f"folder {self.path.parent} is read-only", "choose a writable folder")
        try:
            if readonly:
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                             timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            else:
                self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._conn.row_factory = _dict_factory
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
                self._migrate()
            else:
                self._conn.execute("PRAGMA query_only = ON")
                migrations.check_not_newer(self.schema_version())
        except sqlite3.Error as error:
            raise _resource_error(error, self.path) from error

    # -- plumbing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _resource_error(error, self.path) from error
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise _resource_error(error, self.path) from error
            raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as error:
            raise _resource_error(error, self.path) from error

    def _migrate(self) -> None:
        """Apply the missing migrations in one write transaction.

        Foreign keys are off while it runs (they cannot be switched inside a transaction),
        as SQLite's procedure for rebuilding a table requires; ``PRAGMA foreign_key_check``
        runs before the commit, so a migration that broke a reference rolls back entirely."""
        self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._tx() as cur:
                cur.execute(migrations.CREATE_VERSION_TABLE)
                current = cur.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version").fetchone()["v"]
                migrations.check_not_newer(current)
                for migration in migrations.migrations("sqlite"):
                    if migration.version > current:
                        for statement in migration.statements:
                            cur.execute(statement)
                        cur.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                                    (migration.version, migration.description, utc_now()))
                broken = cur.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ResourceError(f"upgrading {self.path} would break {len(broken)} reference(s) "
                                        f"(first: {broken[0]['table']} row {broken[0]['rowid']}); nothing was changed",
                                        "run `dtt store verify` on it and repair it from an export")
        finally:
            self._conn.execute("PRAGMA foreign_keys = ON")

    def _vector_param(self, vector: np.ndarray) -> bytes:
        return np.ascontiguousarray(vector, dtype="<f4").tobytes()

    def _vector_value(self, value: bytes, dim: int) -> np.ndarray:
        return np.frombuffer(value, dtype="<f4", count=dim).astype(np.float32)

    def _mask_base(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        if getattr(self, "_conn", None) is None:
            return
        with contextlib.suppress(ResourceError):
            self.flush_index()
        self._conn.close()
        self._conn = None  # type: ignore[assignment]

    # -- the vector index -----------------------------------------------------------------------
    def _index_path(self, kind: str, dim: int) -> Path:
        return self.index_dir / f"{kind}-{dim}.npz"

    def _stamp(self, kind: str, dim: int) -> IndexStamp:
        generation = int(self._read("SELECT value FROM meta WHERE key = 'embeddings_generation'")[0]["value"])
        row = self._read("SELECT COALESCE(MAX(seq), 0) AS m, COUNT(*) AS n FROM embeddings "
                         "WHERE kind = ? AND dim = ?", (kind, dim))[0]
        return IndexStamp(generation, int(row["m"]), int(row["n"]))

    def _quick_stamp(self, kind: str, dim: int) -> tuple[int, int]:
        """(generation, max seq): O(log n). Deletes bump the generation and seqs only grow,
        so an unchanged pair means an unchanged table for this (kind, dim)."""
        generation = int(self._read("SELECT value FROM meta WHERE key = 'embeddings_generation'")[0]["value"])
        row = self._read("SELECT MAX(seq) AS m FROM embeddings WHERE kind = ? AND dim = ?", (kind, dim))[0]
        return generation, int(row["m"] or 0)

    def _rows_after(self, kind: str, dim: int, after: int, upto: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        rows = self._read(f"SELECT e.seq, e.vector, e.lesion_id, l.patient_id AS patient, l.organ AS organ, "
                          f"s.modality AS modality {FILTER_JOIN} WHERE e.kind = ? AND e.dim = ? "
                          f"AND e.seq > ? AND e.seq <= ? ORDER BY e.seq", (kind, dim, after, upto))
        seqs = np.array([r["seq"] for r in rows], np.int64)
        vectors = (np.frombuffer(b"".join(r["vector"] for r in rows), dtype="<f4").reshape(len(rows), dim)
                   if rows else np.zeros((0, dim), np.float32))
        metas = [{"lesion": r["lesion_id"], "patient": r["patient"], "organ": r["organ"], "modality": r["modality"]}
                 for r in rows]
        return seqs, vectors, metas

    def index(self, kind: str, dim: int) -> VectorIndex:
        """The index for (kind, dim), brought up to date with the table first.

        Fresh → used as is; behind by appended rows only → those rows are added; anything
        else (rows deleted, file missing or damaged) → rebuilt from SQLite and saved.
        """
        key = (kind, dim)
        index = self._indexes.get(key)
        if index is not None and self._quick_stamp(kind, dim) == (index.stamp.generation, index.stamp.max_seq):
            return index  # nothing appended or deleted since: skip the COUNT
        with self._snapshot():
            stamp = self._stamp(kind, dim)
            if index is None:
                index = VectorIndex.load(self._index_path(kind, dim), **self._index_options)
                if index is not None and index.dim != dim:
                    index = None
            if index is not None and index.stamp == stamp:
                pass
            elif (index is not None and index.stamp.generation == stamp.generation
                  and index.stamp.max_seq <= stamp.max_seq):
                seqs, vectors, metas = self._rows_after(kind, dim, index.stamp.max_seq, stamp.max_seq)
                if len(index) + len(seqs) == stamp.count:
                    index.add(seqs, vectors, metas)
                    index.stamp = stamp
                    self._unsaved[key] = self._unsaved.get(key, 0) + len(seqs)
                else:
                    index = None
            else:
                index = None
            if index is None:
                index = VectorIndex(dim, ef_search=self.ef_search, **self._index_options)
                index.add(*self._rows_after(kind, dim, 0, stamp.max_seq))
                index.stamp = stamp
                self._unsaved[key] = SAVE_AFTER_APPENDED
        self._indexes[key] = index
        if self._unsaved.get(key, 0) >= SAVE_AFTER_APPENDED:
            self._save_index(key)
        return index

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction, so the stamp and the rows read agree."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _save_index(self, key: tuple[str, int]) -> None:
        if self.readonly:
            return
        self._indexes[key].save(self._index_path(*key))
        self._unsaved[key] = 0

    def flush_index(self) -> None:
        """Write every index that has rows not yet on disk (done on close too)."""
        for key, pending in list(self._unsaved.items()):
            if pending and key in self._indexes:
                self._save_index(key)

    def _first_fetch(self, kind: str, dim: int, k: int) -> int:
        """Rows to ask the index for so that ``k`` distinct lesions come back in one round:
        k × the stored rows per lesion (one per timepoint) × 1.25, + 4. A fixed 4k + 4 made
        the index search (and, with a filter, its over-fetch) 2.6× wider than needed for
        one vector per lesion; more than the mean per lesion is still widened by the caller."""
        index = self._indexes.get((kind, dim))
        ratio = index.rows_per_lesion if index is not None else None
        return super()._first_fetch(kind, dim, k) if ratio is None else math.ceil(k * ratio * 1.25) + 4

    def _nearest(self, kind: str, dim: int, query: np.ndarray, k: int,
                 where: dict[str, str]) -> list[tuple[str, str, float]]:
        if (kind, dim) not in self._indexes and not self._read(
                "SELECT 1 FROM embeddings WHERE kind = ? AND dim = ? LIMIT 1", (kind, dim)):
            return []
        hits = self.index(kind, dim).search(query, k, where)
        if not hits:
            return []
        seqs = [seq for seq, _ in hits]
        rows = self._read(f"SELECT seq, id, lesion_id FROM embeddings WHERE seq IN "
                          f"({', '.join('?' for _ in seqs)})", seqs)
        by_seq = {r["seq"]: r for r in rows}
        return [(by_seq[s]["id"], by_seq[s]["lesion_id"], d) for s, d in hits if s in by_seq]

    # -- checks -------------------------------------------------------------------------------
    def _verify_backend(self) -> list[str]:
        problems = [f"sqlite: {r['integrity_check']}" for r in self._read("PRAGMA integrity_check")
                    if r["integrity_check"] != "ok"]
        problems += [f"sqlite: row {r['rowid']} of {r['table']} references a missing {r['parent']} row"
                     for r in self._read("PRAGMA foreign_key_check")]
        for group in self._read("SELECT DISTINCT kind, dim FROM embeddings"):
            problems += self._verify_index(group["kind"], int(group["dim"]))
        return problems

    def _verify_index(self, kind: str, dim: int) -> list[str]:
        """An index file that claims to be current must match the table row for row."""
        path = self._index_path(kind, dim)
        if not path.exists():
            return []  # missing is fine: rebuilt on the next search
        saved = VectorIndex.read(path)
        if saved is None:
            return [f"index {path.name}: unreadable (delete it; it is rebuilt from the database)"]
        stamp = self._stamp(kind, dim)
        if saved.stamp.generation != stamp.generation or saved.stamp.max_seq > stamp.max_seq:
            return []  # stale: rebuilt on the next search, never served
        seqs, vectors, _ = self._rows_after(kind, dim, 0, saved.stamp.max_seq)
        if not np.array_equal(seqs, saved.seqs):
            return [f"index {path.name}: rows differ from the embeddings table"]
        if hashlib.sha256(vectors.tobytes()).digest() != hashlib.sha256(saved.vectors.tobytes()).digest():
            return [f"index {path.name}: vectors differ from the embeddings table"]
        return []
