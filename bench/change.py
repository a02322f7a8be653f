"""Change scores against labels (issue 29): DSIFN-CD pairs with change masks, and the Joplin tornado.

DSIFN-CD: each 256 x 256 pair is written as two GeoTIFFs on an explicit grid (EPSG:32650, 2 m pixels, top-left
corner on a multiple of the cell size, so cells are exact pixel blocks) and compared through the product path
(server.change_run) with 64 px cells (16 per pair). A cell is "changed" when at least X % of its pixels are
changed in the label (X = 10 and 30). Scores ranked: the embedding `change` (robust z within each pair), the
raw embedding distance, mean absolute pixel difference and change-vector magnitude (per-cell mean of the
per-pixel RGB difference vector's length), the last two from the PNG pixels. Metrics over all cells of all
pairs: ROC AUC and precision at the true change rate (top k cells, k = number of changed cells).

Joplin: pre (EPSG:26915) against post (EPSG:4326) at 100 m cells. "Destroyed" cells were marked by eye on the
post-tornado image (docs/img/joplin_change.png shows it), cell by cell: debris fields and roofless houses
in place of the pre-date's houses. Reported: the share of the top-N cells of each score that are destroyed,
against the share of all cells (chance).

Run: python bench/change.py [--views 1] [--picture docs/img/joplin_change.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, SHARED, cpu_model

DSIFN = SHARED / "multidate" / "dsifn_cd_samples"
JOPLIN = SHARED / "multidate" / "joplin_tornado_2011"
CELL_PX, PIXEL_M = 64, 2.0
ORIGIN = (409_600.0, 3_404_800.0)  # multiples of 128 m: cells fall on whole 64-px blocks
THRESHOLDS = (0.10, 0.30)
# Joplin, 100 m grid in EPSG:26915: destroyed cells (col, row) counted from cell (3666, 41042) east and south,
# marked by eye on the post image (rows 0 and 10 are the partly covered northern and southern edges).
JOPLIN_ORIGIN = (3666, 41042)
DESTROYED = ({(c, r) for r in (1, 2) for c in (6, 7, 8)} | {(c, r) for r in (3, 4) for c in range(3, 10)}
             | {(c, 5) for c in range(1, 12)} | {(c, r) for r in range(6, 10) for c in range(1, 13)}) - {(1, 9), (2, 9)}


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half)."""
    pos, neg = score[label], score[~label]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def precision_at_rate(score: np.ndarray, label: np.ndarray) -> float:
    """Precision of the top k cells, k = number of changed cells (ties broken by cell order)."""
    k = int(label.sum())
    return float(label[np.argsort(-score, kind="stable")[:k]].mean()) if k else float("nan")


def _write(path: Path, rgb: np.ndarray) -> str:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3,
                       dtype="uint8", crs="EPSG:32650",
                       transform=Affine(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1])) as dst:
        dst.write(rgb.transpose(2, 0, 1))
    return str(path)


def dsifn(model: Any, views: int) -> dict[str, np.ndarray]:
    """Per-cell scores and changed-pixel fractions over every DSIFN pair."""
    from PIL import Image

    from server.change_run import ChangeRequest, run_change

    cols: dict[str, list[float]] = {k: [] for k in ("change", "distance", "pixel_diff", "cva", "frac")}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(p.name for p in (DSIFN / "A").glob("*.png")):
            a = np.asarray(Image.open(DSIFN / "A" / name).convert("RGB"))
            b = np.asarray(Image.open(DSIFN / "B" / name).convert("RGB"))
            lab = np.asarray(Image.open(DSIFN / "label" / name).convert("L")) > 127
            req = ChangeRequest(before=(_write(Path(tmp) / f"a_{name}.tif", a),),
                                after=(_write(Path(tmp) / f"b_{name}.tif", b),), tile_size=CELL_PX, views=views,
                                min_cover=1.0)
            res = run_change(model, req)
            s = res.grid.cell
            for i, (ix, iy) in enumerate(res.cells):
                c0, r0 = round((ix * s - ORIGIN[0]) / PIXEL_M), round((ORIGIN[1] - (iy + 1) * s) / PIXEL_M)
                win = np.s_[r0:r0 + CELL_PX, c0:c0 + CELL_PX]
                d = b[win].astype(float) - a[win].astype(float)
                cols["change"].append(res.columns["change"][i])
                cols["distance"].append(res.columns["distance"][i])
                cols["pixel_diff"].append(np.abs(d).mean())
                cols["cva"].append(np.linalg.norm(d, axis=2).mean())
                cols["frac"].append(lab[win].mean())
    return {k: np.asarray(v) for k, v in cols.items()}


