#!/usr/bin/env python3
"""Search latency through a live `python -m server` on loopback, ANN recall and memory, per collection size.

For each --n-tiles N: synthetic unit vectors are indexed with the store's own hnswlib parameters and written
in the store's on-disk layout; a fresh server answers text queries (real text encoding, distinct queries so
the cache misses; then the same queries again: cache hits), by-example queries and by-example queries in a
small area (the exact-scan path), sequentially and from 1/4/16 concurrent clients. Recall@10 of the index is
measured against exact search on the same vectors at the shipped M/ef, with an ef (and M) sweep.
Run `python bench/search.py [--quick] [--n-tiles N ...]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _collection import (
    build_index,
    dataset,
    exact_ms,
    exact_topk,
    folder_bytes,
    grid_bbox,
    recall_at_k,
    write_collection,
)
from _common import (
    emit,
    machine,
    peak_rss_mb,
    quiet_logs,
    rss_mb,
    table,
)
from _http_load import Server, ab_latency, concurrent, query_texts, stats, timed

K = 10
GOALS = {"p50_ms_at_1m": 20.0, "recall_at_10": 0.98}
def in_process(store: Path, identity: str, bodies: list[dict[str, Any]]) -> dict[str, float]:
    """The same by-example searches through server.search.search.search in this process: the cost without HTTP."""
    from types import SimpleNamespace

    from server.search.search import SearchRequest, search
    from server.store.store import Store

    st, model = Store(store), SimpleNamespace(identity=identity)
    reqs = [SearchRequest.from_json(b) for b in bodies]
    search(st, model, None, reqs[0])  # type: ignore[arg-type] - by example never embeds text
    out = []
    for r in reqs:
        t0 = time.perf_counter()
        search(st, model, None, r)  # type: ignore[arg-type]
        out.append(time.perf_counter() - t0)
    return stats(out)


def sweep(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, index: Any, args: argparse.Namespace
          ) -> list[dict[str, Any]]:
    """Recall@10 and in-process ms/query over ef (shipped M) and over M (rebuilt, at sizes allowed)."""
    from server.store.store import INDEX_EF_CONSTRUCTION, INDEX_M

    rows = []
    for ef in args.efs:
        r, ms = recall_at_k(index, queries, truth, K, ef)
        rows.append({"M": INDEX_M, "ef": ef, "recall_at_10": r, "ms_per_query": ms})
    if len(vectors) <= args.m_sweep_max:
        for m in (x for x in args.ms if x != INDEX_M):
            other, build_s = build_index(vectors, m, INDEX_EF_CONSTRUCTION, args.build_threads)
            for ef in args.efs:
                r, ms = recall_at_k(other, queries, truth, K, ef)
                rows.append({"M": m, "ef": ef, "recall_at_10": r, "ms_per_query": ms, "build_s": build_s})
    return rows


def run_size(n: int, args: argparse.Namespace, tmp: Path, texts: list[str]) -> dict[str, Any]:
    """Everything measured at one collection size."""
    from server.store.store import INDEX_EF_CONSTRUCTION, INDEX_M, SEARCH_EF

    store = tmp / f"store-{n}"
    server = Server(store, args.model, tmp / f"server-{n}.log", runtime=args.runtime)  # loads while we build
    other_name = f"threads_{args.server_threads}" if args.server_threads else f"runtime_{args.ab_runtime}"
    store_ab = tmp / f"store-{n}-ab"  # a store is served by one server at a time: the A/B one gets a copy
    other = Server(store_ab, args.model, tmp / f"server-{n}-{other_name}.log", args.server_threads,
                   args.ab_runtime or args.runtime) if args.server_threads or args.ab_runtime else None
    ab: dict[str, Any] | None = None
    try:
        vectors, queries = real_dataset(args) if args.vectors else dataset(n, args.dim, args.n_recall, args.dist)
        index, build_s = cached_index(vectors, args, INDEX_M, INDEX_EF_CONSTRUCTION)
        t0 = time.perf_counter()
        truth = exact_topk(vectors, queries, K)
        exact_s = time.perf_counter() - t0
        recall, ann_ms = recall_at_k(index, queries, truth, K, SEARCH_EF)
        rows = sweep(vectors, queries, truth, index, args) if args.sweep else []
        uniform = None
        if args.sweep and n <= args.m_sweep_max and args.dist == "clustered" and not args.vectors:  # the worst case, for contrast
            uv, uq = dataset(n, args.dim, args.n_recall, "uniform")
            ui, _ = build_index(uv, INDEX_M, INDEX_EF_CONSTRUCTION, args.build_threads)
            uniform = recall_at_k(ui, uq, exact_topk(uv, uq, K), K, SEARCH_EF)[0]
            del uv, ui
        server.wait()
        _, health = server.request("GET", "/health")
        if health["dim"] != args.dim:
            raise RuntimeError(f"server model has dim {health['dim']}, vectors have {args.dim}; pass --dim")
        rss_model = rss_mb(server.proc.pid)
        built = write_collection(store, f"synthetic-{n}", health["model"], health["model_name"], index, n)
        del index
        if other is not None:
            shutil.copytree(built.folder, store_ab / built.folder.name)
        name = built.folder.name
        t0 = time.perf_counter()
        _, summary = server.request("GET", f"/collections/{name}")
        if summary["tiles"] != n:
            raise RuntimeError(f"server sees {summary['tiles']} tiles, expected {n}")
        base = {"k": K, "collections": [name]}
        server.request("POST", "/search", {**base, "tile_id": 1, "collection": name})  # loads the index
        open_s = time.perf_counter() - t0
        rng = np.random.default_rng(7)
        example = [{**base, "tile_id": int(i), "collection": name} for i in rng.integers(1, n + 1, args.n_queries)]
        text = [{**base, "text": t} for t in texts[:args.n_queries]]
        bbox = grid_bbox(n, args.bbox_fraction)
        area = [{**b, "bbox": bbox} for b in example[:max(5, args.n_queries // 4)]]
        timed(server, [{**base, "text": "warm up the text encoder"}] * 2 + example[:3])
        res_text = stats(timed(server, text))
        res_cached = stats(timed(server, text))  # same texts again: the query cache answers
        res_example = stats(timed(server, example))
        res_area = stats(timed(server, area))
        qps = {str(c): concurrent(server, example, c, args.concurrent_total) for c in (1, 4, 16)}
        peak = peak_rss_mb(server.proc.pid)
        anon = rss_mb(server.proc.pid, "RssAnon")  # the index.bin memory map's pages are file cache, not this
        if other is not None:
            other.wait()
            pair = {"default": server, other_name: other}
            timed(other, [{**base, "text": "warm up the text encoder"}] * 2 + example[:3])
            ab = {"text": ab_latency(pair, [{**base, "text": t} for t in texts[args.n_queries:2 * args.n_queries]]),
                  "by_example": ab_latency(pair, example)}
    finally:
        server.stop()
        if other is not None:
            other.stop()
    res_inproc = in_process(store, health["model"], example)
    disk = folder_bytes(built.folder)
    raw = n * args.dim * 4
    return {"n_tiles": n, "model": health["model"], "runtime": health.get("runtime", "torch"), **{k: res_text[k] for k in ("p50_ms", "p95_ms", "p99_ms")}, "recall_at_10": recall,
            "text": res_text, "text_cached": res_cached, "by_example": res_example,
            "by_example_in_area": {**res_area, "area_fraction": args.bbox_fraction},
            "by_example_in_process": res_inproc, "server_threads_ab": ab,
            "concurrent_qps": qps, "ann_ms_per_query": ann_ms, "exact_ms_per_query": exact_ms(vectors, queries, K),
            "recall_uniform_at_10": uniform, "sweep": rows,
            "index": {"M": INDEX_M, "ef_construction": INDEX_EF_CONSTRUCTION, "ef": SEARCH_EF,
                      "build_s": build_s, "build_threads": args.build_threads, "exact_truth_s": exact_s},
            "write": {"rows_s": built.rows_s, "index_save_s": built.save_s}, "server_open_s": open_s,
            "server_rss_model_mb": rss_model, "server_peak_rss_mb": peak, "server_rss_anon_mb": anon, "raw_vector_mb": raw / 2**20,
            "peak_rss_over_raw": peak * 2**20 / raw, "rss_added_over_raw": (peak - rss_model) * 2**20 / raw,
            "disk_bytes": disk, "bytes_per_tile": disk["total"] / n,
            "index_bytes_per_tile": disk.get("index.bin", 0) / n, "gpkg_bytes_per_tile": disk.get("tiles.gpkg", 0) / n,
            "dist": f"real:{Path(args.vectors).name}" if args.vectors else args.dist}


def real_dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, held-out queries) from real embeddings in a .npy file: the last --recall-queries rows query."""
    rows = np.load(args.vectors).astype(np.float32)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(rows[:-args.n_recall]), np.ascontiguousarray(rows[-args.n_recall:])


