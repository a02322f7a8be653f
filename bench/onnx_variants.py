"""ONNX Runtime against torch on the same batches, and the ORT settings worth keeping (used by encoders.py).

Every comparison is interleaved round by round in one process, so machine-load drift hits both sides alike.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import interleaved, median, percentile

QUERY_COUNT = 40  # distinct single-caption queries per text p50


def _image_cases(models: dict[str, Any], images: list[np.ndarray], batch: int) -> dict[str, Any]:
    from harma_core import embed_images

    return {name: (lambda m=m: embed_images(m, images, batch_size=batch)) for name, m in models.items()}


def query_p50_ms(models: dict[str, Any], queries: list[str]) -> dict[str, float]:
    """p50 ms of embedding one query alone (tokenizer included), models alternating query by query."""
    import time

    from harma_core import embed_texts

    secs: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        embed_texts(m, queries[:1])  # warm-up
    for q in queries:
        for name, m in models.items():
            t0 = time.perf_counter()
            embed_texts(m, [q])
            secs[name].append(time.perf_counter() - t0)
    return {name: 1000 * percentile(v, 50) for name, v in secs.items()}


def compare_runtimes(models: dict[str, Any], images: list[np.ndarray], texts: list[str], batch: int,
                     rounds: int) -> dict[str, Any]:
    """images/s, texts/s (batched) and single-query p50 ms of each model, interleaved."""
    from harma_core import embed_texts

    img = interleaved(_image_cases(models, images, batch), rounds)
    txt = interleaved({n: (lambda m=m: embed_texts(m, texts)) for n, m in models.items()}, rounds)
    p50 = query_p50_ms(models, texts[:QUERY_COUNT])
    return {name: {"images_per_s": len(images) / median(img[name]), "texts_per_s": len(texts) / median(txt[name]),
                   "text_p50_ms": p50[name], "image_seconds": img[name]} for name in models}


def ort_settings(loaded: Any, folder: Path, images: list[np.ndarray], queries: list[str], batch: int,
                 rounds: int, cores: int) -> dict[str, Any]:
    """images/s and query p50 under ORT settings: threads, graph optimisation level, spin-waiting."""
    from harma_core.onnx_runtime import OnnxModel

    cases = {"shipped": OnnxModel(loaded, folder), "threads_1": OnnxModel(loaded, folder, threads=1),
             "level_basic": OnnxModel(loaded, folder, level="basic"),
             "level_extended": OnnxModel(loaded, folder, level="extended"),
             "spin": OnnxModel(loaded, folder, spin=True)}
    if cores > 2:
        cases["threads_half"] = OnnxModel(loaded, folder, threads=cores // 2)
    img = interleaved(_image_cases(cases, images, batch), rounds)
    p50 = query_p50_ms(cases, queries[:QUERY_COUNT])
    return {name: {"images_per_s": len(images) / median(img[name]), "text_p50_ms": p50[name]} for name in cases}


def ort_int8_text(loaded: Any, folder: Path, texts: list[str], splits: dict[str, list], rounds: int) -> dict[str, Any]:
    """Dynamic int8 (MatMul weights) of the text graph: texts/s, query p50 and mR against fp32 ORT."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from harma_core import embed_images, embed_texts
    from harma_core.data import decode_image, flatten_captions, normalize_caption
    from harma_core.evaluate import retrieval_metrics
    from harma_core.onnx_runtime import OnnxModel

    with tempfile.TemporaryDirectory(prefix="harma-int8-") as tmp:
        q_folder = Path(tmp)
        for f in ("image.onnx", "meta.json"):
            (q_folder / f).symlink_to(folder / f)
        graph = onnx.load(str(folder / "text.onnx"))
        del graph.graph.value_info[:]  # the exporter's shape annotations trip the quantizer's shape inference
        onnx.save(graph, str(q_folder / "fp32.onnx"))
        quantize_dynamic(str(q_folder / "fp32.onnx"), str(q_folder / "text.onnx"), weight_type=QuantType.QInt8)
        fp32, int8 = OnnxModel(loaded, folder), OnnxModel(loaded, q_folder)
    models = {"fp32": fp32, "int8": int8}
    secs = interleaved({n: (lambda m=m: embed_texts(m, texts)) for n, m in models.items()}, rounds)
    out: dict[str, Any] = {f"{n}_texts_per_s": len(texts) / median(v) for n, v in secs.items()}
    out.update({f"{n}_p50_ms": v for n, v in query_p50_ms(models, texts[:QUERY_COUNT]).items()})
    for split, items in splits.items():
        caps, owner = flatten_captions(items)
        caps = [normalize_caption(c) for c in caps]
        img = embed_images(fp32, [decode_image(it.image) for it in items])
        m = {n: retrieval_metrics(img, embed_texts(mod, caps), owner)["mR"] for n, mod in models.items()}
        out[split] = {"n_images": len(items), "fp32_mR": m["fp32"], "int8_mR": m["int8"],
                      "delta_mR": m["int8"] - m["fp32"]}
    return out


def runtime_mr(models: dict[str, Any], splits: dict[str, list]) -> dict[str, Any]:
    """Retrieval mR of each runtime on the validation splits (the parity goal: equal within 0.05)."""
    from harma_core.evaluate import evaluate_items

    out: dict[str, Any] = {}
    for split, items in splits.items():
        mr = {name: evaluate_items(m, items)["mR"] for name, m in models.items()}
        out[split] = {**{f"{n}_mR": v for n, v in mr.items()}, "n_images": len(items),
                      "delta_mR": mr["onnx"] - mr["torch"]}
    return out
