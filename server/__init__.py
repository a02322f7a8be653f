"""HarMA Search server: tiling, collection store, indexing pipeline, search, and a thin Flask API."""

__version__ = "0.1.0"
