"""Slice embeddings kept between calls, keyed by the prepared pixels the encoder saw.

Why a key of pixels and not (volume, k): the same slice prepared with another window, organ
preset or denoising is a different model input, and a box moved on a slice already seen must
re-run only the decoder. One cache per segmenter; it is thread-safe because the Slicer module
prepares nearby slices in a background thread (:mod:`.prefetch`) while the user draws the box,
and the segmentation run that follows reads what it stored.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from DTTLib.segmentation.backend import SliceEmbedding


def slice_key(slice_rgb: np.ndarray) -> bytes:
    """A 16-byte digest of a prepared slice's pixels and shape."""
    digest = hashlib.blake2b(np.ascontiguousarray(slice_rgb).tobytes(), digest_size=16)
    digest.update(str(np.shape(slice_rgb)).encode())
    return digest.digest()


class EmbeddingCache:
    """Least-recently-used store of at most ``capacity`` embeddings (LiteMedSAM ≈ 4 MB each)."""

    def __init__(self, capacity: int = 48) -> None:
        self.capacity = max(1, int(capacity))
        self.hits = 0
        self._items: OrderedDict[bytes, SliceEmbedding] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> SliceEmbedding | None:
        """The embedding stored under ``key`` (counted as a hit and made most recent), or None."""
        with self._lock:
            embedding = self._items.get(key)
            if embedding is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return embedding

    def put(self, key: bytes, embedding: SliceEmbedding) -> None:
        with self._lock:
            self._items[key] = embedding
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored — without counting a hit or changing the order."""
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class CachedEncoding:
    """What a box-prompt backend needs to keep embeddings between calls and to be called from two
    threads: a cache, one inference lock, and ``encode_batch`` that encodes only what is missing.
    A backend calls :meth:`_start_cache` in ``__init__``, implements ``_encode_missing`` (prepared
    slices → embeddings) and takes ``self._inference`` around its decoder."""

    _cache: EmbeddingCache
    _inference: threading.Lock

    def _start_cache(self, capacity: int) -> None:
        self._cache = EmbeddingCache(capacity)
        self._inference = threading.Lock()
        self._batch_limit = 0  # slices per encoder call after an out-of-memory error (0: no limit)
        #: how GPU memory changed the work ("batches of 2", "moved to the CPU"), for the user to see
        self.memory_notes: list[str] = []

    @property
    def cache_hits(self) -> int:
        """Slices served from the embedding cache since this segmenter was made."""
        return self._cache.hits

    @property
    def cache_capacity(self) -> int:
        return self._cache.capacity

    def is_encoded(self, slice_rgb: np.ndarray) -> bool:
        """Whether this prepared slice's embedding is cached (the next ``encode`` is free)."""
        return slice_key(self._checked_slice(slice_rgb)) in self._cache

    def clear_cache(self) -> None:
        self._cache.clear()

    def _checked_slice(self, slice_rgb: np.ndarray) -> np.ndarray:
        """The slice as the encoder takes it, or a clear error (backends override)."""
        return np.asarray(slice_rgb)

    def _encode_missing(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        raise NotImplementedError

    def _fall_back_to_cpu(self) -> bool:
        """Move the model to the CPU after the GPU ran out of memory on a single slice; a backend
        that can do so returns True (its cached embeddings lived on the GPU: it clears them)."""
        return False

    def _encode_within_memory(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        """``_encode_missing`` that survives GPU out-of-memory: the batch is halved (and stays that
        small for later calls); at one slice the model moves to the CPU when the backend can, else
        a clear error — never a crash that takes the user's scene with it."""
        from DTTLib.errors import ResourceError  # noqa: PLC0415
        from DTTLib.models.memory import is_out_of_memory, release_memory  # noqa: PLC0415

        out: list[SliceEmbedding] = []
        while len(out) < len(slices_rgb):
            chunk = slices_rgb[len(out):len(out) + (self._batch_limit or len(slices_rgb))]
            try:
                out.extend(self._encode_missing(chunk))
                continue
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(error):
                    raise
            release_memory()
            if len(chunk) > 1:
                self._batch_limit = len(chunk) // 2
                self.memory_notes.append(f"GPU out of memory at {len(chunk)} slices: encoding {self._batch_limit} "
                                         "at a time")
            elif self._fall_back_to_cpu():
                self.memory_notes.append("GPU out of memory for one slice: the model moved to the CPU (slower)")
                out.clear()  # embeddings made so far live on the GPU; the CPU model encodes them again
            else:
                raise ResourceError("the GPU ran out of memory encoding one slice",
                                    "close other programs that use the GPU, or choose the CPU (device cpu)")
        return out

    def encode(self, slice_rgb: np.ndarray) -> SliceEmbedding:
        return self.encode_batch([slice_rgb])[0]

    def encode_batch(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        """Embeddings of the slices: cached ones as they are, the others encoded in one call."""
        checked = [self._checked_slice(slice_rgb) for slice_rgb in slices_rgb]
        keys = [slice_key(slice_rgb) for slice_rgb in checked]
        results: list[SliceEmbedding | None] = [self._cache.get(key) for key in keys]
        if all(result is not None for result in results):
            return results  # type: ignore[return-value]
        with self._inference:
            todo = []
            for index, result in enumerate(results):
                if result is None:  # another thread may have encoded it while this one waited
                    results[index] = self._cache.get(keys[index])
                    if results[index] is None:
                        todo.append(index)
            if todo:
                for index, embedding in zip(todo, self._encode_within_memory([checked[index] for index in todo])):
                    results[index] = embedding
                    self._cache.put(keys[index], embedding)
        return results  # type: ignore[return-value]

