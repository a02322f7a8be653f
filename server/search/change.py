"""Change scores of paired cell embeddings (pure numpy): how much a place changed between two dates, in general
or with respect to a text query.

Definitions (rows are unit embeddings of the same cells, before and after):
* distance = 1 - cos(before, after), in [0, 2]: the raw amount of change of a cell.
* text rise = cos(after, query) - cos(before, query): how much more the cell looks like the query after.
  direction "appear" ranks by the rise, "disappear" by its negative (the fall).
* change = the robust z-score of the raw score on the area's own cells: (raw - median) / (1.4826 * MAD), so
  0 is a typical cell of this area, ~1 a one-sigma outlier, higher = more change than usual here. The
  scale has a floor of 1e-6 so an area where every cell scored the same gets change 0 everywhere.
* percentile = the share of the area's cells with a lower raw score, in [0, 1].
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = ("appear", "disappear")
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_SCALE_FLOOR = 1e-6


def _check_pairs(before: np.ndarray, after: np.ndarray) -> None:
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"before {before.shape} and after {after.shape} must be (cells, dim) arrays of one shape")


def cosine_distance(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """1 - cosine of paired unit rows, clipped to [0, 2]."""
    _check_pairs(before, after)
    cos = np.einsum("ij,ij->i", before.astype(np.float64), after.astype(np.float64))
    return np.clip(1.0 - cos, 0.0, 2.0)


def text_rise(before: np.ndarray, after: np.ndarray, query: np.ndarray, direction: str = "appear"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, before cosine, after cosine) for a unit query vector: score = rise for 'appear', fall for
    'disappear'."""
    _check_pairs(before, after)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} must be one of {DIRECTIONS}")
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    cos_b, cos_a = before.astype(np.float64) @ q, after.astype(np.float64) @ q
    rise = cos_a - cos_b
    return (rise if direction == "appear" else -rise), cos_b, cos_a


def robust_z(raw: np.ndarray) -> np.ndarray:
    """(raw - median) / (1.4826 * MAD) over the given cells (scale floored at 1e-6); empty in, empty out."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size == 0:
        return raw
    med = np.median(raw)
    scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(raw - med))), _SCALE_FLOOR)
    return (raw - med) / scale


def percentile_rank(raw: np.ndarray) -> np.ndarray:
    """Share of the other cells with a strictly lower raw score, in [0, 1] (ties share a rank)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size <= 1:
        return np.zeros_like(raw)
    return np.searchsorted(np.sort(raw), raw, side="left") / (raw.size - 1)


def change_scores(before: np.ndarray, after: np.ndarray, query: np.ndarray | None = None,
                  direction: str = "appear") -> dict[str, np.ndarray]:
    """Every score of the module for paired cells: distance, change, percentile (and query_before,
    query_after, rise when a query is given; then change and percentile rank the directed rise)."""
    out = {"distance": cosine_distance(before, after)}
    raw = out["distance"]
    if query is not None:
        raw, out["query_before"], out["query_after"] = text_rise(before, after, query, direction)
        out["rise"] = out["query_after"] - out["query_before"]
    out["change"] = robust_z(raw)
    out["percentile"] = percentile_rank(raw)
    return out
