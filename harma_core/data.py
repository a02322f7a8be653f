"""Torch datasets over reader Items (images decoded on demand), plus the readers' names for old imports.

The readers themselves live in harma_core.readers; this module only depends on them, never the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from harma_core.readers import (  # noqa: F401  (re-exported: the names callers import from here)
    SPLIT_COLUMN,
    Item,
    PolygonSource,
    ReadReport,
    assign_splits,
    load_dataset,
    normalize_caption,
    read_harma_json,
    read_karpathy,
    read_polygon_tiles,
    read_table,
)

log = logging.getLogger("harma_core.data")


def flatten_captions(items: Sequence[Item]) -> tuple[list[str], list[int]]:
    """All captions in item order, and for each the index of its item."""
    captions: list[str] = []
    image_index: list[int] = []
    for i, it in enumerate(items):
        captions.extend(it.captions)
        image_index.extend([i] * len(it.captions))
    return captions, image_index


def decode_image(image: str | np.ndarray) -> Image.Image:
    """An RGB PIL image from a file path or an HxWx3 uint8 array."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    with Image.open(image) as im:
        return im.convert("RGB")


def _default_transform(im: Image.Image) -> torch.Tensor:
    """Float CHW tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class ImageDataset(torch.utils.data.Dataset):
    """One sample per item: (transform(image), item_index); undecodable images become black and are logged."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], Any] | None = None,
                 fallback_size: int = 224) -> None:
        self.items = list(items)
        self.transform = transform or _default_transform
        self.fallback_size = fallback_size

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """Decode item `index`; a black image (logged) when the file cannot be decoded."""
        item = self.items[index]
        try:
            return decode_image(item.image)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot decode image of %s (%s); using a black image", item.source, exc)
            return Image.new("RGB", (self.fallback_size, self.fallback_size))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.load(index)), index


class PairDataset(ImageDataset):
    """One sample per caption: (transform(image), caption_transform(caption), item_index)."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], Any] | None = None,
                 caption_transform: Callable[[str], str] | None = normalize_caption,
                 fallback_size: int = 224) -> None:
        super().__init__(items, transform, fallback_size)
        self.captions, self.image_index = flatten_captions(self.items)
        self.caption_transform = caption_transform or str  # str(s) is s: identity, and picklable

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[Any, str, int]:  # type: ignore[override]
        item_index = self.image_index[index]
        image = self.transform(self.load(item_index))
        return image, self.caption_transform(self.captions[index]), item_index
