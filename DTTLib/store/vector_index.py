"""The embedded store's vector index: exact search or a ``ruvector`` HNSW graph, derived from SQLite.

SQLite is the system of record; this index is a cache of it. Each index file carries the
*stamp* of the table state it reflects (deletion generation, highest embedding ``seq``,
row count), so a reader can tell whether it is fresh, only behind (append the new rows), or
stale (rebuild). The file is one ``.npz`` written to a temporary name, fsynced and moved
into place with ``os.replace``: a crash leaves the old file or the new one, never a torn one.
(``Collection.save`` writes two files one after the other; one file avoids that window.)
"""

from __future__ import annotations

import errno
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import MissingDependencyError, ResourceError

FORMAT = "dtt-vector-index-1"
# Exact search up to this many stored floats (rows × dim), HNSW above. Measured exact k=10
# latency at 1152-d on the shared 2-core machine (benchmarks/store_search.py, p50):
# 5k rows ≈ 1 ms, 10k rows 1.8–5 ms (depending on the other jobs), 20k rows 9–15 ms.
# 8 M floats (≈ 7k rows of 1152-d) keeps the whole similar search under the 5 ms p50
# target with room for the SQL around it; beyond it an HNSW search (≈ 0.4 ms) wins.
EXACT_MAX_ELEMENTS = 8_000_000
# Rows appended to a built graph that are inserted during the search that finds them;
# more than this are added in the background (ruvector inserts ~1k rows/s of 1152-d here).
SYNC_TAIL_ROWS = 256
BLOCK_ELEMENTS = 196_608  # floats per matrix-vector block in exact search (see _dot_rows)
# A filtered exact search reads its rows scattered (gathered): measured ≈ 3.7× the cost per
# row of a contiguous scan (5k of 10k rows of 1152-d: 6.4 ms gathered, 10k contiguous 3.5 ms).
# Above the graph threshold a filter matching ≤ 1/4 of the exact limit is searched exactly.
GATHER_COST = 4


