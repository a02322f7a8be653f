"""HarMA adapters injected from outside into open_clip, Hugging Face and timm EfficientNet towers.

Every adapted block's output h becomes h' = s*A(h) + (1-s)*h = h + s*W_up(m) (HARMA.md), computed in
the second form so that a zero-initialised W_up makes step 0 bit-identical to the base. Adapters are
attached with forward hooks rather than by replacing modules: the base model's state-dict keys stay
unchanged, so base checkpoints and weight hashes stay valid after injection. Each adapter is registered
as the child `harma_adapter` of the block that owns the hooked module; the mini-adapters M live in
`model.harma` (a HarmaState), once, however many adapters share them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harma_core.errors import AdapterError
from harma_core.towers import TOWER_KINDS, Tower, find_towers, join_name

__all__ = [
    "HEAD_PATTERNS", "HarmaAdapter", "HarmaConfig", "HarmaState", "MiniAdapter", "adapter_state_dict",
    "freeze_norm_stats", "harma_config", "inject_harma", "mark_trainable", "trainable_parameters",
]
log = logging.getLogger(__name__)

SHARE_MODES = ("both", "text_only", "none")
# Projection heads into the joint space of open_clip models (CLIP, CustomTextCLIP, timm and HF towers).
HEAD_PATTERNS = ("visual.proj", "visual.head", "text_projection", "text.text_projection", "text.proj")
SCALE_NAMES = ("logit_scale", "logit_bias")


@dataclass(frozen=True)
class HarmaConfig:
    """HarMA adapter settings; `share` is 'both' (paper), 'text_only' (reference code) or 'none'."""

    bottleneck: int = 128
    mini: int = 64
    heads: int = 8
    gate_init: float = 0.6
    share: str = "both"
    towers: tuple[str, ...] = TOWER_KINDS
    image_stages: tuple[int, ...] = (-2, -1)  # CNN stages whose blocks get adapters (negative: from the end)
    mask_padding: bool = True  # adapter attention ignores padding tokens of text towers
    train_logit_scale: bool = True
    extra_trainable: tuple[str, ...] = ()  # parameter names or globs, e.g. the new heads "visual.head"

    def __post_init__(self) -> None:
        for name in ("towers", "image_stages", "extra_trainable"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.share not in SHARE_MODES:
            raise AdapterError(f"share='{self.share}' is not one of {SHARE_MODES}")
        if not self.towers or not set(self.towers) <= set(TOWER_KINDS):
            raise AdapterError(f"towers={self.towers} must be a non-empty subset of {TOWER_KINDS}")
        for width in (self.bottleneck, self.mini):
            if width <= 0 or width % self.heads:
                raise AdapterError(f"adapter width {width} must be positive and divisible by heads={self.heads}")
        if not self.image_stages or not all(isinstance(s, int) for s in self.image_stages):
            raise AdapterError(f"image_stages={self.image_stages} must be a non-empty list of stage indices")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HarmaConfig:
        """Build from a dict; unknown keys fail."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdapterError(f"unknown HarmaConfig keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


