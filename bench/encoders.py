#!/usr/bin/env python3
"""Encoder throughput (images/s, texts/s) of harma-lite and open_clip ViT-B-32 against the machine's limit.

The limit is measured in the same run: a large fp32 matmul's GFLOP/s divided by the model's GFLOPs per image
(counted with torch.utils.flop_counter). Also measured on harma-lite: channels_last, inference_mode, thread
count and dynamic int8 quantisation of the text tower's Linear layers (speed and retrieval mR before/after on
the shared validation split), and ONNX Runtime against torch interleaved at the same batch (bench/onnx_variants.py). Run `python bench/encoders.py [--quick]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from _common import (
    RSICD_DIR,
    UCM_DIR,
    emit,
    interleaved,
    machine,
    median,
    quiet_logs,
    table,
    time_calls,
)
from torch import nn

QUICK_EVAL_IMAGES = 64  # of the 210 UCM validation images: keeps --quick near a minute
MODELS = ("harma-lite", "ViT-B-32")  # ViT-B-32 with no tag: random weights (speed does not depend on them)


def matmul_gflops(device: torch.device, n: int, repeat: int) -> float:
    """Median GFLOP/s of an n x n fp32 matmul: the practical compute limit of this device right now."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def run() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    secs = time_calls(run, repeat, warmup=1)
    return 2.0 * n**3 / median(secs) / 1e9