def _dot_rows(vectors: np.ndarray, q: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``vectors[rows] @ q`` (all rows when ``rows`` is None) in blocks small enough that
    OpenBLAS keeps each in one thread.

    One big ``sgemv`` is split across BLAS threads; on a busy machine a thread that is not
    scheduled stalls the call for a whole time slice (measured: 12.0 ms flat for 10k × 1152
    instead of 1.8 ms in blocks). The work is memory-bound, so one thread loses nothing.
    A filtered subset is gathered block by block too, never copied whole.
    """
    count = len(vectors) if rows is None else len(rows)
    out = np.empty(count, np.float32)
    step = max(1, BLOCK_ELEMENTS // max(1, vectors.shape[1]))
    for start in range(0, count, step):
        block = vectors[start:start + step] if rows is None else vectors[rows[start:start + step]]
        np.matmul(block, q, out=out[start:start + step])
    return out


@dataclass(frozen=True)
class IndexStamp:
    generation: int
    max_seq: int
    count: int


def _collection_class() -> Any:
    try:
        from ruvector import Collection  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - ruvector is a declared requirement
        raise MissingDependencyError("the 'ruvector' package is not installed",
                                     "install it (pip install ruvector) to search embeddings") from error
    return Collection


class VectorIndex:
    """Nearest rows of one (kind, dim) of embeddings, cosine; metadata carries the filter fields.

    Two ways to answer, chosen by size (measured, docs/PERFORMANCE.md "Store"):

    * **exact** — one float32 matrix-vector product over the stored vectors. Below
      ``exact_max_elements`` (rows × dim; 8 M ≈ 7k rows of 1152-d) it is within the
      latency target by itself (≈ 1–3 ms p50 on the 2-core test machine), exact
      (recall 1.0), and needs no graph, so opening a store never waits for a build;
    * **HNSW** (``ruvector``) above that. ruvector 0.1.4's ``HnswIndex`` has no on-disk
      graph (``Collection.save`` stores the raw vectors; ``load`` re-inserts them), so the
      graph is built from the saved arrays after opening. It is built in a background thread
      (ruvector releases the GIL) while searches are answered exactly; once it is ready,
      searches use it, and rows appended later are added to it (small tails at once, large
      ones in the background again).
    """

    def __init__(self, dim: int, *, m: int = 16, ef_construction: int = 100, ef_search: int = 64,
                 exact_max_elements: int = EXACT_MAX_ELEMENTS, background: bool = True) -> None:
        self.dim = dim
        self._params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        self.exact_max_elements = exact_max_elements
        self.background = background
        self.seqs = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)
        self._inv_norms = np.zeros(0, np.float32)
        self.metadata: list[dict[str, Any]] = []
        # metadata key -> (int32 code per row, value -> code): a filter is an integer compare
        # (0.005 ms at 100k rows) instead of a comparison of Python strings (2.5 ms)
        self._codes: dict[str, tuple[np.ndarray, dict[Any, int]]] = {}
        self.stamp = IndexStamp(0, 0, 0)
        self._lock = threading.Lock()
        self._graph: Any = None  # a ruvector Collection over the first _graph_rows rows
        self._graph_rows = 0
        self._job: threading.Thread | None = None
        self._job_error: BaseException | None = None

    def __len__(self) -> int:
        return int(self.seqs.size)

    def add(self, seqs: np.ndarray, vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        """Append rows (their ``seq`` must exceed every indexed one: SQLite order)."""
        if len(seqs) == 0:
            return
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(seqs), self.dim)
        metas = [{**{k: v for k, v in meta.items() if v is not None}, "seq": int(seq)}
                 for seq, meta in zip(seqs, metadata)]
        norms = np.linalg.norm(vectors, axis=1)
        # New arrays, never resized in place: a background graph build keeps reading its own.
        self.seqs = np.concatenate([self.seqs, np.asarray(seqs, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors.copy()
        self._inv_norms = np.concatenate([self._inv_norms, (1.0 / np.maximum(norms, 1e-30)).astype(np.float32)])
        self.metadata = self.metadata + metas
        for key, (codes, vocabulary) in list(self._codes.items()):
            self._codes[key] = (np.concatenate([codes, self._encode(key, metas, vocabulary)]), vocabulary)

    @property
    def uses_graph(self) -> bool:
        """Whether this many rows are searched with HNSW rather than exactly."""
        return len(self) * self.dim > self.exact_max_elements

    @property
    def graph_ready(self) -> bool:
        return self._graph is not None and (self._job is None or not self._job.is_alive())

    def search(self, query: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[tuple[int, float]]:
        """(seq, cosine distance) of the ``k`` nearest rows matching ``where`` exactly.

        A filter is resolved first against integer-coded metadata, so its selectivity is
        known: a subset small enough for exact search (a patient's lesions) is searched
        exactly (recall 1.0); a broad one (an organ) goes to the graph with the Rust-side
        filter and an over-fetch sized to the selectivity (≈ 1.25 / fraction matching)
        instead of ruvector's fixed ×4, which made a 50 % filter search a 4× wider beam.
        """
        if len(self) == 0:
            return []
        rows = self._matching(where) if where else None
        if rows is not None and rows.size == 0:
            return []
        matching = len(self) if rows is None else int(rows.size)
        k = max(1, min(k, matching))
        if not self.uses_graph or matching * self.dim * GATHER_COST <= self.exact_max_elements:
            return self._exact_rows(query, k, rows)
        graph = self._current_graph()
        if graph is None:  # being built in the background: answer exactly meanwhile
            return self._exact_rows(query, k, rows)
        q = np.asarray(query, np.float32)
        if rows is None:
            hits = graph.search(q, k)
        else:
            overfetch = min(64, math.ceil(1.25 * len(self) / matching))
            hits = graph.search(q, k, filter=where, overfetch=overfetch)
        return [(int(hit.metadata["seq"]), float(hit.score)) for hit in hits]

    @property
    def rows_per_lesion(self) -> float | None:
        """Stored rows per distinct lesion (several timepoints each); None if not known."""
        if len(self) == 0 or "lesion" not in self.metadata[0]:
            return None
        _, vocabulary = self._code_column("lesion")
        return len(self) / max(1, len(vocabulary))

    def build_graph(self) -> None:
        """Bring the HNSW graph up to every row now, in this thread (benchmarks, warm-up)."""
        if self._job is not None:
            self._job.join()
        self._extend_graph(len(self))
        self._raise_job_error()

    def _current_graph(self) -> Any:
        """The graph when it covers every row; else None after starting work on it."""
        if self._job is not None:
            if self._job.is_alive():
                return None
            self._job = None
            self._raise_job_error()
        behind = len(self) - self._graph_rows
        if behind == 0:
            return self._graph
        if not self.background or (self._graph is not None and behind <= SYNC_TAIL_ROWS):
            self._extend_graph(len(self))
            return self._graph
        self._job = threading.Thread(target=self._extend_graph_safely, args=(len(self),),
                                     name="dtt-hnsw-build", daemon=True)
        self._job.start()
        return None

    def _extend_graph_safely(self, upto: int) -> None:
        try:
            self._extend_graph(upto)
        except BaseException as error:  # noqa: BLE001 - handed to the searching thread
            self._job_error = error

    def _raise_job_error(self) -> None:
        error, self._job_error = self._job_error, None
        if error is not None:
            raise error

    def _extend_graph(self, upto: int) -> None:
        vectors, metadata = self.vectors, self.metadata  # this thread's own references
        graph = self._graph
        if graph is None:
            graph = _collection_class().create(self.dim, metric="cosine", **self._params)
        start = self._graph_rows
        if upto > start:
            graph.insert_batch(np.ascontiguousarray(vectors[start:upto]), metadatas=metadata[start:upto])
        with self._lock:
            self._graph, self._graph_rows = graph, upto

    @staticmethod
    def _encode(key: str, metas: list[dict[str, Any]], vocabulary: dict[Any, int]) -> np.ndarray:
        """Codes of ``metas[*][key]`` (absent → -1), growing ``vocabulary`` with new values."""
        return np.fromiter((-1 if (value := meta.get(key)) is None else vocabulary.setdefault(value, len(vocabulary))
                            for meta in metas), np.int32, len(metas))

    def _code_column(self, key: str) -> tuple[np.ndarray, dict[Any, int]]:
        column = self._codes.get(key)
        if column is None:
            vocabulary: dict[Any, int] = {}
            column = (self._encode(key, self.metadata, vocabulary), vocabulary)
            self._codes[key] = column
        return column

    def _matching(self, where: dict[str, Any]) -> np.ndarray:
        """Row positions whose metadata equal every value in ``where``."""
        mask = np.ones(len(self), bool)
        for key, value in where.items():
            codes, vocabulary = self._code_column(key)
            code = vocabulary.get(value)
            if code is None:
                return np.zeros(0, np.int64)
            mask &= codes == code
        return np.flatnonzero(mask)

    def _exact_rows(self, query: np.ndarray, k: int, rows: np.ndarray | None) -> list[tuple[int, float]]:
        """Brute-force cosine over every row, or over the row positions ``rows``."""
        q = np.asarray(query, np.float32).ravel()
        q_norm = max(float(np.linalg.norm(q)), 1e-30)
        if rows is None:
            distance = 1.0 - _dot_rows(self.vectors, q) * self._inv_norms / q_norm
            seqs = self.seqs
        elif rows.size * GATHER_COST > len(self):  # a large subset: scanning all rows is cheaper
            distance = (1.0 - _dot_rows(self.vectors, q) * self._inv_norms / q_norm)[rows]
            seqs = self.seqs[rows]
        else:
            distance = 1.0 - _dot_rows(self.vectors, q, rows) * self._inv_norms[rows] / q_norm
            seqs = self.seqs[rows]
        k = min(k, distance.size)
        top = np.argpartition(distance, k - 1)[:k] if k < distance.size else np.arange(distance.size)
        top = top[np.argsort(distance[top], kind="stable")]
        return [(int(seqs[i]), float(distance[i])) for i in top]

    def _exact_search(self, query: np.ndarray, k: int, where: dict[str, Any] | None) -> list[tuple[int, float]]:
        rows = self._matching(where) if where else None
        if rows is not None and rows.size == 0:
            return []
        return self._exact_rows(query, k, rows)

    def exact(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Brute-force cosine k-NN over the same rows: the reference for recall checks."""
        if len(self) == 0:
            return []
        return self._exact_search(query, min(k, len(self)), None)

    # -- persistence -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Atomic write: temp file in the same folder, fsync, ``os.replace``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        header = {"format": FORMAT, "dim": self.dim, "params": self._params,
                  "stamp": [self.stamp.generation, self.stamp.max_seq, self.stamp.count]}
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, header=np.array(json.dumps(header)), seqs=self.seqs,
                         vectors=self.vectors, metadata=np.array(json.dumps(self.metadata)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            if error.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
                raise ResourceError(f"cannot write the vector index {path}: {error.strerror}",
                                    "free disk space or make the folder writable; the index is "
                                    "rebuilt from the database next time") from error
            raise

    @classmethod
    def load(cls, path: Path, **options: Any) -> "VectorIndex | None":
        """The saved index, or None when missing or unreadable (the caller rebuilds).

        Loading reads the arrays only (seconds → milliseconds); the HNSW graph, where the
        size calls for one, is built when searches start (see the class docstring)."""
        saved = cls.read(path)
        if saved is None or (saved.metadata and "lesion" not in saved.metadata[0]):
            return None  # missing, damaged, or written before rows carried their lesion
        index = cls(saved.dim, **saved.params, **options)
        index.add(saved.seqs, saved.vectors, saved.metadata)  # arrays only: no graph yet
        index.stamp = saved.stamp
        return index

    @staticmethod
    def read(path: Path) -> "SavedIndex | None":
        """The saved arrays without building the graph (for checks), or None if unusable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                seqs, vectors = data["seqs"], data["vectors"]
                metadata = json.loads(str(data["metadata"]))
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None
        try:
            if header.get("format") != FORMAT or vectors.shape != (len(seqs), header["dim"]) \
                    or len(metadata) != len(seqs) or header["stamp"][2] != len(seqs):
                return None
            return SavedIndex(int(header["dim"]), dict(header["params"]), IndexStamp(*header["stamp"]),
                              seqs.astype(np.int64), vectors.astype(np.float32), metadata)
        except (KeyError, IndexError, TypeError):
            return None


@dataclass
class SavedIndex:
    dim: int
    params: dict[str, int]
    stamp: IndexStamp
    seqs: np.ndarray
    vectors: np.ndarray
    metadata: list[dict[str, Any]]
