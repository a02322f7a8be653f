"""Fit calibrated relevance (P(match) of a text query's ranking score) on val, and write calibration.json beside
the model's query bank; prints the val report (reliability of class-name queries' top 50, ECE, present vs absent).

Example: python tools/calibrate.py --model harma-lite \\
    --data ../shared/data/captions/ucm_captions ../shared/data/captions/rsicd --split val
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import _bootstrap
import numpy as np

from harma_core.calibration import NO_MATCH_BELOW
from harma_core.calibration_fit import calibrate, load_val_set
from harma_core.errors import ConfigError
from harma_core.ort_session import RUNTIMES
from harma_core.querybank import QueryBank
from harma_core.serving import load_model
from harma_core.views import DEFAULT_VIEWS, VIEWS


def _vectors(loaded: object, images: list[str], views: int, cache: Path | None, key: str) -> np.ndarray:
    """Image embeddings (the mean of `views` views, as collections embed tiles), cached by model and set."""
    from harma_core.data import decode_image
    from harma_core.embed import embed_images

    path = None if cache is None else cache / f"{key}.npy"
    if path is not None and path.is_file():
        vec = np.load(path)
        if len(vec) == len(images):
            return vec
    vec = np.concatenate([embed_images(loaded, [decode_image(p) for p in images[s:s + 256]], 64, views)
                          for s in range(0, len(images), 256)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vec)
    return vec


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name or training run folder (with its bank)")
    ap.add_argument("--data", nargs="+", required=True, help="dataset folders (HarMA format) to calibrate on")
    ap.add_argument("--split", default="val", help="the split to fit on (val; never test)")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=VIEWS)
    ap.add_argument("--threshold", type=float, default=NO_MATCH_BELOW,
                    help="a best hit below this P(match) makes the answer say no_match")
    ap.add_argument("--out", help="folder to write calibration.json to (default: beside the model's query bank)")
    ap.add_argument("--cache-dir", help="keep image embeddings here between runs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runtime", default="auto", choices=RUNTIMES)
    ap.add_argument("--json", action="store_true", help="last stdout line is the report as one JSON object")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.split == "test":
        raise ConfigError("calibrate on val: the test split is held out")
    loaded = load_model(a.model, device=a.device, runtime=a.runtime)
    bank = QueryBank.find(loaded)
    if bank is None:
        raise ConfigError(f"{loaded.identity} has no query bank to calibrate the score of; build one with "
                          "tools/build_querybank.py first")
    sets = {Path(d).name: load_val_set(d, a.split) for d in a.data}
    cache = Path(a.cache_dir) if a.cache_dir else None
    tag = str(loaded.identity).replace(":", "_").replace("=", "")
    vectors = {n: _vectors(loaded, vs.images, a.views, cache, f"{tag}_{n}_{a.split}_v{a.views}")
               for n, vs in sets.items()}
    cal = calibrate(loaded, bank, sets, vectors, a.threshold)
    cal.report.update(split=a.split, views=a.views)
    out = Path(a.out) if a.out else Path(loaded.adapter_dir)
    path = cal.save(out)
    rep = cal.report
    print(f"{loaded.identity}: calibration written to {path}")
    for label in ("cross_fitted", "in_sample"):
        r = rep[label]
        print(f"[{label}] ECE of class-name queries' top {rep['top']}: {r['class_top50_ece']:.4f}; "
              f"all pairs: {r['pairs_ece']}")
        for row in r["class_top50_reliability"]:
            print(f"  {row['bin'][0]:.1f}-{row['bin'][1]:.1f}: n={row['n']:5d} predicted {row['predicted']:.3f} "
                  f"observed {row['observed']:.3f}")
        for name, sep in r["separation"].items():
            print(f"  {name}: best hit present {sep['present_best_mean']:.3f} / absent {sep['absent_best_mean']:.3f}, "
                  f"AUC {sep['auc']:.3f}, no_match present {sep['present_no_match']:.2f} / absent "
                  f"{sep['absent_no_match']:.2f}")
    if a.json:
        print(json.dumps(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
