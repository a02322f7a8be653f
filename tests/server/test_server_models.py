"""Several models, one server, over real HTTP: each collection searched and indexed with its own model, text
searches merged across models, models reported, a collection whose model source is gone skipped with the reason.

The second model is harma-tiny exported with tools/export_model.py into a model folder under an allowed root
(served without torch, like the default harma-lite)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from server_testutil import GEOTIFF_DIR, REPO, SMALL, TINY, call

RASTERS = [str(SMALL), str(TINY)]  # 22 tiles at 128 px


@contextmanager
def serving(store: Path, *roots: Path) -> Iterator[str]:
    """A `python -m server` on the store with the default model (harma-lite); yields its base URL."""
    args = [a for r in roots for a in ("--allowed-root", str(r))]
    proc = subprocess.Popen([sys.executable, "-m", "server", "--store", str(store), "--host", "127.0.0.1",
                             "--port", "0", "--batch-size", "8", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, seen = None, []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if m := re.search(r"serving on (http://127\.0\.0\.1:\d+/api/v1)", line):
            base = m.group(1)
            break
    assert base, "server did not start:\n" + "".join(seen)
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # a full log pipe would block the server
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def wait(base: str, job: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """The finished job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = call(base, "GET", f"/jobs/{job['job_id']}")[1]
        if state["state"] not in ("queued", "running"):
            assert state["state"] == "done", state
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job['job_id']} not done after {timeout} s")


