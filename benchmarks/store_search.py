#!/usr/bin/env python3
"""Store benchmark: batch insert rate, similar-lesion search latency, recall@10 vs exact,
embedded (SQLite + ruvector HNSW) and PostgreSQL (pgvector HNSW via pgserver, loopback socket).

    .venv/bin/python benchmarks/store_search.py --n 20000 --dim 1152 --queries 200 [--json out.json]

Data are clustered Gaussian vectors (embedding-like, 200 clusters); queries are fresh draws
from the same distribution, so they are not stored vectors. Recall@10 compares the HNSW
result with brute-force cosine k-NN over exactly the same rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DTTLib.store import Embedding, Lesion, Patient, open_store  # noqa: E402


def data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim))
    draw = lambda m: (centres[rng.integers(0, 200, m)] + 0.7 * rng.standard_normal((m, dim))).astype(np.float32)  # noqa: E731
    return draw(n), draw(queries)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ v.T), axis=1)[:, :k]


def pct(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def fill(store, vectors: np.ndarray, batch: int) -> tuple[list[Lesion], float]:
    patient = Patient(pseudonym=f"bench-{time.time_ns()}")
    lesions = [Lesion(patient_id=patient.id, label=f"L{i}", organ=("liver", "lung")[i % 2]) for i in range(len(vectors))]
    store.add_many([patient, *lesions])
    start = time.perf_counter()
    for i in range(0, len(vectors), batch):
        store.add_embeddings([Embedding(lesion_id=l.id, vector=v)
                              for l, v in zip(lesions[i:i + batch], vectors[i:i + batch])])
    return lesions, time.perf_counter() - start


def search_bench(store, lesions, vectors, queries, truth, k=10) -> dict:
    index_of = {l.id: i for i, l in enumerate(lesions)}
    times, recalls = [], []
    for q, expected in zip(queries, truth):
        start = time.perf_counter()
        hits = store.similar_to_vector(q, k=k)
        times.append(time.perf_counter() - start)
        recalls.append(len({index_of[h.lesion.id] for h in hits} & set(expected.tolist())) / k)
    filtered = []
    for q in queries[:50]:
        start = time.perf_counter()
        store.similar_to_vector(q, k=k, organ="lung")
        filtered.append(time.perf_counter() - start)
    return {"similar_k10": pct(times), "similar_k10_filtered_organ": pct(filtered),
            "recall_at_10": round(float(np.mean(recalls)), 4)}


def _timed_searches(search, queries) -> dict:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - start)
    return pct(times)


def embedded(vectors, queries, truth, batch) -> dict:
    from DTTLib.store.sqlite_backend import EmbeddedStore  # noqa: PLC0415
    out: dict = {}
    dim = vectors.shape[1]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite"
        with open_store(path) as store:
            lesions, seconds = fill(store, vectors, batch)
            out["insert_rows_per_s_sqlite_commit"] = round(len(vectors) / seconds)
            start = time.perf_counter()
            index = store.index("appearance", dim)  # arrays from SQLite; no graph yet
            out["index_arrays_s"] = round(time.perf_counter() - start, 2)
            out["search_mode"] = "hnsw" if index.uses_graph else "exact"
            out["exact_search_k10"] = _timed_searches(lambda q: index._exact_search(q, 10, None), queries)
            if index.uses_graph:
                start = time.perf_counter()
                index.build_graph()
                out["hnsw_build_s"] = round(time.perf_counter() - start, 2)
                out["hnsw_rows_per_s"] = round(len(vectors) / out["hnsw_build_s"])
                out["hnsw_search_k10"] = _timed_searches(lambda q: index.search(q, 10), queries)
            out.update(search_bench(store, lesions, vectors, queries, truth))
        start = time.perf_counter()
        store = EmbeddedStore(path)
        store.similar_to_vector(queries[0], k=10)
        out["reopen_first_search_s"] = round(time.perf_counter() - start, 3)
        index = store.index("appearance", dim)
        if index._job is not None:
            out["reopen_first_searches_while_building_k10"] = _timed_searches(
                lambda q: store.similar_to_vector(q, k=10), queries[:20])
            index._job.join()
            out["reopen_graph_ready_s"] = round(time.perf_counter() - start, 2)
        store.close()
        out["db_mb"] = round(path.stat().st_size / 2**20, 1)
    return out


def crossover(vectors, queries, sizes) -> dict:
    """Exact-search latency by stored rows (the exact / HNSW switch is chosen from this)."""
    from DTTLib.store.vector_index import VectorIndex  # noqa: PLC0415
    out = {}
    for rows in sizes:
        if rows > len(vectors):
            break
        index = VectorIndex(vectors.shape[1], exact_max_elements=2**62)
        index.add(np.arange(1, rows + 1), vectors[:rows], [{}] * rows)
        out[str(rows)] = _timed_searches(lambda q: index.search(q, 10), queries[:50])
    return out


def server(vectors, queries, truth, batch) -> dict:
    import pgserver  # noqa: PLC0415
    out: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        pg = pgserver.get_server(folder, cleanup_mode="stop")
        try:
            with open_store(pg.get_uri()) as store:
                lesions, seconds = fill(store, vectors, batch)
                out["insert_rows_per_s"] = round(len(vectors) / seconds)
                start = time.perf_counter()
                store.ensure_vector_index("appearance", vectors.shape[1])
                out["hnsw_build_s"] = round(time.perf_counter() - start, 2)
                for name, where in (("plan", {}), ("plan_filtered_organ", {"organ": "lung"})):
                    sql, params, ef = store.nearest_query("appearance", vectors.shape[1], queries[0], 44, where)
                    with store._tx() as cur:
                        cur.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                        plan = [r["QUERY PLAN"] for r in cur.fetchall()]
                    out[name] = {"hnsw_index_scan": any("Index Scan using embeddings_hnsw" in line for line in plan),
                                 "execution": [line for line in plan if line.startswith("Execution Time")][0]}
                out.update(search_bench(store, lesions, vectors, queries, truth))
                lookups = []
                for lesion in lesions[: len(queries)]:
                    start = time.perf_counter()
                    store.get(Lesion, lesion.id)
                    lookups.append(time.perf_counter() - start)
                out["get_by_id"] = pct(lookups)
        finally:
            pg.cleanup()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1152)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--crossover", default="2000,5000,10000,20000,50000,100000",
                        help="row counts for the exact-search latency table ('' to skip)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vectors, queries = data(args.n, args.dim, args.queries)
    truth = exact_top(vectors, queries, 10)
    result = {"n": args.n, "dim": args.dim, "queries": args.queries, "batch": args.batch,
              "machine": f"{platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}",
              "embedded": None if args.skip_embedded else embedded(vectors, queries, truth, args.batch)}
    if args.crossover:
        result["exact_search_by_rows"] = crossover(vectors, queries, [int(x) for x in args.crossover.split(",")])
    print(json.dumps(result, indent=1), flush=True)
    if not args.skip_postgres:
        result["postgres"] = server(vectors, queries, truth, args.batch)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
