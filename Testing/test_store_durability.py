"""Nothing lost: concurrent writers, kill -9 mid-write, full disk, read-only store."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from DTTLib.errors import ResourceError
from DTTLib.store import Embedding, Lesion, Measurement, open_store
from store_fixtures import pg_server, pg_url, populate  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

# A writer: one lesion + measurement (one transaction), then its embedding (another); after
# each commit it appends the id to a side file and fsyncs it, so the test knows what was
# committed. Every 7th round it refreshes and saves the vector index, so kills also land
# in the middle of index writes.
WRITER = r"""
import os, sys, numpy as np
sys.path.insert(0, sys.argv[1])
from DTTLib.store import Embedding, Lesion, Measurement, open_store
db, log_path, tag, patient_id, point_id = sys.argv[2:7]
rng = np.random.default_rng(abs(hash(tag)) % 2**32)
store = open_store(db)
log = open(log_path, "a")
def committed(kind, ident):
    log.write(f"{kind} {ident}\n"); log.flush(); os.fsync(log.fileno())
i = 0
while True:
    lesion = Lesion(patient_id=patient_id, label=f"{tag}-{i}", organ="liver")
    m = Measurement(lesion_id=lesion.id, timepoint_id=point_id, quantity="ld", value=float(i), unit="mm")
    store.add_many([lesion, m], actor=tag)
    committed("lesion", lesion.id)
    e = Embedding(lesion_id=lesion.id, vector=rng.standard_normal(32).astype(np.float32))
    store.add_embeddings([e], actor=tag)
    committed("embedding", e.id)
    if i % 7 == 6:
        store.index("appearance", 32); store.flush_index()
    i += 1
    if len(sys.argv) > 7 and i >= int(sys.argv[7]):
        break
store.close()
"""


# A PostgreSQL writer: lesion + measurement (one transaction), a batch of 4 embeddings (one
# COPY + one audit entry), and a similar search in between, so reads race the writes too.
PG_WRITER = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from DTTLib.store import Embedding, Lesion, Measurement, open_store
url, tag, patient_id, point_id, rounds = sys.argv[2:7]
rng = np.random.default_rng(abs(hash(tag)) % 2**32)
store = open_store(url)
for i in range(int(rounds)):
    lesion = Lesion(patient_id=patient_id, label=f"{tag}-{i}", organ="liver")
    m = Measurement(lesion_id=lesion.id, timepoint_id=point_id, quantity="ld", value=float(i), unit="mm")
    store.add_many([lesion, m], actor=tag)
    store.add_embeddings([Embedding(lesion_id=lesion.id, timepoint_id=point_id,
                                    vector=rng.standard_normal(48).astype(np.float32)) for _ in range(4)], actor=tag)
    hits = store.similar(lesion.id, k=3)  # its own earlier lesions exist at least
    assert len(hits) >= min(3, i) and lesion.id not in {h.lesion.id for h in hits}
store.close()
"""


def _spawn(db: Path, log: Path, tag: str, patient_id: str, point_id: str, rounds: int | None = None):
    args = [sys.executable, "-c", WRITER, str(REPO), str(db), str(log), tag, patient_id, point_id]
    return subprocess.Popen(args + ([str(rounds)] if rounds else []), stderr=subprocess.PIPE)


def _committed(log: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"lesion": set(), "embedding": set()}
    if log.exists():
        for line in log.read_text().splitlines():
            kind, _, ident = line.partition(" ")
            if ident:
                out[kind].add(ident)
    return out


