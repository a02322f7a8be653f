"""Captioned-image datasets: readers for HarMA JSON, Karpathy JSON and caption tables, plus torch datasets.

Every reader returns a ReadReport: the good items and, for every bad row, (source, reason). Bad rows are
never fatal one by one; DataError is raised only when nothing at all can be read.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from harma_core.errors import DataError

log = logging.getLogger("harma_core.data")

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
IMAGE_COLUMNS = ("image", "image_path", "path", "filename", "file")
CAPTION_COLUMNS = ("caption", "text", "sentence")
SPLIT_COLUMN = "split"
MAX_CAPTION_WORDS = 30


@dataclass(frozen=True)
class Item:
    """One image with its captions."""

    image: str | np.ndarray      # absolute image file path, or an HxWx3 uint8 tile cut from a raster
    captions: tuple[str, ...]    # >= 1 non-empty captions, raw text (no normalisation here)
    split: str | None            # "train" / "val" / "test" / None
    source: str                  # where it came from, e.g. "ucm_train.json:item 12" or "tiles.csv:line 7"


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


# ---------------------------------------------------------------------------------------------- helpers

def _check_image_file(path: Path) -> str | None:
    """Reason the image file is unusable, or None; existence and size only (decoding 10k files is slow)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"image file not found: {path}"
    except OSError as exc:
        return f"image file not readable: {path} ({exc.strerror or exc})"
    if not path.is_file():
        return f"image path is not a file: {path}"
    if st.st_size == 0:
        return f"image file is empty (0 bytes): {path}"
    return None


def _clean_captions(raw: Any, source: str, skipped: list[tuple[str, str]]) -> tuple[str, ...]:
    """Keep the non-blank captions; report the blank ones.

    Punctuation-only captions (RSICD has a few ".") are kept, so counts match the published datasets.
    """
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        skipped.append((source, f"caption must be a string or a list of strings, got {type(raw).__name__}"))
        return ()
    kept = []
    for k, cap in enumerate(raw):
        if isinstance(cap, str) and cap.strip():
            kept.append(cap.strip())
        else:
            skipped.append((f"{source} caption {k + 1}" if len(raw) > 1 else source,
                            "empty caption" if isinstance(cap, str) or cap is None
                            else f"caption is not text: {cap!r}"))
    return tuple(kept)


def _resolve(image: str, root: Path) -> Path:
    """Absolute path of an image given relative to root (absolute paths and ~ are kept)."""
    p = Path(image).expanduser()
    return p if p.is_absolute() else (root / p)


def _finish(name: str, items: list[Item], skipped: list[tuple[str, str]], total: int) -> ReadReport:
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


def _filter_split(name: str, report: ReadReport, split: str | None) -> ReadReport:
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


# ---------------------------------------------------------------------------------------------- readers

def _load_json(path: Path) -> Any:
    """Parse a .json or .json.gz file, or raise DataError naming the file."""
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); expected a caption dataset file") from exc


def read_harma_json(path: str | Path, images_root: str | Path | None = None,
                    split: str | None = None) -> ReadReport:
    """Read a HarMA/PIR file [{"image": rel_path, "caption": [str, ...]}]; split tags every item."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a HarMA JSON list of {{'image': ..., 'caption': [...]}} objects, "
                        f"got {type(data).__name__}")
    root = Path(images_root) if images_root is not None else path.parent / "images"
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    for k, entry in enumerate(data):
        source = f"{path.name}:item {k + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not entry["image"]:
            skipped.append((source, "missing column: item has no 'image' path"))
            continue
        if "caption" not in entry:
            skipped.append((source, "missing column: item has no 'caption'"))
            continue
        image = _resolve(entry["image"], root)
        if (reason := _check_image_file(image)) is not None:
            skipped.append((source, reason))
            continue
        if captions := _clean_captions(entry["caption"], source, skipped):
            items.append(Item(str(image.resolve()), captions, split, source))
    return _finish(str(path), items, skipped, len(data))


def read_karpathy(path: str | Path, images_root: str | Path | None = None,
                  split: str | None = None) -> ReadReport:
    """Read a Karpathy dataset_*.json(.gz); images at images_root/filepath/filename; filter by split."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: expected a Karpathy-style object {{'images': [{{filename, split, "
                        f"sentences}}]}}")
    root = Path(images_root) if images_root is not None else path.parent / "images"
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    seen_splits: set[str] = set()
    total = 0
    for k, entry in enumerate(data["images"]):
        source = f"{path.name}:image {k + 1}"
        if not isinstance(entry, dict) or not entry.get("filename"):
            total += 1
            skipped.append((source, "missing column: image has no 'filename'"))
            continue
        entry_split = entry.get("split")
        # Karpathy's COCO "restval" images are training images.
        entry_split = "train" if entry_split == "restval" else entry_split
        seen_splits.add(str(entry_split))
        if split is not None and entry_split != split:
            continue
        total += 1
        image = _resolve(str(Path(entry.get("filepath") or "") / entry["filename"]), root)
        if (reason := _check_image_file(image)) is not None:
            skipped.append((source, reason))
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list):
            skipped.append((source, "missing column: image has no 'sentences' list"))
            continue
        raw = [s.get("raw") or " ".join(s.get("tokens") or []) if isinstance(s, dict) else s
               for s in sentences]
        if captions := _clean_captions(raw, source, skipped):
            items.append(Item(str(image.resolve()), captions, entry_split, source))
    if split is not None and total == 0:
        raise DataError(f"{path}: no images in split {split!r}; splits present: "
                        f"{', '.join(sorted(seen_splits)) or 'none'}")
    return _finish(str(path), items, skipped, total)


