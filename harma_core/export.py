"""Export a model (name, checkpoint or training run) into a serving folder (harma_core.serving): needs torch.

The graphs come from harma_core.onnx_runtime.export_towers (checked against torch at export); the folder then
gets its tokenizer as `tokenizer.json`, its query bank, `model.json` and the chosen weight precision:
  fp32   the exported graphs as they are;
  fp16w  weights stored as float16 and cast back to float32 when the session loads (half the file, same
         arithmetic);
  int8   MatMul/Gemm weights quantised to int8 (ONNX Runtime dynamic quantisation), the rest as fp16w.
A last check embeds sample texts and images through the folder and through torch and refuses a folder whose
cosines fall below the precision's bound.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.errors import HarmaError
from harma_core.serving import MODEL_FILE, SERVING_FORMAT, SERVING_VERSION, ServingModel

PRECISIONS = {"fp32": 0.9999, "fp16w": 0.999, "int8": 0.98}  # precision -> least cosine with torch
_SAMPLE_TEXTS = ["a river next to a forest", "many planes are parked near a terminal", "overpass",
                 "Dense residential area with trees; some cars park along the roads."]
_MIN_CAST = 256  # initializers with fewer elements stay float32 (scales, biases of small layers)


class ExportError(HarmaError):
    """An export that cannot be made or does not match the torch model."""


def fp16_weights(src: Path, dst: Path) -> None:
    """Copy an ONNX graph storing its float32 initializers as float16, each cast back to float32 in the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= _MIN_CAST:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dst))


def int8_weights(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of MatMul/Gemm weights, then the remaining float weights as fp16w."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        plain, q = Path(tmp) / "plain.onnx", Path(tmp) / "q.onnx"
        model = onnx.load(str(src))
        del model.graph.value_info[:]  # the exporter's shape notes trip the quantiser's shape inference
        onnx.save(model, str(plain))
        quantize_dynamic(str(plain), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        fp16_weights(q, dst)


def save_tokenizer(loaded: Any, folder: Path) -> dict[str, Any]:
    """Write `tokenizer.json` for the model's tokenizer; returns the settings model.json records."""
    hf = getattr(loaded.tokenizer, "tok", None)
    if hf is not None:  # a Hugging Face tower (harma-lite): its fast tokenizer is already a `tokenizers` one
        hf.backend_tokenizer.save(str(folder / "tokenizer.json"))
        return {"kind": "hf", "max_length": int(loaded.tokenizer.context_length), "pad_id": int(hf.pad_token_id),
                "pad_token": str(hf.pad_token), "length": None, "attention_mask": True}
    return _save_clip_tokenizer(loaded.tokenizer, folder)


def _save_clip_tokenizer(tok: Any, folder: Path) -> dict[str, Any]:
    """open_clip's CLIP BPE as a `tokenizers` file: the same vocabulary, merges, lower-casing, word pattern and
    byte-level alphabet, with <start> and <end> around each text (what transformers' CLIP converter builds)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    if not hasattr(tok, "encoder") or not hasattr(tok, "bpe_ranks"):
        raise ExportError(f"cannot export tokenizer {type(tok).__name__}: only Hugging Face tokenizers and "
                          "open_clip's CLIP BPE are supported")
    merges = [pair for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    out = Tokenizer(models.BPE(vocab=dict(tok.encoder), merges=merges, end_of_word_suffix="</w>", fuse_unk=False))
    out.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    sot, eot = tok.decoder[tok.sot_token_id], tok.decoder[tok.eot_token_id]
    words = (f"{re.escape(sot)}|{re.escape(eot)}|" + r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
    out.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(words), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    out.post_processor = processors.TemplateProcessing(single=f"{sot} $A {eot}",
                                                       special_tokens=[(sot, tok.encoder[sot]), (eot, tok.encoder[eot])])
    out.save(str(folder / "tokenizer.json"))
    length = int(tok.context_length)
    return {"kind": "clip-bpe", "max_length": length, "pad_id": 0, "pad_token": tok.decoder[0], "length": length,
            "attention_mask": False}


def _check(folder: Path, loaded: Any, precision: str) -> dict[str, float]:
    """Cosines between the folder's embeddings and torch's on sample texts and images; refuse a poor folder."""
    from harma_core.embed import embed_images, embed_texts

    served = ServingModel(folder)
    want_ids = loaded.tokenizer(_SAMPLE_TEXTS).numpy()
    got_ids = served.token_ids(_SAMPLE_TEXTS)
    if want_ids.shape != got_ids.shape or not np.array_equal(want_ids, got_ids):
        raise ExportError(f"the exported tokenizer disagrees with the model's on {_SAMPLE_TEXTS}; this "
                          "tokenizer cannot be exported")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (96, 256, loaded.image_size)]
    text = float((embed_texts(served, _SAMPLE_TEXTS) * embed_texts(loaded, _SAMPLE_TEXTS)).sum(1).min())
    image = float((embed_images(served, images) * embed_images(loaded, images)).sum(1).min())
    if min(text, image) < PRECISIONS[precision]:
        raise ExportError(f"{precision} graphs in {folder} reach cosine {min(text, image):.5f} with torch, below "
                          f"{PRECISIONS[precision]}; choose a wider precision")
    return {"text_cosine": round(text, 6), "image_cosine": round(image, 6)}


def export_model(spec: str, out: str | Path, precision: str = "fp16w", adapter: str | None = "default") -> Path:
    """Export `spec` (anything harma_core.zoo.create_model takes) into the serving folder `out`; returns it."""
    from harma_core import onnx_runtime
    from harma_core.querybank import BANK_FILE
    from harma_core.zoo import create_model

    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}")
    loaded = create_model(spec, device="cpu", adapter=adapter)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        onnx_runtime.export_towers(loaded, raw)
        meta = json.loads((raw / "meta.json").read_text())
        convert = {"fp32": lambda s, d: shutil.copyfile(s, d), "fp16w": fp16_weights, "int8": int8_weights}[precision]
        for graph in ("image.onnx", "text.onnx"):
            convert(raw / graph, out / graph)
    tokenizer = save_tokenizer(loaded, out)
    bank = Path(loaded.adapter_dir) / BANK_FILE if loaded.adapter_dir else None
    if bank is not None and bank.is_file() and bank.resolve() != (out / BANK_FILE).resolve():
        shutil.copyfile(bank, out / BANK_FILE)
    model_json = {"format": SERVING_FORMAT, "version": SERVING_VERSION, "identity": loaded.identity,
                  "name": loaded.name, "dim": loaded.dim, "image_size": loaded.image_size,
                  "mean": list(loaded.mean), "std": list(loaded.std), "tokenizer": tokenizer,
                  "precision": precision, "exported_with": {"torch": meta["torch"],
                                                            "export_version": meta["export_version"]}}
    (out / MODEL_FILE).write_text(json.dumps(model_json, indent=1) + "\n", encoding="utf-8")
    model_json["check"] = _check(out, loaded, precision)
    (out / MODEL_FILE).write_text(json.dumps(model_json, indent=1) + "\n", encoding="utf-8")
    return out
