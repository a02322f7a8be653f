"""Caption datasets: HarMA JSON, Karpathy JSON and CSV/JSONL caption tables, and `load_dataset` over them."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harma_core.errors import DataError
from harma_core.readers.items import (
    SPLIT_COLUMN,
    Item,
    ReadReport,
    filter_split,
    finish_report,
)

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
IMAGE_COLUMNS = ("image", "image_path", "path", "filename", "file")
CAPTION_COLUMNS = ("caption", "text", "sentence")


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
    return finish_report(str(path), items, skipped, len(data))


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
    return finish_report(str(path), items, skipped, total)


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
    return filter_split(str(path), finish_report(str(path), items, skipped, total), split)



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
