"""Score classes for the results layer's graduated outlines (equal intervals, light to dark)."""
from __future__ import annotations

from dataclasses import dataclass

# Saturated orange to deep red outlines (readable over a white halo on any imagery); best matches darkest.
RAMP = ("#f5a300", "#ee6a12", "#dc3a1e", "#b8002b", "#7a0040")


@dataclass(frozen=True)
class ScoreClass:
    """One class of the graduated renderer."""

    lower: float
    upper: float
    color: str
    label: str


def _pick(index: int, count: int) -> str:
    if count == 1:
        return RAMP[-1]
    return RAMP[round(index * (len(RAMP) - 1) / (count - 1))]


def score_classes(scores: list[float], count: int = 5) -> list[ScoreClass]:
    """Equal-interval classes covering all scores; one class when they are all equal or there are none."""
    if count < 1:
        raise ValueError(f"count={count}: need at least one class")
    if not scores:
        return [ScoreClass(-1.0, 1.0, RAMP[-1], "any score")]
    low, high = min(scores), max(scores)
    if high - low < 1e-9:
        return [ScoreClass(low, high, RAMP[-1], f"{low:.3f}")]
    count = min(count, len(scores))
    step = (high - low) / count
    classes = []
    for i in range(count):
        lower = low + i * step
        upper = high if i == count - 1 else low + (i + 1) * step
        classes.append(ScoreClass(lower, upper, _pick(i, count), f"{lower:.3f} – {upper:.3f}"))
    return classes
