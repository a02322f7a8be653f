"""Hubness-aware ranking for text queries: the model's query bank (harma_core.querybank, QB-Norm) gives each
tile an offset, computed once per tile and kept beside the index; candidates from the index are re-ranked by
the corrected score cos - offset.

The offsets live in `querybank_offsets.npz` in the collection folder (labels, offsets, and the bank digest
they were computed with). A collection indexed or extended since is brought up to date on its next search,
for the new tiles only; a bank with another digest (new beta, new captions, new model) recomputes them all.
The file is written to a temporary name and renamed, and only ever holds offsets of tiles' stored vectors,
which never change for a tile id (ids are not reused), so a reader sees a complete, correct file or none.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.querybank import QueryBank, QueryBankError
from server.errors import NotFound

log = logging.getLogger(__name__)
SIDECAR = "querybank_offsets.npz"
ENV = "HARMA_QUERYBANK"  # path of a bank file to use instead of the shipped one, or "none"
BATCH = 65_536  # tiles whose vectors are gathered at a time when offsets are computed


def bank_for(model: Any) -> QueryBank | None:
    """The query bank of this model: the file named by $HARMA_QUERYBANK ('none' for no bank), else the one
    shipped with the model; None when there is none or it belongs to another model (logged)."""
    if not hasattr(model, "adapter_dir"):
        return None
    chosen = os.environ.get(ENV, "").strip()
    if chosen.lower() == "none":
        return None
    try:
        return QueryBank.load(model, chosen) if chosen else QueryBank.find(model)
    except QueryBankError as e:  # a mismatched bank disables relevance and re-ranking, never search
        log.warning("query bank not used: %s", e)
        return None


def can_rerank(bank: Any) -> bool:
    """True for a bank that gives per-tile offsets (a QueryBank), not just caption vectors."""
    return bank is not None and hasattr(bank, "offsets") and hasattr(bank, "digest")


class TileOffsets:
    """Offsets of one collection's tiles under one bank, kept in memory and in the sidecar file."""

    def __init__(self, folder: Path, bank: QueryBank) -> None:
        self.path = folder / SIDECAR
        self.bank = bank
        # (sorted labels, their offsets), replaced as one object so readers never see a mix of two versions
        self.table: tuple[np.ndarray, np.ndarray] = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        self.computed = 0  # tiles whose offsets this process computed (the rest came from the file)
        self._lock = threading.Lock()
        self._read()

    def _read(self) -> None:
        try:
            with np.load(self.path) as f:
                digest, labels, values = str(f["digest"]), f["labels"], f["offsets"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s is unreadable (%s): recomputing the offsets", self.path, e)
            return
        if digest == self.bank.digest and len(labels) == len(values):
            order = np.argsort(labels, kind="stable")
            self.table = (labels[order].astype(np.int64), values[order].astype(np.float32))

    def _write(self) -> None:
        tmp = self.path.with_name(f".{SIDECAR}.{os.getpid()}.tmp.npz")
        labels, values = self.table
        np.savez(tmp, digest=np.array(self.bank.digest), labels=labels, offsets=values)
        os.replace(tmp, self.path)

    def update(self, col: Any) -> None:
        """Compute offsets for searchable tiles that have none yet, and save them."""
        with self._lock:
            old_labels, old_values = self.table
            ids = np.asarray(col.ids(), dtype=np.int64)
            new = ids[~np.isin(ids, old_labels)]
            if not len(new):
                return
            parts = [self.bank.offsets(col.vectors(new[s:s + BATCH].tolist())) for s in range(0, len(new), BATCH)]
            labels = np.concatenate([old_labels, new])
            values = np.concatenate([old_values, *parts])
            order = np.argsort(labels, kind="stable")
            self.table = (labels[order], values[order].astype(np.float32))
            self.computed += len(new)
            try:
                self._write()
            except OSError as e:  # a read-only store still searches, it recomputes next start
                log.warning("could not save %s: %s", self.path, e)

    def of(self, col: Any, ids: list[int]) -> np.ndarray:
        """Offsets of the given tiles (computing any that are missing)."""
        want = np.asarray(ids, dtype=np.int64)
        labels, values = self.table
        pos = np.minimum(np.searchsorted(labels, want), max(len(labels) - 1, 0))
        if not len(labels) or not np.array_equal(labels[pos], want):
            self.update(col)
            labels, values = self.table
            pos = np.minimum(np.searchsorted(labels, want), len(labels) - 1)
            if not np.array_equal(labels[pos], want):  # a tile deleted since the index answered
                raise NotFound(f"tile(s) {want[labels[pos] != want][:5].tolist()} left collection "
                               f"{col.name!r} during the search; search again")
        return values[pos]


class Reranker:
    """Per-collection TileOffsets of one bank; re-ranks candidates by the corrected score."""

    def __init__(self, bank: QueryBank) -> None:
        self.bank = bank
        self._offsets: dict[str, TileOffsets] = {}
        self._lock = threading.Lock()

    def offsets(self, col: Any) -> TileOffsets:
        """The collection's offsets (read from its sidecar on first use)."""
        key = str(col.folder)
        with self._lock:
            if key not in self._offsets:
                self._offsets[key] = TileOffsets(Path(col.folder), self.bank)
            return self._offsets[key]

    def corrected(self, col: Any, ids: list[int], cosines: np.ndarray) -> np.ndarray:
        """cos - offset for the given tiles of a collection."""
        return QueryBank.corrected(cosines, self.offsets(col).of(col, ids)).astype(np.float64)