def _table_rows(path: Path) -> Iterable[tuple[str, dict[str, Any] | None, str | None]]:
    """Yield (source, row or None, error) for every data row of a CSV or JSONL table."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if not any(h in IMAGE_COLUMNS for h in header) or not any(h in CAPTION_COLUMNS for h in header):
                raise DataError(f"{path}: the header {reader.fieldnames} needs an image column "
                                f"({'/'.join(IMAGE_COLUMNS)}) and a caption column "
                                f"({'/'.join(CAPTION_COLUMNS)})")
            for row in reader:
                norm = {(k or "").strip().lower(): v for k, v in row.items()}
                # line_num is the record's last physical line: exact for one-line rows, blank lines counted
                yield f"{path.name}:line {reader.line_num}", norm, None
        return
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            source = f"{path.name}:line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield source, None, f"invalid JSON: {exc.msg}"
                continue
            if not isinstance(row, dict):
                yield source, None, "invalid JSON: a line must be one object"
                continue
            yield source, {str(k).lower(): v for k, v in row.items()}, None


def read_table(path: str | Path, split: str | None = None) -> ReadReport:
    """Read a CSV or JSONL table (image, caption, optional split); rows of one image are merged."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: a caption table must be .csv or .jsonl with columns image, caption, "
                        f"optional split")
    if not path.is_file():
        raise DataError(f"caption table not found: {path}")
    root = path.parent
    merged: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    total = 0
    try:
        rows = list(_table_rows(path))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); expected a CSV or JSONL caption table") from exc
    for source, row, error in rows:
        total += 1
        if row is None:
            skipped.append((source, error or "unreadable row"))
            continue
        image_val = next((row[c] for c in IMAGE_COLUMNS if c in row), None)
        cap_col = next((c for c in CAPTION_COLUMNS if c in row), None)
        if not isinstance(image_val, str) or not image_val.strip():
            skipped.append((source, "missing column: no image path"))
            continue
        if cap_col is None:
            skipped.append((source, "missing column: no caption"))
            continue
        row_split = row.get(SPLIT_COLUMN)
        row_split = row_split.strip() or None if isinstance(row_split, str) else None
        captions = _clean_captions(row[cap_col], source, skipped)
        if not captions:
            continue
        image = _resolve(image_val.strip(), root)
        if (reason := _check_image_file(image)) is not None:
            skipped.append((source, reason))
            continue
        key = str(image.resolve())
        if key not in merged:
            merged[key] = {"captions": [], "split": row_split, "source": source}
        elif row_split is not None and merged[key]["split"] not in (None, row_split):
            skipped.append((source, f"split conflict: {row_split!r} for an image already in "
                                    f"{merged[key]['split']!r} ({merged[key]['source']})"))
            continue
        merged[key]["captions"].extend(captions)
        merged[key]["split"] = merged[key]["split"] or row_split
    items = [Item(k, tuple(v["captions"]), v["split"], v["source"]) for k, v in merged.items()]
    return _filter_split(str(path), _finish(str(path), items, skipped, total), split)


