"""Dataset readers on the real caption datasets and GeoTIFFs in ../shared/data."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harma_core.data import (
    ImageDataset,
    Item,
    PairDataset,
    assign_splits,
    flatten_captions,
    load_dataset,
    normalize_caption,
    read_harma_json,
    read_karpathy,
    read_table,
)
from harma_core.errors import DataError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
UCM = DATA / "captions" / "ucm_captions"
RSICD = DATA / "captions" / "rsicd"
GEOTIFF = DATA / "geotiff"
BAHAMAS = GEOTIFF / "landsat7_bahamas_rgb.tif"  # uint8 RGB, EPSG:32618, nodata 0


def _pairs(items: list[Item]) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((str(it.image), it.captions) for it in items)


# ------------------------------------------------------------------------------------- caption datasets

@pytest.mark.parametrize(("folder", "split", "n_images", "n_captions"), [
    (UCM, "train", 1680, 8400),
    (UCM, "val", 210, 1050),
    (RSICD, "val", 1094, 5470),
])
def test_dataset_folder_counts_match_sources(folder: Path, split: str, n_images: int,
                                              n_captions: int) -> None:
    report = load_dataset(folder, split)
    assert len(report.items) == n_images
    assert report.n_captions == n_captions
    assert report.skipped == []
    assert {it.split for it in report.items} == {split}
    assert all(Path(it.image).is_absolute() and Path(it.image).is_file() for it in report.items)
    assert len({it.image for it in report.items}) == n_images


@pytest.mark.parametrize(("folder", "split"), [(UCM, "val"), (RSICD, "val"), (UCM, "train")])
def test_karpathy_equals_harma_format(folder: Path, split: str) -> None:
    harma = read_harma_json(next(folder.glob(f"*_{split}.json")), split=split)
    karpathy = read_karpathy(next(folder.glob("dataset_*.json.gz")), split=split)
    assert _pairs(harma.items) == _pairs(karpathy.items)
    assert {it.split for it in karpathy.items} == {split}


def test_load_dataset_falls_back_to_karpathy(tmp_path: Path) -> None:
    with gzip.open(UCM / "dataset_ucm.json.gz", "rt") as fh:
        full = json.load(fh)
    subset = [im for im in full["images"] if im["split"] == "val"][:3] + full["images"][:2]
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "images").symlink_to(UCM / "images")
    (folder / "dataset_mini.json").write_text(json.dumps({"dataset": "mini", "images": subset}))
    val = load_dataset(folder, "val")
    assert [Path(it.image).name for it in val.items] == [im["filename"] for im in subset[:3]]
    assert val.items[0].captions == tuple(s["raw"] for s in subset[0]["sentences"])
    assert len(load_dataset(folder, "train").items) == 2
    with pytest.raises(DataError, match="no images in split 'test'.*train, val"):
        load_dataset(folder, "test")


def test_unreadable_sources_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no '\\*_train.json' HarMA file"):
        load_dataset(tmp_path, "train")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": 3}')
    with pytest.raises(DataError, match="expected a HarMA JSON list"):
        read_harma_json(bad)
    bad.write_text("not json")
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        read_karpathy(bad)


# ------------------------------------------------------------------------------------------- tables

def _ucm_image(n: int) -> Path:
    return (UCM / "images" / f"{n}.jpg").resolve()


def test_csv_table_merges_rows_and_reports_bad_lines(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    rel = os.path.relpath(_ucm_image(2), tmp_path)  # relative to the table's folder
    table = tmp_path / "tiles.csv"
    table.write_text(
        "image,caption,split\n"                                  # line 1
        f"{_ucm_image(1)},a piece of farmland,train\n"           # line 2
        f"{rel},\"dense trees, and a road\",val\n"               # line 3
        f"{_ucm_image(1)},green crops in rows,train\n"           # line 4: merged into line 2's image
        f"{tmp_path / 'missing.jpg'},a lake,train\n"             # line 5: missing image
        f"{_ucm_image(3)},   ,train\n"                           # line 6: empty caption
        "\n"                                                     # line 7: blank, ignored
        f"{_ucm_image(1)},farmland again,val\n"                  # line 8: split conflict
    )
    with caplog.at_level(logging.WARNING, logger="harma_core.readers"):
        report = read_table(table)
    assert [(Path(it.image), it.captions, it.split) for it in report.items] == [
        (_ucm_image(1), ("a piece of farmland", "green crops in rows"), "train"),
        (_ucm_image(2), ("dense trees, and a road",), "val"),
    ]
    assert [(s, r.split(":")[0]) for s, r in report.skipped] == [
        ("tiles.csv:line 5", "image file not found"),
        ("tiles.csv:line 6", "empty caption"),
        ("tiles.csv:line 8", "split conflict"),
    ]
    assert str(tmp_path / "missing.jpg") in report.skipped[0][1]
    warnings = [r for r in caplog.records if r.name == "harma_core.readers" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 bad row(s)/caption(s) among 6 rows" in warnings[0].getMessage()
    assert [Path(it.image) for it in read_table(table, split="val").items] == [_ucm_image(2)]


def test_jsonl_table_reports_bad_lines(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    lines = [
        {"image": str(_ucm_image(5)), "caption": "a baseball field"},        # line 1
        {"image": str(_ucm_image(5)), "caption": ["two", "more captions"]},  # line 2: merged
        {"image": str(_ucm_image(6))},                                       # line 3: no caption column
        {"caption": "no image here"},                                        # line 4: no image column
        {"image": str(empty), "caption": "zero bytes"},                      # line 5: empty file
        {"image": str(_ucm_image(7)), "caption": ""},                        # line 6: empty caption
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken json\n\n"
    text += json.dumps({"image": str(_ucm_image(8)), "text": "a beach"}) + "\n"  # line 9, "text" alias
    table = tmp_path / "tiles.jsonl"
    table.write_text(text)
    report = read_table(table)
    assert [(Path(it.image).name, it.captions) for it in report.items] == [
        ("5.jpg", ("a baseball field", "two", "more captions")),
        ("8.jpg", ("a beach",)),
    ]
    assert [(s, r.split(":")[0]) for s, r in report.skipped] == [
        ("tiles.jsonl:line 3", "missing column"),
        ("tiles.jsonl:line 4", "missing column"),
        ("tiles.jsonl:line 5", "image file is empty (0 bytes)"),
        ("tiles.jsonl:line 6", "empty caption"),
        ("tiles.jsonl:line 7", "invalid JSON"),
    ]
    assert load_dataset(table, None).items == report.items


def test_table_errors(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(f"path,label\n{_ucm_image(1)},farm\n")
    with pytest.raises(DataError, match="needs an image column .* and a caption column"):
        read_table(table)
    table.write_text(f"image,caption\n{tmp_path / 'a.jpg'},x\n,y\n")
    with pytest.raises(DataError, match="no usable image/caption pairs .*line 2: image file not found"):
        read_table(table)
    with pytest.raises(DataError, match="must be .csv or .jsonl"):
        read_table(tmp_path / "t.txt")


def test_table_without_split_column_is_split_deterministically(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("image,caption\n" + "".join(f"{_ucm_image(n)},scene {n}\n" for n in range(1, 41)))
    train = read_table(table, split="train").items
    val = read_table(table, split="val").items
    assert len(val) == 4 and len(train) == 36
    assert not {it.image for it in train} & {it.image for it in val}
    assert [it.image for it in read_table(table, split="val").items] == [it.image for it in val]
    assert {it.split for it in read_table(table).items} == {None}
    assert [it.split for it in assign_splits(train[:1])] == ["train"]  # one item: nothing for val


def test_normalize_caption() -> None:
    assert normalize_caption("Many GREEN trees, and a river's bend.") == "many green trees and a rivers bend"
    assert normalize_caption("a  b\t(c) -- d!") == "a b c d"
    assert normalize_caption(" ".join(f"w{i}" for i in range(40))) == " ".join(f"w{i}" for i in range(30))
    assert normalize_caption(" . ") == "."  # RSICD has "." captions: kept, as "" cannot be embedded
    assert normalize_caption("  ") == ""


# ------------------------------------------------------------------------------------- torch datasets

def test_image_and_pair_datasets_decode_real_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = load_dataset(UCM, "val").items[:2]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    tile = np.full((40, 30, 3), 200, dtype=np.uint8)
    items += [Item(str(corrupt), ("broken",), "val", "t:1"), Item(tile, ("A Tile!",), None, "t:2")]
    ds = ImageDataset(items)
    image, index = ds[0]
    assert index == 0 and image.shape[0] == 3 and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.05
    with caplog.at_level(logging.WARNING, logger="harma_core.data"):
        black, _ = ds[2]
    assert black.shape == (3, 224, 224) and float(black.abs().sum()) == 0.0
    assert any("t:1" in r.getMessage() for r in caplog.records)
    assert torch.allclose(ds[3][0], torch.full((3, 40, 30), 200 / 255))

    captions, image_index = flatten_captions(items)
    assert len(captions) == 12 and image_index == [0] * 5 + [1] * 5 + [2, 3]
    assert captions[:5] == list(items[0].captions)
    pairs = PairDataset(items, transform=lambda im: im.size)
    assert len(pairs) == 12
    assert pairs[11] == ((30, 40), "a tile", 3)
    assert pairs[5][1:] == (normalize_caption(items[1].captions[0]), 1)
