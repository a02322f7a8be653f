"""Training: HarMA adapters (or heads only, or everything) with validation-based checkpoint selection."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from harma_core import prefix_cache as pc
from harma_core.adapter_io import load_adapter, read_adapter_config, save_adapter, write_adapter
from harma_core.adapters import (
    HarmaConfig,
    freeze_norm_stats,
    inject_harma,
    mark_trainable,
    trainable_parameters,
)
from harma_core.class_eval import class_metrics
from harma_core.data import Item, decode_image, flatten_captions, load_dataset, normalize_caption
from harma_core.embed import embed_items, embed_texts
from harma_core.errors import AdapterError, ConfigError, DataError, HarmaError
from harma_core.evaluate import retrieval_metrics
from harma_core.losses import HarmaLoss
from harma_core.readers import read_polygon_tiles
from harma_core.train_config import MODES, TrainConfig  # noqa: F401  (MODES re-exported)
from harma_core.zoo import LoadedModel, create_model, resolve_adapter

log = logging.getLogger(__name__)
LITE_HEADS = ("visual.head", "text.proj")  # harma-lite's towers were not pretrained together: heads are new


Progress = Callable[[dict], None]


class TrainingCancelled(HarmaError):
    """Training stopped on request; OUT/last.pt holds the last finished epoch, a rerun resumes from it."""


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare(cfg: TrainConfig, loaded: LoadedModel) -> None:
    """Inject adapters and set requires_grad for the chosen mode."""
    model = loaded.model
    if cfg.mode == "harma":
        inject_harma(model, HarmaConfig(share=cfg.share, image_stages=tuple(cfg.image_stages),
                                        train_logit_scale=False,  # the loss owns the temperature
                                        extra_trainable=LITE_HEADS if loaded.name == "harma-lite" else ()))
    else:
        mark_trainable(model, cfg.mode)
    model.to(loaded.device)


def _param_groups(model: torch.nn.Module, params: list, weight_decay: float) -> list[dict]:
    """No weight decay on biases, gates, norms and the temperature (HARMA.md)."""
    decay, no_decay = [], []
    for name, p in params:
        (no_decay if p.ndim < 2 or "gate" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(total: int, warmup: float):
    warm = max(1, int(total * warmup))
    return lambda step: (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))


class _Encoders:
    """Image/text encoding for training and validation, through the prefix cache when the tower allows."""

    def __init__(self, cfg: TrainConfig, loaded: LoadedModel, train_items: list[Item], val_sets: dict) -> None:
        self.loaded, self.cfg = loaded, cfg
        # heads-only reuses the same cache as HarMA (its late stages are simply frozen)
        self.first_stage = min(cfg.image_stages) if cfg.mode in ("harma", "heads") else None
        self.cached = self.first_stage is not None and pc.is_cnn_tower(loaded.model)
        cache_dir = Path(cfg.cache_dir or Path(cfg.out) / "cache")
        if self.cached:
            self.train_cache = pc.build_prefix_cache(loaded, train_items, cfg.views, self.first_stage,
                                                     cache_dir, cfg.seed, num_workers=cfg.num_workers,
                                                     turns=cfg.turns)
            self.val_caches = {k: pc.build_prefix_cache(loaded, items, 1, self.first_stage, cache_dir,
                                                        cfg.seed, num_workers=cfg.num_workers)
                               for k, items in val_sets.items()}
        self.train_items = train_items
        self.tf = pc.train_transform(loaded, cfg.turns)

    def images(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        model = self.loaded.model
        if self.cached:
            feats = pc.sample_prefix_batch(self.train_cache, idx, rng, True, self.loaded.device,
                                           self.cfg.feature_crop)
            return pc.suffix_forward(model, feats, self.first_stage)
        batch = torch.stack([self.tf(decode_image(self.train_items[i].image)) for i in idx])
        return model.encode_image(batch.to(self.loaded.device), normalize=True)

    def texts(self, captions: list[str]) -> torch.Tensor:
        tokens = self.loaded.tokenizer(captions).to(self.loaded.device)
        return self.loaded.model.encode_text(tokens, normalize=True)

    @torch.inference_mode()
    def _val_images(self, name: str, items: list[Item]) -> np.ndarray:
        if not self.cached:
            return embed_items(self.loaded, items)
        cache = self.val_caches[name]
        return np.concatenate([
            pc.suffix_forward(self.loaded.model,
                              pc.sample_prefix_batch(cache, np.arange(s, min(s + 128, len(items))), None, False,
                                                     self.loaded.device),
                              self.first_stage).cpu().numpy()
            for s in range(0, len(items), 128)])

    @torch.inference_mode()
    def validate(self, name: str, items: list[Item]) -> dict:
        """Caption retrieval metrics (mR), or class metrics (score, p10) for tiles cut from labelled polygons."""
        img = self._val_images(name, items)
        if items[0].labels:
            classes = sorted({lab for it in items for lab in it.labels})
            template = self.cfg.caption_template
            txt = embed_texts(self.loaded, [normalize_caption(template.format(label=c)) for c in classes])
            return class_metrics(img, [it.labels for it in items], txt, classes)
        captions, owner = flatten_captions(items)
        return retrieval_metrics(img, embed_texts(self.loaded, [normalize_caption(c) for c in captions]), owner)


def val_score(metrics: dict) -> float:
    """The selection score of one validation set: mR for caption sets, class score for labelled tiles."""
    return float(metrics["mR"] if "mR" in metrics else metrics["score"])


def load_splits(cfg: TrainConfig) -> tuple[list[Item], dict[str, list[Item]]]:
    """Train items of every source pooled; val items per source (caption dataset name, or 'polygons')."""
    if not cfg.data and not cfg.raster:
        raise ConfigError("no training data: give --data DATASET and/or --raster X.tif --labels Y.gpkg "
                          "--label-field FIELD")
    train_items, val = [], {}
    for d in cfg.data:
        train_items += load_dataset(d, "train").items
        v = load_dataset(d, "val").items
        if v:
            val[Path(d).stem] = v
    if (polygons := cfg.polygon_source()) is not None:
        tiles = read_polygon_tiles(polygons).items
        train_items += [it for it in tiles if it.split == "train"]
        val["polygons"] = [it for it in tiles if it.split == "val"]
    if not train_items:
        raise DataError(f"no training items found in {cfg.data + cfg.raster}")
    return train_items, val


def _start_adapter(cfg: TrainConfig) -> Path | None:
    """The adapter training starts from: --init, else for polygon runs the model's shipped adapter."""
    if cfg.init:
        init_dir = resolve_adapter(cfg.init)
        if cfg.mode != "harma" and "harma" in read_adapter_config(init_dir):
            # its adapters would run frozen but not be saved with the run: the run would not reload as trained
            raise ConfigError(f"--init {cfg.init} holds HarMA adapters; continue it with --mode harma")
        return init_dir
    if cfg.raster and cfg.mode == "harma":
        try:
            return resolve_adapter(cfg.model)  # fine-tune the model the user searches with, not bare heads
        except AdapterError:
            return None
    return None


