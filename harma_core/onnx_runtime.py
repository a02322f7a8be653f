"""ONNX Runtime for both towers: graphs exported once per model identity, cached on disk, run on CPU.

`load_model(name, runtime="auto")` is `create_model` plus the runtime choice: 'auto' runs ONNX Runtime on
CPU and torch on CUDA. The ONNX model wraps the torch one (same identity, tokenizer and preprocessing) and
`harma_core.embed` sends its batches through the exported graphs. The graphs hold everything after
preprocessing: the tower, its HarMA adapters, the projection head and the L2 normalisation. The text graph
takes the attention mask as an input, so the adapters' padding mask is part of the graph (not hook state).
Training always runs in torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harma_core.errors import HarmaError
from harma_core.ort_session import RUNTIMES, OrtTowers, runtime_of, session_options  # noqa: F401  (runtime_of: re-exported)
from harma_core.zoo import LoadedModel, create_model

log = logging.getLogger(__name__)
EXPORT_VERSION = 1  # bump when the export code in this module changes: cached graphs of older versions are rebuilt
PARITY_COSINE = 0.9999  # ORT vs torch on the export's own example inputs, checked at export time
_EXPORT_BATCH = 2  # example batch for tracing; batch and text length are dynamic in the graph


class RuntimeChoiceError(HarmaError):
    """A runtime that cannot run here, or an unknown runtime name."""


class _ImageGraph(nn.Module):
    """Normalised pixels [B, 3, S, S] -> unit embeddings [B, dim]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(pixels), dim=-1)


class _HFTextGraph(nn.Module):
    """(input_ids, attention_mask) [B, L] -> unit embeddings, for open_clip's Hugging Face text towers."""

    def __init__(self, text: nn.Module) -> None:
        super().__init__()
        self.text = text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(self.text.proj(self.text.pooler(out, attention_mask)), dim=-1)


class _TokenTextGraph(nn.Module):
    """input_ids [B, L] -> unit embeddings, for open_clip's own text towers (padding read from the ids)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(input_ids), dim=-1)


def cache_root() -> Path:
    """Where exported graphs live: $HARMA_CACHE_DIR/onnx, else ~/.cache/harma-search/onnx."""
    base = os.environ.get("HARMA_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "harma-search") / "onnx"


def _hf_text(model: nn.Module) -> nn.Module | None:
    text = getattr(model, "text", None)
    return text if hasattr(text, "transformer") and hasattr(text, "pooler") else None


def _code_stamp() -> list[str]:
    """What defines the towers' forward besides the weights: library versions and our model code."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("torch", "open_clip_torch", "timm", "transformers", "onnxscript"):
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=none")
    here = Path(__file__).parent
    for f in ("adapters.py", "towers.py", "zoo.py", *(f"configs/{c.name}" for c in sorted(here.glob("configs/*")))):
        out.append(hashlib.sha256((here / f).read_bytes()).hexdigest()[:16])
    return out


def export_key(loaded: LoadedModel) -> str:
    """Folder name of a model's graphs: its identity, made file-safe, plus a hash of the identity, the
    library versions and the model code, so that a change to any of them gets a fresh export."""
    stamp = json.dumps([loaded.identity, EXPORT_VERSION, *_code_stamp()])
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", loaded.identity)[:80]
    return f"{safe}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def _export_mode():
    """MHA's fused fast path has no ONNX form; exporter chatter and tracer warnings are not for users."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _export(module: nn.Module, args: tuple, names: list[str], dynamic: tuple, path: Path) -> None:
    """Export one graph and check that ONNX Runtime reproduces torch on the example inputs."""
    import onnxruntime as ort

    program = torch.onnx.export(module, args, input_names=names, output_names=["unit_embedding"],
                                dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)
    program.save(str(path))
    want = module(*args).float().cpu().numpy()
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: a.cpu().numpy() for n, a in zip(names, args)})[0]
    cos = float((want * got).sum(axis=1).min())
    if not cos >= PARITY_COSINE:
        raise RuntimeChoiceError(f"the ONNX export of {type(module).__name__} disagrees with torch (cosine {cos:.6f} "
                                 f"< {PARITY_COSINE}); run with --runtime torch and report this model")


def export_towers(loaded: LoadedModel, folder: Path) -> None:
    """Write image.onnx, text.onnx and meta.json for `loaded` into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = loaded.model.eval()
    size = loaded.image_size
    batch = torch.export.Dim("batch", min=1, max=65536)
    length = torch.export.Dim("length", min=2, max=4096)
    ids = loaded.tokenizer(["a river next to a forest", "a harbour with many boats"]).to(loaded.device)
    hf = _hf_text(model)
    with _export_mode():
        gen = torch.Generator().manual_seed(0)  # a real-looking input for the parity check, not zeros
        pixels = torch.randn(_EXPORT_BATCH, 3, size, size, generator=gen).to(loaded.device)
        _export(_ImageGraph(model), (pixels,), ["pixels"], ({0: batch},), folder / "image.onnx")
        if hf is not None:
            mask = (ids != hf.config.pad_token_id).long()
            _export(_HFTextGraph(hf), (ids, mask), ["input_ids", "attention_mask"],
                    ({0: batch, 1: length}, {0: batch, 1: length}), folder / "text.onnx")
        else:  # fixed-length tokenizers (CLIP's 77): only the batch is dynamic
            _export(_TokenTextGraph(model), (ids,), ["input_ids"], ({0: batch},), folder / "text.onnx")
    pad = int(hf.config.pad_token_id) if hf is not None else None
    meta = {"identity": loaded.identity, "export_version": EXPORT_VERSION, "torch": torch.__version__,
            "image_size": size, "dim": loaded.dim, "pad_token_id": pad}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _valid(folder: Path, loaded: LoadedModel) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("identity") == loaded.identity and meta.get("export_version") == EXPORT_VERSION
            and all((folder / f).is_file() for f in ("image.onnx", "text.onnx")))


