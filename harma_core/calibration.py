"""Calibrated relevance: a text query's ranking score mapped to the probability that the tile is a match.

The ranking score of a text query is what search ranks by: the query-bank corrected cosine of the (phrased,
expanded) query, `cos - offset` (harma_core.querybank). It depends only on the query and the tile, never on the
rest of a collection, so a probability read from it is comparable across collections and queries.

The map is an isotonic regression (pool-adjacent-violators, numpy) fitted on labelled val pairs
(harma_core.calibration_fit, `tools/calibrate.py`): one curve for keyword queries (1-3 words, phrased through
templates: "a land-use or object name"), one for sentences. It is kept as knots in `calibration.json` beside
the model's query bank, with the model identity and the bank digest it was fitted under; a calibration of
another model or bank is refused (relevance then falls back to the uncalibrated kind).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.errors import HarmaError

CALIBRATION_FILE = "calibration.json"
FORMAT = "harma-calibration"
KINDS = ("keyword", "sentence")
NO_MATCH_BELOW = 0.5  # a best hit less likely than this to be a match: the answer says "no match"


class CalibrationError(HarmaError, ValueError):
    """A calibration file that is missing, unreadable, or fitted for another model or bank."""


def isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit of a non-decreasing y(x): knots (weighted mean x, mean y) of each block."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    # scores equal to 1e-4 are one point: millions of pairs become a few thousand before the Python loop
    xs, inv = np.unique(np.round(x, 4), return_inverse=True)
    ws = np.bincount(inv, weights=w)
    ys = np.bincount(inv, weights=w * y) / ws
    xs = np.bincount(inv, weights=w * x) / ws
    # blocks as parallel stacks: weight, sum(w*y), sum(w*x)
    bw: list[float] = []
    by: list[float] = []
    bx: list[float] = []
    for xi, yi, wi in zip(xs, ys, ws):
        bw.append(wi)
        by.append(wi * yi)
        bx.append(wi * xi)
        while len(bw) > 1 and by[-2] / bw[-2] >= by[-1] / bw[-1]:
            wl, yl, xl = bw.pop(), by.pop(), bx.pop()
            bw[-1] += wl
            by[-1] += yl
            bx[-1] += xl
    weight = np.asarray(bw)
    return np.asarray(bx) / weight, np.asarray(by) / weight


@dataclass(frozen=True)
class Curve:
    """A non-decreasing map score -> probability, linear between knots and flat beyond them."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
            max_knots: int = 200) -> Curve:
        """Isotonic fit, thinned to at most `max_knots` knots (kept monotone)."""
        kx, ky = isotonic(scores, labels, weights)
        if len(kx) > max_knots:
            keep = np.unique(np.linspace(0, len(kx) - 1, max_knots).astype(int))
            kx, ky = kx[keep], ky[keep]
        return cls(tuple(round(float(v), 6) for v in kx), tuple(round(float(v), 6) for v in ky))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Probability of a match for each score."""
        s = np.asarray(scores, np.float64)
        if not self.x:
            return np.zeros(s.shape)
        return np.interp(s, np.asarray(self.x), np.asarray(self.y))


@dataclass(frozen=True)
class Calibration:
    """Curves per query kind for one model and query bank, and the no-match threshold."""

    identity: str
    bank_digest: str
    curves: dict[str, Curve]
    no_match_below: float = NO_MATCH_BELOW
    report: dict[str, Any] = field(default_factory=dict)

    def probability(self, scores: np.ndarray, keyword: bool) -> np.ndarray:
        """P(match) of ranking scores of a keyword (1-3 words) or sentence query."""
        return self.curves["keyword" if keyword else "sentence"](scores)

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {"format": FORMAT, "identity": self.identity, "bank_digest": self.bank_digest,
                "no_match_below": self.no_match_below,
                "curves": {k: {"x": list(c.x), "y": list(c.y)} for k, c in self.curves.items()},
                "report": self.report}

    def save(self, folder: str | Path) -> Path:
        """Write calibration.json into folder (atomically)."""
        path = Path(folder) / CALIBRATION_FILE
        tmp = path.with_name(f".{CALIBRATION_FILE}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        """Read a calibration file (or the one in a folder) without checking whose it is."""
        path = Path(path)
        path = path / CALIBRATION_FILE if path.is_dir() else path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            curves = {k: Curve(tuple(map(float, v["x"])), tuple(map(float, v["y"])))
                      for k, v in data["curves"].items()}
            if data.get("format") != FORMAT or set(curves) != set(KINDS):
                raise ValueError(f"format should be {FORMAT!r} with curves {KINDS}")
            if any(len(c.x) != len(c.y) or list(c.x) != sorted(c.x) for c in curves.values()):
                raise ValueError("curve knots must be paired and sorted")
            return cls(str(data["identity"]), str(data["bank_digest"]), curves,
                       float(data.get("no_match_below", NO_MATCH_BELOW)), dict(data.get("report", {})))
        except FileNotFoundError as e:
            raise CalibrationError(f"no calibration at {path}; build one with tools/calibrate.py") from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CalibrationError(f"{path} is not a readable calibration ({e}); rebuild it with "
                                   "tools/calibrate.py") from e

    @classmethod
    def find(cls, folder: str | Path | None, identity: str, bank_digest: str) -> Calibration | None:
        """The calibration in a model folder fitted for this model and bank; None when there is none."""
        if folder is None or not (Path(folder) / CALIBRATION_FILE).is_file():
            return None
        cal = cls.read(folder)
        if cal.identity != identity or cal.bank_digest != bank_digest:
            raise CalibrationError(f"{Path(folder) / CALIBRATION_FILE} was fitted for {cal.identity} with bank "
                                   f"{cal.bank_digest}, not {identity} with bank {bank_digest}; rebuild it with "
                                   "tools/calibrate.py")
        return cal


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram as rows: bin range, pairs, mean predicted probability, observed match rate."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            rows.append({"bin": [b / bins, (b + 1) / bins], "n": int(sel.sum()),
                         "predicted": round(float(p[sel].mean()), 4), "observed": round(float(y[sel].mean()), 4)})
    return rows


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: mean |predicted - observed| over equal-width bins, weighted by their pairs."""
    rows = reliability(p, y, bins)
    n = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows) / max(n, 1))


def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return None
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(avg, counts) + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
