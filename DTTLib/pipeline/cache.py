"""Step results cached on disk by the content hash of everything they depend on.

A re-run recomputes only the steps whose inputs (file bytes, parameters, code version,
upstream results) changed. Entries are written atomically, so a killed run never leaves
a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Bump when a step's meaning changes so old entries are not reused.
CACHE_FORMAT = 1


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a folder (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def key_of(step: str, inputs: Any) -> str:
    """A stable key from JSON-serialisable inputs (sorted keys, repr for the rest)."""
    text = json.dumps({"step": step, "format": CACHE_FORMAT, "inputs": inputs}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class StepCache:
    root: Path
    force: bool = False
    hits: int = 0
    misses: int = 0

    def get_or_compute(self, step: str, inputs: Any, compute: Callable[[], T]) -> T:
        path = self.root / step / f"{key_of(step, inputs)}.pkl"
        if not self.force and path.exists():
            try:
                with open(path, "rb") as handle:
                    value = pickle.load(handle)
                self.hits += 1
                return value
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                pass  # unreadable or from other code: recompute
        value = compute()
        self.misses += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as out:
                pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return value