def search(base: str, **body: Any) -> dict[str, Any]:
    """A search answered 200."""
    status, out = call(base, "POST", "/search", body)
    assert status == 200, out
    return out


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """harma-tiny exported by tools/export_model.py into a model folder (a root of its own)."""
    root = tmp_path_factory.mktemp("models")
    out = subprocess.run([sys.executable, "tools/export_model.py", "--model", "harma-tiny", "--out",
                          str(root / "tiny"), "--precision", "fp32"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "tiny"


@pytest.fixture(scope="module")
def two_models(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, store) of a harma-lite server whose store holds 'lite' (harma-lite) and 'tiny' (the folder)."""
    store = tmp_path_factory.mktemp("two_models_store")
    with serving(store, GEOTIFF_DIR, tiny_folder.parent) as base:
        assert call(base, "POST", "/collections", {"name": "lite", "tile_size": 128})[0] == 201
        status, made = call(base, "POST", "/collections", {"name": "tiny", "tile_size": 128,
                                                           "model": str(tiny_folder)})
        assert status == 201, made
        for name in ("lite", "tiny"):
            wait(base, call(base, "POST", f"/collections/{name}/rasters", {"paths": RASTERS})[1])
        yield base, store


def test_each_collection_records_and_reports_its_model(two_models: tuple[str, Path], tiny_folder: Path) -> None:
    base, store = two_models
    tiny_id = json.loads((tiny_folder / "model.json").read_text())["identity"]
    health = call(base, "GET", "/health")[1]
    lite_id = health["model"]
    assert tiny_id != lite_id and health["default_model"]["source"] == "harma-lite"
    manifests = {n: json.loads((store / n / "manifest.json").read_text())["model"] for n in ("lite", "tiny")}
    assert manifests["lite"]["source"] == "harma-lite" and manifests["tiny"]["source"] == str(tiny_folder)
    assert manifests["tiny"]["identity"] == tiny_id and manifests["tiny"]["dim"] == 64  # indexed by its own model

    listing = call(base, "GET", "/collections")[1]
    models = {c["name"]: c["model"] for c in listing["collections"]}
    assert models["lite"] | {"dim": 0} == {"identity": lite_id, "name": "harma-lite", "source": "harma-lite",
                                           "dim": 0, "state": "loaded"}
    assert (models["tiny"]["identity"], models["tiny"]["source"], models["tiny"]["state"]) == \
        (tiny_id, str(tiny_folder), "loaded")
    available = {m["identity"]: m for m in listing["models"]}
    assert listing["default_model"] == lite_id and available[lite_id]["default"] and available[tiny_id]["loaded"]
    assert {m["collection"]: m["identity"] for m in health["collection_models"]} == {"lite": lite_id, "tiny": tiny_id}
    assert {m["identity"] for m in health["models"]} == {lite_id, tiny_id}

    # an existing name with another model is refused, naming the model to give
    status, err = call(base, "POST", "/collections", {"name": "tiny", "tile_size": 128})
    assert status == 409 and str(tiny_folder) in err["detail"]
    assert call(base, "POST", "/collections", {"name": "tiny", "tile_size": 128, "model": str(tiny_folder)})[0] == 200


def test_one_text_search_spans_both_models_each_scored_by_its_own(two_models: tuple[str, Path]) -> None:
    base, _ = two_models
    both = search(base, text="a river", k=44, dedupe=False)  # all collections: every one whose model loads
    assert not both["skipped_collections"] and both["query"]["collections"] == ["lite", "tiny"]
    ids = {m["identity"]: m["collections"] for m in both["models"]}
    assert len(ids) == 2 and sorted(sum(ids.values(), [])) == ["lite", "tiny"]
    feats = [f["properties"] for f in both["features"]]
    assert len(feats) == 44 and {p["collection"] for p in feats} == {"lite", "tiny"}
    # harma-tiny ships no calibration: relevance does not compare across the two, the merge says so
    assert both["scoring"]["merged_by"] == "cosine" == both["scoring"]["ranked_by"]
    assert [p["score"] for p in feats] == sorted((p["score"] for p in feats), reverse=True)
    assert {s["model"]: s["calibrated"] for s in both["scoring"]["per_model"]} == \
        {m: m.startswith("harma-lite") for m in ids}
    for name in ("lite", "tiny"):
        alone = search(base, text="a river", k=22, dedupe=False, collections=[name])
        assert alone["model"] == next(m for m, cols in ids.items() if cols == [name])
        mine = {p["tile_id"]: (p["cosine"], p["relevance"]) for p in feats if p["collection"] == name}
        assert mine == {f["properties"]["tile_id"]: (f["properties"]["cosine"], f["properties"]["relevance"])
                        for f in alone["features"]}
        assert {p["model"] for p in feats if p["collection"] == name} == {alone["model"]}
    named = search(base, text="a river", k=44, dedupe=False, collections=["tiny", "lite"])
    assert [f["id"] for f in named["features"]] == [f["id"] for f in both["features"]]
    # min_score filters on relevance, which harma-tiny (no query bank) has none of
    kept = search(base, text="a river", k=44, min_score=0.0)
    assert {f["properties"]["collection"] for f in kept["features"]} == {"lite"}
    assert kept["skipped_collections"][0]["collection"] == "tiny" and "no query bank" in \
        kept["skipped_collections"][0]["reason"]
    status, err = call(base, "POST", "/search", {"text": "a river", "min_score": 0.0, "collections": ["lite", "tiny"]})
    assert status == 400 and "min_cosine" in err["detail"]


def test_search_by_example_stays_within_the_examples_model(two_models: tuple[str, Path]) -> None:
    base, _ = two_models
    tile = search(base, text="a river", k=1, collections=["tiny"])["features"][0]["properties"]["tile_id"]
    out = search(base, tile_id=tile, collection="tiny", k=5)
    assert {f["properties"]["collection"] for f in out["features"]} == {"tiny"}
    assert out["skipped_collections"][0]["collection"] == "lite"
    assert "own model" in out["skipped_collections"][0]["reason"]
    status, err = call(base, "POST", "/search", {"tile_id": tile, "collection": "tiny", "collections": ["lite", "tiny"]})
    assert status == 409 and "lite" in err["detail"]


def test_a_collection_whose_model_source_is_gone_is_skipped(two_models: tuple[str, Path], tiny_folder: Path,
                                                           tmp_path: Path) -> None:
    _, store = two_models
    copy = tmp_path / "store"  # a second server on a copy (the first holds its store), only harma-lite loaded
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns(".server.*", "*.lock"))
    moved = tiny_folder.with_name("tiny-moved")
    tiny_folder.rename(moved)
    try:
        with serving(copy, GEOTIFF_DIR, tiny_folder.parent) as base:
            out = search(base, text="a river", k=5)
            assert {f["properties"]["collection"] for f in out["features"]} == {"lite"}
            (skip,) = out["skipped_collections"]
            assert skip["collection"] == "tiny" and f"{tiny_folder} is gone" in skip["reason"]
            status, err = call(base, "POST", "/search", {"text": "a river", "collections": ["tiny"]})
            assert status == 409 and "is gone" in err["detail"] and "/reindex" in err["detail"]
            status, err = call(base, "POST", "/collections/tiny/rasters", {"paths": [str(TINY)]})
            assert status == 409 and "is gone" in err["detail"]
            model = call(base, "GET", "/collections/tiny")[1]["model"]
            assert model["state"] == "unavailable" and "is gone" in model["reason"]
            moved.rename(tiny_folder)  # back: loaded on the next use, no restart
            assert call(base, "GET", "/collections/tiny")[1]["model"]["state"] == "available"
            out = search(base, text="a river", k=44, dedupe=False)
            assert not out["skipped_collections"] and len(out["features"]) == 44
    finally:
        if moved.exists():
            moved.rename(tiny_folder)


def test_registry_keeps_the_default_and_drops_the_least_recently_used(tiny_folder: Path, tmp_path: Path) -> None:
    from harma_core.serving import load_model
    from server.models import ModelRegistry, ServedModel
    from server.search.text_embedder import TextEmbedder

    lite = load_model("harma-lite")
    registry = ModelRegistry(ServedModel(lite, TextEmbedder(lite), "harma-lite"), [tiny_folder.parent],
                             tmp_path / "runs", keep=1)
    tiny = registry.load(str(tiny_folder))
    assert tiny.identity != lite.identity and tiny.source == str(tiny_folder)
    listed = {m["identity"]: m["loaded"] for m in registry.available()}
    assert listed == {lite.identity: True, tiny.identity: False}  # kept one: the default
    assert registry.load("harma-lite") is registry.default