class MiniAdapter(nn.Module):
    """The shared mini-adapter M: a + W2(s3*MHA(W1 a) + (1-s3)*W1 a), W2 zero-initialised."""

    def __init__(self, width: int = 128, mini: int = 64, heads: int = 8, gate_init: float = 0.6) -> None:
        super().__init__()
        self.down = nn.Linear(width, mini)
        self.attn = nn.MultiheadAttention(mini, heads, batch_first=True)
        self.gate = nn.Parameter(torch.tensor(float(gate_init)))
        self.up = nn.Linear(mini, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, a: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """a: [B, L, width] -> [B, L, width]."""
        u = self.down(a)
        v = self.attn(u, u, u, key_padding_mask=key_padding_mask, need_weights=False)[0]
        s3 = torch.sigmoid(self.gate)
        return a + self.up(s3 * v + (1 - s3) * u)


class TokenMask:
    """Padding positions of the last batch that entered a text tower IN THE CALLING THREAD, set by a pre-hook.

    The hooks only see a module's inputs, so the mask is taken at the tower's entry and read by its
    adapters. It lives in thread-local storage: concurrent encodes (server threads) each see their own
    batch's mask (issue 17). It is kept (not cleared) so that activation-checkpoint recomputation sees
    the same mask; that holds when backward runs in the forward's thread, as autograd does on the CPU.
    """

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id
        self._local = threading.local()

    def __reduce__(self) -> tuple:  # deepcopy / pickle: a fresh, empty mask (thread-locals do not copy)
        return (TokenMask, (self.pad_id,))

    @property
    def value(self) -> torch.Tensor | None:
        """[B, L] bool, True = padding, of this thread's last batch (None: none recorded or no padding info)."""
        return getattr(self._local, "value", None)

    @value.setter
    def value(self, mask: torch.Tensor | None) -> None:
        self._local.value = mask

    def record_ids(self, module: nn.Module, args: tuple) -> None:
        """Pre-hook on an open_clip token embedding: padding is where ids == pad_id."""
        self.value = args[0] == self.pad_id

    def record_hf(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Pre-hook (with kwargs) on a Hugging Face encoder: padding is where attention_mask == 0."""
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self.value = mask == 0 if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None


class HarmaAdapter(nn.Module):
    """HarMA's gated adapter for one block; `forward(h)` returns the adapted block output h'."""

    def __init__(self, width: int, cfg: HarmaConfig, layout: str = "bld", mini: MiniAdapter | None = None,
                 mini_name: str = "", token_mask: TokenMask | None = None) -> None:
        super().__init__()
        if layout not in ("bld", "lbd", "nchw"):
            raise AdapterError(f"layout '{layout}' is not one of 'bld', 'lbd', 'nchw'")
        self.width, self.layout, self.mini_name = width, layout, mini_name
        self.down = nn.Linear(width, cfg.bottleneck)
        self.attn = nn.MultiheadAttention(cfg.bottleneck, cfg.heads, batch_first=True)
        self.inner_gate = nn.Parameter(torch.tensor(float(cfg.gate_init)))  # s2
        self.up = nn.Linear(cfg.bottleneck, width)
        self.gate = nn.Parameter(torch.tensor(float(cfg.gate_init)))  # s, the block gate
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        # Held in tuples so nn.Module does not register them: M belongs to model.harma, shared.
        self._mini = (mini,)
        self._token_mask = (token_mask,)

    @property
    def mini(self) -> MiniAdapter | None:
        """The (possibly shared) mini-adapter M used by this adapter, if any."""
        return self._mini[0]

    def extra_repr(self) -> str:
        return f"width={self.width}, layout={self.layout}, mini={self.mini_name or None}"

    def delta(self, h: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """s * W_up(m) for tokens h: [B, L, width]."""
        z = F.gelu(self.down(h))
        a = self.attn(z, z, z, key_padding_mask=key_padding_mask, need_weights=False)[0]
        if self.mini is not None:
            a = self.mini(a, key_padding_mask)
        a = self.attn(a, a, a, key_padding_mask=key_padding_mask, need_weights=False)[0]  # same module again
        s2 = torch.sigmoid(self.inner_gate)
        return torch.sigmoid(self.gate) * self.up(s2 * z + (1 - s2) * a)

    def _padding(self, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
        source = self._token_mask[0]
        mask = source.value if source is not None else None
        if mask is None:
            return None
        if mask.shape[0] != batch or mask.shape[1] > length:
            raise AdapterError(f"the padding mask recorded at the text tower's entry is {tuple(mask.shape)} but "
                               f"the adapter sees {batch} x {length} tokens; run the tower through its token "
                               "embedding (encode_text), or inject with mask_padding=False")
        if mask.shape[1] < length:  # a class token appended after the text (CoCa style) is never padding
            mask = F.pad(mask, (0, length - mask.shape[1]), value=False)
        return (mask & ~mask.all(dim=1, keepdim=True)).to(device)  # an all-padding row attends to all

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Adapted output h' = h + s * W_up(m) in the input's own layout."""
        if self.layout == "nchw":
            b, c, hh, ww = h.shape
            d = self.delta(h.flatten(2).transpose(1, 2))
            return h + d.transpose(1, 2).reshape(b, c, hh, ww)
        if self.layout == "lbd":
            tokens = h.transpose(0, 1)
            return h + self.delta(tokens, self._padding(*tokens.shape[:2], h.device)).transpose(0, 1)
        return h + self.delta(h, self._padding(*h.shape[:2], h.device))

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the adapted module (a bound method, so deepcopy keeps it with its adapter)."""
        return self(output)


class HarmaState(nn.Module):
    """Attached as `model.harma`: the config, the mini-adapters M and where adapters were placed."""

    def __init__(self, cfg: HarmaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.mini = nn.ModuleDict()
        self.sites: dict[str, list[str]] = {}  # tower kind -> dotted names of adapted modules


def _plan_minis(towers: list[Tower], cfg: HarmaConfig, state: HarmaState) -> dict[str, list[str | None]]:
    """Which M each adapter uses; with 'both', block j of n uses M[j*K//n], K = the smaller depth."""
    def new(key: str) -> str:
        state.mini[key] = MiniAdapter(cfg.bottleneck, cfg.mini, cfg.heads, cfg.gate_init)
        return key

    sizes = {t.kind: len(t.sites) for t in towers}
    if cfg.share == "both":
        k = min(sizes.values())
        keys = [new(f"shared_{i}") for i in range(k)]
        return {kind: [keys[j * k // n] for j in range(n)] for kind, n in sizes.items()}
    return {kind: [new(f"{kind}_{j}") if cfg.share == "none" or kind == "text" else None for j in range(n)]
            for kind, n in sizes.items()}


def inject_harma(model: nn.Module, cfg: HarmaConfig | None = None) -> nn.Module:
    """Add HarMA adapters to every matched tower of `model` (in place) and mark what trains; returns model."""
    cfg = cfg or HarmaConfig()
    if isinstance(getattr(model, "harma", None), HarmaState):
        raise AdapterError("the model already has HarMA adapters; build a fresh base to inject again")
    towers = find_towers(model, cfg.image_stages, cfg.towers)
    if not towers:
        raise AdapterError(
            f"no HarMA injection point matched in {type(model).__name__} for towers {cfg.towers}: supported are "
            "open_clip transformer towers (resblocks[i].mlp), Hugging Face encoders (encoder.layer[i].output"
            ".dense) and timm EfficientNet image towers (blocks[stage][i])")
    missing = sorted(set(cfg.towers) - {t.kind for t in towers})
    if missing:
        log.warning("HarMA: no %s tower matched in %s; adapting only %s", missing, type(model).__name__,
                    [t.name for t in towers])
    state = HarmaState(cfg)
    plan = _plan_minis(towers, cfg, state)
    ref = next(towers[0].sites[0].target.parameters(), None)
    if ref is not None:
        state.to(device=ref.device, dtype=ref.dtype)
    for tower in towers:
        mask = None
        if cfg.mask_padding and tower.mask_module is not None:
            mask = TokenMask(tower.pad_id)
            if tower.mask_style == "hf":
                tower.mask_module.register_forward_pre_hook(mask.record_hf, with_kwargs=True)
            else:
                tower.mask_module.register_forward_pre_hook(mask.record_ids)
        for site, key in zip(tower.sites, plan[tower.kind]):
            if hasattr(site.owner, "harma_adapter"):
                raise AdapterError(f"{site.name} already carries a harma_adapter; build a fresh base")
            adapter = HarmaAdapter(site.width, cfg, site.layout, state.mini[key] if key else None,
                                   key or "", mask)
            p = next(site.target.parameters(), None)
            if p is not None:
                adapter.to(device=p.device, dtype=p.dtype)
            site.owner.harma_adapter = adapter
            site.target.register_forward_hook(adapter.hook)
        state.sites[tower.kind] = [s.name for s in tower.sites]
    model.harma = state
    mark_trainable(model, "harma")
    return model


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern)


def harma_config(model: nn.Module) -> HarmaConfig:
    """The HarmaConfig a model was injected with (AdapterError when it has none)."""
    state = getattr(model, "harma", None)
    if not isinstance(state, HarmaState):
        raise AdapterError(f"{type(model).__name__} has no HarMA adapters; call inject_harma(model) first")
    return state.config


def _pattern_names(model: nn.Module, patterns: tuple[str, ...], what: str) -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    out: set[str] = set()
    for pattern in patterns:
        hit = {n for n in names if _matches(n, pattern)}
        if not hit:
            raise AdapterError(f"{what} pattern '{pattern}' matches no parameter of {type(model).__name__}; "
                               f"parameter names look like {names[:3]}")
        out |= hit
    return out


def _adapter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that `save_adapter` writes: adapters, M, temperature and extra heads."""
    cfg = harma_config(model)
    names = {join_name(m, p) for m, mod in model.named_modules() if isinstance(mod, (HarmaAdapter, HarmaState))
             for p, _ in mod.named_parameters()}
    if cfg.train_logit_scale:
        names |= {n for n, _ in model.named_parameters() if n in SCALE_NAMES}
    return names | _pattern_names(model, cfg.extra_trainable, "extra_trainable")


def mark_trainable(model: nn.Module, mode: str = "harma") -> tuple[int, int]:
    """Set requires_grad for mode 'harma' (adapters), 'heads' (projections) or 'full'; returns counts."""
    if mode == "full":
        train = {n for n, _ in model.named_parameters()}
    elif mode == "harma":
        train = _adapter_names(model)
    elif mode == "heads":
        present = [p for p in HEAD_PATTERNS if any(_matches(n, p) for n, _ in model.named_parameters())]
        if not present:
            raise AdapterError(f"no projection head among {HEAD_PATTERNS} in {type(model).__name__}")
        train = _pattern_names(model, tuple(present), "head")
        train |= {n for n, _ in model.named_parameters() if n in SCALE_NAMES}
    else:
        raise AdapterError(f"mode '{mode}' is not one of 'harma', 'heads', 'full'")
    for name, p in model.named_parameters():
        p.requires_grad_(name in train)
    return trainable_parameters(model)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared parameters count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def freeze_norm_stats(model: nn.Module) -> int:
    """Put frozen BatchNorms in eval mode (call after model.train()); returns how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters(recurse=False)):
            m.eval()
            count += 1
    return count


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained weights only (adapters, M, logit_scale, extra_trainable), sharing storage with model."""
    names = _adapter_names(model)
    return {n: p.detach() for n, p in model.named_parameters() if n in names}

