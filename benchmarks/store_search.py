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
import os
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


def other_queries(dim: int, m: int, seed: int = 1) -> np.ndarray:
    """Fresh queries around the same cluster centres as ``data`` (for warming a server)."""
    centres = np.random.default_rng(0).standard_normal((200, dim))  # data()'s first draw
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 200, m)] + 0.7 * rng.standard_normal((m, dim))).astype(np.float32)


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


def search_bench(store, lesions, vectors, queries, truth, k=10, filtered_queries=100) -> dict:
    """Unfiltered and organ-filtered searches interleaved query by query (so both see the same
    machine load); recall of each against brute force over the same rows (filtered: over the
    rows of that organ)."""
    index_of = {l.id: i for i, l in enumerate(lesions)}
    lung = np.array([l.organ == "lung" for l in lesions])
    lung_rows = np.flatnonzero(lung)
    lung_truth = lung_rows[exact_top(vectors[lung_rows], queries[:filtered_queries], k)]
    times, recalls, filtered, filtered_recalls = [], [], [], []

    def plain(i: int, q: np.ndarray) -> None:
        start = time.perf_counter()
        hits = store.similar_to_vector(q, k=k)
        times.append(time.perf_counter() - start)
        recalls.append(len({index_of[h.lesion.id] for h in hits} & set(truth[i].tolist())) / k)

    def organ(i: int, q: np.ndarray) -> None:
        start = time.perf_counter()
        hits = store.similar_to_vector(q, k=k, organ="lung")
        filtered.append(time.perf_counter() - start)
        assert all(h.lesion.organ == "lung" for h in hits)
        filtered_recalls.append(len({index_of[h.lesion.id] for h in hits} & set(lung_truth[i].tolist())) / k)

    for i, q in enumerate(queries):
        # alternate which goes first: the second search of a query finds the pages / cache
        # lines the first one touched
        order = (plain, organ) if i % 2 == 0 else (organ, plain)
        for search in order:
            if search is plain or i < filtered_queries:
                search(i, q)
    return {"similar_k10": pct(times), "similar_k10_filtered_organ": pct(filtered),
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "recall_at_10_filtered_organ": round(float(np.mean(filtered_recalls)), 4)}


def _timed_searches(search, queries) -> dict:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - start)
    return pct(times)


def embedded(vectors, queries, truth, batch, folder: Path) -> tuple[dict, list[Lesion]]:
    out: dict = {}
    dim = vectors.shape[1]
    path = folder / "bench.sqlite"
    with open_store(path) as store:
        lesions, seconds = fill(store, vectors, batch)
        out["insert_rows_per_s_sqlite_commit"] = round(len(vectors) / seconds)
        start = time.perf_counter()
        index = store.index("appearance", dim)  # arrays from SQLite; no graph yet
        out["index_arrays_s"] = round(time.perf_counter() - start, 2)
        out["search_mode"] = "hnsw" if index.uses_graph else "exact"
        out["hnsw_params"] = dict(index._params)
        out["exact_search_k10"] = _timed_searches(lambda q: index._exact_search(q, 10, None), queries[:50])
        if index.uses_graph:
            start = time.perf_counter()
            index.build_graph()
            out["hnsw_build_s"] = round(time.perf_counter() - start, 2)
            out["hnsw_rows_per_s"] = round(len(vectors) / out["hnsw_build_s"])
            out["hnsw_search_k10"] = _timed_searches(lambda q: index.search(q, 10), queries)
            out["hnsw_search_k10_filtered_organ"] = _timed_searches(
                lambda q: index.search(q, 10, {"organ": "lung"}), queries[:100])
        out["first_fetch_k10"] = store._first_fetch("appearance", dim, 10)
        out.update(search_bench(store, lesions, vectors, queries, truth))
    out["db_mb"] = round(path.stat().st_size / 2**20, 1)
    return out, lesions


