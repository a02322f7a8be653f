"""Shared fixtures of the server tests: one real model for the session, generated rasters in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from server_testutil import write_raster


@pytest.fixture(scope="session")
def model() -> Any:
    """The offline default model, created once for the whole session."""
    from harma_core import create_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return create_model("harma-lite", device="cpu")


@pytest.fixture()
def make_raster(tmp_path: Path):
    """Factory writing generated rasters into tmp_path."""

    def make(name: str, data: np.ndarray, **kwargs: Any) -> Path:
        return write_raster(tmp_path / name, data, **kwargs)

    return make


@pytest.fixture(scope="session")
def indexed(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store folder with collection 'base': two small real rasters at 128 px tiles (22 tiles), read-only."""
    from server_testutil import SMALL, TINY

    from server.indexing.pipeline import index_rasters
    from server.store.records import TilingParams
    from server.store.store import Store

    root = tmp_path_factory.mktemp("indexed")
    col = Store(root).create("base", model, TilingParams(tile_size=128))
    report = index_rasters(col, model, [str(SMALL), str(TINY)], batch_size=8)
    assert report.rasters == 2 and report.tiles == 22, report
    return root


@pytest.fixture()
def fresh(indexed: Path, tmp_path: Path) -> Path:
    """A private copy of the indexed store, free to change."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(indexed, root)
    return root
