"""Fixtures for the store tests: a real PostgreSQL (pgserver) per session, a fresh database
per test, and a small populated patient."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DTTLib.store import (  # noqa: E402
    Lesion, Patient, Study, Timepoint, open_store)

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """Own temp folder, not tmp_path_factory: parallel pytest sessions of other users of the
    machine prune old pytest-of-<user> folders, which would pull the data directory away."""
    pgserver = pytest.importorskip("pgserver")
    folder = tempfile.mkdtemp(prefix="dtt-pg-")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    # A throw-away test cluster: no fsync, so the shutdown checkpoint at the end does not
    # wait ~30 s on the shared disk (the store's own transactions are unchanged).
    server.psql("ALTER SYSTEM SET fsync = off;")
    server.psql("SELECT pg_reload_conf();")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    name = f"dtt_test_{next(_counter)}"
    pg_server.psql(f"CREATE DATABASE {name};")
    return pg_server.get_uri().replace("/postgres?", f"/{name}?")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    location = str(tmp_path / "store.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    handle = open_store(location)
    yield handle
    handle.close()


def populate(store, *, organs=("liver", "lung"), lesions=6, modality="CT"):
    """One patient, one CT study/timepoint, ``lesions`` lesions alternating organs."""
    patient = Patient(pseudonym=f"p{next(_counter)}")
    study = Study(patient_id=patient.id, modality=modality)
    point = Timepoint(patient_id=patient.id, label="t0", study_id=study.id, days_from_baseline=0)
    items = [Lesion(patient_id=patient.id, label=f"L{i}", organ=organs[i % len(organs)]) for i in range(lesions)]
    store.add_many([patient, study, point, *items])
    return patient, point, items


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Embedding-like data: points around cluster centres (real embeddings are not uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))).astype(np.float32)