def exported_folder(loaded: LoadedModel, root: Path | None = None) -> tuple[Path, bool]:
    """The folder holding `loaded`'s graphs, exporting them first when missing; returns (folder, cached).

    The folder is written under a temporary name and renamed into place, so a crash or a concurrent
    export never leaves a half-written graph behind. Models with random weights are exported to a private
    temporary folder (their identity does not pin the weights).
    """
    if loaded.base_hash == "random":
        tmp = Path(tempfile.mkdtemp(prefix="harma-onnx-"))
        export_towers(loaded, tmp)
        return tmp, False
    root = root or cache_root()
    folder = root / export_key(loaded)
    if _valid(folder, loaded):
        return folder, True
    log.info("exporting %s to ONNX in %s (once per model)", loaded.identity, folder)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    tmp.chmod(0o755)
    try:
        export_towers(loaded, tmp)
        if folder.exists():  # stale or broken: replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process renamed its export into place first
            if not _valid(folder, loaded):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, False


class OnnxModel(OrtTowers):
    """A LoadedModel whose towers run in ONNX Runtime; every other attribute is the torch model's."""

    runtime = "onnx"

    def __init__(self, loaded: LoadedModel, folder: Path, threads: int | None = None, spin: bool = False,
                 level: str = "all", text_graph: str = "text.onnx") -> None:
        import onnxruntime as ort

        self.loaded = loaded
        self.folder = folder
        meta = json.loads((folder / "meta.json").read_text())
        self.pad_token_id: int | None = meta["pad_token_id"]
        self.image_session = ort.InferenceSession(str(folder / "image.onnx"), session_options(threads, spin, level),
                                                  providers=["CPUExecutionProvider"])
        # A text query is ~100 small ops: waking sleeping threads for each costs more than the op, so the text
        # tower spins (p50 4.9-5.1 ms against 6.6-7.1 ms on 2 cores); images keep the cores for tile readers.
        self.text_session = ort.InferenceSession(str(folder / text_graph), session_options(threads, True, level),
                                                 providers=["CPUExecutionProvider"])

    def __getattr__(self, name: str) -> Any:
        if name == "loaded":  # not set yet (unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.loaded, name)

    def token_ids(self, texts: list[str]) -> np.ndarray:
        """Token ids [B, L] of texts, padded to the longest (the torch model's tokenizer)."""
        return self.loaded.tokenizer(texts).numpy()


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """'auto' -> ONNX Runtime on CPU, torch on CUDA; refuses ONNX on a GPU (this build is CPU only)."""
    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"runtime '{runtime}' is not one of {RUNTIMES}")
    if runtime == "auto":
        return "onnx" if device.type == "cpu" else "torch"
    if runtime == "onnx" and device.type != "cpu":
        raise RuntimeChoiceError(f"the ONNX runtime runs on CPU only, not {device}; use --device cpu or "
                                 "--runtime torch")
    return runtime


def with_runtime(loaded: LoadedModel, runtime: str = "auto", threads: int | None = None) -> LoadedModel | OnnxModel:
    """`loaded` itself for torch, else an OnnxModel over its (cached or freshly exported) graphs."""
    if resolve_runtime(runtime, loaded.device) == "torch":
        return loaded
    folder, cached = exported_folder(loaded)
    try:
        onnx_model = OnnxModel(loaded, folder, threads=threads)
    except Exception:  # noqa: BLE001 - a damaged cached graph (truncated copy, disk error): export anew
        if not cached:
            raise
        log.warning("cached ONNX graphs in %s do not load; exporting again", folder)
        shutil.rmtree(folder, ignore_errors=True)
        folder, _ = exported_folder(loaded)
        onnx_model = OnnxModel(loaded, folder, threads=threads)
    if loaded.base_hash == "random":
        weakref.finalize(onnx_model, shutil.rmtree, folder, True)
    log.info("ONNX Runtime on CPU for %s (%s graphs in %s)", loaded.identity, "cached" if cached else "new", folder)
    return onnx_model


def load_model(name: str = "harma-lite", device: str | torch.device = "auto", runtime: str = "auto",
               adapter: str | Path | None = "default", threads: int | None = None) -> LoadedModel | OnnxModel:
    """`create_model` plus the runtime: 'auto' (ONNX Runtime on CPU, torch on CUDA), 'torch' or 'onnx'."""
    if runtime not in RUNTIMES:  # fail before minutes of model loading
        raise RuntimeChoiceError(f"runtime '{runtime}' is not one of {RUNTIMES}")
    return with_runtime(create_model(name, device=device, adapter=adapter), runtime, threads)
