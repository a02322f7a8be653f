"""Training-job texts without QGIS: step lines whose speed shows only once it means something, the readable
before/after validation table of a finished run, and the re-index request offered after it."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .status import JobStatus, format_duration

MIN_RATE_SECONDS = 3.0  # the first steps include start-up: no images/s or ETA before this long ...
MIN_RATE_STEPS = 3  # ... and this many steps
CANCELLED_TEXT = "Training cancelled; run it again (same run name) to resume from the last finished epoch"

# metric key of a validation set -> readable name (class metrics of labelled tiles; recalls of caption sets)
METRICS = (("p10", "class P@10"), ("acc1", "top-1 accuracy"), ("score", "val score"),
           ("i2t_r1", "image→text R@1"), ("t2i_r1", "text→image R@1"), ("mR", "mean recall (val score)"))
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class TrainingWatch:
    """Describes training-job polls; remembers when the steps began, to hold back an absurd first rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._steps_seen: float | None = None

    def describe(self, status: JobStatus) -> str:
        """One line: state, step done/total, and images/s + ETA after MIN_RATE_SECONDS and MIN_RATE_STEPS."""
        if status.state == "cancelled":
            return CANCELLED_TEXT
        if not status.total:
            if status.finished:
                return status.state
            return f"{status.state}: reading labelled tiles and caching features"
        if self._steps_seen is None:
            self._steps_seen = self._clock()
        text = f"{status.state}: step {status.done}/{status.total}"
        if status.finished:
            return text
        settled = self._clock() - self._steps_seen >= MIN_RATE_SECONDS and status.done >= MIN_RATE_STEPS
        if settled and status.tiles_per_s:
            return f"{text} · {status.tiles_per_s:.1f} images/s · ETA {format_duration(status.eta_s)}"
        return f"{text} · measuring speed"


def _value(metrics: Any, key: str) -> float | None:
    value = metrics.get(key) if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def report_table(result: dict[str, Any]) -> str:
    """The job result's validation before (init_val) and after (best_val) as aligned text rows, per val set."""
    before, after = result.get("init_val") or {}, result.get("best_val") or {}
    lines = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name) or {}, after.get(name) or {}
        size = a or b
        counts = [f"{size[k]} {label}" for k, label in (("n_images", "val tiles"), ("n_classes", "classes"))
                  if isinstance(size.get(k), int)]
        lines.append(f"Validation '{name}'{' (' + ', '.join(counts) + ')' if counts else ''}: before → after")
        for key, label in METRICS:
            old, new = _value(b, key), _value(a, key)
            if old is None and new is None:
                continue
            change = f"  ({new - old:+.1f})" if old is not None and new is not None else ""
            lines.append(f"  {label:<24} {_cell(old):>6} → {_cell(new):<6}{change}")
    if not lines:
        lines.append("Validation: no scores in the job result")
    if result.get("best_epoch") is not None:
        lines.append(f"Best epoch: {result['best_epoch']}")
    if result.get("registered"):
        lines.append(f"The server registered the run as model {result.get('model_identity') or '?'}")
    elif result.get("next"):
        lines.append(str(result["next"]))
    return "\n".join(lines)


def run_name(run: str) -> str:
    """The run's short name: the last part of its folder."""
    return run.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "run"


def reindex_target(collection: str, run: str) -> str:
    """'<collection>-<run name>', made a valid collection name (letters, digits, _ . -; at most 64)."""
    return _NAME_CHARS.sub("-", f"{collection}-{run_name(run)}").strip("-_.")[:64]

