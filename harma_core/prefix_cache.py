"""Cache the outputs of a CNN image tower's frozen early stages, so training epochs only run the late stages.

With HarMA adapters only in the last stages (or no adapters: heads-only), everything before the first adapted
stage is a fixed function of the (augmented) pixels. We run it once per image and view, store the feature maps
as float16 on disk, and train on the rest of the tower. Views: 0 is the plain evaluation transform, 1.. are
random augmentations (HARMA.md recipe, optionally with a random quarter turn: `turns`); at train time a view is drawn per image and the feature map may be
mirrored (a cheap stand-in for flipping the image, exact up to the conv kernels' own asymmetry).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms
from torchvision.ops import roi_align
from tqdm import tqdm

from harma_core.data import ImageDataset, Item
from harma_core.train_config import TURNS
from harma_core.zoo import LoadedModel

log = logging.getLogger(__name__)


def is_cnn_tower(model: nn.Module) -> bool:
    """True for an open_clip TimmModel wrapping a timm EfficientNet-style trunk."""
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    return trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "conv_stem")


class RandomQuarterTurn:
    """Turn a [C, H, W] image tensor by a random multiple of 90 degrees (torch's RNG, so seeded workers repeat)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(4, ())), dims=(1, 2))


def train_transform(loaded: LoadedModel, turns: int = 1) -> transforms.Compose:
    """HARMA.md training augmentation: random resized crop (0.5-1, bicubic), flip, mild RandAugment; with
    `turns` = 4 also a random quarter turn (overhead scenes have no "up"; search embeds all 8 symmetries)."""
    if turns not in TURNS:
        raise ValueError(f"turns={turns!r}: use 1 (upright only) or 4 (random quarter turns)")
    return transforms.Compose([
        transforms.RandomResizedCrop(loaded.image_size, scale=(0.5, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.RandAugment(num_ops=1, magnitude=5),
        transforms.ToTensor(),
        *([RandomQuarterTurn()] if turns == 4 else []),
        transforms.Normalize(loaded.mean, loaded.std),
    ])


def prefix_forward(model: nn.Module, images: torch.Tensor, first_stage: int) -> torch.Tensor:
    """Run stem and stages [0, first_stage) of the trunk."""
    trunk = model.visual.trunk
    x = trunk.bn1(trunk.conv_stem(images))
    for stage in trunk.blocks[:first_stage]:
        x = stage(x)
    return x


def suffix_forward(model: nn.Module, feats: torch.Tensor, first_stage: int, normalize: bool = True) -> torch.Tensor:
    """Run stages [first_stage, end), the head conv, pooling and projection: the rest of encode_image."""
    trunk = model.visual.trunk
    x = feats
    for stage in trunk.blocks[first_stage:]:
        x = stage(x)
    x = trunk.bn2(trunk.conv_head(x))
    x = model.visual.head(trunk.forward_head(x))
    return F.normalize(x, dim=-1) if normalize else x


def cache_key(loaded: LoadedModel, items: Sequence[Item], views: int, first_stage: int, seed: int,
              turns: int = 1) -> str:
    """Name of the cache for these images, views, stages, seed and turns (the frozen base only: adapters do not
    matter); caches built before `turns` existed keep their names."""
    h = hashlib.sha256()
    h.update(json.dumps([loaded.name, loaded.base_hash, views, first_stage, seed]
                        + ([turns] if turns != 1 else [])).encode())
    for it in items:
        h.update(str(it.image if isinstance(it.image, str) else it.source).encode())
    return h.hexdigest()[:16]


@torch.inference_mode()
def build_prefix_cache(loaded: LoadedModel, items: Sequence[Item], views: int, first_stage: int,
                       cache_dir: Path, seed: int = 0, batch_size: int = 64, num_workers: int = 2,
                       turns: int = 1) -> np.ndarray:
    """Float16 memmap of shape (views, n_items, C, H, W); reused when an identical cache exists.

    View 0 is always the plain upright transform; `turns` = 4 gives the augmented views random quarter turns."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(loaded, items, views, first_stage, seed, turns)
    data_path, meta_path = cache_dir / f"prefix-{key}.f16", cache_dir / f"prefix-{key}.json"
    if meta_path.is_file():
        shape = tuple(json.loads(meta_path.read_text())["shape"])
        return np.memmap(data_path, dtype=np.float16, mode="r", shape=shape)
    model = loaded.model.eval()
    probe = prefix_forward(model, torch.zeros(1, 3, loaded.image_size, loaded.image_size,
                                              device=loaded.device), first_stage)
    shape = (views, len(items), *probe.shape[1:])
    log.info("caching frozen stages 0-%d for %d images x %d views: %.2f GB", first_stage - 1, len(items),
             views, np.prod(shape) * 2 / 1e9)
    out = np.memmap(data_path.with_suffix(".tmp"), dtype=np.float16, mode="w+", shape=shape)
    for v in range(views):
        tf = loaded.preprocess() if v == 0 else train_transform(loaded, turns)
        torch.manual_seed(seed + v)
        loader = torch.utils.data.DataLoader(ImageDataset(items, tf), batch_size=batch_size,
                                             num_workers=num_workers, worker_init_fn=_seed_worker(seed + v))
        for images, idx in tqdm(loader, desc=f"frozen stages, view {v + 1}/{views}", unit="batch"):
            images = images.to(loaded.device).contiguous(memory_format=torch.channels_last)
            out[v, idx.numpy()] = prefix_forward(model, images, first_stage).float().cpu().numpy()
    out.flush()
    del out
    data_path.with_suffix(".tmp").rename(data_path)
    meta_path.write_text(json.dumps({"shape": list(shape), "first_stage": first_stage, "views": views,
                                     "turns": turns}))
    return np.memmap(data_path, dtype=np.float16, mode="r", shape=shape)


def _seed_worker(base: int):
    def init(worker_id: int) -> None:
        torch.manual_seed(base * 1000 + worker_id)
    return init


def sample_prefix_batch(cache: np.ndarray, idx: np.ndarray, rng: np.random.Generator, augment: bool,
                        device: torch.device, crop_scale: float = 1.0) -> torch.Tensor:
    """Gather cached feature maps of `idx`: a random view each (and random mirroring) when augmenting.

    `crop_scale` < 1 adds a random resized crop of each feature map (area in [crop_scale, 1]), drawn afresh
    every step: unlike the cached views it costs nothing to vary, so it fights overfitting on the few views.
    """
    if augment:
        views = rng.integers(0, cache.shape[0], size=len(idx))
        feats = np.stack([cache[v, i] for v, i in zip(views, idx)])
        flip = rng.random(len(idx)) < 0.5
        feats[flip] = feats[flip, ..., ::-1]
    else:
        feats = np.asarray(cache[0, idx])
    out = torch.from_numpy(np.ascontiguousarray(feats)).to(device).float()
    if augment and crop_scale < 1.0:
        out = random_resized_crop(out, rng, crop_scale)
    return out.contiguous(memory_format=torch.channels_last)


def random_resized_crop(feats: torch.Tensor, rng: np.random.Generator, min_scale: float) -> torch.Tensor:
    """Crop each [C, H, W] map to a random box (area fraction in [min_scale, 1], aspect 3/4-4/3), resize back."""
    n, _, h, w = feats.shape
    area = rng.uniform(min_scale, 1.0, n)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), n))
    bw = np.minimum(w, np.sqrt(area * aspect) * w)
    bh = np.minimum(h, np.sqrt(area / aspect) * h)
    x0, y0 = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    boxes = torch.tensor(np.stack([np.arange(n), x0, y0, x0 + bw, y0 + bh], axis=1), dtype=feats.dtype,
                         device=feats.device)
    return roi_align(feats, boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)
