"""Adapter soups: the tensor-wise weighted mean of adapters trained from one another (Wortsman et al. 2022).

Only adapters of the same base and HarMA layout average meaningfully; anything else is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harma_core.adapter_io import read_adapter, write_adapter
from harma_core.errors import AdapterError

LAYOUT_KEYS = ("base", "harma")  # what must agree between the ingredients


def soup(paths: Sequence[str | Path], out_dir: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Write the weighted mean of the adapter folders `paths` (equal weights by default) to out_dir."""
    if len(paths) < 2:
        raise AdapterError("a soup needs at least two adapter folders")
    w = [1.0 / len(paths)] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths) or min(w) < 0 or abs(sum(w) - 1) > 1e-6:
        raise AdapterError(f"weights {list(w)} must be one non-negative weight per adapter, summing to 1")
    configs, states = zip(*(read_adapter(p) for p in paths))
    for p, cfg, state in zip(paths[1:], configs[1:], states[1:]):
        for key in LAYOUT_KEYS:
            if cfg.get(key) != configs[0].get(key):
                raise AdapterError(f"{p} has another '{key}' than {paths[0]}: only adapters of one base and "
                                   "layout can be averaged")
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise AdapterError(f"{p} holds other tensors than {paths[0]}; average adapters of one layout")
    mean = {k: sum(wi * s[k].float() for wi, s in zip(w, states)).to(states[0][k].dtype) for k in states[0]}
    meta = {key: configs[0][key] for key in LAYOUT_KEYS if key in configs[0]}
    meta["extra"] = {"mode": configs[0].get("extra", {}).get("mode", "harma"),
                     "soup": {"of": [c["adapter_hash"] for c in configs], "weights": w}}
    return write_adapter(out_dir, mean, meta)
