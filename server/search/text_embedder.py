"""The text side of a model for searching: query vectors, cached per model (server/models.py keeps one each)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from harma_core.prompts import embed_query_pair


class TextEmbedder:
    """Text -> (plain, search) unit vectors with an LRU cache, so repeated queries skip the text encoder.

    The search vector of a keyword query is its template ensemble (harma_core.prompts); the plain vector is
    the words as typed, what the relevance gate reads. For longer queries the two are the same array.
    """

    def __init__(self, model: Any, size: int = 512) -> None:
        self.model = model
        self.size = size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> np.ndarray:
        """The search vector of one non-empty text."""
        return self.pair(text)[1]

    def pair(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(plain, search) vectors of one non-empty text."""
        key = " ".join(text.split())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        pair = embed_query_pair(self.model, key)  # one encoder call for the words and their phrasings
        for vec in pair:
            vec.setflags(write=False)
        with self._lock:
            self.misses += 1
            self._cache[key] = pair
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return pair