def embedded_reopen(path: Path, queries, dim: int, wait: bool) -> dict:
    """Reopen the store: time to the first answer, searches while the graph rebuilds."""
    from DTTLib.store.sqlite_backend import EmbeddedStore  # noqa: PLC0415
    out: dict = {}
    start = time.perf_counter()
    store = EmbeddedStore(path)
    store.similar_to_vector(queries[0], k=10)
    out["reopen_first_search_s"] = round(time.perf_counter() - start, 3)
    index = store.index("appearance", dim)
    if index._job is not None:
        out["reopen_searches_while_building_k10"] = _timed_searches(
            lambda q: store.similar_to_vector(q, k=10), queries[:20])
        if wait:
            index._job.join()
            out["reopen_graph_ready_s"] = round(time.perf_counter() - start, 2)
    if wait or index._job is None:
        store.close()
    return out  # else: the daemon build thread ends with the process


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


def _lookups(store, lesions) -> dict:
    times = []
    for lesion in lesions:
        start = time.perf_counter()
        store.get(Lesion, lesion.id)
        times.append(time.perf_counter() - start)
    return pct(times)


def _settings(store) -> dict:
    rows = store._read("SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers', 'hnsw.ef_search')")
    sizes = store._read("SELECT pg_size_pretty(pg_relation_size(indexrelid)) AS size FROM pg_index "
                        "WHERE indexrelid::regclass::text LIKE 'embeddings_hnsw_%'")
    return {r["name"]: f"{r['setting']}{'×' + r['unit'] if r['unit'] else ''}" for r in rows} | \
        {"hnsw_index_size": sizes[0]["size"] if sizes else None}


def server(vectors, queries, truth, batch, shared_buffers: str | None = None) -> dict:
    import pgserver  # noqa: PLC0415
    from pgserver._commands import pg_ctl  # noqa: PLC0415

    from DTTLib.store.postgres_backend import hnsw_build_memory_mb  # noqa: PLC0415
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
                out["hnsw_build_maintenance_work_mem_mb"] = min(hnsw_build_memory_mb(*vectors.shape),
                                                                store.index_build_memory_mb)
                for name, where in (("plan", {}), ("plan_filtered_organ", {"organ": "lung"})):
                    sql, params, ef = store.nearest_query("appearance", vectors.shape[1], queries[0], 44, where)
                    with store._tx() as cur:
                        cur.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                        plan = [r["QUERY PLAN"] for r in cur.fetchall()]
                    out[name] = {"hnsw_index_scan": any("Index Scan using embeddings_hnsw" in line for line in plan),
                                 "execution": [line for line in plan if line.startswith("Execution Time")][0]}
                out.update(search_bench(store, lesions, vectors, queries, truth))
                out["get_by_id"] = _lookups(store, lesions[: len(queries)])
                out["server"] = _settings(store)
            if shared_buffers:
                # Same server and index, restarted with shared_buffers large enough to hold the
                # HNSW index, then warmed with other queries (as a server in use would be).
                pg.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}';")
                pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pg.pgdata, user=pg.system_user, timeout=120)
                with open_store(pg.get_uri()) as store:
                    for q in other_queries(vectors.shape[1], len(queries)):
                        store.similar_to_vector(q, k=10)
                        store.similar_to_vector(q, k=10, organ="lung")
                    tuned = search_bench(store, lesions, vectors, queries, truth)
                    tuned["get_by_id"] = _lookups(store, lesions[: len(queries)])
                    tuned["server"] = _settings(store)
                    out["shared_buffers_holding_index"] = tuned
        finally:
            pg.cleanup()
    return out


