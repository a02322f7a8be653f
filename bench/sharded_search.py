#!/usr/bin/env python3
"""One hnswlib index against S index shards of the same tiles, in one run: recall@10 and HTTP latency.

The same synthetic unit vectors (clustered, as real embeddings are) go into two collections of one store: one
with a single index, one split into S shards by id range, exactly as a sharded collection stores them. Recall@10
of each against exact search is measured through `Collection.query`, the merge the server runs. Then one live
`python -m server` answers uncached text queries (distinct captions: real text encoding), by-example queries
and by-example queries in a small area, alternating the collection query by query. Run
`python bench/sharded_search.py [--quick] [--n-tiles N] [--shards S]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _collection import build_index, dataset, exact_topk, grid_bbox, write_collection
from _common import emit, machine, peak_rss_mb, quiet_logs, table
from _http_load import Server, query_texts, stats

K = 10


def build(vectors: np.ndarray, shards: int, threads: int) -> tuple[list[Any], float]:
    """`shards` indexes over equal consecutive id ranges of `vectors` (labels from 1), and the build seconds."""
    from server.store.store import INDEX_EF_CONSTRUCTION, INDEX_M

    size = -(-len(vectors) // shards)
    out, secs = [], 0.0
    for s in range(0, len(vectors), size):
        index, t = build_index(vectors[s:s + size], INDEX_M, INDEX_EF_CONSTRUCTION, threads, first_label=s + 1)
        out.append(index)
        secs += t
    return out, secs


def recall(store: Path, name: str, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(recall@10, ms per query) of the collection's own top-k (every shard queried, merged) in this process."""
    from server.store.store import Store

    col = Store(store).get(name)
    t0 = time.perf_counter()
    found = [[i for i, _ in col.query(q, K)] for q in queries]
    ms = (time.perf_counter() - t0) / len(queries) * 1e3
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / (K * len(queries)), ms


def interleaved(server: Server, names: list[str], bodies: list[list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Latency per collection; query i goes to every collection, starting with a different one each time."""
    secs: dict[str, list[float]] = {n: [] for n in names}
    for i in range(len(bodies[0])):
        order = list(range(len(names)))[i % len(names):] + list(range(len(names)))[:i % len(names)]
        for j in order:
            t, fc = server.request("POST", "/search", bodies[j][i])
            if not fc["features"]:
                raise RuntimeError(f"search {bodies[j][i]} returned no hits")
            secs[names[j]].append(t)
    return {n: stats(v) for n, v in secs.items()}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Build both collections, measure recall in process, then latency over HTTP."""
    store = tmp / "store"
    server = Server(store, args.model, tmp / "server.log", runtime=args.runtime)  # loads while we build
    try:
        vectors, queries = dataset(args.n_tiles, args.dim, args.n_recall, "clustered")
        truth = exact_topk(vectors, queries, K)
        server.wait()
        _, health = server.request("GET", "/health")
        if health["dim"] != args.dim:
            raise RuntimeError(f"server model has dim {health['dim']}, vectors have {args.dim}; pass --dim")
        names, build_s = ["one_index", f"{args.shards}_shards"], {}
        for name, count in zip(names, (1, args.shards)):
            shards, build_s[name] = build(vectors, count, args.build_threads)
            write_collection(store, name, health["model"], health["model_name"], shards if count > 1 else shards[0],
                             args.n_tiles)
            del shards
            print(f"built {name}: {build_s[name]:.0f} s", file=sys.stderr, flush=True)
        print("measuring recall and latency", file=sys.stderr, flush=True)
        quality = {n: dict(zip(("recall_at_10", "in_process_ms"), recall(store, n, queries, truth))) for n in names}
        rng = np.random.default_rng(7)
        ids = rng.integers(1, args.n_tiles + 1, args.n_queries)
        texts = query_texts(len(names) * (args.n_queries + 1))
        bbox = grid_bbox(args.n_tiles, args.bbox_fraction)
        for j, n in enumerate(names):  # open each collection, compute its query-bank offsets, warm the encoder
            server.request("POST", "/search", {"k": K, "tile_id": 1, "collection": n})
            server.request("POST", "/search", {"k": K, "text": texts[-1 - j], "collections": [n]})
        kinds = {
            "text_uncached": [[{"k": K, "text": texts[j * args.n_queries + i], "collections": [n]}
                               for i in range(args.n_queries)] for j, n in enumerate(names)],
            "by_example": [[{"k": K, "tile_id": int(t), "collection": n} for t in ids] for n in names],
            "by_example_in_area": [[{"k": K, "tile_id": int(t), "collection": n, "bbox": bbox}
                                    for t in ids[:max(5, args.n_queries // 4)]] for n in names],
        }
        latency = {kind: interleaved(server, names, bodies) for kind, bodies in kinds.items()}
        _, listing = server.request("GET", "/collections")
        shard_counts = {c["name"]: c.get("index_shards") for c in listing["collections"]}
        peak = peak_rss_mb(server.proc.pid)
    finally:
        server.stop()
    return {"names": names, "quality": quality, "latency": latency, "build_s": build_s,
            "index_shards": shard_counts, "server_peak_rss_mb": peak, "runtime": health.get("runtime"),
            "model": health["model"]}


def main(argv: list[str] | None = None) -> None:
    """Parse options, run, print tables and the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k tiles, 40 queries per kind (about a minute)")
    ap.add_argument("--n-tiles", type=int, help="tiles in each collection (default 1,000,000; quick 20,000)")
    ap.add_argument("--shards", type=int, default=4, help="index shards of the sharded collection (default 4)")
    ap.add_argument("--queries", type=int, dest="n_queries", help="queries per kind (quick 40, full 200)")
    ap.add_argument("--recall-queries", type=int, dest="n_recall", help="held-out queries for recall (100/500)")
    ap.add_argument("--dim", type=int, default=256, help="vector dimension (the server model's)")
    ap.add_argument("--model", default="harma-lite", help="model the server runs (text queries use it)")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"), help="the server's runtime")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--bbox-fraction", type=float, default=0.01, help="share of the grid an area query covers")
    args = ap.parse_args(argv)
    args.n_tiles = args.n_tiles or (20_000 if args.quick else 1_000_000)
    args.n_queries = args.n_queries or (40 if args.quick else 200)
    args.n_recall = args.n_recall or (100 if args.quick else 500)
    if args.shards < 2:
        sys.exit("--shards must be at least 2 (the comparison is against one index)")
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="harma-sharded-") as tmp:
        res = run(args, Path(tmp))
    one, many = res["names"]
    rows = [{"collection": n, "shards": res["index_shards"].get(n), **res["quality"][n],
             **{f"{kind}_p50_ms": res["latency"][kind][n]["p50_ms"] for kind in res["latency"]},
             "build_s": res["build_s"][n]} for n in res["names"]]
    print(table(rows, title=f"{args.n_tiles:,} tiles, one index against {args.shards} shards "
                            f"(runtime {res['runtime']}, {args.n_queries} queries per kind, interleaved)"))
    ratios = {kind: res["latency"][kind][many]["p50_ms"] / res["latency"][kind][one]["p50_ms"]
              for kind in res["latency"]}
    emit({"bench": "sharded_search", "machine": machine(), "n_tiles": args.n_tiles, "shards": args.shards,
          "k": K, **res, "p50_ratio_sharded_over_one": ratios,
          "recall_delta": res["quality"][many]["recall_at_10"] - res["quality"][one]["recall_at_10"]})


if __name__ == "__main__":
    main()
