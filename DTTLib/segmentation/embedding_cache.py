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
