"""harma_core: HarMA-adapted CLIP models for remote-sensing retrieval (no Flask, no QGIS here).

Importing it imports no torch: serving (harma_core.serving, embed, prompts, querybank) runs on ONNX Runtime and
numpy; create_model and LoadedModel (the torch model zoo, the [train] extra) load on first use."""

from typing import Any

from harma_core.embed import embed_images, embed_texts
from harma_core.errors import (
    AdapterError,
    ConfigError,
    DataError,
    HarmaError,
    InputError,
    UnknownModelError,
    WeightsUnavailableError,
)

__version__ = "0.1.0"
__all__ = [
    "AdapterError", "ConfigError", "DataError", "HarmaError", "InputError", "LoadedModel", "UnknownModelError",
    "WeightsUnavailableError",
    "create_model", "embed_images", "embed_texts",
]


def __getattr__(name: str) -> Any:
    """create_model and LoadedModel import the torch zoo only when asked for."""
    if name in ("create_model", "LoadedModel"):
        from harma_core import zoo

        return getattr(zoo, name)
    raise AttributeError(f"module 'harma_core' has no attribute {name!r}")
