"""Adapter files on disk: `adapter.safetensors` (trained weights only) + `adapter_config.json`, and their hash.

Depends on harma_core.adapters (what to save and where it goes), never the reverse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harma_core.adapters import HarmaConfig, HarmaState, adapter_state_dict, harma_config, inject_harma
from harma_core.errors import AdapterError

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "harma-adapter"
FORMAT_VERSION = 1


def state_hash(state: Mapping[str, torch.Tensor], length: int = 8) -> str:
    """Short sha256 over names, dtypes, shapes and bytes of a state dict (order independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # viewing as bytes works for every dtype, bfloat16 included (numpy has none)
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]


def write_adapter(out_dir: str | Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write weights and config into out_dir (created if needed); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
              "adapter_hash": state_hash(tensors), "tensors": len(tensors),
              "parameters": sum(t.numel() for t in tensors.values())}
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as e:
        raise AdapterError(f"adapter config for {out} is not JSON-serialisable ({e}); "
                           "pass only str/int/float/bool/list/dict values in `extra`") from e
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt", "harma": FORMAT})
    (out / CONFIG_FILE).write_text(text + "\n")
    return out


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """The parsed `adapter_config.json` of an adapter folder (base model name under 'base')."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise AdapterError(f"{path} is not an adapter folder: {CONFIG_FILE} is missing; give a folder "
                           "written by save_adapter (e.g. the best/ folder of a training run)")
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AdapterError(f"{file} cannot be read as JSON ({e}); re-export the adapter") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise AdapterError(f"{file} is not a HarMA adapter config (format should be '{FORMAT}')")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(f"{file} has format_version {config['format_version']}, newer than this "
                           f"harma_core understands ({FORMAT_VERSION}); upgrade harma-search")
    return config


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, weights) of an adapter folder, weights on the CPU."""
    config = read_adapter_config(path)
    file = Path(path) / WEIGHTS_FILE
    if not file.is_file():
        raise AdapterError(f"{file} is missing; the adapter folder {path} is incomplete, re-export it")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise AdapterError(f"{file} is not a readable safetensors file ({e}); re-export the adapter") from e
    return config, state


def save_adapter(model: nn.Module, out_dir: str | Path, base_name: str,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write adapter.safetensors + adapter_config.json (base name, HarMA config, extra) into out_dir."""
    meta = {"base": base_name, "harma": harma_config(model).to_dict(), "extra": dict(extra or {})}
    return write_adapter(out_dir, adapter_state_dict(model), meta)


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Inject (if needed) and load an adapter folder onto a freshly built base; strict on keys and shapes.

    A folder without a 'harma' config (a heads/full run) holds plain tensors, loaded by parameter name.
    """
    config, state = read_adapter(path)
    if "harma" not in config:  # a heads/full run: plain trained tensors, loaded by name
        return _load_plain(model, path, state)
    cfg = HarmaConfig.from_dict(config["harma"])
    current = getattr(model, "harma", None)
    if isinstance(current, HarmaState):
        if current.config != cfg:
            raise AdapterError(f"the model carries adapters with {current.config}, but {path} was saved "
                               f"with {cfg}; load onto a freshly built base")
    else:
        inject_harma(model, cfg)
    own = adapter_state_dict(model)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise AdapterError(f"{path} does not fit this model (adapter saved for '{config.get('base', '?')}'): "
                           f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}; "
                           "build the base model it names")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(t.shape)}" for k, t in own.items() if t.shape != state[k].shape]
    if wrong:
        raise AdapterError(f"{path}: tensor shapes do not fit the model: {_few(wrong)}; build the base it names")
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k])
    return model


def _load_plain(model: nn.Module, path: str | Path, state: Mapping[str, torch.Tensor]) -> nn.Module:
    own = dict(model.named_parameters())
    unknown = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if unknown or wrong:
        raise AdapterError(f"{path} does not fit this model: unknown tensors {_few(unknown)}, wrong shapes "
                           f"{_few(wrong)}; build the base model it names")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    return model


def _few(items: list[str], n: int = 8) -> str:
    return f"{items[:n]}{' ...' if len(items) > n else ''}"


def adapter_hash(source: str | Path | Mapping[str, torch.Tensor] | nn.Module) -> str:
    """Short sha256 of adapter weights, from an adapter folder, a state dict or an injected model."""
    if isinstance(source, nn.Module):
        return state_hash(adapter_state_dict(source))
    if isinstance(source, Mapping):
        return state_hash(source)
    return state_hash(read_adapter(source)[1])
