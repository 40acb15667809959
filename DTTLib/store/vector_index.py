"""The embedded store's vector index: a ``ruvector`` HNSW ``Collection`` derived from SQLite.

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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import MissingDependencyError, ResourceError

FORMAT = "dtt-vector-index-1"


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
    """HNSW (cosine) over one (kind, dim) of embeddings; metadata carries the filter fields."""

    def __init__(self, dim: int, *, m: int = 16, ef_construction: int = 100, ef_search: int = 64) -> None:
        self.dim = dim
        self._params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        self._collection = _collection_class().create(dim, metric="cosine", **self._params)
        self.seqs = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)
        self.metadata: list[dict[str, Any]] = []
        self.stamp = IndexStamp(0, 0, 0)

    def __len__(self) -> int:
        return int(self.seqs.size)

    def add(self, seqs: np.ndarray, vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        """Append rows (their ``seq`` must exceed every indexed one: SQLite order)."""
        if len(seqs) == 0:
            return
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(seqs), self.dim)
        metas = [{**{k: v for k, v in meta.items() if v is not None}, "seq": int(seq)}
                 for seq, meta in zip(seqs, metadata)]
        self._collection.insert_batch(vectors, metadatas=metas)
        self.seqs = np.concatenate([self.seqs, np.asarray(seqs, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors.copy()
        self.metadata.extend(metas)

    def search(self, query: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[tuple[int, float]]:
        """(seq, cosine distance) of the ``k`` nearest rows matching ``where`` exactly."""
        if len(self) == 0:
            return []
        k = max(1, min(k, len(self)))
        hits = self._collection.search(np.asarray(query, np.float32), k, filter=where or None)
        return [(int(hit.metadata["seq"]), float(hit.score)) for hit in hits]

    def exact(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Brute-force cosine k-NN over the same rows: the reference for recall checks."""
        if len(self) == 0:
            return []
        q = np.asarray(query, np.float32)
        norms = np.linalg.norm(self.vectors, axis=1) * np.linalg.norm(q)
        distance = 1.0 - (self.vectors @ q) / np.maximum(norms, 1e-30)
        order = np.argsort(distance)[:k]
        return [(int(self.seqs[i]), float(distance[i])) for i in order]

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
    def load(cls, path: Path) -> "VectorIndex | None":
        """The saved index, or None when missing or unreadable (the caller rebuilds)."""
        saved = cls.read(path)
        if saved is None:
            return None
        index = cls(saved.dim, **saved.params)
        index.add(saved.seqs, saved.vectors, saved.metadata)
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
