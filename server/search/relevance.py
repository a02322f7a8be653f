"""Relevance a person can read: a hit's cosine placed against what real queries reach on the same collection.

Cosines are not comparable across queries: a nonsense text ("qwxz zzkq 12345") reaches the same best cosine
as a real one on some collections. So `relevance` (0..1) combines two things measured on real captions (the
model's query bank, `bank.vectors`):
- `collection percentile`: the share of bank captions whose *best* hit on this collection scores below this
  hit's cosine (0.5 = as good as a typical real query's best hit here);
- `text gate`: how much the query reads like a caption at all: its cosine with its nearest bank caption,
  ramped from 0 (less like any caption than the 0.5th percentile of bank captions are like their nearest other
  caption) to 1 (above the 5th percentile). Nonsense strings fall below the ramp.
A search by example has no text: its hits are placed against how similar sampled tiles are to their nearest
other tile, with no gate. Calibrations are cached per collection and redone when its tile count moves 10 %.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from harma_core.calibration import Calibration as ScoreCalibration

REFERENCE_QUERIES = 512  # bank captions (or tiles, for by-example) whose best hit calibrates a collection
GATE_SAMPLE = 2000  # bank captions whose nearest other caption sets the text gate
GATE_QUANTILES = (0.005, 0.05)  # ramp ends, chosen on UCM val captions vs gibberish (BENCHMARKS.md)
DUPLICATE = 0.999  # captions this close are the same text: not a neighbour
RECALIBRATE = 0.10  # relative change in tile count after which a calibration is redone


class Bank(Protocol):
    """What relevance needs of a query bank (harma_core.querybank.QueryBank): unit caption vectors, an identity,
    and query expansion where the bank holds training images."""

    vectors: np.ndarray
    identity: str

    @property
    def expands(self) -> bool: ...

    def expand(self, text_vectors: np.ndarray, bank_cosines: np.ndarray | None = None) -> np.ndarray: ...


def _spread(n: int, m: int) -> np.ndarray:
    """m indices spread evenly over range(n) (deterministic, no RNG)."""
    return np.unique(np.linspace(0, n - 1, min(n, m)).astype(np.int64)) if n else np.zeros(0, np.int64)


@dataclass(frozen=True)
class TextGate:
    """A ramp on a query's cosine with its nearest bank caption."""

    low: float
    high: float

    @classmethod
    def from_bank(cls, vectors: np.ndarray) -> TextGate:
        """Ramp ends at the 0.5th and 5th percentile of bank captions' nearest-other-caption cosine."""
        sample = vectors[_spread(len(vectors), GATE_SAMPLE)]
        nearest = np.empty(len(sample))
        for s in range(0, len(sample), 256):  # bounded memory for banks of many captions
            sims = sample[s:s + 256] @ vectors.T
            sims[sims >= DUPLICATE] = -1.0  # itself and verbatim copies
            nearest[s:s + 256] = sims.max(axis=1)
        low, high = np.quantile(nearest, GATE_QUANTILES)
        return cls(float(low), float(max(high, low + 1e-3)))

    def __call__(self, nearest: float) -> float:
        return float(np.clip((nearest - self.low) / (self.high - self.low), 0.0, 1.0))


@dataclass(frozen=True)
class Calibration:
    """Sorted best cosines that reference queries reach on one collection."""

    best: np.ndarray
    tiles: int

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Share of reference queries whose best hit scores at most each score."""
        if not len(self.best):
            return np.zeros(len(scores))
        return np.searchsorted(self.best, np.asarray(scores, dtype=np.float64), side="right") / len(self.best)


def _best_of(col: Any, queries: np.ndarray, skip_self: bool) -> np.ndarray:
    """Each query's best cosine on the collection (the second best when the query is one of its tiles)."""
    k = 2 if skip_self else 1
    out = []
    for q in queries:
        hits = col.query(q, k)
        if skip_self:
            hits = [h for h in hits if h[1] < DUPLICATE][:1] or hits[1:2]
        if hits:
            out.append(hits[0][1])
    return np.sort(np.asarray(out, dtype=np.float64))


class Relevance:
    """Calibrations per collection and per query kind, computed on first use; thread-safe."""

    def __init__(self, bank: Bank | None, calibration: ScoreCalibration | None = None) -> None:
        self.bank = bank
        self.calibration = calibration  # text queries' P(match) (server/search/calibrated.py); None: percentiles
        self.gate = TextGate.from_bank(bank.vectors) if bank is not None else None
        self._cache: dict[tuple[str, str], Calibration] = {}
        self._lock = threading.Lock()

    def _calibration(self, col: Any, kind: str) -> Calibration:
        key = (str(col.folder), kind)
        n = len(col)
        with self._lock:
            cal = self._cache.get(key)
        if cal is not None and cal.tiles and abs(n - cal.tiles) <= RECALIBRATE * cal.tiles:
            return cal
        if kind in ("text", "text+expanded"):
            assert self.bank is not None
            refs = self.bank.vectors[_spread(len(self.bank.vectors), REFERENCE_QUERIES)]
            if kind == "text+expanded":  # expanded queries reach higher cosines: compare like with like
                refs = self.bank.expand(refs)
            best = _best_of(col, refs, skip_self=False)
        else:
            ids = col.ids()
            picked = [ids[i] for i in _spread(len(ids), REFERENCE_QUERIES // 2)]
            best = _best_of(col, col.vectors(picked), skip_self=True) if picked else np.zeros(0)
        cal = Calibration(best, n)
        with self._lock:
            self._cache[key] = cal
        return cal

    def bank_cosines(self, vector: np.ndarray) -> np.ndarray | None:
        """A query's cosine with every bank caption (what the gate and expansion read), None without a bank."""
        return None if self.bank is None else self.bank.vectors @ vector

    def text_gate(self, vector: np.ndarray, bank_cosines: np.ndarray | None = None) -> float | None:
        """The query's gate (0..1), None without a bank; pass `bank_cosines` when already computed."""
        if self.bank is None or self.gate is None:
            return None
        sims = self.bank_cosines(vector) if bank_cosines is None else bank_cosines
        return self.gate(float(sims.max()))

    def of_text(self, col: Any, scores: np.ndarray, gate: float | None, expanded: bool = False) -> np.ndarray | None:
        """Relevance of text-query hits (None when the model ships no query bank)."""
        if gate is None or not len(scores):
            return None if gate is None else np.zeros(0)
        return self._calibration(col, "text+expanded" if expanded else "text").percentile(scores) * gate

    def of_example(self, col: Any, scores: np.ndarray) -> np.ndarray:
        """Relevance of search-by-example hits."""
        if not len(scores):
            return np.zeros(0)
        return self._calibration(col, "example").percentile(scores)
