"""The server on ONNX Runtime: /health says so, and text search ranks tiles as the torch server does."""

from __future__ import annotations

import pytest

from harma_core.onnx_runtime import with_runtime
from server.app import create_app

pytestmark = pytest.mark.slow


def _ask(model, store) -> tuple[dict, list[int], list[float]]:
    app = create_app({"STORE": str(store), "LOADED_MODEL": model, "BATCH_SIZE": 8})
    try:
        client = app.test_client()
        health = client.get("/api/v1/health").get_json()
        resp = client.post("/api/v1/search", json={"text": "a harbour with boats", "k": 8, "dedupe": False})
        assert resp.status_code == 200, resp.get_json()
        props = [f["properties"] for f in resp.get_json()["features"]]
        return health, [p["tile_id"] for p in props], [p["cosine"] for p in props]
    finally:
        app.extensions["harma"].close()


def test_onnx_server_reports_its_runtime_and_ranks_like_torch(model, fresh):
    torch_health, torch_ids, torch_scores = _ask(model, fresh)
    onnx_health, onnx_ids, onnx_scores = _ask(with_runtime(model, "onnx"), fresh)
    assert torch_health["runtime"] == "torch" and onnx_health["runtime"] == "onnx"
    assert onnx_health["model"] == torch_health["model"]  # same identity: collections serve both runtimes
    assert onnx_ids == torch_ids
    assert onnx_scores == pytest.approx(torch_scores, abs=1e-3)