def cached_index(vectors: np.ndarray, args: argparse.Namespace, m: int, ef_construction: int) -> tuple[Any, float]:
    """Build the index, or load the one an earlier run saved in --index-cache for exactly these vectors.

    Returns (index, build seconds); a loaded index reports the build time recorded when it was built.
    """
    if not args.index_cache:
        return build_index(vectors, m, ef_construction, args.build_threads)
    import hashlib

    import hnswlib

    key = hashlib.sha256(vectors.tobytes()).hexdigest()[:16]
    folder = Path(args.index_cache)
    path, meta = folder / f"index-{key}-M{m}-efc{ef_construction}.bin", folder / f"index-{key}.json"
    if path.is_file() and meta.is_file():
        index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        index.load_index(str(path), max_elements=len(vectors))
        print(f"loaded the index from {path}", file=sys.stderr, flush=True)
        return index, float(json.loads(meta.read_text())["build_s"])
    index, build_s = build_index(vectors, m, ef_construction, args.build_threads)
    folder.mkdir(parents=True, exist_ok=True)
    index.save_index(str(path))
    meta.write_text(json.dumps({"build_s": build_s, "threads": args.build_threads, "n": len(vectors)}))
    return index, build_s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k tiles, fewer queries (about a minute)")
    ap.add_argument("--n-tiles", type=int, nargs="+",
                    help="collection sizes (default 10000 100000; quick 10000; 1000000 is opt-in: the index "
                         "build takes long on few cores)")
    ap.add_argument("--queries", type=int, dest="n_queries", help="queries per kind (quick 40, full 200)")
    ap.add_argument("--recall-queries", type=int, dest="n_recall", help="held-out queries for recall (100/500)")
    ap.add_argument("--dist", choices=["clustered", "uniform"], default="clustered",
                    help="synthetic vectors: around cluster centres (like real embeddings) or uniform")
    ap.add_argument("--dim", type=int, default=256, help="vector dimension (the server model's; 256 harma-lite)")
    ap.add_argument("--model", default="harma-lite", help="model the server runs (text queries use it)")
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the M/ef sweep")
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--server-threads", type=int,
                    help="also start a server limited to this many torch/BLAS threads and compare latencies")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"), help="the server's runtime")
    ap.add_argument("--ab-runtime", choices=("torch", "onnx"),
                    help="also start a server on this runtime and compare latencies, queries interleaved")
    ap.add_argument("--index-cache", help="folder to keep built indexes in and reuse them (long 1M builds)")
    ap.add_argument("--vectors", help="real embeddings (.npy, one row per tile) instead of synthetic vectors; "
                                      "the last --recall-queries rows are the held-out queries")
    args = ap.parse_args(argv)
    args.n_tiles = args.n_tiles or ([10_000] if args.quick else [10_000, 100_000])
    args.n_queries = args.n_queries or (40 if args.quick else 200)
    args.n_recall = args.n_recall or (100 if args.quick else 500)
    args.concurrent_total = 32 if args.quick else 160
    args.efs = (32, 64, 128) if args.quick else (16, 32, 64, 128, 256)
    args.ms = (8, 16, 32) if args.quick else (8, 16, 24, 32)
    args.m_sweep_max = 20_000  # rebuilding larger indexes per M takes minutes on few cores
    args.bbox_fraction = 0.005
    if args.vectors:
        args.n_tiles = [len(np.load(args.vectors, mmap_mode="r")) - args.n_recall]
    return args


