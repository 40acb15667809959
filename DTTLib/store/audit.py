"""The append-only audit log's hash chain.

Every entry's hash covers its own fields and the previous entry's hash, so editing,
deleting or reordering any entry breaks the chain. The newest (seq, hash) is also kept in
``meta.audit_head`` in the same transaction, which makes *truncation* of the tail visible
too (a chain cut short is still a valid chain, but no longer ends at the recorded head).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import numpy as np

from DTTLib.store.records import AuditEntry

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value, dtype=np.float32).tobytes()).hexdigest()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def data_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of what was written (vectors by their bytes' hash)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def entry_hash(seq: int, at: str, actor: str, action: str, component: str, parameters: str,
               data_hash_: str, prev_hash: str) -> str:
    payload = "\x1f".join([str(seq), at, actor, action, component, parameters, data_hash_, prev_hash])
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_head(value: str) -> tuple[int, str]:
    seq, _, digest = value.partition(":")
    return int(seq), digest


def format_head(seq: int, digest: str) -> str:
    return f"{seq}:{digest}"


def verify_chain(entries: Iterable[AuditEntry], head: str) -> list[str]:
    """Problems found in the chain (empty when intact and ending at ``head``)."""
    problems: list[str] = []
    prev, expected_seq = GENESIS, 1
    last_seq, last_hash = 0, GENESIS
    for entry in entries:
        if entry.seq != expected_seq:
            problems.append(f"audit log: entry {expected_seq} missing (next is {entry.seq})")
        if entry.prev_hash != prev:
            problems.append(f"audit log: entry {entry.seq} does not follow the previous entry")
        recomputed = entry_hash(entry.seq, entry.at, entry.actor, entry.action, entry.component,
                                entry.parameters, entry.data_hash, entry.prev_hash)
        if recomputed != entry.hash:
            problems.append(f"audit log: entry {entry.seq} was altered (hash mismatch)")
        prev, expected_seq = entry.hash, entry.seq + 1
        last_seq, last_hash = entry.seq, entry.hash
        if len(problems) > 20:
            problems.append("audit log: more problems not listed")
            break
    head_seq, head_hash = parse_head(head)
    if (head_seq, head_hash) != (last_seq, last_hash):
        problems.append(f"audit log: ends at entry {last_seq} but the recorded head is entry "
                        f"{head_seq} (entries were removed or the head was altered)")
    return problems
