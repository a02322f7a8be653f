"""Batch embedding of images and texts into L2-normalised float32 numpy arrays (torch or ONNX Runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harma_core.errors import InputError
from harma_core.views import view_turns
from harma_core.zoo import LoadedModel

ImageLike = np.ndarray | Image.Image


def _to_tensor_batch(images: Sequence[ImageLike], loaded: LoadedModel) -> torch.Tensor:
    """Resize and normalise a batch; uint8 HxWx3 arrays skip PIL for speed."""
    size = loaded.image_size
    arrays = []
    for im in images:
        if isinstance(im, Image.Image):
            im = np.array(im.convert("RGB"))
        if im.ndim != 3 or im.shape[2] != 3:
            raise InputError(f"expected an HxWx3 image, got shape {im.shape}")
        t = torch.from_numpy(np.array(im, copy=not im.flags.writeable)).permute(2, 0, 1).float().div_(255.0)
        if t.shape[1:] != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bicubic", align_corners=False,
                              antialias=True)[0].clamp_(0, 1)
        arrays.append(t)
    batch = torch.stack(arrays)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    return (batch - mean) / std


def _runs_onnx(loaded: LoadedModel) -> bool:
    """True for an OnnxModel (harma_core.onnx_runtime): its towers run in ONNX Runtime, not torch."""
    return getattr(loaded, "runtime", "torch") == "onnx"


def _encode_batch(loaded: LoadedModel, batch: torch.Tensor) -> np.ndarray:
    """Unit embeddings of one normalised [B, 3, S, S] batch."""
    if _runs_onnx(loaded):
        return loaded.encode_images(np.ascontiguousarray(batch.numpy()))
    batch = batch.to(loaded.device).contiguous(memory_format=torch.channels_last)
    return loaded.model.encode_image(batch, normalize=True).float().cpu().numpy()


@torch.inference_mode()
def embed_images(loaded: LoadedModel, images: Sequence[ImageLike], batch_size: int = 64,
                 views: int = 1) -> np.ndarray:
    """Embed RGB images (PIL or uint8 HxWx3 arrays, any size) -> (N, dim) float32, unit rows.

    `views` > 1 embeds each image as the unit mean over that many of its rotations and mirrorings
    (harma_core.views): overhead imagery has no "up", and the mean is a steadier embedding. Costs `views` x.
    """
    turns = view_turns(views)
    loaded.model.eval()
    out = np.empty((len(images), loaded.dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = _to_tensor_batch(images[start:start + batch_size], loaded)
        feats = sum(_encode_batch(loaded, turn(batch)) for turn in turns)
        if len(turns) > 1:
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        out[start:start + len(batch)] = feats
    return out


def embed_items(loaded: LoadedModel, items: Sequence, batch_size: int = 64, decode_chunk: int = 256,
                views: int = 1) -> np.ndarray:
    """Embed the images of dataset Items (harma_core.data), decoding `decode_chunk` at a time to bound memory."""
    from harma_core.data import decode_image

    if not items:
        return np.zeros((0, loaded.dim), dtype=np.float32)
    return np.concatenate([embed_images(loaded, [decode_image(it.image) for it in items[s:s + decode_chunk]],
                                        batch_size, views) for s in range(0, len(items), decode_chunk)])


@torch.inference_mode()
def embed_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
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
    model, onnx = loaded.model, _runs_onnx(loaded)
    if model.training:  # eval() walks every module: ~4 ms a query, so only when needed
        model.eval()
    out = np.empty((len(texts), loaded.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        tokens = loaded.tokenizer(list(texts[start:start + batch_size]))
        if onnx:
            out[start:start + len(tokens)] = loaded.encode_tokens(tokens.numpy())
            continue
        feats = model.encode_text(tokens.to(loaded.device), normalize=True)
        out[start:start + len(feats)] = feats.float().cpu().numpy()
    return out