def report(runs: list[dict[str, Any]]) -> str:
    """Human tables of the runs."""
    lat = [{"n_tiles": r["n_tiles"], "query": q, "p50_ms": r[k]["p50_ms"], "p95_ms": r[k]["p95_ms"],
            "p99_ms": r[k]["p99_ms"]}
           for r in runs for q, k in (("text", "text"), ("text cached", "text_cached"),
                                      ("by example", "by_example"), ("example+area", "by_example_in_area"),
                                      ("example in-process", "by_example_in_process"))]
    out = [table(lat, title="HTTP round trip through python -m server (loopback)")]
    out.append(table([{"n_tiles": r["n_tiles"], **{f"{c} clients q/s": v for c, v in r["concurrent_qps"].items()},
                       "recall@10": r["recall_at_10"], "uniform recall": r["recall_uniform_at_10"],
                       "ann ms": r["ann_ms_per_query"], "exact ms": r["exact_ms_per_query"],
                       "build s": r["index"]["build_s"]} for r in runs], title="throughput and index"))
    out.append(table([{"n_tiles": r["n_tiles"], "peak RSS MB": r["server_peak_rss_mb"],
                       "model RSS MB": r["server_rss_model_mb"],
                       "anon RSS MB": r.get("server_rss_anon_mb"), "raw vec MB": r["raw_vector_mb"],
                       "added/raw": r["rss_added_over_raw"], "B/tile": r["bytes_per_tile"],
                       "index B/tile": r["index_bytes_per_tile"], "gpkg B/tile": r["gpkg_bytes_per_tile"]}
                      for r in runs], title="memory and disk"))
    ab = [{"n_tiles": r["n_tiles"], "query": q, "server": name, **{k: v[k] for k in ("p50_ms", "p95_ms", "p99_ms")}}
          for r in runs if r["server_threads_ab"] for q, d in r["server_threads_ab"].items() for name, v in d.items()]
    if ab:
        out.append(table(ab, title="server A/B (threads or runtime), same queries interleaved"))
    sw = [{"n_tiles": r["n_tiles"], **s} for r in runs for s in r["sweep"]]
    if sw:
        out.append(table(sw, title="recall@10 / in-process ms per query over M and ef"))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the search benchmark for each size and print tables, then the JSON line."""
    quiet_logs()
    args = parse_args(argv)
    info = machine()
    texts = query_texts(2 * args.n_queries)
    runs = []
    with tempfile.TemporaryDirectory(prefix="harma-bench-search-") as tmp:
        for n in args.n_tiles:
            runs.append(run_size(n, args, Path(tmp), texts))
            print(f"n_tiles={n}: text p50 {runs[-1]['p50_ms']:.1f} ms, recall@10 {runs[-1]['recall_at_10']:.3f}",
                  file=sys.stderr, flush=True)
    print(report(runs))
    last = runs[-1]
    result = {"bench": "search", "quick": args.quick, "machine": {**info, "loadavg_end": list(os.getloadavg())},
              **{k: last[k] for k in ("n_tiles", "model", "runtime", "p50_ms", "p95_ms", "p99_ms", "recall_at_10")},
              "goals": GOALS, "runs": runs}
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
