"""Batch embedding of images and texts into L2-normalised float32 numpy arrays.

Models whose towers run in ONNX Runtime (harma_core.serving.ServingModel, harma_core.onnx_runtime.OnnxModel)
are embedded with numpy and Pillow alone: this module imports no torch. A torch model is handed to
harma_core.embed_torch, imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from harma_core.errors import InputError
from harma_core.views import view_turns

ImageLike = np.ndarray | Image.Image


def runs_onnx(model: Any) -> bool:
    """True when a model's towers run in ONNX Runtime (it has encode_images / encode_tokens / token_ids)."""
    return getattr(model, "runtime", "torch") == "onnx"


def pixel_batch(images: Sequence[ImageLike], size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB images -> normalised float32 [B, 3, size, size]: bicubic, antialiased when shrinking (Pillow's float
    resize, which matches torch's antialiased bicubic to ~2e-5), then (x - mean) / std."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, im in enumerate(images):
        if isinstance(im, Image.Image):
            im = np.array(im.convert("RGB"))
        if im.ndim != 3 or im.shape[2] != 3:
            raise InputError(f"expected an HxWx3 image, got shape {im.shape}")
        if im.shape[:2] == (size, size):
            out[i] = im.transpose(2, 0, 1)
            out[i] /= 255.0
            continue
        for c in range(3):
            band = Image.fromarray(np.ascontiguousarray(im[..., c], dtype=np.float32) / 255.0)
            out[i, c] = np.asarray(band.resize((size, size), Image.Resampling.BICUBIC))
    np.clip(out, 0.0, 1.0, out=out)
    out -= np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    out /= np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return out


def embed_images(loaded: Any, images: Sequence[ImageLike], batch_size: int = 64, views: int = 1) -> np.ndarray:
    """Embed RGB images (PIL or uint8 HxWx3 arrays, any size) -> (N, dim) float32, unit rows.

    `views` > 1 embeds each image as the unit mean over that many of its rotations and mirrorings
    (harma_core.views): overhead imagery has no "up", and the mean is a steadier embedding. Costs `views` x.
    """
    if not runs_onnx(loaded):
        from harma_core.embed_torch import embed_images_torch

        return embed_images_torch(loaded, images, batch_size, views)
    turns = view_turns(views)
    out = np.empty((len(images), loaded.dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = pixel_batch(images[start:start + batch_size], loaded.image_size, loaded.mean, loaded.std)
        feats = sum(loaded.encode_images(np.ascontiguousarray(turn(batch))) for turn in turns)
        if len(turns) > 1:
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        out[start:start + len(batch)] = feats
    return out


def embed_items(loaded: Any, items: Sequence, batch_size: int = 64, decode_chunk: int = 256,
                views: int = 1) -> np.ndarray:
    """Embed the images of dataset Items (harma_core.data), decoding `decode_chunk` at a time to bound memory."""
    from harma_core.data import decode_image

    if not items:
        return np.zeros((0, loaded.dim), dtype=np.float32)
    return np.concatenate([embed_images(loaded, [decode_image(it.image) for it in items[s:s + decode_chunk]],
                                        batch_size, views) for s in range(0, len(items), decode_chunk)])


def embed_texts(loaded: Any, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Embed texts -> (N, dim) float32, unit rows. Empty strings are refused.

    Each distinct text is embedded once, so repeated texts get bit-identical rows: their ties in a ranking
    are exact, not decided by rounding noise that depends on the batch (and differs between runtimes).
    """
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"text {i} is empty; give a non-empty query such as 'a river'")
    unique = list(dict.fromkeys(texts))
    if len(unique) < len(texts):
        row = {t: i for i, t in enumerate(unique)}
        return embed_texts(loaded, unique, batch_size)[[row[t] for t in texts]]
    onnx = runs_onnx(loaded)
    if not onnx:
        from harma_core.embed_torch import encode_texts_torch
    out = np.empty((len(texts), loaded.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        out[start:start + len(chunk)] = (loaded.encode_tokens(loaded.token_ids(chunk)) if onnx
                                         else encode_texts_torch(loaded, chunk))
    return out
