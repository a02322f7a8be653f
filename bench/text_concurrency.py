#!/usr/bin/env python3
"""Latency of uncached text queries with 1/4/16 concurrent clients: per-thread padding mask vs before (issue 17.2).

Each client thread embeds single queries of different lengths with `embed_texts` (what the server does for
an uncached query) through the real harma-lite model with its shipped adapter. Three ways of holding the
text tower's padding mask, interleaved round by round in the same run:
- `thread_local`: the fix (TokenMask in thread-local storage);
- `shared`: the old behaviour, one mask on the module for every thread (reproduces the race: counts errors
  and embeddings that differ from the single-threaded ones);
- `shared_lock`: the old mask made safe by a lock around each encode (the alternative fix).
Run `python bench/text_concurrency.py [--quick]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _common import emit, machine, median, percentile, quiet_logs, table

WORDS = ("a dense residential area with many buildings and green trees beside a wide river crossing "
         "the farmland near an airport with two runways and a parking lot").split()


def queries(n: int) -> list[str]:
    """n distinct queries of 1-20 words (distinct lengths pad differently)."""
    return [" ".join(WORDS[i % 7:i % 7 + 1 + (5 * i) % 20]) + f" {i}" for i in range(n)]


def masks(model) -> list:
    from harma_core.adapters import TokenMask

    found = {id(a._token_mask[0]): a._token_mask[0] for a in model.modules()
             if isinstance(getattr(a, "_token_mask", (None,))[0], TokenMask)}
    return list(found.values())


def run_clients(encode: Callable[[str], np.ndarray], texts: list[str], clients: int,
                want: dict[str, np.ndarray]) -> dict:
    """Latencies (s) of every request, wall time, errors and wrong embeddings, `clients` threads at once."""
    lat: list[float] = []
    errors = wrong = 0
    lock = threading.Lock()

    def one(text: str) -> None:
        nonlocal errors, wrong
        t0 = time.perf_counter()
        try:
            got = encode(text)
            bad = float(np.abs(got - want[text]).max()) > 1e-5
        except Exception:  # noqa: BLE001 - the old shared mask raises AdapterError under races
            got, bad = None, False
        dt = time.perf_counter() - t0
        with lock:
            lat.append(dt)
            errors += got is None
            wrong += bad

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, texts))
    return {"lat": lat, "wall": time.perf_counter() - t0, "errors": errors, "wrong": wrong}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    a = ap.parse_args()
    quiet_logs()
    from harma_core import create_model
    from harma_core.embed import embed_texts

    loaded = create_model("harma-lite", device="cpu")
    per_client, rounds = (4, 1) if a.quick else (8, 3)
    shared = types.SimpleNamespace()
    fresh = [m._local for m in masks(loaded.model)]
    big_lock = threading.Lock()

    def use(mode: str) -> None:
        for m, local in zip(masks(loaded.model), fresh):
            m._local = shared if mode.startswith("shared") else local  # one namespace: the old module state

    def encode(text: str) -> np.ndarray:
        return embed_texts(loaded, [text])[0]

    def locked(text: str) -> np.ndarray:
        with big_lock:
            return encode(text)

    modes = {"thread_local": encode, "shared": encode, "shared_lock": locked}
    texts = queries(per_client * max(a.clients))
    use("thread_local")
    want = {t: encode(t) for t in texts}  # single-threaded reference
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(rounds):
        for clients in a.clients:
            for mode, fn in modes.items():
                use(mode)
                results.setdefault((mode, clients), []).append(
                    run_clients(fn, texts[:per_client * clients], clients, want))
    use("thread_local")

    rows = []
    base_p50 = {c: median(sum((r["lat"] for r in results[("shared_lock", c)]), [])) for c in a.clients}
    for (mode, clients), runs in results.items():
        lat = sum((r["lat"] for r in runs), [])
        n = len(lat)
        rows.append({"mode": mode, "clients": clients, "requests": n,
                     "p50_ms": 1e3 * median(lat), "p90_ms": 1e3 * percentile(lat, 90),
                     "per_s": n / sum(r["wall"] for r in runs),
                     "p50_vs_lock": median(lat) / base_p50[clients],
                     "errors": sum(r["errors"] for r in runs), "wrong": sum(r["wrong"] for r in runs)})
    rows.sort(key=lambda r: (r["clients"], r["mode"]))
    one = {r["mode"]: r["p50_ms"] for r in rows if r["clients"] == min(a.clients)}
    for r in rows:
        r["p50_vs_1client"] = r["p50_ms"] / one[r["mode"]]
    print(table(rows, title="uncached single-text queries, harma-lite on CPU (latency per request)"))
    emit({"bench": "text_concurrency", "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
