"""Where HarMA adapters go: the image and text towers of open_clip, Hugging Face and timm EfficientNet models."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from harma_core.errors import AdapterError

TOWER_KINDS = ("image", "text")


@dataclass
class Site:
    target: nn.Module  # the module whose output is adapted
    owner: nn.Module  # the block that holds the adapter as child `harma_adapter`
    name: str
    width: int
    layout: str


@dataclass
class Tower:
    kind: str
    name: str
    sites: list[Site]
    mask_module: nn.Module | None = None  # where padding is recorded (text towers)
    mask_style: str = ""  # "ids" (open_clip) or "hf"
    pad_id: int = 0


def join_name(*parts: str) -> str:
    """Dotted module name from its non-empty parts."""
    return ".".join(p for p in parts if p)


def _last(module: nn.Module, kind: type) -> nn.Module | None:
    found = None
    for m in module.modules():
        if isinstance(m, kind):
            found = m
    return found


def _kind(name: str) -> str:
    return "image" if "visual" in name.split(".") else "text"


def _open_clip_tower(model: nn.Module, name: str, mod: nn.Module) -> Tower | None:
    blocks = getattr(mod, "resblocks", None)
    if (not isinstance(blocks, nn.ModuleList) or not len(blocks) or type(mod).__name__ == "MultimodalTransformer"
            or "decoder" in name or not all(isinstance(getattr(b, "mlp", None), nn.Module) for b in blocks)):
        return None
    # older open_clip releases have no batch_first and run their blocks sequence-first
    layout = "bld" if getattr(mod, "batch_first", False) else "lbd"
    sites = []
    for i, b in enumerate(blocks):
        lin = _last(b.mlp, nn.Linear)
        if lin is None:
            raise AdapterError(f"{join_name(name, 'resblocks', str(i), 'mlp')} has no nn.Linear to read its width from")
        sites.append(Site(b.mlp, b, join_name(name, "resblocks", str(i), "mlp"), lin.out_features, layout))
    tower = Tower(_kind(name), name, sites)
    parent = model.get_submodule(name.rpartition(".")[0])
    if tower.kind == "text" and isinstance(getattr(parent, "token_embedding", None), nn.Embedding):
        tower.mask_module, tower.mask_style = parent.token_embedding, "ids"
        tower.pad_id = int(getattr(parent, "pad_id", 0))
    return tower


def _hf_tower(name: str, mod: nn.Module) -> Tower | None:
    layers = getattr(getattr(mod, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        return None
    if not all(isinstance(getattr(getattr(lay, "output", None), "dense", None), nn.Linear) for lay in layers):
        return None
    sites = [Site(lay.output.dense, lay.output, join_name(name, "encoder.layer", str(i), "output.dense"),
                   lay.output.dense.out_features, "bld") for i, lay in enumerate(layers)]
    tower = Tower(_kind(name), name, sites)
    if tower.kind == "text":
        tower.mask_module, tower.mask_style = mod, "hf"
    return tower


def _efficientnet_tower(name: str, mod: nn.Module, stages: tuple[int, ...]) -> Tower | None:
    blocks = getattr(mod, "blocks", None)
    if not (isinstance(blocks, nn.Sequential) and hasattr(mod, "conv_stem")
            and all(isinstance(s, nn.Sequential) for s in blocks)):
        return None
    n = len(blocks)
    bad = [s for s in stages if not -n <= s < n]
    if bad:
        raise AdapterError(f"image_stages {bad} out of range for {name or 'the model'}, which has stages "
                           f"0..{n - 1}; use e.g. image_stages=[-2, -1] for the last two")
    sites = []
    for s in sorted({s % n for s in stages}):
        for i, block in enumerate(blocks[s]):
            conv = _last(block, nn.Conv2d)
            if conv is None:
                raise AdapterError(f"{join_name(name, 'blocks', str(s), str(i))} has no Conv2d to read its width from")
            sites.append(Site(block, block, join_name(name, "blocks", str(s), str(i)), conv.out_channels, "nchw"))
    return Tower("image", name, sites)


def find_towers(model: nn.Module, image_stages: tuple[int, ...], kinds: tuple[str, ...]) -> list[Tower]:
    """The image and text towers of `model` that `kinds` names, each with the blocks its adapters hook."""
    towers: list[Tower] = []
    for name, mod in model.named_modules():
        if any(name.startswith(t.name + ".") or (t.name == "" and name) for t in towers):
            continue  # inside a tower already found
        tower = (_open_clip_tower(model, name, mod) or _hf_tower(name, mod)
                 or _efficientnet_tower(name, mod, image_stages))
        if tower is not None:
            towers.append(tower)
    for kind in TOWER_KINDS:
        same = [t.name for t in towers if t.kind == kind]
        if len(same) > 1:
            raise AdapterError(f"found several {kind} towers {same}; inject into one model with one tower each")
    return [t for t in towers if t.kind in kinds]
