"""The Flask API through test_client: JSON errors and codes, path security, token, jobs, previews."""

from __future__ import annotations

import io
import json
import os

import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.windows import Window
from server_testutil import GEOTIFF_DIR, SMALL, TINY

from server.app import create_app
from server.services import Services


@pytest.fixture()
def allowed(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    return root


@pytest.fixture()
def client(fresh, allowed, model):
    app = create_app({"STORE": str(fresh), "ALLOWED_ROOTS": [str(GEOTIFF_DIR), str(allowed)],
                      "LOADED_MODEL": model, "BATCH_SIZE": 8})
    yield app.test_client()
    app.extensions["harma"].jobs.shutdown()


def post(client, path, body):
    return client.post("/api/v1" + path, json=body)


def error_of(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    assert "Traceback" not in resp.get_data(as_text=True)
    return body["detail"]


def test_health_and_collections(client, model):
    h = client.get("/api/v1/health").get_json()
    assert h["status"] == "ok" and h["model"] == model.identity and h["collections"] == ["base"]
    listed = client.get("/api/v1/collections").get_json()["collections"]
    assert listed[0]["name"] == "base" and listed[0]["tiles"] == 22
    assert post(client, "/collections", {"name": "new", "tile_size": 128}).status_code == 201
    assert post(client, "/collections", {"name": "new", "tile_size": 128}).status_code == 200  # idempotent
    assert "already exists with tiling" in error_of(post(client, "/collections", {"name": "new"}), 409)
    assert "is not allowed" in error_of(post(client, "/collections", {"name": "../x"}), 400)
    assert "unknown tiling parameter" in error_of(post(client, "/collections", {"name": "y", "size": 3}), 400)
    assert "views=3 is not supported" in error_of(post(client, "/collections", {"name": "y", "views": 3}), 400)
    assert post(client, "/collections", {"name": "one", "tile_size": 128, "views": 1}).status_code == 201
    assert post(client, "/collections", {"name": "one", "tile_size": 128}).status_code == 200  # its own views
    assert "already exists with tiling" in error_of(post(client, "/collections", {"name": "one", "tile_size": 128,
                                                                                  "views": 8}), 409)
    # another model is loaded from its source (test_server_models.py); one that does not load is a 400
    assert "cannot load model 'no-such-model'" in error_of(post(client, "/collections", {"name": "z", "model":
                                                                                          "no-such-model"}), 400)
    assert "is not a model name" in error_of(post(client, "/collections", {"name": "z", "model": "/etc"}), 403)
    assert client.delete("/api/v1/collections/new").status_code == 200
    assert "no collection named 'new'" in error_of(client.get("/api/v1/collections/new"), 404)


def test_raster_paths_must_stay_under_allowed_roots(client, allowed):
    os.symlink("/etc", allowed / "escape")
    cases = [
        (["/etc/passwd"], 403, "outside the allowed roots"),
        ([str(GEOTIFF_DIR / ".." / ".." / ".." / "etc" / "passwd")], 403, "outside the allowed roots"),
        ([str(allowed / "escape" / "passwd")], 403, "outside the allowed roots"),
        ([str(allowed / "missing.tif")], 404, "does not exist"),
        (["relative/scene.tif"], 400, "is relative"),
        ([], 400, "give {\"paths\""),
    ]
    for paths, status, match in cases:
        assert match in error_of(post(client, "/collections/base/rasters", {"paths": paths}), status)
    assert "no collection named 'nope'" in error_of(
        post(client, "/collections/nope/rasters", {"paths": [str(SMALL)]}), 404)


def test_request_shape_errors_are_json(client):
    assert "must be JSON" in error_of(client.post("/api/v1/search", data="text=river"), 400)
    assert "text '' is empty" in error_of(post(client, "/search", {"text": ""}), 400)
    error_of(client.post("/api/v1/search", data="x" * (2 << 20), content_type="application/json"), 413)
    error_of(client.get("/api/v1/no/such/route"), 404)
    error_of(client.put("/api/v1/health"), 405)


def test_unexpected_failures_are_json_without_traceback(client, fresh, monkeypatch):
    os.remove(fresh / "base" / "tiles.gpkg")  # a collection broken under the server's feet is listed as broken
    assert client.get("/api/v1/collections/base").get_json()["reason"] == "tiles.gpkg is missing"
    monkeypatch.setattr(Services, "health", lambda self: 1 / 0)  # a bug in any view
    detail = error_of(client.get("/api/v1/health"), 500)
    assert "server log" in detail and "ZeroDivisionError" in detail and "Traceback" not in detail


def test_index_job_search_and_previews(client):
    assert post(client, "/collections", {"name": "tiny", "tile_size": 512}).status_code == 201
    resp = post(client, "/collections/tiny/rasters", {"paths": [str(GEOTIFF_DIR)]})
    assert resp.status_code == 202 and resp.headers["Location"].startswith("/api/v1/jobs/")
    job_id = resp.get_json()["job_id"]
    client.application.extensions["harma"].jobs.wait(job_id, timeout=600)
    status = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert status["state"] == "done" and status["done"] == status["total"] > 0 and status["errors"] == []
    assert status["result"]["rasters"] == 6
    assert client.delete(f"/api/v1/jobs/{job_id}").get_json()["state"] == "done"  # finished jobs stay done
    error_of(client.get("/api/v1/jobs/nope"), 404)

    fc = post(client, "/search", {"text": "houses and trees", "k": 3, "collections": ["tiny"]})
    assert fc.status_code == 200 and fc.mimetype == "application/geo+json"
    hit = fc.get_json()["features"][0]["properties"]
    png = client.get(f"/api/v1/tiles/tiny/{hit['tile_id']}.png?size=64")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert max(Image.open(io.BytesIO(png.data)).size) == 64
    tif = client.get(f"/api/v1/tiles/tiny/{hit['tile_id']}.tif")
    assert tif.status_code == 200
    col, row, w, h = hit["window"]
    with rasterio.open(io.BytesIO(tif.data)) as crop, rasterio.open(hit["raster"]) as src:
        assert crop.crs == src.crs and (crop.width, crop.height, crop.count) == (w, h, src.count)
        assert crop.transform.almost_equals(src.transform @ Affine.translation(col, row))
        assert (crop.read() == src.read(window=Window(col, row, w, h))).all()
    error_of(client.get("/api/v1/tiles/tiny/99999.png"), 404)
    for ext in ("png", "tif"):  # beyond SQLite's and hnswlib's 64-bit labels: the client's mistake, not a 500
        assert "largest tile id" in error_of(client.get(f"/api/v1/tiles/tiny/{2**64}.{ext}"), 400)

    removed = client.delete("/api/v1/collections/tiny/rasters", json={"paths": [hit["raster"]]}).get_json()
    assert removed["removed_tiles"] >= 1
    again = post(client, "/search", {"text": "houses and trees", "k": 20, "collections": ["tiny"]}).get_json()
    assert hit["raster"] not in {f["properties"]["raster"] for f in again["features"]}
    error_of(client.get(f"/api/v1/tiles/tiny/{hit['tile_id']}.png"), 404)


def test_collection_built_with_another_model_is_refused(client, fresh, model):
    manifest = json.loads((fresh / "base" / "manifest.json").read_text())
    manifest["model"]["identity"] = "ViT-B-32:w=deadbeef:a=none"
    (fresh / "base" / "manifest.json").write_text(json.dumps(manifest))
    detail = error_of(post(client, "/search", {"text": "a river", "collections": ["base"]}), 409)
    assert "ViT-B-32:w=deadbeef:a=none" in detail and model.identity in detail
    assert "ViT-B-32" in error_of(post(client, "/collections/base/rasters", {"paths": [str(TINY)]}), 409)
    everything = post(client, "/search", {"text": "a river"}).get_json()  # no collections named: skip it
    assert everything["features"] == [] and everything["skipped_collections"][0]["collection"] == "base"


def test_token_is_required_when_configured(fresh, model):
    app = create_app({"STORE": str(fresh), "LOADED_MODEL": model, "TOKEN": "s3cret"})
    c = app.test_client()
    assert "missing or wrong token" in error_of(c.get("/api/v1/health"), 401)
    error_of(c.get("/api/v1/health", headers={"Authorization": "Bearer wrong"}), 401)
    assert c.get("/api/v1/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/api/v1/health", headers={"X-Harma-Token": "s3cret"}).status_code == 200
    app.extensions["harma"].jobs.shutdown()
