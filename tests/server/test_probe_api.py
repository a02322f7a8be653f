"""Issue 28, the API edge over real HTTP: /train's init and /model stay inside the allowed roots (with no file-
existence oracle), non-finite numbers, point labels, huge preview sizes and blank tokens get clear 400s, and a
collection deleted during searches is a 404, never a 500."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from faults_testutil import live_app
from server_testutil import REPO, SMALL, call, noise, write_raster
from shapely.geometry import Point, box

from server.errors import ServerError


@pytest.fixture()
def allowed(tmp_path: Path) -> Path:
    """An allowed root with a raster and a folder that looks like a training run."""
    root = tmp_path / "allowed"
    root.mkdir()
    write_raster(root / "scene.tif", noise(3, 128, 128, seed=2))
    gpd.GeoDataFrame({"x": ["a", "b"]}, geometry=[box(500000, 4999000, 500600, 4999600),
                                                  box(500600, 4998720, 501280, 4999400)],
                     crs="EPSG:32633").to_file(root / "l.gpkg")
    return root


@pytest.fixture()
def base(fresh: Path, allowed: Path, model: Any) -> str:
    """The real app over HTTP on a copy of the indexed store ('base', 22 tiles), allowed root `allowed`."""
    with live_app(fresh, model, ALLOWED_ROOTS=[str(allowed)]) as url:
        yield url


def _run_folder(folder: Path, base_model: str = "harma-lite") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base": base_model}))
    return folder


def test_train_init_outside_the_roots_is_refused(base: str, allowed: Path, tmp_path: Path) -> None:
    outside = _run_folder(tmp_path / "elsewhere" / "run")
    body = {"raster": [str(allowed / "scene.tif")], "labels": str(allowed / "l.gpkg"), "label_field": "x"}
    for init in (str(outside), "../elsewhere/run", "run"):
        status, err = call(base, "POST", "/train", {**body, "init": init})
        assert status in (400, 403) and "init" in err["detail"] and status != 500, (init, err)
    assert call(base, "GET", "/jobs")[1]["jobs"] == [], "no training job may start"


def test_train_init_accepts_what_it_means(fresh: Path, allowed: Path, model: Any) -> None:
    from server.app import create_app
    from server.training_job import _init_adapter

    app = create_app({"STORE": str(fresh), "ALLOWED_ROOTS": [str(allowed)], "LOADED_MODEL": model,
                      "LOCK_STORE": False})
    services = app.extensions["harma"]
    assert _init_adapter(services, "harma-lite") == "harma-lite"
    run = _run_folder(fresh / "runs" / "mine")
    assert _init_adapter(services, "mine") == str(run)
    inside = _run_folder(allowed / "run")
    assert _init_adapter(services, str(inside)) == str(inside)


@pytest.mark.parametrize("pair", [("ViT-B-32:/etc/passwd", "ViT-B-32:/etc/no-such-file.pt"),
                                  ("/etc/passwd", "/etc/no-such-file"),
                                  ("ViT-B-32:../../etc/passwd", "ViT-B-32:../../etc/no-such-file")])
def test_model_paths_outside_the_roots_read_the_same_whether_they_exist(base: str, pair: tuple[str, str]) -> None:
    (s1, e1), (s2, e2) = (call(base, "POST", "/model", {"model": m}) for m in pair)
    assert s1 == s2 == 403, (e1, e2)
    assert e1["detail"].replace(pair[0], "X") == e2["detail"].replace(pair[1], "X"), (e1, e2)
    assert "allowed roots" in e1["detail"]


def test_a_garbage_model_folder_is_a_400(base: str, allowed: Path) -> None:
    bad_json = allowed / "badjson"
    bad_json.mkdir()
    (bad_json / "adapter_config.json").write_text("{garbage")
    bad_weights = _run_folder(allowed / "badweights")
    (bad_weights / "adapter.safetensors").write_bytes(b"\x00garbage" * 10)
    for folder in (bad_json, bad_weights, allowed / "scene.tif"):
        status, err = call(base, "POST", "/model", {"model": str(folder)})
        assert status == 400 and "cannot load model" in err["detail"], (folder, status, err)


def test_nan_lr_is_refused_at_the_edge(base: str, allowed: Path) -> None:
    body = json.dumps({"raster": [str(allowed / "scene.tif")], "labels": str(allowed / "l.gpkg"),
                       "label_field": "x", "lr": 1.0})
    raw = body.replace('"lr": 1.0', '"lr": NaN').encode()
    status, err = call(base, "POST", "/train", raw=raw)
    assert status == 400 and "lr" in err["detail"] and "NaN" in err["detail"], err
    status, err = call(base, "POST", "/collections", raw=b'{"name": "n", "tile_size_m": Infinity}')
    assert status == 400 and "tile_size_m" in err["detail"], err


def test_point_labels_get_a_message_about_points(base: str, allowed: Path) -> None:
    labels = allowed / "points.gpkg"
    gpd.GeoDataFrame({"label": ["a", "b"]}, geometry=[Point(500100, 4999900), Point(500500, 4999500)],
                     crs="EPSG:32633").to_file(labels)
    status, err = call(base, "POST", "/train", {"raster": [str(allowed / "scene.tif")], "labels": str(labels),
                                                "label_field": "label"})
    assert status == 400 and "Point" in err["detail"] and "polygons" in err["detail"], err
    assert call(base, "GET", "/jobs")[1]["jobs"] == []


def test_a_huge_preview_size_is_a_400(base: str) -> None:
    for size in ("9" * 5000, "٣", "-1"):
        try:
            with urllib.request.urlopen(f"{base}/tiles/base/1.png?size={urllib.request.quote(size)}") as r:
                status, body = r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            status, body = e.code, json.loads(e.read())
        assert status == 400 and "size" in body["detail"] and len(body["detail"]) < 300, (size[:10], body)


def test_a_blank_token_is_refused(tmp_path: Path) -> None:
    from server.app import create_app

    for token in ("   ", " secret "):
        p = subprocess.run([sys.executable, "-m", "server", "--store", str(tmp_path / "s"), "--host", "0.0.0.0",
                            "--token", token], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "token is blank" in p.stderr and "Traceback" not in p.stderr, p.stderr
        with pytest.raises(ServerError, match="token is blank"):
            create_app({"STORE": str(tmp_path / "s"), "TOKEN": token, "LOADED_MODEL": object()})


def _search_until(url: str, stop: threading.Event, statuses: list[tuple[int, str]]) -> None:
    while not stop.is_set():
        s, body = call(url, "POST", "/search", {"text": "a beach", "k": 5, "collections": ["base"]})
        statuses.append((s, body.get("detail", "")))


def test_deleting_a_collection_during_searches_is_never_a_500(indexed: Path, tmp_path: Path, model: Any) -> None:
    for attempt in range(3):
        store = tmp_path / f"store{attempt}"
        shutil.copytree(indexed, store)
        statuses: list[tuple[int, str]] = []
        stop = threading.Event()
        with live_app(store, model, ALLOWED_ROOTS=[str(SMALL.parent)]) as url:
            threads = [threading.Thread(target=_search_until, args=(url, stop, statuses)) for _ in range(3)]
            for t in threads:
                t.start()
            while len(statuses) < 6:
                stop.wait(0.01)
            assert call(url, "DELETE", "/collections/base")[0] == 200
            stop.wait(0.3)
            stop.set()
            for t in threads:
                t.join(60)
        bad = [s for s in statuses if s[0] not in (200, 404)]
        assert not bad, bad[:3]
        assert statuses[-1][0] == 404
