"""Serving without torch (harma_core.serving): the shipped harma-lite folder, exports, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harma_core.embed import embed_images, embed_texts
from harma_core.export import export_model
from harma_core.serving import SHIPPED_DIR, ModelFolderError, ServingModel, load_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a river winding through green forest", "overpass", "many planes are parked near a terminal",
         "dense residential", "Some boats are in a harbour next to the city."]


def _ucm_images(shared_data: Path, n: int) -> list[np.ndarray]:
    from harma_core.data import decode_image, load_dataset

    items = load_dataset(shared_data / "captions" / "ucm_captions", "val").items[:n]
    return [np.array(decode_image(it.image).convert("RGB")) for it in items]


@pytest.fixture(scope="module")
def shipped() -> ServingModel:
    return ServingModel(SHIPPED_DIR / "harma-lite")


def test_the_shipped_folder_serves_harma_lite_as_torch_does(shipped: ServingModel, lite, shared_data: Path) -> None:
    assert shipped.identity == lite.identity, "collections of the torch model must stay searchable"
    assert load_model("harma-lite").identity == lite.identity
    assert isinstance(load_model("harma-lite"), ServingModel), "the default serves from the shipped graphs"
    np.testing.assert_array_equal(shipped.token_ids(TEXTS), lite.tokenizer(TEXTS).numpy())
    images = _ucm_images(shared_data, 12)
    for views in (1, 8):
        cos = (embed_images(shipped, images, views=views) * embed_images(lite, images, views=views)).sum(1)
        assert cos.min() > 0.999, f"fp16 weights drift from torch at {views} views: {cos.min()}"
    assert (embed_texts(shipped, TEXTS) * embed_texts(lite, TEXTS)).sum(1).min() > 0.999


def test_a_fresh_export_matches_the_shipped_files(shipped: ServingModel, tmp_path: Path, shared_data: Path) -> None:
    fresh = ServingModel(export_model("harma-lite", tmp_path / "lite", precision=shipped.precision))
    want, got = (json.loads((f / "model.json").read_text()) for f in (shipped.folder, fresh.folder))
    for key in ("identity", "name", "dim", "image_size", "mean", "std", "tokenizer", "precision"):
        assert got[key] == want[key], key
    assert (fresh.folder / "tokenizer.json").read_bytes() == (shipped.folder / "tokenizer.json").read_bytes()
    images = _ucm_images(shared_data, 8)
    assert (embed_images(fresh, images) * embed_images(shipped, images)).sum(1).min() > 0.99999, \
        "the shipped graphs are stale: re-run tools/export_model.py --model harma-lite --out harma_core/weights/harma-lite"
    assert (embed_texts(fresh, TEXTS) * embed_texts(shipped, TEXTS)).sum(1).min() > 0.99999


def test_an_open_clip_model_exports_with_its_clip_tokenizer(tmp_path: Path) -> None:
    from harma_core.zoo import create_model

    folder = export_model("harma-tiny", tmp_path / "tiny", precision="fp32")
    served, torch_model = ServingModel(folder), create_model("harma-tiny", device="cpu")
    ids = served.token_ids(TEXTS)
    assert ids.shape == (len(TEXTS), 32), "a CLIP tower reads fixed-length rows"
    np.testing.assert_array_equal(ids, torch_model.tokenizer(TEXTS).numpy())
    check = json.loads((folder / "model.json").read_text())["check"]  # the export's own model (random weights)
    assert check["text_cosine"] > 0.9999 and check["image_cosine"] > 0.9999


def test_a_broken_model_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="has no model.json: export the model"):
        ServingModel(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="does not read as JSON"):
        ServingModel(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "harma-serving", "version": 1}))
    with pytest.raises(ModelFolderError, match="lacks image.onnx, text.onnx, tokenizer.json"):
        ServingModel(tmp_path)


def test_indexing_and_searching_import_no_torch(tmp_path: Path, shared_data: Path) -> None:
    """The serving path in a fresh process: load the model, index a real raster, search it; torch never loads."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from harma_core.serving import load_model
from server.indexing.pipeline import index_rasters
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.records import TilingParams
from server.store.store import Store
from server.app import create_app
model = load_model("harma-lite")
store = Store({str(tmp_path / "store")!r})
col = store.create("c", model, TilingParams(tile_size=128, views=1))
index_rasters(col, model, [{str(shared_data / "geotiff" / "aerial_colorado_0p15m_rgb.tif")!r}], read_workers=0)
hits = search(store, model, TextEmbedder(model), SearchRequest.from_json({{"text": "houses", "k": 3}}))
print(json.dumps({{"hits": len(hits["features"]), "torch": [m for m in sys.modules if m.split(".")[0] in
       ("torch", "torchvision", "open_clip", "transformers", "timm")]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"hits": 3, "torch": []}
