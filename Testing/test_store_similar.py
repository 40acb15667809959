"""Similar-case search: HNSW recall against brute force, filters, index freshness on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.store import Embedding, Lesion, open_store
from DTTLib.store.descriptors import growth_trajectory, shape_descriptor
from DTTLib.store.vector_index import VectorIndex
from store_fixtures import clustered, pg_server, pg_url, populate, store  # noqa: F401


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    cos = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return list(np.argsort(-cos)[:k])


def test_similar_matches_brute_force_and_respects_filters(store):
    _, point, lesions = populate(store, lesions=300, organs=("liver", "lung", "bone"))
    vectors = clustered(300, 48, seed=1)
    store.add_embeddings([Embedding(lesion_id=l.id, timepoint_id=point.id, vector=v) for l, v in zip(lesions, vectors)])
    recalls = []
    for q in range(0, 300, 30):
        hits = store.similar(lesions[q].id, k=10)
        exact = [lesions[i].id for i in _exact(vectors, vectors[q], 11) if i != q][:10]
        recalls.append(len({h.lesion.id for h in hits} & set(exact)) / 10)
        assert lesions[q].id not in {h.lesion.id for h in hits}
        assert all(-1.0 <= h.score <= 1.0 for h in hits)
        assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    assert np.mean(recalls) >= 0.95
    lung = store.similar(lesions[0].id, k=5, organ="lung")
    lung_ids = [i for i in range(300) if lesions[i].organ == "lung"]
    exact = [lesions[lung_ids[j]].id for j in _exact(vectors[lung_ids], vectors[0], 5)]
    assert {h.lesion.organ for h in lung} == {"lung"}
    assert len({h.lesion.id for h in lung} & set(exact)) >= 4
    assert store.similar(lesions[0].id, k=5, modality="MR") == []


def test_shape_and_growth_vectors_find_their_kind(store):
    _, point, lesions = populate(store, lesions=3)
    z, y, x = np.mgrid[:24, :24, :24]
    ball = (z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 64
    big_ball = (z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 121
    rod = np.zeros_like(ball)
    rod[10:14, 10:14, 1:23] = True
    shapes = [shape_descriptor(ball), shape_descriptor(big_ball), shape_descriptor(rod)]
    growth = [growth_trajectory([0, 90], [1, 2]), growth_trajectory([0, 60, 200], [3, 4.5, 11]),
              growth_trajectory([0, 90], [2, 1])]
    store.add_embeddings([Embedding(lesion_id=l.id, kind="shape", vector=v) for l, v in zip(lesions, shapes)]
                         + [Embedding(lesion_id=l.id, kind="growth", vector=v) for l, v in zip(lesions, growth)])
    assert store.similar(lesions[0].id, kind="shape", k=1)[0].lesion.id == lesions[1].id  # scale-free
    assert store.similar(lesions[0].id, kind="growth", k=1)[0].lesion.id == lesions[1].id  # both grow
    with pytest.raises(InputError, match="no 'appearance' embedding"):
        store.similar(lesions[0].id)


def test_index_rebuilt_when_missing_stale_or_deleted_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    vectors = clustered(200, 16, seed=2)
    with open_store(path) as s:
        _, _, lesions = populate(s, lesions=200)
        s.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, vectors)])
        first = s.similar(lesions[0].id, k=3)
    index_file = tmp_path / "s.sqlite.index" / "appearance-16.npz"
    assert index_file.exists() and VectorIndex.read(index_file).stamp.count == 200
    with open_store(path) as s:  # another writer appends; the saved index is behind, not stale
        s.add_embeddings([Embedding(lesion_id=lesions[1].id, vector=vectors[0] * 2)])
    with open_store(path) as s:
        assert s.similar(lesions[0].id, k=1)[0].lesion.id == lesions[1].id  # appended row found
        assert s.delete_embeddings(first[0].lesion.id) >= 1
        assert first[0].lesion.id not in {h.lesion.id for h in s.similar(lesions[0].id, k=3)}
        assert s.verify() == []
    index_file.write_bytes(b"garbage")
    with open_store(path) as s:
        assert len(s.similar(lesions[0].id, k=3)) == 3  # rebuilt from SQLite
        assert s.verify() == []


def test_verify_catches_an_index_that_claims_to_be_current_but_differs(tmp_path):
    path = tmp_path / "s.sqlite"
    with open_store(path) as s:
        _, _, lesions = populate(s, lesions=20)
        s.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, clustered(20, 8))])
        index = s.index("appearance", 8)
        index.vectors[3] += 1.0
        s._save_index(("appearance", 8))
        assert any("vectors differ" in p for p in s.verify())


def test_postgres_similar_search_plan_uses_the_hnsw_index(pg_url):
    """EXPLAIN of the exact SQL ``similar`` issues, straight after a bulk load (no manual
    ANALYZE, no planner switches): the partial HNSW index must serve the inner query."""
    n, dim = 3000, 64
    with open_store(pg_url) as s:
        _, point, lesions = populate(s, lesions=n, organs=("liver", "lung", "bone"))
        vectors = clustered(n, dim, seed=3)
        for i in range(0, n, 1000):
            s.add_embeddings([Embedding(lesion_id=l.id, timepoint_id=point.id, vector=v)
                              for l, v in zip(lesions[i:i + 1000], vectors[i:i + 1000])])
        hits = s.similar(lesions[7].id, k=10)  # creates the index like a first search does
        exact = [lesions[i].id for i in _exact(vectors, vectors[7], 11) if i != 7][:10]
        assert len({h.lesion.id for h in hits} & set(exact)) >= 9
        names = [r["indexname"] for r in s._read("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")]
        assert f"embeddings_hnsw_appearance_{dim}" in names
        for where in ({}, {"organ": "lung"}, {"modality": "CT", "patient": lesions[0].patient_id}):
            sql, params, ef_search = s.nearest_query("appearance", dim, vectors[7], 44, where)
            with s._tx() as cur:
                cur.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
                cur.execute("EXPLAIN " + sql, params)
                plan = "\n".join(r["QUERY PLAN"] for r in cur.fetchall())
            assert f"Index Scan using embeddings_hnsw_appearance_{dim}" in plan, plan
            assert "Seq Scan on embeddings" not in plan and "embeddings_kind" not in plan, plan
        assert s.vector_type == "vector"


def test_large_index_answers_exactly_while_its_hnsw_graph_builds_after_reopen(tmp_path):
    """Above the exact-search limit the graph is built in the background after opening; the
    first search is not blocked on it (answered exactly), later ones use the graph."""
    from DTTLib.store.sqlite_backend import EmbeddedStore  # noqa: PLC0415
    path, n, dim = tmp_path / "s.sqlite", 600, 32
    vectors = clustered(n, dim, seed=4)
    with open_store(path) as s:
        _, point, lesions = populate(s, lesions=n, organs=("liver", "lung"))
        s.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, vectors)])
        assert not s.index("appearance", dim).uses_graph  # 600 × 32 is exact by default
    with EmbeddedStore(path, exact_max_elements=10_000) as s:
        index = s.index("appearance", dim)  # loaded from the saved arrays: no graph yet
        assert index.uses_graph and not index.graph_ready and index._graph_rows == 0
        first = s.similar(lesions[0].id, k=10)
        exact = [lesions[i].id for i in _exact(vectors, vectors[0], 11) if i != 0][:10]
        assert [h.lesion.id for h in first] == exact  # the exact answer, served during the build
        assert index._job is not None
        index._job.join(timeout=60)
        recalls = []
        for q in range(0, n, 60):
            hits = s.similar(lesions[q].id, k=10)
            truth = [lesions[i].id for i in _exact(vectors, vectors[q], 11) if i != q][:10]
            recalls.append(len({h.lesion.id for h in hits} & set(truth)) / 10)
        assert index.graph_ready and index._graph_rows == n
        assert np.mean(recalls) >= 0.9
        assert {h.lesion.organ for h in s.similar(lesions[0].id, k=5, organ="lung")} == {"lung"}
        twin = Lesion(patient_id=lesions[0].patient_id, label="twin", organ="liver")
        s.add(twin)
        s.add_embeddings([Embedding(lesion_id=twin.id, vector=vectors[0] * 3)])
        assert s.similar(lesions[0].id, k=1)[0].lesion.id == twin.id  # small tail: added at once
        assert index._graph_rows == n + 1 and s.verify() == []


def test_filters_search_small_subsets_exactly_and_size_the_request(tmp_path):
    """Above the exact limit, a filter matching few rows (one patient) is answered by exact
    search over those rows; the first index request follows the stored rows per lesion, and
    rows appended later are filtered correctly too."""
    from DTTLib.store.sqlite_backend import EmbeddedStore  # noqa: PLC0415
    dim = 32
    vectors = clustered(700, dim, seed=6)
    with EmbeddedStore(tmp_path / "s.sqlite", exact_max_elements=10_000, background_build=False) as s:
        _, _, many = populate(s, lesions=550, organs=("liver", "lung"))
        small_patient, point, few = populate(s, lesions=50, organs=("liver", "lung"))
        lesions = many + few
        s.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, vectors)])
        index = s.index("appearance", dim)
        assert index.uses_graph and index.rows_per_lesion == 1.0
        assert s._first_fetch("appearance", dim, 10) == 17  # not 4k + 4 = 44
        s.similar_to_vector(vectors[0], k=10)  # builds the graph (no background build here)
        calls: list[dict] = []
        graph_search = index._graph.search
        index._graph.search = lambda *args, **kwargs: calls.append(kwargs) or graph_search(*args, **kwargs)
        query = vectors[600]
        hits = s.similar_to_vector(query, k=10, patient_id=small_patient.id)
        own = list(range(550, 600))
        exact = [lesions[own[j]].id for j in _exact(vectors[own], query, 10)]
        assert [h.lesion.id for h in hits] == exact and calls == []  # exact search, the graph not asked
        lung = [i for i in range(600) if lesions[i].organ == "lung"]
        recalls = []
        for q in range(0, 600, 50):
            hits = s.similar_to_vector(vectors[q], k=10, organ="lung")
            truth = [lesions[lung[j]].id for j in _exact(vectors[lung], vectors[q], 10)]
            assert {h.lesion.organ for h in hits} == {"lung"}
            assert calls[-1]["overfetch"] == 3  # ⌈1.25 / 0.5⌉, not ruvector's fixed 4
            recalls.append(len({h.lesion.id for h in hits} & set(truth)) / 10)
        assert np.mean(recalls) >= 0.9
        # a second vector (another timepoint) for each of the small patient's lesions
        s.add_embeddings([Embedding(lesion_id=l.id, timepoint_id=point.id, vector=v)
                          for l, v in zip(few, vectors[600:650])])
        index = s.index("appearance", dim)
        assert index.rows_per_lesion == pytest.approx(650 / 600)
        hits = s.similar_to_vector(vectors[649] * 2, k=3, patient_id=small_patient.id)
        assert hits[0].lesion.id == few[49].id and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_deleting_nothing_leaves_the_vector_index_generation_alone(tmp_path):
    """A no-op delete must not force every open vector index to rebuild."""

    with open_store(tmp_path / "s.sqlite") as store:
        def generation():
            return int(store._conn.execute("SELECT value FROM meta WHERE key = 'embeddings_generation'")
                       .fetchone()["value"])
        before = generation()
        assert store.delete_embeddings("no-such-lesion") == 0
        assert generation() == before
