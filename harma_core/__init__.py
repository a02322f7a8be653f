"""harma_core: HarMA-adapted CLIP models for remote-sensing retrieval (no Flask, no QGIS here)."""

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
from harma_core.zoo import LoadedModel, create_model

__version__ = "0.1.0"
__all__ = [
    "AdapterError", "ConfigError", "DataError", "HarmaError", "InputError", "LoadedModel", "UnknownModelError",
    "WeightsUnavailableError",
    "create_model", "embed_images", "embed_texts",
]
