"""Calibrated relevance of text queries: the model's calibration (harma_core.calibration, `calibration.json`
beside its query bank) turns the query-bank corrected score into P(match), times the text gate; the answer
says `no_match` when even the best hit is unlikely to be one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.calibration import Calibration, CalibrationError
from server.search.hubness import ENV

log = logging.getLogger(__name__)


def calibration_for(model: Any, bank: Any) -> Calibration | None:
    """The calibration beside the model's query bank (the $HARMA_QUERYBANK file's folder, else the model's
    adapter folder) when it was fitted for this model and bank; None otherwise (logged when mismatched)."""
    if bank is None or not hasattr(bank, "digest"):
        return None
    chosen = os.environ.get(ENV, "").strip()
    folder = Path(chosen).parent if chosen and chosen.lower() != "none" and Path(chosen).is_file() else \
        Path(chosen) if chosen and Path(chosen).is_dir() else getattr(model, "adapter_dir", None)
    try:
        return Calibration.find(folder, str(model.identity), bank.digest)
    except CalibrationError as e:  # a stale calibration disables calibrated relevance, never search
        log.warning("calibration not used: %s", e)
        return None


def probability(cal: Calibration, corrected: np.ndarray, text: str, gate: float | None) -> np.ndarray:
    """P(match) of hits with these corrected scores for this text (keyword or sentence curve), gated."""
    from harma_core.prompts import is_keyword

    p = cal.probability(corrected, is_keyword(" ".join(text.split())))
    return p * (1.0 if gate is None else gate)


def no_match(features: list[dict[str, Any]], threshold: float, gate: float | None, min_score: float | None,
             text: str) -> tuple[bool, str | None]:
    """(no_match, reason) of a calibrated text answer: no hit, a gated text, or a best hit below the threshold."""
    if gate is not None and gate <= 0.0:
        return True, f"{text!r} reads like no caption the model knows (text gate 0): nothing to match"
    if not features:
        why = f" reaches min_score {min_score:g}" if min_score is not None else " lies in the searched area"
        return True, f"no tile{why}"
    best = features[0]["properties"]["relevance"]
    if best is not None and best < threshold:
        return True, (f"the best hit's relevance is {best:.3f}, below {threshold:g}: no tile here is likely to "
                      f"show {text!r}")
    return False, None
