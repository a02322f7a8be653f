"""The torch runtime's side of harma_core.embed: preprocessing and towers in torch (training, CUDA)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harma_core.errors import InputError
from harma_core.views import view_turns
from harma_core.zoo import LoadedModel


def to_tensor_batch(images: Sequence[np.ndarray | Image.Image], loaded: LoadedModel) -> torch.Tensor:
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


@torch.inference_mode()
def embed_images_torch(loaded: LoadedModel, images: Sequence[np.ndarray | Image.Image], batch_size: int,
                       views: int) -> np.ndarray:
    """harma_core.embed.embed_images for a model whose towers run in torch."""
    turns = view_turns(views)
    loaded.model.eval()
    out = np.empty((len(images), loaded.dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = to_tensor_batch(images[start:start + batch_size], loaded)
        feats = sum(loaded.model.encode_image(turn(batch).to(loaded.device).contiguous(
            memory_format=torch.channels_last), normalize=True).float().cpu().numpy() for turn in turns)
        if len(turns) > 1:
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        out[start:start + len(batch)] = feats
    return out


@torch.inference_mode()
def encode_texts_torch(loaded: LoadedModel, texts: list[str]) -> np.ndarray:
    """Unit embeddings of one batch of texts through the torch text tower."""
    if loaded.model.training:  # eval() walks every module: ~4 ms a query, so only when needed
        loaded.model.eval()
    tokens = loaded.tokenizer(texts)
    return loaded.model.encode_text(tokens.to(loaded.device), normalize=True).float().cpu().numpy()
