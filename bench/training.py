#!/usr/bin/env python3
"""Seconds per training step and peak memory: HarMA adapters vs heads-only vs full fine-tuning, same batch.

Each (model, mode) runs in a child process so its peak RSS is its own. A step is what harma_core.train does:
image and text towers forward, HarmaLoss, backward, AdamW. The full-forward step is the same computation in
every mode (a fair comparison); for CNN towers in harma/heads mode, the step on cached early-stage features
(harma_core.prefix_cache, what training really runs) is timed too. Run `python bench/training.py [--quick]`;
the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import UCM_DIR, emit, machine, median, peak_rss_mb, quiet_logs, rss_mb, run_json, table

MODES = ("harma", "heads", "full")


def prepare(loaded: Any, mode: str) -> tuple[int, int]:
    """Adapters or requires_grad as harma_core.train sets them for `mode`; returns (trainable, total)."""
    from harma_core.adapters import HarmaConfig, inject_harma, mark_trainable, trainable_parameters
    from harma_core.train import LITE_HEADS, TrainConfig

    defaults = TrainConfig(data=[], out="")
    if mode == "harma":
        inject_harma(loaded.model, HarmaConfig(
            share=defaults.share, image_stages=tuple(defaults.image_stages), train_logit_scale=False,
            extra_trainable=LITE_HEADS if loaded.name == "harma-lite" else ()))
    else:
        mark_trainable(loaded.model, mode)
    loaded.model.to(loaded.device)
    return trainable_parameters(loaded.model)


def real_batch(loaded: Any, n: int) -> tuple[Any, list[str]]:
    """n UCM training images (training augmentation applied once) and one caption each."""
    import torch

    from harma_core.data import decode_image, load_dataset, normalize_caption
    from harma_core.prefix_cache import train_transform

    items = load_dataset(UCM_DIR, "train").items[:n]
    tf = train_transform(loaded)
    torch.manual_seed(0)
    images = torch.stack([tf(decode_image(it.image)) for it in items]).to(loaded.device)
    if hasattr(loaded.model.visual, "trunk"):
        images = images.contiguous(memory_format=torch.channels_last)
    return images, [normalize_caption(it.captions[0]) for it in items]


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Time training steps of one (model, mode) in this process."""
    import torch

    from harma_core import create_model
    from harma_core.adapters import freeze_norm_stats
    from harma_core.losses import HarmaLoss
    from harma_core.prefix_cache import is_cnn_tower, prefix_forward, suffix_forward
    from harma_core.train import TrainConfig, _positive_groups

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = create_model(args.model, device=args.device, adapter=None)
    trainable, total = prepare(loaded, args.mode)
    model = loaded.model
    images, caps = real_batch(loaded, args.batch)
    tokens = loaded.tokenizer(caps).to(loaded.device)
    ids = _positive_groups(caps).to(loaded.device)
    loss_fn = HarmaLoss().to(loaded.device)
    params = [p for p in model.parameters() if p.requires_grad] + list(loss_fn.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    rss_loaded = rss_mb()
    first_stage = min(TrainConfig(data=[], out="").image_stages)

    def step(encode_images: Any) -> float:
        model.train()
        freeze_norm_stats(model)
        t0 = time.perf_counter()
        img = encode_images()
        txt = model.encode_text(tokens, normalize=True)
        loss = loss_fn(img, txt, ids)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def full_forward() -> Any:
        return model.encode_image(images, normalize=True)

    cases = {"full_forward": full_forward}
    if args.mode in ("harma", "heads") and is_cnn_tower(model):
        with torch.no_grad():
            model.eval()
            feats = prefix_forward(model, images, first_stage)
        cases["prefix_cached"] = lambda: suffix_forward(model, feats, first_stage)
    secs: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(args.steps + 1):  # interleaved; the first round allocates optimiser state and is dropped
        for k, fn in cases.items():
            t = step(fn)
            if i:
                secs[k].append(t)
    out = {"model": args.model, "mode": args.mode, "batch": args.batch, "steps": args.steps,
           "seconds_per_step": median(secs["full_forward"]), "step_seconds": secs["full_forward"],
           "trainable": trainable, "total": total, "trainable_fraction": trainable / total,
           "rss_after_load_mb": rss_loaded, "threads": torch.get_num_threads()}
    if "prefix_cached" in secs:
        out["prefix_cached_seconds_per_step"] = median(secs["prefix_cached"])
    out["peak_rss_mb"] = peak_rss_mb()
    if loaded.device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="harma-lite only, batch 8, 1 timed step (about a minute)")
    ap.add_argument("--models", nargs="+", help="models (quick: harma-lite; full: harma-lite ViT-B-32)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--batch", type=int, help="images per step (quick 8, full 32)")
    ap.add_argument("--steps", type=int, help="timed steps after one warm-up step (quick 1, full 3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch/OpenMP threads of each child (default: the cores)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.models = args.models or (["harma-lite"] if args.quick else ["harma-lite", "ViT-B-32"])
    args.batch = args.batch or (8 if args.quick else 32)
    args.steps = args.steps or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one child per (model, mode), print a table, then the JSON line."""
    quiet_logs()
    args = parse_args(argv)
    if args.child:
        emit(child(args))
        return 0
    info = machine()
    results: dict[str, dict[str, Any]] = {}
    for model in args.models:
        results[model] = {}
        for mode in args.modes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model, "--mode", mode,
                   "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
            env = None
            if args.threads:
                cmd += ["--threads", str(args.threads)]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            results[model][mode] = run_json(cmd, timeout=3600, env=env)
    for modes in results.values():
        if "full" in modes:
            for r in modes.values():
                r["speedup_vs_full"] = modes["full"]["seconds_per_step"] / r["seconds_per_step"]
    rows = [{"model": m, "mode": k, "s/step": r["seconds_per_step"], "x vs full": r.get("speedup_vs_full"),
             "s/step cached": r.get("prefix_cached_seconds_per_step"), "peak RSS MB": r["peak_rss_mb"],
             "RSS loaded MB": r["rss_after_load_mb"], "trainable": r["trainable"], "total": r["total"],
             "trainable %": 100 * r["trainable_fraction"]}
            for m, modes in results.items() for k, r in modes.items()]
    threads = next(iter(results[args.models[0]].values()))["threads"]
    print(table(rows, title=f"training step, batch {args.batch}, {threads} thread(s) "
                f"(median of {args.steps} after 1 warm-up)"))
    first = results[args.models[0]]
    info["loadavg_end"] = list(os.getloadavg())
    emit({"bench": "training", "quick": args.quick, "machine": info, "batch": args.batch, "threads": threads,
          "model": args.models[0], "modes": first, "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
