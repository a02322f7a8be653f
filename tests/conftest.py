"""Shared fixtures: the real shared data folder and one harma-lite model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"tests read real data from {SHARED_DATA}; place shared/ beside the repo"
    return SHARED_DATA


@pytest.fixture(scope="session")
def lite():
    """The offline default model, built once (base weights + shipped adapter if present)."""
    from harma_core import create_model

    return create_model("harma-lite", device="cpu")