def joplin(model: Any, views: int, picture: str | None, top: int) -> tuple[dict[str, float], float, int]:
    """Share of the top cells of each score that are destroyed, the share of all cells, and the cell count."""
    from server.change_run import ChangeRequest, run_change

    req = ChangeRequest(before=tuple(sorted(str(p) for p in (JOPLIN / "pre").glob("*.tif"))),
                        after=tuple(sorted(str(p) for p in (JOPLIN / "post").glob("*.tif"))), tile_size_m=100,
                        after_date="2011-05-24", views=views)
    res = run_change(model, req)
    x0, y1 = JOPLIN_ORIGIN
    destroyed = np.array([(ix - x0, y1 - iy) in DESTROYED for ix, iy in res.cells])
    shares = {}
    for key in ("change", "pixel_diff", "cva"):
        order = np.argsort(-res.columns[key], kind="stable")[:top]
        shares[key] = float(destroyed[order].mean())
    if picture:
        _picture(res, destroyed, picture, top)
    return shares, float(destroyed.mean()), len(res.cells)


def _picture(res: Any, destroyed: np.ndarray, path: str, top: int, side: int = 40) -> None:
    """Pre | post | change heatmap; the top cells outlined in cyan, destroyed cells marked with a red dot."""
    from PIL import Image, ImageDraw

    from server.indexing.aligned import footprint, inspect_scene, opened, read_cell

    req, grid = res.request, res.grid
    ixs, iys = [c[0] for c in res.cells], [c[1] for c in res.cells]
    x0, y1 = min(ixs), max(iys)
    w, h = (max(ixs) - x0 + 1) * side, (y1 - min(iys) + 1) * side
    panels = []
    for files in (req.before, req.after):
        scene = inspect_scene(files)
        outlines = [footprint(r, grid.crs) for r in scene]
        img = np.zeros((h, w, 3), np.uint8)
        with opened(scene) as ds:
            for ix, iy in res.cells:
                r, c = (y1 - iy) * side, (ix - x0) * side
                img[r:r + side, c:c + side] = read_cell(ds, scene, outlines, grid, ix, iy, side)[0]
        panels.append(img)
    z = res.columns["change"]
    heat = np.zeros((h, w, 3), np.uint8)
    for (ix, iy), v in zip(res.cells, (z - z.min()) / max(np.ptp(z), 1e-9)):
        r, c = (y1 - iy) * side, (ix - x0) * side
        heat[r:r + side, c:c + side] = (int(255 * v), int(80 * v), int(255 * (1 - v)))
    panels.append(heat)
    im = Image.fromarray(np.concatenate([np.pad(p, ((0, 0), (0, 8), (0, 0)), constant_values=255)
                                         for p in panels], axis=1))
    draw = ImageDraw.Draw(im)
    topset = set(np.argsort(-z, kind="stable")[:top].tolist())
    for k, (ix, iy) in enumerate(res.cells):
        r, c = (y1 - iy) * side, (ix - x0) * side
        for p in range(3):
            off = p * (w + 8)
            if k in topset:
                draw.rectangle([off + c, r, off + c + side - 1, r + side - 1], outline=(0, 255, 255), width=2)
            if destroyed[k] and p == 1:
                draw.ellipse([off + c + side // 2 - 3, r + side // 2 - 3, off + c + side // 2 + 3,
                              r + side // 2 + 3], fill=(255, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def main() -> None:
    """Run both parts and print the tables and one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--top", type=int, default=20, help="top-N cells for Joplin")
    ap.add_argument("--picture", default=str(REPO / "docs" / "img" / "joplin_change.png"))
    args = ap.parse_args()
    from harma_core.onnx_runtime import load_model

    model = load_model("harma-lite")
    cols = dsifn(model, args.views)
    out: dict[str, Any] = {"cpu": cpu_model(), "views": args.views, "cells": len(cols["frac"])}
    print(f"CPU: {cpu_model()}; harma-lite on {getattr(model, 'runtime', 'torch')}, views={args.views}")
    print(f"DSIFN-CD samples: {len(cols['frac'])} cells of {CELL_PX} px from 10 pairs")
    print(f"{'score':<22}" + "".join(f"{'AUC@' + str(int(x * 100)) + '%':>10}{'P@rate':>8}" for x in THRESHOLDS))
    for key in ("change", "distance", "pixel_diff", "cva"):
        row = f"{key:<22}"
        for x in THRESHOLDS:
            lab = cols["frac"] >= x
            auc, prec = roc_auc(cols[key], lab), precision_at_rate(cols[key], lab)
            out[f"dsifn_{key}_{int(x * 100)}"] = {"auc": round(auc, 4), "p_at_rate": round(prec, 4)}
            row += f"{auc:>10.3f}{prec:>8.3f}"
        print(row)
    for x in THRESHOLDS:
        print(f"changed cells at X={int(x * 100)}%: {int((cols['frac'] >= x).sum())} of {len(cols['frac'])}")
    shares, base, n = joplin(model, args.views, args.picture, args.top)
    print(f"Joplin: {n} cells of 100 m; destroyed (by eye) {base:.0%} of them")
    for key, share in shares.items():
        print(f"  top {args.top} by {key:<11} destroyed share {share:.0%}")
    out["joplin"] = {"cells": n, "destroyed_share_all": round(base, 4), "top": args.top,
                     **{f"top_share_{k}": round(v, 4) for k, v in shares.items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
