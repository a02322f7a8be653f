"""What every reader returns: Item (one image or tile with its captions), ReadReport, and the shared
clean-up of rows, captions and splits.

Bad rows are never fatal one by one; DataError is raised only when nothing at all can be read.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harma_core.errors import DataError

log = logging.getLogger("harma_core.readers")

SPLIT_COLUMN = "split"
MAX_CAPTION_WORDS = 30


@dataclass(frozen=True)
class Item:
    """One image with its captions."""

    image: str | np.ndarray      # absolute image file path, or an HxWx3 uint8 tile cut from a raster
    captions: tuple[str, ...]    # >= 1 non-empty captions, raw text (no normalisation here)
    split: str | None            # "train" / "val" / "test" / None
    source: str                  # where it came from, e.g. "ucm_train.json:item 12" or "tiles.csv:line 7"
    labels: tuple[str, ...] = ()  # class labels of a tile cut from labelled polygons (else empty)

@dataclass
class ReadReport:
    """Items read from a source, and every skipped row with its reason."""

    items: list[Item]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_captions(self) -> int:
        """Total number of captions over all items."""
        return sum(len(it.captions) for it in self.items)


_PUNCT_DROP = {"'", "\u2019"}  # apostrophes join words ("don't" -> "dont") instead of splitting them


def normalize_caption(text: str, max_words: int = MAX_CAPTION_WORDS) -> str:
    """Lower-case, replace punctuation with spaces, collapse whitespace, keep at most max_words words.

    A punctuation-only caption (RSICD has a few ".") is returned stripped instead of empty, because an
    empty text cannot be embedded; only a blank input gives "".
    """
    chars = []
    for ch in text.lower():
        if ch in _PUNCT_DROP:
            continue
        chars.append(" " if unicodedata.category(ch).startswith("P") else ch)
    return " ".join("".join(chars).split()[:max_words]) or text.strip()


def finish_report(name: str, items: list[Item], skipped: list[tuple[str, str]], total: int) -> ReadReport:
    """Log one warning summary of skipped rows and refuse an empty result."""
    if skipped:
        kinds = Counter(re.sub(r":.*", "", reason) for _, reason in skipped)
        summary = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
        log.warning("%s: skipped %d bad row(s)/caption(s) among %d rows (%s); first: %s: %s", name,
                    len(skipped), total, summary, skipped[0][0], skipped[0][1])
    if not items:
        first = "; ".join(f"{s}: {r}" for s, r in skipped[:3]) or "the file has no rows"
        raise DataError(f"{name}: no usable image/caption pairs ({first})")
    return ReadReport(items=items, skipped=skipped)


def assign_splits(items: Sequence[Item], val_fraction: float = 0.1) -> list[Item]:
    """Give items without a split a deterministic train/val split by a hash of their image key."""
    def key(it: Item) -> int:
        # Folder + file name, not the absolute path, so the split is the same on every machine.
        ident = "/".join(Path(it.image).parts[-2:]) if isinstance(it.image, str) else it.source
        return zlib.crc32(ident.encode("utf-8"))

    free = sorted((i for i, it in enumerate(items) if it.split is None), key=lambda i: key(items[i]))
    n_val = max(1, round(len(free) * val_fraction)) if len(free) >= 2 else 0
    val = set(free[:n_val])
    return [replace(it, split="val" if i in val else "train") if it.split is None else it
            for i, it in enumerate(items)]


def filter_split(name: str, report: ReadReport, split: str | None) -> ReadReport:
    """Keep the items of one split; items from a source without splits are split 90/10 by hash."""
    if split is None:
        return report
    items = report.items
    if all(it.split is None for it in items):
        log.info("%s has no split column: assigning train/val 90/10 by image hash", name)
        items = assign_splits(items)
    kept = [it for it in items if it.split == split]
    if not kept:
        found = sorted({str(it.split) for it in items})
        raise DataError(f"{name}: no items in split {split!r}; splits present: {', '.join(found)}")
    return ReadReport(items=kept, skipped=report.skipped)