def read_raster_labels(raster: str | Path, labels: str | Path, label_field: str,
                       template: str = "a satellite image of {label}", tile_size: int = 224,
                       split: str | None = None) -> ReadReport:
    """Cut a captioned tile around every labelled polygon of a GeoTIFF (see harma_core.data_raster)."""
    from harma_core.data_raster import read_raster_labels as _read

    return _read(raster, labels, label_field, template=template, tile_size=tile_size, split=split)


def _dataset_file(folder: Path, split: str) -> Path | None:
    """The `<name>_<split>.json` HarMA file of a dataset folder, if there is exactly one fitting."""
    found = sorted(folder.glob(f"*_{split}.json"))
    if len(found) > 1:
        prefix = [p for p in found if folder.name.startswith(p.name[: -len(f"_{split}.json")])]
        if len(prefix) == 1:
            return prefix[0]
        raise DataError(f"{folder}: several files for split {split!r} ({', '.join(p.name for p in found)}); "
                        f"pass the file itself")
    return found[0] if found else None


def load_dataset(data: str | Path, split: str | None) -> ReadReport:
    """Read one split of a dataset folder (HarMA JSON per split, else Karpathy) or of a caption table."""
    data = Path(data).expanduser()
    if data.is_dir():
        if split is not None and (harma := _dataset_file(data, split)) is not None:
            return read_harma_json(harma, data / "images", split=split)
        karpathy = sorted(data.glob("dataset_*.json")) + sorted(data.glob("dataset_*.json.gz"))
        if karpathy:
            return read_karpathy(karpathy[0], data / "images", split=split)
        wanted = f"no '*_{split}.json' HarMA file and " if split else "no split given, "
        raise DataError(f"{data}: {wanted}no 'dataset_*.json(.gz)' Karpathy file; a dataset folder holds "
                        f"'<name>_<split>.json' files or one Karpathy file, with images under images/")
    if not data.exists():
        raise DataError(f"dataset not found: {data}; give a dataset folder or a .csv/.jsonl caption table")
    if data.suffix.lower() in TABLE_SUFFIXES:
        return read_table(data, split=split)
    if data.name.endswith((".json", ".json.gz")):
        content = _load_json(data)
        if isinstance(content, list):
            return read_harma_json(data, split=split)
        return read_karpathy(data, split=split)
    raise DataError(f"{data}: unknown dataset format; expected a dataset folder, a .csv/.jsonl table, "
                    f"or a HarMA/Karpathy .json file")


# ---------------------------------------------------------------------------------------------- torch

def flatten_captions(items: Sequence[Item]) -> tuple[list[str], list[int]]:
    """All captions in item order, and for each the index of its item."""
    captions: list[str] = []
    image_index: list[int] = []
    for i, it in enumerate(items):
        captions.extend(it.captions)
        image_index.extend([i] * len(it.captions))
    return captions, image_index


def decode_image(image: str | np.ndarray) -> Image.Image:
    """An RGB PIL image from a file path or an HxWx3 uint8 array."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    with Image.open(image) as im:
        return im.convert("RGB")


def _default_transform(im: Image.Image) -> torch.Tensor:
    """Float CHW tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class ImageDataset(torch.utils.data.Dataset):
    """One sample per item: (transform(image), item_index); undecodable images become black and are logged."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], Any] | None = None,
                 fallback_size: int = 224) -> None:
        self.items = list(items)
        self.transform = transform or _default_transform
        self.fallback_size = fallback_size

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """Decode item `index`; a black image (logged) when the file cannot be decoded."""
        item = self.items[index]
        try:
            return decode_image(item.image)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot decode image of %s (%s); using a black image", item.source, exc)
            return Image.new("RGB", (self.fallback_size, self.fallback_size))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.load(index)), index


class PairDataset(ImageDataset):
    """One sample per caption: (transform(image), caption_transform(caption), item_index)."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], Any] | None = None,
                 caption_transform: Callable[[str], str] | None = normalize_caption,
                 fallback_size: int = 224) -> None:
        super().__init__(items, transform, fallback_size)
        self.captions, self.image_index = flatten_captions(self.items)
        self.caption_transform = caption_transform or str  # str(s) is s: identity, and picklable

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[Any, str, int]:  # type: ignore[override]
        item_index = self.image_index[index]
        image = self.transform(self.load(item_index))
        return image, self.caption_transform(self.captions[index]), item_index
