"""Relevance feedback: the tiles an analyst marked good or bad, and the refined search they ask for."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError
from .hits import Hit
from .params import MAX_K

GOOD, BAD = "good", "bad"


@dataclass
class Marks:
    """Good/bad marks on tiles of one collection, kept across refine rounds until cleared."""

    collection: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    hits: dict[int, Hit] = field(default_factory=dict)

    def label(self, tile_id: int) -> str | None:
        """'good', 'bad' or None for an unmarked tile."""
        return self.labels.get(int(tile_id))

    def toggle(self, hit: Hit, label: str) -> str | None:
        """Mark hit with label, or unmark it when it already has that label; returns its new label."""
        if label not in (GOOD, BAD):
            raise ValueError(f"label {label!r} must be {GOOD!r} or {BAD!r}")
        if self.labels and hit.collection != self.collection:
            raise InputError(f"Your marks are on collection '{self.collection}': press Clear marks before "
                             f"marking tiles of '{hit.collection}'")
        self.collection = hit.collection
        if self.labels.get(hit.tile_id) == label:
            del self.labels[hit.tile_id]
            del self.hits[hit.tile_id]
            return None
        self.labels[hit.tile_id] = label
        self.hits[hit.tile_id] = hit
        return label

    def clear(self) -> None:
        """Forget every mark."""
        self.labels.clear()
        self.hits.clear()
        self.collection = ""

    @property
    def positive(self) -> tuple[int, ...]:
        """Tile ids marked good, sorted."""
        return tuple(sorted(t for t, lab in self.labels.items() if lab == GOOD))

    @property
    def negative(self) -> tuple[int, ...]:
        """Tile ids marked bad, sorted."""
        return tuple(sorted(t for t, lab in self.labels.items() if lab == BAD))

    def describe(self) -> str:
        """One line for the dock."""
        if not self.labels:
            return "No marks yet: select results and press Good or Bad, or use Mark on map"
        return f"{len(self.positive)} good · {len(self.negative)} bad in '{self.collection}'"


@dataclass(frozen=True)
class FeedbackParams:
    """A refined search: ranked by the marked tiles (and the query text), or all tiles above a score."""

    collection: str
    positive: tuple[int, ...] = ()
    negative: tuple[int, ...] = ()
    text: str = ""
    k: int = 10
    find_all: bool = False
    min_score: float | None = None

    def __post_init__(self) -> None:
        if not self.collection.strip():
            raise InputError("No marks yet: mark results good or bad before Refine or Find all")
        if not self.positive and not self.text.strip():
            raise InputError("Mark at least one tile as good (or keep the query text) before Refine or Find all")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise InputError(f"tiles {both} are marked both good and bad: unmark them on one side")
        if not 1 <= int(self.k) <= MAX_K:
            raise InputError(f"k={self.k} is out of range: use 1 to {MAX_K}")
        if self.find_all and self.min_score is None:
            raise InputError("Find all needs a minimum relevance: set it next to Find all")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"min relevance {self.min_score} is out of range: use 0 to 1")
        object.__setattr__(self, "positive", tuple(int(t) for t in self.positive))
        object.__setattr__(self, "negative", tuple(int(t) for t in self.negative))

    @property
    def label(self) -> str:
        """Short text naming this search (layer name and query field)."""
        marks = f"{len(self.positive)} good, {len(self.negative)} bad"
        text = f" + '{self.text.strip()}'" if self.text.strip() else ""
        if self.find_all:
            return f"all ≥ {self.min_score:.3f} like {marks}{text}"
        return f"refined by {marks}{text}"
