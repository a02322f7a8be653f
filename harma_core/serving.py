"""Serving without torch: a model folder of exported ONNX graphs, its tokenizer and its identity.

A model folder holds `model.json` (identity, name, dimension, image size and normalisation, tokenizer settings,
precision), `image.onnx`, `text.onnx`, `tokenizer.json` (Hugging Face `tokenizers`) and, when the model has
one, `querybank.safetensors`. harma-lite's folder ships in the package (harma_core/weights/harma-lite/); any
other model is exported once where the [train] extra is installed (`tools/export_model.py`) and then serves
anywhere with onnxruntime, numpy and tokenizers alone. `load_model` picks a folder, or falls back to the torch
zoo (exporting to the ONNX cache) when torch is installed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.errors import HarmaError, UnknownModelError
from harma_core.ort_session import RUNTIMES, OrtTowers, session_options

log = logging.getLogger(__name__)
MODEL_FILE = "model.json"
SERVING_FORMAT = "harma-serving"
SERVING_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "weights"
GRAPHS = ("image.onnx", "text.onnx", "tokenizer.json")


class ModelFolderError(HarmaError):
    """A model folder that is incomplete, damaged or of another format."""


def read_model_json(folder: Path) -> dict[str, Any]:
    """model.json of a model folder, checked: its format, and every file it needs present."""
    path = folder / MODEL_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFolderError(f"{folder} has no {MODEL_FILE}: export the model into it with "
                               "tools/export_model.py (needs the [train] extra)") from None
    except (OSError, ValueError) as e:
        raise ModelFolderError(f"{path} does not read as JSON ({e}); export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != SERVING_FORMAT:
        raise ModelFolderError(f"{path} is not a HarMA serving model (format {SERVING_FORMAT!r}); "
                               "export the model again with tools/export_model.py")
    if meta.get("version", 0) > SERVING_VERSION:
        raise ModelFolderError(f"{path} is format version {meta.get('version')}, newer than this package reads "
                               f"({SERVING_VERSION}); upgrade harma-search")
    missing = [f for f in GRAPHS if not (folder / f).is_file()]
    if missing:
        raise ModelFolderError(f"{folder} lacks {', '.join(missing)}; export the model again")
    keys = ("identity", "name", "dim", "image_size", "mean", "std", "tokenizer")
    if any(k not in meta for k in keys):
        raise ModelFolderError(f"{path} lacks {[k for k in keys if k not in meta]}; export the model again")
    return meta


class ServingModel(OrtTowers):
    """Both towers in ONNX Runtime on CPU, the tokenizer in `tokenizers`; what the server and indexing need."""

    runtime = "onnx"
    device = "cpu"

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        meta = read_model_json(self.folder)
        self.meta = meta
        self.identity: str = meta["identity"]
        self.name: str = meta["name"]
        self.dim = int(meta["dim"])
        self.image_size = int(meta["image_size"])
        self.mean = tuple(float(v) for v in meta["mean"])
        self.std = tuple(float(v) for v in meta["std"])
        self.precision: str = meta.get("precision", "fp32")
        self.adapter_dir: Path | None = self.folder if (self.folder / "querybank.safetensors").is_file() else None
        tok = meta["tokenizer"]
        self.pad_token_id: int | None = tok.get("pad_id") if tok.get("attention_mask") else None
        self._fixed_length: int | None = tok.get("length")  # CLIP-style towers read a fixed-length row
        self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(tok["max_length"]))
        self._tokenizer.enable_padding(pad_id=int(tok["pad_id"]), pad_token=str(tok["pad_token"]),
                                       length=self._fixed_length)
        try:
            self.image_session = ort.InferenceSession(str(self.folder / "image.onnx"),
                                                      session_options(threads), providers=["CPUExecutionProvider"])
            # a text query is ~100 small ops: waking sleeping threads for each costs more than the op, so spin
            self.text_session = ort.InferenceSession(str(self.folder / "text.onnx"), session_options(threads, True),
                                                     providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors for damaged graphs
            raise ModelFolderError(f"the graphs in {self.folder} do not load ({type(e).__name__}: {e}); "
                                   "export the model again") from e

    def token_ids(self, texts: list[str]) -> np.ndarray:
        """Token ids [B, L] of texts: padded to the longest (or the tower's fixed length), truncated."""
        return np.array([e.ids for e in self._tokenizer.encode_batch(list(texts))], dtype=np.int64)


def model_folder(spec: str | Path) -> Path | None:
    """The serving folder meant by `spec`: a folder with model.json (or a run folder whose `serving/` has
    one), or a model name shipped with the package (harma-lite); None when there is none."""
    path = Path(spec).expanduser()
    for folder in (path, path / "serving", SHIPPED_DIR / str(spec)):
        if (folder / MODEL_FILE).is_file():
            return folder
    return None


def torch_available() -> bool:
    """True when the [train] extra (torch) is installed."""
    from importlib.util import find_spec

    return find_spec("torch") is not None


def load_model(name: str | Path = "harma-lite", device: str = "auto", runtime: str = "auto",
               adapter: str | Path | None = "default", threads: int | None = None) -> Any:
    """The model to embed with. On CPU (the default) a model folder, or a name with shipped graphs, serves
    without torch; anything else (another model, CUDA, runtime 'torch', another adapter) needs the [train]
    extra and goes through harma_core.onnx_runtime (exported once to the ONNX cache)."""
    if runtime not in RUNTIMES:
        raise UnknownModelError(f"runtime '{runtime}' is not one of {RUNTIMES}")
    folder = model_folder(name) if adapter == "default" and runtime != "torch" and str(device) in ("auto", "cpu") \
        else None
    if folder is not None:  # 'auto' prefers the folder: serving never imports torch (--device cuda for a GPU)
        return ServingModel(folder, threads=threads)
    if not torch_available():
        raise UnknownModelError(
            f"model {str(name)!r} has no exported serving folder and torch is not installed. Export it once "
            "where torch is: pip install 'harma-search[train]' && python tools/export_model.py --model "
            f"{name} --out MODEL_DIR; then serve MODEL_DIR (--model MODEL_DIR)")
    from harma_core.onnx_runtime import load_model as load_through_torch

    return load_through_torch(str(name), device=device, runtime=runtime, adapter=adapter, threads=threads)
