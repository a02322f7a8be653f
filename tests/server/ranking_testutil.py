"""Ranking-test material: a real caption bank (train captions embedded by the real model) and a store of
real rasters with overlapping edge tiles."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from server_testutil import GEOTIFF_DIR

from harma_core.data import flatten_captions, load_dataset, normalize_caption
from harma_core.embed import embed_texts
from harma_core.querybank import QueryBank
from server.indexing.pipeline import index_rasters
from server.store.records import TilingParams
from server.store.store import Store

BAHAMAS = GEOTIFF_DIR / "landsat7_bahamas_rgb.tif"  # 791 x 718: the last column of 256 px tiles overlaps 91 %
NAIP = GEOTIFF_DIR / "naip_north_dakota_2020_rgbn.tif"  # farmland, 12 tiles
RASTERS = [BAHAMAS, NAIP, GEOTIFF_DIR / "landsat8_grenada_rgb.tif", GEOTIFF_DIR / "landsat_pucallpa_peru_2020.tif"]
CAPTIONS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "captions").resolve()


def caption_bank(model: Any, n: int = 1000) -> Any:
    """A real query bank of n train captions of RSICD and UCM (seed 0), embedded; captions only (no expansion)."""
    items = load_dataset(CAPTIONS / "rsicd", "train").items + load_dataset(CAPTIONS / "ucm_captions", "train").items
    captions, _ = flatten_captions(items)
    picked = random.Random(0).sample(sorted(set(captions)), n)
    return QueryBank(embeddings=embed_texts(model, [normalize_caption(c) for c in picked]),
                     identity=f"test-bank:{model.identity}:{n}", beta=20.0)


def geo_store(model: Any, root: Path) -> Path:
    """A store with collection 'geo': the four RASTERS at 256 px tiles (34 tiles, overlapping edge tiles)."""
    col = Store(root).create("geo", model, TilingParams(tile_size=256))
    report = index_rasters(col, model, [str(p) for p in RASTERS], batch_size=8)
    assert report.tiles == 34, report
    return root