TARGETS = [  # (name, where in the result, target, "max" = at most / "min" = at least)
    ("embedded similar p50 ms", ("embedded", "similar_k10", "p50_ms"), 5.0, "max"),
    ("embedded similar p95 ms", ("embedded", "similar_k10", "p95_ms"), 20.0, "max"),
    ("embedded similar, organ filter, p50 ms", ("embedded", "similar_k10_filtered_organ", "p50_ms"), 5.0, "max"),
    ("embedded similar, organ filter, p95 ms", ("embedded", "similar_k10_filtered_organ", "p95_ms"), 20.0, "max"),
    ("embedded batch inserts rows/s", ("embedded", "insert_rows_per_s_sqlite_commit"), 5000, "min"),
    ("embedded recall@10", ("embedded", "recall_at_10"), 0.95, "min"),
    ("embedded recall@10, organ filter", ("embedded", "recall_at_10_filtered_organ"), 0.95, "min"),
    ("PostgreSQL batch inserts rows/s", ("postgres", "insert_rows_per_s"), 5000, "min"),
    ("PostgreSQL similar p50 ms", ("postgres", "similar_k10", "p50_ms"), 10.0, "max"),
    ("PostgreSQL similar, organ filter, p50 ms", ("postgres", "similar_k10_filtered_organ", "p50_ms"), 10.0, "max"),
    ("PostgreSQL lookup by id p50 ms", ("postgres", "get_by_id", "p50_ms"), 10.0, "max"),
    ("PostgreSQL recall@10", ("postgres", "recall_at_10"), 0.95, "min"),
    ("PostgreSQL recall@10, organ filter", ("postgres", "recall_at_10_filtered_organ"), 0.95, "min"),
    ("PostgreSQL (index in shared_buffers) similar p50 ms",
     ("postgres", "shared_buffers_holding_index", "similar_k10", "p50_ms"), 10.0, "max"),
    ("PostgreSQL (index in shared_buffers) similar, organ filter, p50 ms",
     ("postgres", "shared_buffers_holding_index", "similar_k10_filtered_organ", "p50_ms"), 10.0, "max"),
    ("PostgreSQL (index in shared_buffers) lookup by id p50 ms",
     ("postgres", "shared_buffers_holding_index", "get_by_id", "p50_ms"), 10.0, "max"),
    ("PostgreSQL (index in shared_buffers) recall@10",
     ("postgres", "shared_buffers_holding_index", "recall_at_10"), 0.95, "min"),
]


def verdicts(result: dict) -> list[dict]:
    """Each target: measured value, ratio to the target (< 1 is better for "at most"), met."""
    rows = []
    for name, keys, target, sense in TARGETS:
        value = result
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        met = value <= target if sense == "max" else value >= target
        rows.append({"target": name, "value": value, "limit": target, "ratio": round(value / target, 3), "met": met})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1152)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-reopen", action="store_true")
    parser.add_argument("--reopen-wait", action="store_true",
                        help="after reopening, also wait for the background graph build (minutes at 100k)")
    parser.add_argument("--crossover", default="2000,5000,10000,20000,50000,100000",
                        help="row counts for the exact-search latency table ('' to skip)")
    parser.add_argument("--pg-shared-buffers", default="",
                        help="also measure PostgreSQL restarted with this shared_buffers (e.g. 1536MB: "
                             "the 100k × 1152 HNSW index is 781 MB; the default 128MB does not hold it)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vectors, queries = data(args.n, args.dim, args.queries)
    truth = exact_top(vectors, queries, 10)
    result: dict = {"n": args.n, "dim": args.dim, "queries": args.queries, "batch": args.batch,
                    "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                    "load_avg_start": [round(x, 2) for x in os.getloadavg()]}

    def report(final: bool = False) -> None:
        result["load_avg_now"] = [round(x, 2) for x in os.getloadavg()]
        result["targets"] = verdicts(result)
        print(json.dumps(result, indent=1), flush=True)
        if final:
            for row in result["targets"]:
                print(f"{'MET ' if row['met'] else 'MISS'} {row['target']}: {row['value']} "
                      f"(target {row['limit']}, ratio {row['ratio']})", flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))

    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_embedded:
            result["embedded"], _ = embedded(vectors, queries, truth, args.batch, Path(folder))
            report()
        if args.crossover:
            result["exact_search_by_rows"] = crossover(vectors, queries, [int(x) for x in args.crossover.split(",")])
        if not args.skip_postgres:
            result["postgres"] = server(vectors, queries, truth, args.batch, args.pg_shared_buffers or None)
            report()
        if not args.skip_embedded and not args.skip_reopen:  # last: its background build would load the rest
            result["embedded"].update(embedded_reopen(Path(folder) / "bench.sqlite", queries, args.dim,
                                                      args.reopen_wait))
        report(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
