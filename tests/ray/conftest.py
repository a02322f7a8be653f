"""Ray tests need a running cluster: tests/ray/run.sh starts a two-node one and sets HARMA_RAY_ADDRESS."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_address() -> str:
    """HOST:PORT of the test cluster."""
    address = os.environ.get("HARMA_RAY_ADDRESS")
    if not address:
        pytest.fail("no Ray cluster: run tests/ray/run.sh (it starts a two-node cluster and stops it after)")
    return address


@pytest.fixture(scope="session")
def model(lite: Any) -> Any:
    """The offline default model (the root conftest's), under the name the shared checks use."""
    return lite
