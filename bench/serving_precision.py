"""Which weight precision the shipped serving graphs use: size, speed and val mR of each, in one process.

For each precision (fp32, fp16w, int8) harma-lite is exported into a temporary serving folder
(harma_core.export); then: the folder's size, images/s of a batch of UCM val images, the p50 of one uncached
keyword query (11 phrasings, harma_core.prompts), and UCM + RSICD val mR with query bank and expansion (`mR_qbx`:
what search ranks by). Speed cases are interleaved round by round, so load drift hits all alike.
Usage: python bench/serving_precision.py [--precisions fp32 fp16w int8] [--views 8] [--sets ucm rsicd]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import RSICD_DIR, UCM_DIR, cpu_model, interleaved, median, percentile

KEYWORDS = ["overpass", "dense residential", "harbor", "golf course", "a river", "parking lot", "forest",
            "airport", "beach", "farmland", "tennis court", "storage tanks"]


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".onnx", ".json")) / 2**20


def _keyword_p50_ms(model: Any, rounds: int = 3) -> float:
    from harma_core.prompts import embed_queries

    embed_queries(model, ["warm up"])
    secs = []
    for _ in range(rounds):
        for q in KEYWORDS:
            t0 = time.perf_counter()
            embed_queries(model, [q])
            secs.append(time.perf_counter() - t0)
    return 1000 * percentile(secs, 50)


def _val_mr(model: Any, data: Path, views: int) -> dict[str, float]:
    from harma_core.data import load_dataset
    from harma_core.evaluate import evaluate_items
    from harma_core.querybank import QueryBank

    m = evaluate_items(model, load_dataset(data, "val").items, bank=QueryBank.find(model), views=views)
    return {k: round(m[k], 2) for k in ("mR", "mR_qb", "mR_qbx") if k in m}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16w", "int8"])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--sets", nargs="+", default=["ucm", "rsicd"])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from harma_core.data import decode_image, load_dataset
    from harma_core.embed import embed_images
    from harma_core.export import ExportError, export_model
    from harma_core.serving import ServingModel

    tmp = Path(tempfile.mkdtemp(prefix="serving-precision-"))
    models: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for p in a.precisions:
        try:
            folder = export_model("harma-lite", tmp / p, precision=p)
        except ExportError as e:  # the export's own check refuses it: report, do not ship
            rows[p] = {"refused": str(e)}
            continue
        models[p] = ServingModel(folder)
        rows[p] = {"size_mb": round(_folder_mb(folder), 1),
                   **json.loads((folder / "model.json").read_text())["check"]}
    images = [__import__("numpy").array(decode_image(it.image).convert("RGB"))
              for it in load_dataset(UCM_DIR, "val").items[:64]]
    secs = interleaved({p: (lambda m=m: embed_images(m, images, batch_size=32)) for p, m in models.items()},
                       a.rounds)
    for p, m in models.items():
        rows[p]["images_per_s"] = round(len(images) / median(secs[p]), 1)
        rows[p]["keyword_p50_ms"] = round(_keyword_p50_ms(m), 2)
        for name in a.sets:
            rows[p][name] = _val_mr(m, {"ucm": UCM_DIR, "rsicd": RSICD_DIR}[name], a.views)
    print(f"CPU: {cpu_model()}; views {a.views}")
    print(f"{'precision':<10}{'MB':>7}{'img/s':>8}{'kw p50 ms':>11}  val mR / mR_qb / mR_qbx per set")
    for p, r in rows.items():
        if "refused" in r:
            print(f"{p:<10} refused: {r['refused']}")
            continue
        sets = "  ".join(f"{n}: {r[n].get('mR')} / {r[n].get('mR_qb')} / {r[n].get('mR_qbx')}" for n in a.sets)
        print(f"{p:<10}{r['size_mb']:>7}{r['images_per_s']:>8}{r['keyword_p50_ms']:>11}  {sets}")
    print(json.dumps({"cpu": cpu_model(), "views": a.views, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
