"""What both backends share: record SQL, the audit chain on every write, similar search.

A backend supplies a transaction (``_tx``), reads (``_read``), how a vector travels to and
from its database, and nearest-neighbour search. Every logical write is *one* transaction
that inserts the record(s) and appends the audit entry, so a crash or a full disk leaves
either both or neither.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from DTTLib.errors import InputError
from DTTLib.store import audit
from DTTLib.store.records import (
    BY_TABLE, EMBEDDING_KINDS, AuditEntry, Embedding, Lesion, Record, SimilarHit, utc_now)

R = TypeVar("R", bound=Record)
AUDIT_COLUMNS = "seq, at, actor, action, component, parameters, data_hash, prev_hash, hash"
FILTER_JOIN = ("FROM embeddings e JOIN lesions l ON l.id = e.lesion_id "
               "LEFT JOIN timepoints t ON t.id = e.timepoint_id "
               "LEFT JOIN studies s ON s.id = t.study_id")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SqlStore:
    """Shared implementation of the :class:`~DTTLib.store.protocol.Store` interface."""

    dialect = "sqlite"
    location = ""

    # -- supplied by a backend -------------------------------------------------------------
    def _tx(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _vector_param(self, vector: np.ndarray) -> Any:
        raise NotImplementedError

    def _vector_value(self, value: Any, dim: int) -> np.ndarray:
        raise NotImplementedError

    def _nearest(self, kind: str, dim: int, query: np.ndarray, k: int,
                 where: dict[str, str]) -> list[tuple[str, str, float]]:
        """(embedding id, lesion id, cosine distance), nearest first."""
        raise NotImplementedError

    def _first_fetch(self, kind: str, dim: int, k: int) -> int:
        """Rows the first nearest-neighbour round asks for: lesions may have several vectors
        (one per timepoint), and hits are reduced to one per lesion afterwards."""
        return 4 * k + 4

    def _head_sql(self) -> str:
        return "SELECT value FROM meta WHERE key = 'audit_head'"

    def _after_embeddings_written(self) -> None:
        """Hook: the embedded store keeps its vector index in step."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "SqlStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    # -- writes ------------------------------------------------------------------------------
    def _insert(self, cur: Any, table: str, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur.execute(self._sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), tuple(row.values()))

    def _append_audit(self, cur: Any, actor: str, action: str, component: str,
                      parameters: dict[str, Any], data: Any) -> AuditEntry:
        cur.execute(self._head_sql())
        seq, prev = audit.parse_head(_first(cur.fetchone()))
        entry_params = audit.canonical_json(parameters)
        digest = audit.data_hash(data)
        at = utc_now()
        entry = AuditEntry(seq + 1, at, actor, action, component, entry_params, digest, prev,
                           audit.entry_hash(seq + 1, at, actor, action, component, entry_params, digest, prev))
        self._insert(cur, "audit_log", {f.name: getattr(entry, f.name) for f in fields(AuditEntry)})
        cur.execute(self._sql("UPDATE meta SET value = ? WHERE key = 'audit_head'"),
                    (audit.format_head(entry.seq, entry.hash),))
        return entry

    def add(self, record: R, *, actor: str = "dtt", component: str = "store") -> R:
        """Insert one record and its audit entry in one transaction."""
        self.add_many([record], actor=actor, component=component)
        return record

    def add_many(self, records: Sequence[Record], *, actor: str = "dtt", component: str = "store") -> None:
        """Insert several records (any tables, in order) atomically with one audit entry."""
        if not records:
            return
        for record in records:
            if isinstance(record, Embedding):
                raise InputError("embeddings go through add_embeddings", "call store.add_embeddings")
            record.validate()
        rows = [(record.TABLE, record.to_row()) for record in records]
        with self._tx() as cur:
            for table, row in rows:
                self._insert(cur, table, row)
            self._append_audit(cur, actor, "add", component,
                               {"records": [[table, row["id"]] for table, row in rows]},
                               [row for _, row in rows])

    def add_embeddings(self, embeddings: Sequence[Embedding], *, actor: str = "dtt",
                       component: str = "store") -> None:
        """Insert a batch of embeddings in one transaction (the fast path for bulk loads)."""
        if not embeddings:
            return
        for embedding in embeddings:
            embedding.validate()
        with self._tx() as cur:
            self._insert_embeddings(cur, embeddings)
            self._append_audit(cur, actor, "add_embeddings", component,
                               {"count": len(embeddings), "kinds": sorted({e.kind for e in embeddings})},
                               [[e.id, e.lesion_id, e.kind, e.vector] for e in embeddings])
        self._after_embeddings_written()

    def _insert_embeddings(self, cur: Any, embeddings: Sequence[Embedding]) -> None:
        """Insert the rows inside the caller's transaction (a backend may stream them)."""
        sql = self._sql("INSERT INTO embeddings (id, lesion_id, timepoint_id, kind, model, dim, "
                        "vector, created_at) VALUES (?, ?, ?, ?, ?, ?, " + self._vector_marker() + ", ?)")
        cur.executemany(sql, [(e.id, e.lesion_id, e.timepoint_id, e.kind, e.model, e.dim,
                               self._vector_param(e.vector), e.created_at) for e in embeddings])

    def _vector_marker(self) -> str:
        return "?"

    def delete_embeddings(self, lesion_id: str, kind: str | None = None, *, actor: str = "dtt") -> int:
        """Remove a lesion's embeddings (e.g. before re-embedding with a new model)."""
        where, params = "lesion_id = ?", [lesion_id]
        if kind:
            where, params = where + " AND kind = ?", params + [kind]
        with self._tx() as cur:
            cur.execute(self._sql(f"DELETE FROM embeddings WHERE {where}"), tuple(params))
            removed = cur.rowcount
            if removed > 0:  # a new generation makes every open vector index rebuild: only on change
                cur.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                            "WHERE key = 'embeddings_generation'")
                self._append_audit(cur, actor, "delete_embeddings", "store",
                                   {"lesion_id": lesion_id, "kind": kind, "count": removed}, None)
        if removed > 0:
            self._after_embeddings_written()
        return int(removed)

    def log(self, action: str, component: str, parameters: dict[str, Any], data: Any = None, *,
            actor: str = "dtt") -> AuditEntry:
        """Append an audit entry for an action that writes no record (export, model run, …)."""
        with self._tx() as cur:
            return self._append_audit(cur, actor, action, component, parameters, data)

    # -- reads ------------------------------------------------------------------------------
    def get(self, cls: type[R], record_id: str) -> R | None:
        rows = self._read(self._sql(f"SELECT * FROM {cls.TABLE} WHERE id = ?"), (record_id,))
        return cls.from_row(rows[0]) if rows else None  # type: ignore[return-value]

    def find(self, cls: type[R], **where: Any) -> list[R]:
        """Records of one type whose columns equal the given values, oldest first."""
        names = {f.name for f in fields(cls)}
        unknown = set(where) - names
        if unknown:
            raise InputError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}",
                             f"filter on one of {', '.join(sorted(names))}")
        clause = " AND ".join(f"{name} = ?" for name in where) or "1 = 1"
        rows = self._read(self._sql(f"SELECT * FROM {cls.TABLE} WHERE {clause} ORDER BY created_at, id"),
                          tuple(where.values()))
        return [cls.from_row(row) for row in rows]  # type: ignore[misc]

    def embeddings(self, lesion_id: str, kind: str | None = None) -> list[Embedding]:
        where, params = "lesion_id = ?", [lesion_id]
        if kind:
            where, params = where + " AND kind = ?", params + [kind]
        rows = self._read(self._sql(f"SELECT * FROM embeddings WHERE {where} ORDER BY seq"), tuple(params))
        return [Embedding(lesion_id=r["lesion_id"], kind=r["kind"], model=r["model"],
                          vector=self._vector_value(r["vector"], r["dim"]), timepoint_id=r["timepoint_id"],
                          id=r["id"], created_at=r["created_at"]) for r in rows]

    def audit_entries(self) -> Iterator[AuditEntry]:
        for row in self._read(f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"):
            yield AuditEntry(**row)

    def schema_version(self) -> int:
        rows = self._read("SELECT MAX(version) AS v FROM schema_version")
        return int(rows[0]["v"] or 0)

    # -- similar-case search ----------------------------------------------------------------
    def similar(self, lesion_id: str, *, kind: str = "appearance", k: int = 5,
                patient_id: str | None = None, organ: str | None = None,
                modality: str | None = None) -> list[SimilarHit]:
        """The ``k`` lesions most like ``lesion_id`` (its newest ``kind`` embedding), itself excluded."""
        own = self.embeddings(lesion_id, kind)
        if not own:
            if self.get(Lesion, lesion_id) is None:
                raise InputError(f"no lesion with id {lesion_id!r} in {self.location}",
                                 "list lesions with `dtt store stats` or check the id")
            raise InputError(f"lesion {lesion_id} has no {kind!r} embedding",
                             "store one with add_embeddings before searching")
        return self.similar_to_vector(own[-1].vector, kind=kind, k=k, patient_id=patient_id,
                                      organ=organ, modality=modality, exclude=lesion_id)

    def similar_to_vector(self, vector: np.ndarray, *, kind: str = "appearance", k: int = 5,
                          patient_id: str | None = None, organ: str | None = None,
                          modality: str | None = None, exclude: str | None = None) -> list[SimilarHit]:
        if kind not in EMBEDDING_KINDS:
            raise InputError(f"unknown embedding kind {kind!r}", f"use one of {', '.join(EMBEDDING_KINDS)}")
        if not 1 <= k <= 1000:
            raise InputError(f"k = {k} is out of range", "ask for 1 to 1000 neighbours")
        query = np.asarray(vector, np.float32).ravel()
        where = {key: value for key, value in
                 (("patient", patient_id), ("organ", organ), ("modality", modality)) if value}
        best: dict[str, tuple[float, str]] = {}
        fetch = self._first_fetch(kind, query.size, k)
        while True:
            raw = self._nearest(kind, query.size, query, fetch, where)
            for embedding_id, lesion, distance in raw:
                if lesion != exclude and (lesion not in best or distance < best[lesion][0]):
                    best[lesion] = (distance, embedding_id)
            if len(best) >= k or len(raw) < fetch or fetch >= 4096:
                break
            fetch *= 4
        ranked = sorted(best.items(), key=lambda item: item[1][0])[:k]
        if not ranked:
            return []
        marks = ", ".join("?" for _ in ranked)
        rows = self._read(self._sql(f"SELECT * FROM lesions WHERE id IN ({marks})"), [i for i, _ in ranked])
        lesions = {row["id"]: Lesion.from_row(row) for row in rows}
        return [SimilarHit(lesion=lesions[i], score=1.0 - d, embedding_id=e)  # type: ignore[arg-type]
                for i, (d, e) in ranked if i in lesions]

    # -- summaries and checks ---------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        counts = {table: int(self._read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
                  for table in [*BY_TABLE, "embeddings", "audit_log"]}
        kinds = self._read("SELECT kind, dim, COUNT(*) AS n FROM embeddings GROUP BY kind, dim ORDER BY kind, dim")
        return {"backend": self.dialect, "location": self.location,
                "schema_version": self.schema_version(), "counts": counts,
                "embeddings": [{"kind": r["kind"], "dim": int(r["dim"]), "count": int(r["n"])} for r in kinds]}

    def verify(self) -> list[str]:
        """Every integrity problem found; empty means the store is sound."""
        head = _first(self._read("SELECT value FROM meta WHERE key = 'audit_head'")[0])
        problems = audit.verify_chain(self.audit_entries(), head)
        problems += self._verify_backend()
        base = self._mask_base()
        for row in self._read("SELECT id, path, sha256 FROM masks"):
            path = Path(row["path"])
            path = path if path.is_absolute() or base is None else base / path
            if not path.exists():
                problems.append(f"mask {row['id']}: file {path} is missing")
            elif sha256_file(path) != row["sha256"]:
                problems.append(f"mask {row['id']}: file {path} changed since it was stored (SHA-256)")
        return problems

    def _verify_backend(self) -> list[str]:
        return []

    def _mask_base(self) -> Path | None:
        return None


def _first(row: Any) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