def train(cfg: TrainConfig, progress: Progress | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Train, validating every epoch; the best-on-validation adapter is kept in OUT/best.

    Inputs are read and checked before anything is written. `progress` gets {phase, done, total, epoch}
    after every step; `should_stop` is polled every step and stops the run with TrainingCancelled.
    """
    train_items, val_sets = load_splits(cfg)  # bad data fails here, before OUT exists
    init_dir = _start_adapter(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    _set_seed(cfg.seed)
    loaded = create_model(cfg.model, device=cfg.device, adapter=None)
    _prepare(cfg, loaded)
    model = loaded.model
    if init_dir is not None:
        load_adapter(model, init_dir)
    trainable, total = trainable_parameters(model)
    log.info("trainable parameters: %d / %d (%.2f%%)", trainable, total, 100 * trainable / total)
    notify = progress or (lambda _event: None)
    notify({"phase": "preparing", "done": 0, "total": 0, "epoch": 0})
    enc = _Encoders(cfg, loaded, train_items, val_sets)
    loss_fn = HarmaLoss().to(loaded.device)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params += [(f"loss.{n}", p) for n, p in loss_fn.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(_param_groups(model, params, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98),
                            eps=1e-8)
    steps = cfg.steps_per_epoch or math.ceil(len(train_items) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps * cfg.epochs, cfg.warmup))
    state = {"epoch": 0, "best": -1.0, "history": []}
    ckpt = out / "last.pt"
    if ckpt.is_file():  # resume
        saved = torch.load(ckpt, map_location=loaded.device, weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        loss_fn.load_state_dict(saved["loss"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        log.info("resumed from %s at epoch %d", ckpt, state["epoch"])
    if "init_val" not in state:  # the start's score, logged first, to compare the run's best/ against
        model.eval()
        state["init_val"] = {name: enc.validate(name, items) for name, items in val_sets.items()}
        log.info("val score before training (%s): %s", init_dir or "untrained adapters",
                 {k: round(val_score(m), 2) for k, m in state["init_val"].items()})
    rng = np.random.default_rng(cfg.seed + state["epoch"])
    for epoch in range(state["epoch"], cfg.epochs):
        model.train()
        freeze_norm_stats(model)  # frozen BatchNorm statistics stay as pretrained
        order = rng.permutation(len(train_items))
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for step in bar:
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training cancelled in epoch {epoch + 1}; {ckpt} holds epoch "
                                        f"{state['epoch']}, run again with the same --out to resume")
            idx = order[(step * cfg.batch_size) % len(order):][:cfg.batch_size]
            owner, caps = _sample_captions(train_items, idx, cfg.captions_per_image, rng)
            img, txt = enc.images(idx, rng)[torch.from_numpy(owner)], enc.texts(caps)
            ids = _positive_groups(caps, owner)
            losses = loss_fn(img, txt, ids)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += losses["total"].item()
            bar.set_postfix(loss=f"{losses['total'].item():.3f}", img_s=f"{seen / (time.time() - t0):.1f}")
            notify({"phase": "training", "done": epoch * steps + step + 1, "total": cfg.epochs * steps,
                    "epoch": epoch + 1})
        model.eval()
        metrics = {name: enc.validate(name, items) for name, items in val_sets.items()}
        score = float(np.mean([val_score(m) for m in metrics.values()])) if metrics else -float(epoch)
        record = {"epoch": epoch + 1, "val": metrics, "val_mR_mean": score,
                  "loss": loss_sum / steps, "seconds": time.time() - t0}
        state["history"].append(record)
        log.info("epoch %d: val %s (mean %.2f)", epoch + 1, {k: round(val_score(m), 2) for k, m in metrics.items()},
                 score)
        if score > state["best"]:
            state["best"] = score
            _save_best(model, cfg, out / "best", {"epoch": epoch + 1, "val": metrics, "mode": cfg.mode})
        state["epoch"] = epoch + 1
        _write_metrics(out, cfg, state, trainable, total)
        torch.save({"model": {n: p for n, p in model.state_dict().items() if n in dict(params)},
                    "loss": loss_fn.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "state": state}, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
    return _write_metrics(out, cfg, state, trainable, total)


def _save_best(model: torch.nn.Module, cfg: TrainConfig, folder: Path, extra: dict) -> None:
    """HarMA runs save adapters; heads/full runs save their trained tensors in the same folder format."""
    if cfg.mode == "harma":
        save_adapter(model, folder, base_name=cfg.model, extra=extra)
    else:
        state = {n: p for n, p in model.named_parameters() if p.requires_grad}
        write_adapter(folder, state, {"base": cfg.model, "extra": extra})


def _sample_captions(items: list[Item], idx: np.ndarray, k: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Up to k distinct captions per image (one row each) and the batch position of each row's image."""
    owner, caps = [], []
    for pos, i in enumerate(idx):
        texts = items[i].captions
        # k = 1 draws as earlier releases did, so their recorded recipes still reproduce
        picks = [rng.integers(len(texts))] if k == 1 else rng.choice(len(texts), size=min(k, len(texts)),
                                                                        replace=False)
        for j in picks:
            owner.append(pos)
            caps.append(normalize_caption(texts[j]))
    return np.asarray(owner), caps


def _positive_groups(captions: list[str], owner: np.ndarray | None = None) -> torch.Tensor:
    """Group ids: rows of the same image, or whose captions are the same text (RSICD repeats generic
    captions), are positives; images joined by a shared text merge into one group."""
    owner = np.arange(len(captions)) if owner is None else owner
    parent: dict[int, int] = {}  # union-find over the batch's images

    def root(a: int) -> int:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    first_owner: dict[str, int] = {}
    for o, c in zip(owner.tolist(), captions):
        parent[root(o)] = root(first_owner.setdefault(c, o))
    groups: dict[int, int] = {}
    return torch.tensor([groups.setdefault(root(o), len(groups)) for o in owner.tolist()], dtype=torch.long)


def _write_metrics(out: Path, cfg: TrainConfig, state: dict, trainable: int, total: int) -> dict:
    best = max(state["history"], key=lambda r: r["val_mR_mean"]) if state["history"] else None
    metrics = {"mode": cfg.mode, "model": cfg.model, "trainable": trainable, "total": total,
               "best_epoch": best["epoch"] if best else None, "best_val": best["val"] if best else None,
               "init_val": state.get("init_val"),
               "history": state["history"]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