def test_concurrent_writers_lose_nothing_and_keep_one_chain(tmp_path):
    db = tmp_path / "s.sqlite"
    with open_store(db) as s:
        patient, point, _ = populate(s, lesions=1)
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [_spawn(db, log, f"w{i}", patient.id, point.id, rounds=25) for i, log in enumerate(logs)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    with open_store(db) as s:
        labels = {l.label for l in s.find(Lesion)}
        assert {f"w{i}-{j}" for i in range(3) for j in range(25)} <= labels
        assert len(s.find(Measurement)) == 75
        assert len(list(s.audit_entries())) == 1 + 3 * 25 * 2
        assert s.verify() == []
        assert {e.actor for e in s.audit_entries()} == {"dtt", "w0", "w1", "w2"}


def test_kill_minus_9_at_random_points_loses_no_committed_record(tmp_path):
    db = tmp_path / "s.sqlite"
    with open_store(db) as s:
        patient, point, _ = populate(s, lesions=1)
    rng = random.Random(6)
    logs = []
    deadline = time.monotonic() + 30
    rounds = 0
    while time.monotonic() < deadline and rounds < 14:
        batch = []
        for j in range(2):
            log = tmp_path / f"k{rounds}-{j}.log"
            logs.append(log)
            batch.append(_spawn(db, log, f"k{rounds}-{j}", patient.id, point.id))
        time.sleep(rng.uniform(0.8, 2.2))
        for proc in batch:
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        rounds += 1
    committed = {"lesion": set(), "embedding": set()}
    for log in logs:
        for kind, ids in _committed(log).items():
            committed[kind] |= ids
    assert len(committed["lesion"]) > 20, "the writers never got going: the test proved nothing"
    with open_store(db) as s:
        stored_lesions = {l.id for l in s.find(Lesion)}
        stored_embeddings = {r["id"] for r in s._read("SELECT id FROM embeddings")}
        assert committed["lesion"] <= stored_lesions
        assert committed["embedding"] <= stored_embeddings
        # No half records: every lesion written by a writer has its measurement.
        assert len(s.find(Measurement)) == len(stored_lesions) - 1
        assert s.verify() == []
        index = s.index("appearance", 32)  # consistent with the table (caught up or rebuilt)
        assert sorted(index.seqs.tolist()) == [r["seq"] for r in s._read("SELECT seq FROM embeddings ORDER BY seq")]
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


def test_full_disk_gives_clear_error_and_no_partial_record(tmp_path):
    """SQLite's max_page_count caps the file exactly like a full disk would (SQLITE_FULL):
    a portable stand-in, since tests run as root where chmod and small tmpfs are not options."""
    with open_store(tmp_path / "s.sqlite") as s:
        patient, point, lesions = populate(s, lesions=1)
        before = (len(list(s.audit_entries())), s.stats()["counts"])
        pages = s._read("PRAGMA page_count")[0]["page_count"]
        s._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        vectors = np.random.default_rng(0).standard_normal((400, 512)).astype(np.float32)
        with pytest.raises(ResourceError, match="full; nothing was written"):
            s.add_embeddings([Embedding(lesion_id=lesions[0].id, vector=v) for v in vectors])
        assert (len(list(s.audit_entries())), s.stats()["counts"]) == before
        s._conn.execute("PRAGMA max_page_count = 1073741823")
        s.add(Measurement(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="ld", value=3, unit="mm"))
        assert s.verify() == []


def test_read_only_store_refuses_writes_clearly(tmp_path):
    """A read-only open (SQLite ``mode=ro``, what a read-only folder or file gives a normal
    user) must fail writes with a ResourceError, not an internal error."""
    db = tmp_path / "s.sqlite"
    with open_store(db) as s:
        patient, point, lesions = populate(s, lesions=1)
    with open_store(db, readonly=True) as s:
        with pytest.raises(ResourceError, match="read-only"):
            s.add(Measurement(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="ld", value=3, unit="mm"))
        assert s.find(Measurement) == [] and s.verify() == []


def test_concurrent_postgres_writer_processes_keep_one_chain(pg_url, capsys):
    from DTTLib.cli.main import main  # noqa: PLC0415
    with open_store(pg_url) as s:
        patient, point, _ = populate(s, lesions=1)
    procs = [subprocess.Popen([sys.executable, "-c", PG_WRITER, str(REPO), pg_url, f"p{i}", patient.id,
                               point.id, "12"], stderr=subprocess.PIPE) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    with open_store(pg_url) as s:
        assert {f"p{i}-{j}" for i in range(3) for j in range(12)} <= {l.label for l in s.find(Lesion)}
        assert len(s.find(Measurement)) == 36
        assert int(s._read("SELECT COUNT(*) AS n FROM embeddings")[0]["n"]) == 3 * 12 * 4
        entries = list(s.audit_entries())
        assert len(entries) == 1 + 3 * 12 * 2  # one per logical write, batches included
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert {e.actor for e in entries} == {"dtt", "p0", "p1", "p2"}
        assert s.verify() == []
    capsys.readouterr()
    assert main(["store", "verify", "--db", pg_url]) == 0
    assert "store OK" in capsys.readouterr().out
