"""Server store: PostgreSQL with a pgvector-compatible extension, same schema and queries.

Works with pgvector (extension ``vector``, type ``vector``) and with the
``ruvnet/ruvector-postgres`` image (extension ``ruvector``, type ``ruvector``, same SQL
operators); which one is present is detected on connect. Connections come from a small
``psycopg_pool`` pool. Writers serialise on the audit head row (``SELECT … FOR UPDATE``), so
the hash chain stays linear however many processes write.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from DTTLib.errors import InputError, MissingDependencyError, ResourceError
from DTTLib.store import migrations
from DTTLib.store.base import SqlStore
from DTTLib.store.records import EMBEDDING_KINDS, Embedding, utc_now

MIGRATION_LOCK = 727_274_001  # pg_advisory_xact_lock key: one migrator at a time
EXTENSIONS = ("vector", "ruvector")


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_NULL = struct.pack("!i", -1)


def _text_field(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return struct.pack("!i", len(data)) + data


def _binary_copy(embeddings: Sequence[Embedding]) -> bytes:
    """PostgreSQL binary COPY data for the 8 embedding columns (text, int4, pgvector)."""
    parts = [_COPY_HEADER]
    field_count = struct.pack("!h", 8)
    for e in embeddings:
        dim = e.dim
        vector = np.ascontiguousarray(e.vector, dtype=">f4").tobytes()
        parts += [field_count, _text_field(e.id), _text_field(e.lesion_id), _text_field(e.timepoint_id),
                  _text_field(e.kind), _text_field(e.model), struct.pack("!ii", 4, dim),
                  struct.pack("!ihh", 4 + len(vector), dim, 0), vector, _text_field(e.created_at)]
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def hnsw_build_memory_mb(rows: int, dim: int, m: int = 16) -> int:
    """Memory for pgvector to build an HNSW graph in memory: each element holds its vector
    and about 3·m neighbour entries (2m on layer 0), with a 25 % margin."""
    per_element = 4 * dim + 16 * 3 * m + 128
    return max(64, math.ceil(rows * per_element * 1.25 / 2**20))


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


class ServerStore(SqlStore):
    """A PostgreSQL database named by a ``postgresql://`` URL (e.g. from ``DATABASE_URL``)."""

    dialect = "postgres"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, ef_search: int = 100,
                 index_build_memory_mb: int = 2048) -> None:
        """``ef_search`` 100: at 100k × 1152 (pgvector's default build, m 16, ef_construction 64)
        recall@10 was 0.9345 at 64 and 0.973 at 100, for ≈ 1–2 ms more per search
        (docs/PERFORMANCE.md "Store")."""
        try:
            import psycopg  # noqa: PLC0415
            from psycopg.rows import dict_row  # noqa: PLC0415
            from psycopg_pool import ConnectionPool  # noqa: PLC0415
        except ImportError as error:
            raise MissingDependencyError("psycopg 3 and psycopg_pool are needed for a PostgreSQL store",
                                         "pip install 'psycopg[binary]' psycopg_pool") from error
        self._psycopg = psycopg
        self.url = url
        self.location = _redact(url)
        self.ef_search = ef_search
        self.index_build_memory_mb = index_build_memory_mb
        self._indexed: set[tuple[str, int]] = set()
        self._rows_written = 0
        try:
            # autocommit: a read is one round trip; every write still runs in an explicit
            # transaction (``conn.transaction()`` in ``_tx``).
            self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                        kwargs={"row_factory": dict_row, "autocommit": True},
                                        configure=self._configure, timeout=30)
            self._pool.wait(timeout=30)
        except Exception as error:  # noqa: BLE001 - pool errors vary by cause
            raise ResourceError(f"cannot connect to PostgreSQL at {self.location}: {error}",
                                "check DATABASE_URL and that the server is running") from error
        self.vector_type = self._ensure_extension()
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------------
    def _configure(self, conn: Any) -> None:
        """Per new connection: the HNSW search breadth (pgvector's GUC; a harmless placeholder
        setting on a server whose extension does not define it)."""
        conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")

    def _map_error(self, error: Exception) -> Exception:
        errors = self._psycopg.errors
        if isinstance(error, self._psycopg.IntegrityError):
            return InputError(f"the store refused the record: {str(error).splitlines()[0]}",
                              "check that referenced ids exist and unique labels are not reused")
        if isinstance(error, (errors.DiskFull, errors.OutOfMemory)):
            return ResourceError(f"the PostgreSQL server is out of space: {error}; nothing was written",
                                 "free space on the database server and repeat")
        if isinstance(error, errors.ReadOnlySqlTransaction):
            return ResourceError("the PostgreSQL store is read-only; nothing was written",
                                 "connect to the primary server or a writable database")
        if isinstance(error, self._psycopg.OperationalError):
            return ResourceError(f"lost the PostgreSQL connection ({self.location}): {error}",
                                 "check the server and repeat; nothing partial was committed")
        return error

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except self._psycopg.Error as error:
            raise self._map_error(error) from error

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._connection() as conn:
            return conn.execute(sql, tuple(params) or None).fetchall()

    def _head_sql(self) -> str:
        return "SELECT value FROM meta WHERE key = 'audit_head' FOR UPDATE"

    def _vector_marker(self) -> str:
        return f"?::{self.vector_type}"

    def _vector_param(self, vector: np.ndarray) -> str:
        return "[" + ",".join(map(repr, np.asarray(vector, np.float32).tolist())) + "]"

    def _vector_value(self, value: Any, dim: int) -> np.ndarray:
        if isinstance(value, str):
            return np.array(value.strip("[]").split(","), dtype=np.float32)
        return np.asarray(value, np.float32)

    def _insert_embeddings(self, cur: Any, embeddings: Sequence[Embedding]) -> None:
        """One ``COPY … FROM STDIN`` stream per batch, inside the caller's transaction.

        pgvector: binary COPY (``vector_recv`` format: int16 dim, int16 0, dim big-endian
        float4), built with numpy, so no float is formatted as text. Another extension
        (ruvector-postgres) gets text COPY, one stream all the same.
        """
        self._rows_written += len(embeddings)
        columns = "(id, lesion_id, timepoint_id, kind, model, dim, vector, created_at)"
        if self.vector_type == "vector":
            with cur.copy(f"COPY embeddings {columns} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_copy(embeddings))
            return
        with cur.copy(f"COPY embeddings {columns} FROM STDIN") as copy:
            for e in embeddings:
                copy.write_row((e.id, e.lesion_id, e.timepoint_id, e.kind, e.model, e.dim,
                                self._vector_param(e.vector), e.created_at))

    def _after_embeddings_written(self) -> None:
        """Keep the planner's row estimate for ``embeddings`` honest after bulk loads.

        Right after a load and before autovacuum gets to it (its ANALYZE also waits for an
        index build), the table's statistics say "empty": the planner then prefers the
        btree + sort, a distance for every vector, over the HNSW index (EXPLAIN after a 3k-row
        load; the earlier 71 ms p50 at 20k × 1152 is that cost, ~5 ms with the index). When
        a batch adds ≥ 10 % of the rows the planner
        knows of, ``ANALYZE`` the small columns (not the vectors: ~40–60 ms at 20k rows).
        The planner scales the row count with the table's size after that by itself.
        """
        written, self._rows_written = self._rows_written, 0
        if not written:
            return
        rows = self._read("SELECT reltuples FROM pg_class WHERE oid = 'embeddings'::regclass")
        if rows and written >= 0.1 * max(float(rows[0]["reltuples"]), 0.0):
            with self._connection() as conn:
                conn.execute("ANALYZE embeddings (kind, dim, lesion_id, timepoint_id)")

    def close(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.close()
            self._pool = None  # type: ignore[assignment]

    # -- setup --------------------------------------------------------------------------------
    def _ensure_extension(self) -> str:
        """'vector' (pgvector) or 'ruvector' (ruvector-postgres): whichever is installed."""
        rows = self._read("SELECT extname FROM pg_extension WHERE extname IN ('vector', 'ruvector')")
        present = {r["extname"] for r in rows}
        for name in EXTENSIONS:
            if name in present:
                return name
        available = {r["name"] for r in self._read(
            "SELECT name FROM pg_available_extensions WHERE name IN ('vector', 'ruvector')")}
        for name in EXTENSIONS:
            if name in available:
                with self._connection() as conn:
                    conn.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
                    conn.commit()
                return name
        raise MissingDependencyError(f"PostgreSQL at {self.location} has neither the 'vector' (pgvector) "
                                     "nor the 'ruvector' extension",
                                     "install pgvector or use the ruvnet/ruvector-postgres image")

    def _migrate(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute(migrations.CREATE_VERSION_TABLE)
            cur.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
            current = cur.fetchone()["v"]
            migrations.check_not_newer(current)
            for migration in migrations.migrations("postgres", self.vector_type):
                if migration.version > current:
                    for statement in migration.statements:
                        cur.execute(statement)
                    cur.execute("INSERT INTO schema_version VALUES (%s, %s, %s)",
                                (migration.version, migration.description, utc_now()))

    def ensure_vector_index(self, kind: str, dim: int) -> None:
        """The HNSW index (cosine) for one (kind, dim): a partial expression index.

        Built with ``maintenance_work_mem`` raised (for this transaction only) to what the
        graph needs, up to ``index_build_memory_mb``: pgvector builds fast while the graph fits
        in it and switches to a much slower on-disk build after (by ``hnsw_build_memory_mb``
        the 64 MB default holds ≈ 10k vectors of 1152-d; 100k × 1152 built in ≈ 80 s with 657 MB)."""
        if kind not in EMBEDDING_KINDS or (kind, dim) in self._indexed:
            return
        vtype = self.vector_type
        name = f"embeddings_hnsw_{kind}_{int(dim)}"
        race = (self._psycopg.errors.UniqueViolation, self._psycopg.errors.DuplicateTable)
        with self._connection() as conn, contextlib.suppress(*race), conn.transaction():
            # (another process creating the same index at once: theirs is as good)
            exists = conn.execute("SELECT 1 FROM pg_indexes WHERE tablename = 'embeddings' AND indexname = %s",
                                  (name,)).fetchall()
            if not exists:
                rows = conn.execute(f"SELECT COUNT(*) AS n FROM embeddings WHERE kind = '{kind}' "
                                    f"AND dim = {int(dim)}").fetchone()["n"]
                have = conn.execute("SELECT setting::bigint AS kb FROM pg_settings "
                                    "WHERE name = 'maintenance_work_mem'").fetchone()["kb"] // 1024
                need = min(hnsw_build_memory_mb(int(rows), int(dim)), self.index_build_memory_mb)
                if need > have:
                    conn.execute(f"SET LOCAL maintenance_work_mem = '{int(need)}MB'")
                conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON embeddings USING hnsw "
                             f"((vector::{vtype}({int(dim)})) {vtype}_cosine_ops) "
                             f"WHERE kind = '{kind}' AND dim = {int(dim)}")
        self._indexed.add((kind, dim))

    def nearest_query(self, kind: str, dim: int, query: np.ndarray, k: int,
                      where: dict[str, str]) -> tuple[str, list[Any], int]:
        """The similar-search SQL, its parameters and the ``hnsw.ef_search`` it needs.

        Shape chosen so the planner can use the partial HNSW index (checked with
        ``EXPLAIN (ANALYZE, BUFFERS)`` at 20k × 1152, see docs/PERFORMANCE.md):

        * the inner query is ``indexed expression <=> $1::vector(dim) ORDER BY … LIMIT n`` on
          ``embeddings`` alone, the one shape an HNSW index scan serves; joins and the
          patient / organ / modality filters apply to its candidates afterwards;
        * ``kind`` (allow-listed) and ``dim`` (int) are literals, so the index predicate
          ``kind = '…' AND dim = …`` is provable for a generic (prepared) plan too;
        * the parameter is cast to ``vector(dim)``, the indexed expression's type, so the
          ``vector_cosine_ops`` operator class applies.

        pgvector 0.6 filters *after* the index scan and returns at most ``ef_search`` rows,
        so a filtered search over-fetches ``n`` = 2 × the candidates wanted and raises
        ``ef_search`` to ``n``; the caller widens the search when filters leave too few.
        """
        if kind not in EMBEDDING_KINDS:
            raise InputError(f"unknown embedding kind {kind!r}", f"use one of {', '.join(EMBEDDING_KINDS)}")
        vtype, dim = self.vector_type, int(dim)
        clauses: list[str] = []
        params: list[Any] = [self._vector_param(query)]
        for key, column in (("patient", "l.patient_id"), ("organ", "l.organ"), ("modality", "s.modality")):
            if key in where:
                clauses.append(f"AND {column} = %s")
                params.append(where[key])
        inner = min(int(k) * (2 if clauses else 1), 1000)
        joins = "JOIN lesions l ON l.id = c.lesion_id "
        if "modality" in where:
            joins += ("LEFT JOIN timepoints t ON t.id = c.timepoint_id "
                      "LEFT JOIN studies s ON s.id = t.study_id ")
        sql = (f"SELECT c.id, c.lesion_id, c.d FROM (SELECT e.id, e.lesion_id, e.timepoint_id, "
               f"(e.vector::{vtype}({dim})) <=> %s::{vtype}({dim}) AS d FROM embeddings e "
               f"WHERE e.kind = '{kind}' AND e.dim = {dim} ORDER BY d LIMIT {inner}) c "
               f"{joins}WHERE TRUE {' '.join(clauses)} ORDER BY c.d LIMIT {int(k)}")
        return sql, params, max(self.ef_search, inner)

    def _nearest(self, kind: str, dim: int, query: np.ndarray, k: int,
                 where: dict[str, str]) -> list[tuple[str, str, float]]:
        if kind not in EMBEDDING_KINDS:
            return []
        self.ensure_vector_index(kind, dim)
        sql, params, ef_search = self.nearest_query(kind, dim, query, k, where)
        with self._connection() as conn:
            if ef_search != self.ef_search:  # the session default is set on connect
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
                    rows = conn.execute(sql, params).fetchall()
            else:
                rows = conn.execute(sql, params).fetchall()
        return [(r["id"], r["lesion_id"], float(r["d"])) for r in rows]

    def _verify_backend(self) -> list[str]:
        problems = []
        if self.vector_type not in {r["extname"] for r in self._read("SELECT extname FROM pg_extension")}:
            problems.append(f"postgres: the {self.vector_type} extension is gone")
        bad = self._read(f"SELECT COUNT(*) AS n FROM embeddings WHERE vector_dims(vector) <> dim")
        if bad and int(bad[0]["n"]):
            problems.append(f"postgres: {bad[0]['n']} embeddings whose vector length differs from dim")
        return problems