def count_gflops(fn: Any) -> float:
    """GFLOPs of one call, counted by FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() / 1e9


def random_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """n random uint8 RGB images already at the model's input size (no resize cost)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def captions(n: int) -> list[str]:
    """n distinct real captions of the UCM validation split (repeated when it holds fewer)."""
    from harma_core.data import flatten_captions, load_dataset, normalize_caption

    caps, _ = flatten_captions(load_dataset(UCM_DIR, "val").items)
    caps = list(dict.fromkeys(normalize_caption(c) for c in caps))  # distinct: embed_texts embeds each once
    return (caps * (n // len(caps) + 1))[:n]


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(loaded: Any, n_images: int, texts: list[str], repeat: int, batch: int) -> dict[str, float]:
    """images/s of embed_images (preprocessing included) and texts/s of embed_texts."""
    from harma_core import embed_images, embed_texts

    images = random_images(n_images, loaded.image_size)
    dev = loaded.device
    t_img = time_calls(lambda: (embed_images(loaded, images, batch_size=batch), sync(dev)), repeat)
    t_txt = time_calls(lambda: (embed_texts(loaded, texts), sync(dev)), repeat)
    return {"images_per_s": n_images / median(t_img), "texts_per_s": len(texts) / median(t_txt)}


def measure_model(name: str, device: torch.device, limit: float, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput, GFLOPs per item and fraction of the matmul limit for one model on one device."""
    from harma_core import create_model

    t0 = time.perf_counter()
    loaded = create_model(name, device=device)
    load_s = time.perf_counter() - t0
    vit = name.startswith("ViT")
    n_images = (args.vit_images if vit else args.images) * (4 if device.type == "cuda" else 1)
    texts = captions(args.vit_texts if vit else args.texts)
    x = torch.randn(1, 3, loaded.image_size, loaded.image_size, device=device)
    if hasattr(loaded.model.visual, "trunk"):
        x = x.contiguous(memory_format=torch.channels_last)
    g_img = count_gflops(lambda: loaded.model.encode_image(x))
    tokens = loaded.tokenizer(texts[:1]).to(device)
    g_txt = count_gflops(lambda: loaded.model.encode_text(tokens))
    out = throughput(loaded, n_images, texts, args.repeat, min(args.batch, n_images))
    out.update(gflops_per_image=g_img, gflops_per_text=g_txt, load_s=load_s, identity=loaded.identity,
               fraction_of_limit=out["images_per_s"] * g_img / limit,
               text_fraction_of_limit=out["texts_per_s"] * g_txt / limit, n_images=n_images, runtime="torch")
    if device.type == "cpu" and name in args.onnx_models:
        out["onnx"] = onnx_runtime(loaded, n_images, texts, g_img, limit, args)
    if name == "harma-lite" and device.type == "cpu" and not args.no_variants:
        out["variants"] = variants(loaded, args)
    return out


def onnx_runtime(loaded: Any, n_images: int, texts: list[str], g_img: float, limit: float,
                 args: argparse.Namespace) -> dict[str, Any]:
    """ONNX Runtime vs torch interleaved at the same batch, ORT settings, int8 text graph; mR of both."""
    import onnx_variants as ov

    from harma_core.onnx_runtime import exported_folder, with_runtime

    t0 = time.perf_counter()
    onnx_model = with_runtime(loaded, "onnx")
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "cached": exported_folder(loaded)[1]}
    images = random_images(n_images, loaded.image_size)
    both = {"torch": loaded, "onnx": onnx_model}
    cmp = ov.compare_runtimes(both, images, texts, min(args.batch, n_images), args.rounds)
    for r in cmp.values():
        r["fraction_of_limit"] = r["images_per_s"] * g_img / limit
    out.update(images_per_s=cmp["onnx"]["images_per_s"], texts_per_s=cmp["onnx"]["texts_per_s"],
               fraction_of_limit=cmp["onnx"]["fraction_of_limit"], text_p50_ms=cmp["onnx"]["text_p50_ms"],
               image_speedup=cmp["onnx"]["images_per_s"] / cmp["torch"]["images_per_s"],
               text_speedup=cmp["torch"]["text_p50_ms"] / cmp["onnx"]["text_p50_ms"], interleaved=cmp)
    out["settings"] = ov.ort_settings(loaded, onnx_model.folder, images, texts, min(args.batch, n_images),
                                      args.rounds, os.cpu_count() or 1)
    splits = eval_items(args.quick)
    out["mR"] = ov.runtime_mr(both, splits)
    out["int8_text"] = ov.ort_int8_text(loaded, onnx_model.folder, texts, splits, args.rounds)
    return out


def _encoder(loaded: Any, batch: torch.Tensor, ctx: Any = torch.inference_mode, memory_format: Any = None,
             threads: int | None = None) -> Any:
    """A call encoding `batch` with the bare image tower under one setting (restored afterwards)."""
    visual = loaded.model.visual

    def run() -> None:
        saved = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        if memory_format is not None:
            visual.to(memory_format=memory_format)
        try:
            with ctx():
                loaded.model.encode_image(batch, normalize=True)
        finally:
            torch.set_num_threads(saved)
            if memory_format is not None:
                visual.to(memory_format=torch.channels_last)
    return run


def _rates(loaded: Any, n: int, cases: dict[str, Any], rounds: int) -> dict[str, float]:
    """images/s of interleaved cases (round-robin, median per case)."""
    return {f"{k}_images_per_s": n / median(v) for k, v in interleaved(cases, rounds).items()}


def variants(loaded: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Speed of the CPU inference settings the issue asks about, each interleaved with its baseline."""
    n = args.variant_batch
    batch = torch.randn(n, 3, loaded.image_size, loaded.image_size)
    cl_batch = batch.contiguous(memory_format=torch.channels_last)
    res: dict[str, Any] = {"batch": n, "rounds": args.rounds}
    if hasattr(loaded.model.visual, "trunk"):  # the CNN tower ships channels_last (harma_core.zoo)
        res.update(_rates(loaded, n, {"channels_last": _encoder(loaded, cl_batch),
                                      "contiguous": _encoder(loaded, batch,
                                                             memory_format=torch.contiguous_format)},
                          args.rounds))
        res["channels_last_speedup"] = res["channels_last_images_per_s"] / res["contiguous_images_per_s"]
        batch = cl_batch
    modes = {"inference_mode": _encoder(loaded, batch), "no_grad": _encoder(loaded, batch, torch.no_grad)}
    if not args.quick:
        modes["grad_enabled"] = _encoder(loaded, batch, nullcontext)
    res.update(_rates(loaded, n, modes, args.rounds))
    res["inference_mode_speedup"] = res["inference_mode_images_per_s"] / res["no_grad_images_per_s"]
    threads = torch.get_num_threads()
    res["threads"] = threads
    if threads > 1:
        counts = sorted({1, max(1, threads - 1), threads})
        res.update(_rates(loaded, n, {f"threads_{t}": _encoder(loaded, batch, threads=t) for t in counts},
                          args.rounds))
        res["thread_speedup"] = res[f"threads_{threads}_images_per_s"] / res["threads_1_images_per_s"]
    res["int8_text"] = int8_text(loaded, args)
    return res


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding the text tower's Linear layers (HF tower or open_clip transformer)."""
    return model.text if hasattr(model, "text") else model.transformer


def quantized_copy(loaded: Any) -> Any:
    """A copy of the model whose text tower's nn.Linear layers are dynamically quantised to int8."""
    from torch.ao.quantization import quantize_dynamic

    qmodel = copy.deepcopy(loaded.model)
    quantize_dynamic(text_tower(qmodel), {nn.Linear}, dtype=torch.qint8, inplace=True)
    return dataclasses.replace(loaded, model=qmodel)


def eval_items(quick: bool) -> dict[str, list]:
    """Validation items: a slice of UCM in quick mode, all of UCM and RSICD otherwise."""
    from harma_core.data import load_dataset

    ucm = load_dataset(UCM_DIR, "val").items
    if quick:
        return {"ucm_val_slice": ucm[:QUICK_EVAL_IMAGES]}
    return {"ucm_val": ucm, "rsicd_val": load_dataset(RSICD_DIR, "val").items}


def int8_text(loaded: Any, args: argparse.Namespace) -> dict[str, Any]:
    """texts/s and retrieval mR of the fp32 text tower vs its dynamic-int8 copy (images embedded once)."""
    from harma_core import embed_images, embed_texts
    from harma_core.data import decode_image, flatten_captions, normalize_caption
    from harma_core.evaluate import retrieval_metrics

    texts = captions(args.texts)
    try:
        qloaded = quantized_copy(loaded)
    except Exception as e:  # noqa: BLE001 - an unsupported engine is a result, not a crash
        return {"error": f"{type(e).__name__}: {e}"}
    secs = interleaved({"fp32": lambda: embed_texts(loaded, texts), "int8": lambda: embed_texts(qloaded, texts)},
                       args.rounds)
    out: dict[str, Any] = {f"{k}_texts_per_s": len(texts) / median(v) for k, v in secs.items()}
    out["speedup"] = out["int8_texts_per_s"] / out["fp32_texts_per_s"]
    for split, items in eval_items(args.quick).items():
        caps, owner = flatten_captions(items)
        caps = [normalize_caption(c) for c in caps]
        img = embed_images(loaded, [decode_image(it.image) for it in items])
        fp32 = retrieval_metrics(img, embed_texts(loaded, caps), owner)
        int8 = retrieval_metrics(img, embed_texts(qloaded, caps), owner)
        out[split] = {"n_images": len(items), "fp32_mR": fp32["mR"], "int8_mR": int8["mR"],
                      "delta_mR": int8["mR"] - fp32["mR"], "chance_mR": chance_mr(len(items), len(caps))}
    return out


def chance_mr(n_images: int, n_captions: int) -> float:
    """Expected mR of random embeddings: t2i R@k = k/n; i2t R@k = P(one of c own captions in the top k)."""
    c = n_captions / n_images
    t2i = [min(1.0, k / n_images) for k in (1, 5, 10)]
    i2t = [1.0 - float(np.prod([(n_captions - c - j) / (n_captions - j) for j in range(k)])) for k in (1, 5, 10)]
    return 100.0 * float(np.mean(t2i + i2t))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small batches, one timed repeat (about a minute)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="model names (default: both)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. the cores)")
    ap.add_argument("--onnx-models", nargs="*", default=["harma-lite"],
                    help="models also measured on ONNX Runtime, interleaved with torch (default harma-lite)")
    ap.add_argument("--no-variants", action="store_true", help="skip the torch CPU settings (channels_last...)")
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                    help="cpu, cuda, or all available (default)")
    args = ap.parse_args(argv)
    args.images, args.vit_images, args.texts = (16, 4, 64) if args.quick else (64, 32, 256)
    args.vit_texts = 8 if args.quick else 64
    args.batch = 16 if args.quick else 32
    args.variant_batch = 8 if args.quick else 32
    args.repeat = 1 if args.quick else 3
    args.rounds = 1 if args.quick else 4
    args.matmul_n = 2048 if args.quick else 4096
    return args


def report(result: dict[str, Any]) -> str:
    """Human tables of a result."""
    rows = [{"model": m, "device": d, "images/s": r["images_per_s"], "texts/s": r["texts_per_s"],
             "GFLOP/img": r["gflops_per_image"], "limit img/s": result["limit_gflops"][d] / r["gflops_per_image"],
             "fraction": r["fraction_of_limit"]}
            for d, models in result["by_device"].items() for m, r in models.items()]
    out = [table(rows, title="encoder throughput vs matmul limit "
                 f"({', '.join(f'{d}: {g:.1f} GFLOP/s' for d, g in result['limit_gflops'].items())})")]
    orows = [{"model": m, **{f"{rt} {k}": r["onnx"]["interleaved"][rt][key] for k, key in
                             (("img/s", "images_per_s"), ("fraction", "fraction_of_limit"), ("p50 ms", "text_p50_ms"))
                             for rt in ("torch", "onnx")}, "img speedup": r["onnx"]["image_speedup"]}
             for m, r in result["models"].items() if "onnx" in r]
    if orows:
        out.append(table(orows, title="ONNX Runtime vs torch, interleaved, same batch (p50: one query alone)"))
        for m, r in result["models"].items():
            if "onnx" in r:
                out.append(table([{"setting": k, **v} for k, v in r["onnx"]["settings"].items()],
                                 title=f"{m} ORT settings"))
                out.append(f"{m} mR torch vs onnx: {r['onnx']['mR']}\n{m} ORT int8 text: {r['onnx']['int8_text']}")
    var = result["models"].get("harma-lite", {}).get("variants")
    if var:
        vrows = [{"setting": k, "value": v} for k, v in var.items() if not isinstance(v, dict)]
        out.append(table(vrows, title="harma-lite CPU settings (images/s unless named)"))
        q = var["int8_text"]
        qrows = [{"split": s, **v} for s, v in q.items() if isinstance(v, dict)]
        out.append(f"int8 text tower: {q.get('fp32_texts_per_s', 0):.1f} -> {q.get('int8_texts_per_s', 0):.1f} "
                   f"texts/s (x{q.get('speedup', 0):.2f}) {q.get('error', '')}")
        if qrows:
            out.append(table(qrows, title="retrieval mR, fp32 vs int8 text tower"))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the encoder benchmark and print tables, then the JSON line."""
    quiet_logs()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    result: dict[str, Any] = {"bench": "encoders", "quick": args.quick, "machine": machine(),
                              "limit_gflops": {}, "by_device": {}}
    for dev in devices:
        n = args.matmul_n * (2 if dev.type == "cuda" else 1)
        before = matmul_gflops(dev, n, 3 if args.quick else 5)
        models: dict[str, Any] = {}
        for name in args.models:
            models[name] = measure_model(name, dev, before, args)
        after = matmul_gflops(dev, n, 3 if args.quick else 5)
        limit = max(before, after)  # the practical limit: the better of the two samples around the models
        for r in models.values():
            r["fraction_of_limit"] *= before / limit
            r["text_fraction_of_limit"] *= before / limit
        result["limit_gflops"][dev.type] = limit
        result["matmul_gflops_samples"] = {**result.get("matmul_gflops_samples", {}), dev.type: [before, after]}
        result["by_device"][dev.type] = models
    result["models"] = result["by_device"]["cpu"] if "cpu" in result["by_device"] else \
        next(iter(result["by_device"].values()))
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - t_start
    print(report(result))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
