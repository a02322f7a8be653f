"""Near-duplicate suppression: hits whose footprints overlap more than an IoU threshold are one place, and
only the best-ranked of them is kept (greedy non-maximum suppression, as in object detection)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


def suppress(geoms: Sequence[BaseGeometry | None], iou: float, want: int) -> tuple[list[int], list[int]]:
    """Indices of the hits kept (geoms are in rank order, best first), at most `want`, and for each kept hit
    how many later hits overlapped it by more than `iou` and were folded into it. A hit without a footprint
    is always kept. IoU is measured on the EPSG:4326 footprints: tiles that overlap are neighbours, where
    degrees are a locally affine map of the ground, so the ratio of areas holds."""
    kept: list[int] = []
    folded: list[int] = []
    boxes = np.empty((0, 4))  # bounds and area of each kept hit that has a footprint
    areas = np.empty(0)
    slot: list[int] = []  # position in `kept` of each row of `boxes`
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            if len(kept) < want:
                kept.append(i)
                folded.append(0)
            continue
        b = np.asarray(g.bounds)
        near = np.flatnonzero((boxes[:, 0] < b[2]) & (boxes[:, 2] > b[0]) & (boxes[:, 1] < b[3])
                              & (boxes[:, 3] > b[1]))
        best, best_iou = -1, iou
        if len(near):
            others = [geoms[kept[slot[j]]] for j in near]
            inter = shapely.area(shapely.intersection(others, g))
            ious = inter / np.maximum(areas[near] + g.area - inter, 1e-300)
            j = int(np.argmax(ious))
            if ious[j] > best_iou:
                best, best_iou = slot[int(near[j])], float(ious[j])
        if best >= 0:
            folded[best] += 1
            continue
        if len(kept) >= want:  # full: later hits only count as duplicates of what is kept
            continue
        slot.append(len(kept))
        kept.append(i)
        folded.append(0)
        boxes = np.vstack([boxes, b])
        areas = np.append(areas, g.area)
    return kept, folded
