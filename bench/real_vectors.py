#!/usr/bin/env python3
"""Real image embeddings for `bench/search.py --vectors`: the model's vectors of the caption sets' train images.

Synthetic vectors size the index sweep; these check recall@10 on what a real collection holds. Each train
image of RSICD and UCM gives one vector per view kept in the training prefix cache (`--cache-dir`, as
`tools/train.py` built it: the plain view plus augmented views); without that cache the images are encoded
(plain view only, slower). Run `python bench/real_vectors.py --out runs/real-vectors.npy`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from _common import RSICD_DIR, UCM_DIR, quiet_logs

from harma_core import create_model, embed_images
from harma_core import prefix_cache as pc
from harma_core.data import decode_image, load_dataset


@torch.inference_mode()
def from_cache(loaded, cache: np.ndarray, first_stage: int, batch: int = 256) -> np.ndarray:
    """Run the rest of the image tower over every cached view of every image."""
    model = loaded.model.eval()
    batches = (torch.from_numpy(np.ascontiguousarray(cache[v, s:s + batch])).float()
               .contiguous(memory_format=torch.channels_last)
               for v in range(cache.shape[0]) for s in range(0, cache.shape[1], batch))  # one batch in RAM at a time
    return np.concatenate([pc.suffix_forward(model, f, first_stage).numpy() for f in batches])


def main(argv: list[str] | None = None) -> int:
    """Write the vectors as float32 .npy (rows shuffled with a fixed seed, so held-out queries are mixed)."""
    quiet_logs()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="harma-lite")
    ap.add_argument("--cache-dir", default="runs/cache", help="the prefix cache tools/train.py built")
    ap.add_argument("--first-stage", type=int, default=5, help="first adapted stage of the cached run")
    ap.add_argument("--views", type=int, default=2, help="views of the cached run")
    ap.add_argument("--out", default="runs/real-vectors.npy")
    args = ap.parse_args(argv)
    loaded = create_model(args.model, device="cpu")
    items = [it for d in (RSICD_DIR, UCM_DIR) for it in load_dataset(d, "train").items]
    key = pc.cache_key(loaded, items, args.views, args.first_stage, 0)
    meta = Path(args.cache_dir) / f"prefix-{key}.json"
    if pc.is_cnn_tower(loaded.model) and meta.is_file():
        cache = pc.build_prefix_cache(loaded, items, args.views, args.first_stage, Path(args.cache_dir))
        vectors = from_cache(loaded, cache, args.first_stage)
    else:
        print(f"no prefix cache {meta}: encoding {len(items)} images", file=sys.stderr)
        vectors = embed_images(loaded, [decode_image(it.image) for it in items])
    vectors = vectors[np.random.default_rng(0).permutation(len(vectors))].astype(np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, vectors)
    print(f"{len(vectors)} vectors of dim {vectors.shape[1]} from {loaded.identity} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
