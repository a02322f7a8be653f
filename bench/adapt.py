#!/usr/bin/env python3
"""Adapting a model to your own imagery, measured through the product path: class P@10 before/after.

UCM train scenes are stitched into a GeoTIFF mosaic with one labelled polygon per scene (tools/mosaic.py),
the model is fine-tuned on it (tools/train.py's library call: --raster --labels --label-field), and the UCM
val scenes, stitched into a second mosaic, are indexed (256 px tiles = the cells) and searched for every
class name with the caption template, through the same code as tools/index.py and tools/search.py.
Class P@10: the share of the top 10 hits whose cell holds that class, averaged over classes.

  python bench/adapt.py --quick          # 8 train scenes per class, 1 epoch (about what CI runs)
  python bench/adapt.py --epochs 3       # all 1680 train scenes
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def mosaic_class_precision(store: str | Path, collection: str, mosaic_tif: str | Path, cells_gpkg: str | Path,
                           model: Any, template: str, k: int = 10) -> dict[str, float]:
    """Index the mosaic (256 px tiles) into a new collection, search each class; P@k per class in percent."""
    import geopandas as gpd

    from server.cli import run_index, run_search

    cells = gpd.read_file(cells_gpkg)
    cell = 256
    label_at = {(int(r.row), int(r.col)): r.label for r in cells.itertuples()}
    run_index(str(store), collection, [str(mosaic_tif)], model, {"tile_size": cell}, quiet=True, out=io.StringIO())
    out = {}
    for label in sorted(set(cells["label"])):
        fc = run_search(str(store), [collection], template.format(label=label), model, k=k, out=io.StringIO())
        hits = [label_at[(f["properties"]["window"][1] // cell, f["properties"]["window"][0] // cell)]
                for f in fc["features"]]
        out[label] = 100.0 * sum(h == label for h in hits) / k
    return out


def run(train_per_class: int | None, val_per_class: int | None, epochs: int, batch_size: int, model_name: str,
        template: str, work: Path, device: str = "auto") -> dict[str, Any]:
    """Build both mosaics, measure base P@10, train, measure tuned P@10; returns the numbers."""
    from harma_core import create_model
    from harma_core.train import TrainConfig, train
    from tools.mosaic import build_mosaic

    ucm = REPO / ".." / "shared" / "data" / "captions" / "ucm_captions"
    tr = build_mosaic(ucm, "train", work / "train", per_class=train_per_class)
    va = build_mosaic(ucm, "val", work / "val", per_class=val_per_class)
    base = create_model(model_name, device=device)
    before = mosaic_class_precision(work / "store", "base", va.tif, va.gpkg, base, template)
    cfg = TrainConfig(raster=[str(tr.tif)], labels=str(tr.gpkg), label_field="label", caption_template=template,
                      out=str(work / "run"), model=model_name, epochs=epochs, batch_size=batch_size,
                      device=device, num_workers=2)
    t0 = time.perf_counter()
    metrics = train(cfg)
    train_s = time.perf_counter() - t0
    tuned = create_model(str(work / "run"), device=device)
    after = mosaic_class_precision(work / "store", "tuned", va.tif, va.gpkg, tuned, template)
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    return {"train_scenes": tr.n_cells, "val_scenes": va.n_cells, "epochs": epochs, "batch_size": batch_size,
            "p10_before": mean(before), "p10_after": mean(after), "per_class_before": before,
            "per_class_after": after, "epoch_s": [h["seconds"] for h in metrics["history"]],
            "train_total_s": train_s, "init_val": metrics["init_val"], "best_val": metrics["best_val"],
            "model_before": base.identity, "model_after": tuned.identity}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print a table and the JSON line."""
    from _common import emit, machine, quiet_logs, table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 train scenes per class, 1 epoch")
    ap.add_argument("--train-per-class", type=int, help="train scenes per class (default all 80)")
    ap.add_argument("--val-per-class", type=int, help="val scenes per class (default all 10)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default="harma-lite")
    ap.add_argument("--template", default="an aerial image of {label}")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    quiet_logs()
    train_pc = 8 if a.quick and a.train_per_class is None else a.train_per_class
    with tempfile.TemporaryDirectory(prefix="bench-adapt-") as tmp:
        r = run(train_pc, a.val_per_class, a.epochs, a.batch_size, a.model, a.template, Path(tmp), a.device)
    rows = [{"class": c, "P@10 before": r["per_class_before"][c], "P@10 after": r["per_class_after"][c]}
            for c in sorted(r["per_class_before"])]
    rows.append({"class": "MEAN", "P@10 before": r["p10_before"], "P@10 after": r["p10_after"]})
    print(table(rows, title=f"class P@10 on the UCM val mosaic ({r['val_scenes']} scenes), "
                            f"{r['train_scenes']} train scenes, {r['epochs']} epoch(s)"))
    print(f"wall time per epoch: {', '.join(f'{s:.1f} s' for s in r['epoch_s'])}; training in all "
          f"{r['train_total_s']:.1f} s (feature caches included)")
    emit({"bench": "adapt", "machine": machine(), **r})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
