"""Relevance in words: the cut points that turn a hit's 0-1 relevance into strong / possible / weak, and their
colours on the map (outlines over a white halo, best matches darkest)."""
from __future__ import annotations

from dataclasses import dataclass

# Saturated orange to deep red outlines (readable over a white halo on any imagery); best matches darkest.
RAMP = ("#f5a300", "#ee6a12", "#dc3a1e", "#b8002b", "#7a0040")
STRONG, POSSIBLE, WEAK, UNRATED = "strong", "possible", "weak", "unrated"
# Relevance is the server's calibrated probability that a tile shows what was asked. 0.5 is where a match
# becomes more likely than not (and the server's no-match line); below 0.2 four in five such tiles are not one.
STRONG_AT = 0.5
POSSIBLE_AT = 0.2
NO_MATCH_COLOR = "#8c8c8c"  # the closest tiles of an answer that found no match: grey, dashed


@dataclass(frozen=True)
class RelevanceClass:
    """One class of the results layer's categorised outlines."""

    word: str
    color: str
    label: str


RELEVANCE_CLASSES = (
    RelevanceClass(STRONG, RAMP[-1], f"strong match (relevance ≥ {STRONG_AT:.2f})"),
    RelevanceClass(POSSIBLE, RAMP[2], f"possible match ({POSSIBLE_AT:.2f} – {STRONG_AT:.2f})"),
    RelevanceClass(WEAK, RAMP[0], f"weak match (< {POSSIBLE_AT:.2f})"),
    RelevanceClass(UNRATED, NO_MATCH_COLOR, "relevance not reported"),
)


def relevance_word(relevance: float | None) -> str:
    """'strong', 'possible', 'weak', or 'unrated' when the server reported no relevance."""
    if relevance is None:
        return UNRATED
    if relevance >= STRONG_AT:
        return STRONG
    return POSSIBLE if relevance >= POSSIBLE_AT else WEAK
