"""Checks shared by the shard tests and the Ray tests: two collections hold the same tiles and vectors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from server.search.search import SearchRequest, TextEmbedder, search
from server.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ("a beach with blue sea", "green forest", "buildings and roads")


def tiles_of(store: Store, name: str) -> dict[int, tuple[Any, ...]]:
    """Tile id -> (raster, window, footprint WKT rounded) of a collection's live tiles."""
    col = store.get(name)
    rows = col.table.rows(sorted(col.table.live_ids()))
    return {i: (r["raster"], (r["col_off"], r["row_off"], r["width"], r["height"]), r["geom"]) for i, r in rows.items()}


def assert_same_collection(store: Store, a: str, b: str, model: Any, min_cos: float = 0.9999) -> None:
    """Identical tile ids, windows and footprints, vectors with cosine >= min_cos, same top-10 per query."""
    ta, tb = tiles_of(store, a), tiles_of(store, b)
    assert ta.keys() == tb.keys(), f"tile ids differ: {sorted(set(ta) ^ set(tb))[:10]}"
    for i in ta:
        assert ta[i][:2] == tb[i][:2], f"tile {i}: {ta[i][:2]} != {tb[i][:2]}"
        assert ta[i][2].equals_exact(tb[i][2], 1e-12), f"tile {i}: footprints differ"
    ca, cb = store.get(a), store.get(b)
    cos = np.array([float(ca.vector(i) @ cb.vector(i)) for i in ta])
    assert cos.min() >= min_cos, f"lowest cosine {cos.min():.6f} at tile {list(ta)[int(cos.argmin())]}"
    embedder = TextEmbedder(model)
    for text in QUERIES:
        hits = [[f["properties"]["tile_id"] for f in search(store, model, embedder, SearchRequest.from_json(
            {"text": text, "k": 10, "collections": [c]}))["features"]] for c in (a, b)]
        assert hits[0] == hits[1], f"top-10 for {text!r} differ: {hits}"


def index_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run tools/index.py as a user would; returns the finished process (output captured)."""
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "index.py"), *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=900)
    if check:
        assert p.returncode == 0, f"index.py {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-3000:]}"
    return p
