"""Fine-tune a model with HarMA adapters (or heads only, or fully) on local labeled tiles.

Example: python tools/train.py --model harma-lite --data ../shared/data/captions/ucm_captions --epochs 1
"""

from __future__ import annotations

import argparse
import json
import logging

import _bootstrap  # noqa: F401

from harma_core.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name or checkpoint (default harma-lite)")
    ap.add_argument("--data", nargs="+", required=True,
                    help="dataset folder(s) with <name>_train.json/<name>_val.json, or a captions table")
    ap.add_argument("--out", default="runs/latest", help="run folder (resumes if it holds last.pt)")
    ap.add_argument("--mode", choices=["harma", "heads", "full"], default="harma")
    ap.add_argument("--share", choices=["both", "text_only", "none"], default="both",
                    help="share the mini-adapter across towers (paper) or text tower only (reference code)")
    ap.add_argument("--image-stages", type=int, nargs="+", default=[5, 6], help="CNN stages that get adapters")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--weight-decay", type=float, default=0.04)
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of steps of linear warm-up")
    ap.add_argument("--views", type=int, default=2, help="cached views per image (CNN towers): 1 = no augmentation")
    ap.add_argument("--feature-crop", type=float, default=1.0,
                    help="smallest area of a random crop of cached feature maps, drawn every step (1 = off)")
    ap.add_argument("--captions-per-image", type=int, default=1,
                    help="distinct captions of each image per batch (rows of the same image are positives)")
    ap.add_argument("--init", default=None, help="start from this adapter: an adapter or run folder, or a model "
                                                "name with a shipped adapter (harma-lite); same --mode and stages")
    ap.add_argument("--steps-per-epoch", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="where frozen-stage features are cached")
    ap.add_argument("--device", default="auto", help="auto|cpu|cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig(data=a.data, out=a.out, model=a.model, mode=a.mode, share=a.share,
                      image_stages=a.image_stages, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                      weight_decay=a.weight_decay, warmup=a.warmup, seed=a.seed, device=a.device, views=a.views,
                      feature_crop=a.feature_crop, captions_per_image=a.captions_per_image,
                      cache_dir=a.cache_dir, init=a.init, steps_per_epoch=a.steps_per_epoch, num_workers=a.workers)
    metrics = train(cfg)
    print(json.dumps({k: metrics[k] for k in ("mode", "trainable", "total", "best_epoch", "best_val")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
