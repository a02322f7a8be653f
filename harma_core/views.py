"""Test-time views of overhead images: the rotations and mirrorings (the dihedral group D4) of a square tile.

A scene seen from above has no preferred "up", but a CNN's embedding still moves when the tile turns. The unit
mean of a tile's embeddings over its views is steadier and retrieves better (MODEL_CARD.md: measured on val).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

VIEWS = (1, 2, 4, 8)  # identity; + mirror; the four quarter turns; all eight symmetries of the square
DEFAULT_VIEWS = 8  # new collections and evaluation; old collections keep what their manifest says (1)

Turn = Callable[[Any], Any]


def _turn(quarter: int, mirror: bool) -> Turn:
    """A transform of a [B, C, H, W] batch (H == W): a numpy array, or a torch tensor (torch only then)."""
    def apply(batch: Any) -> Any:
        if isinstance(batch, np.ndarray):
            out = np.rot90(batch, quarter, axes=(2, 3)) if quarter else batch
            return np.flip(out, axis=3) if mirror else out
        import torch  # a torch batch (training, the torch runtime): its caller has torch

        out = torch.rot90(batch, quarter, dims=(2, 3)) if quarter else batch
        return torch.flip(out, dims=(3,)) if mirror else out
    return apply


_ORDER = {1: [(0, False)], 2: [(0, False), (0, True)], 4: [(q, False) for q in range(4)],
          8: [(q, m) for m in (False, True) for q in range(4)]}


def check_views(views: int) -> int:
    """`views` when it is one of VIEWS, else a ValueError that names them."""
    if isinstance(views, bool) or views not in VIEWS:
        raise ValueError(f"views={views!r} is not supported; use one of {', '.join(map(str, VIEWS))} "
                         f"(1 = the tile as is, {DEFAULT_VIEWS} = all its rotations and mirrorings)")
    return int(views)


def view_turns(views: int) -> list[Turn]:
    """The batch transforms of `views` views; the first is the identity."""
    return [_turn(q, m) for q, m in _ORDER[check_views(views)]]
