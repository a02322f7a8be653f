"""Evaluate retrieval (R@1/5/10 both ways, mR) of a model or a training run on a dataset split.

Example: python tools/evaluate.py --model harma-lite --data ../shared/data/captions/rsicd --split val --json
"""

from __future__ import annotations

import argparse
import json
import logging
import random

import _bootstrap

from harma_core.data import load_dataset
from harma_core.evaluate import evaluate_items, format_table
from harma_core.ort_session import RUNTIMES, runtime_of
from harma_core.querybank import QueryBank
from harma_core.serving import load_model
from harma_core.views import DEFAULT_VIEWS, VIEWS


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name, checkpoint or training run folder")
    ap.add_argument("--data", required=True, help="dataset folder or captions table")
    ap.add_argument("--split", default="val")
    ap.add_argument("--base", action="store_true", help="ignore any shipped adapter: the untuned base model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runtime", default="auto", choices=RUNTIMES,
                    help="auto (ONNX Runtime on CPU, torch on CUDA), torch or onnx")
    ap.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    ap.add_argument("--querybank", default="auto",
                    help="'auto': also score the ranking corrected by the model's shipped query bank (keys *_qb), "
                         "'none': plain cosine only, or the path of a querybank.safetensors")
    ap.add_argument("--beta", type=float, help="inverted-softmax beta instead of the bank's own")
    ap.add_argument("--beta-sweep", type=float, nargs="+", default=[],
                    help="also score these betas (rows of qb_sweep in the JSON)")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=VIEWS,
                    help="embed each image as the mean over this many rotations/mirrorings (what new "
                         "collections do; 1 = the image as is)")
    ap.add_argument("--sample", type=int, help="score a fixed random subset of N images (seed 0), e.g. of "
                                              "the train split, to compare with val at the same gallery size")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loaded = load_model(a.model, device=a.device, runtime=a.runtime, adapter=None if a.base else "default")
    report = load_dataset(a.data, a.split)
    items = report.items
    if a.sample is not None and a.sample < len(items):
        items = [items[i] for i in sorted(random.Random(0).sample(range(len(items)), a.sample))]
    bank = None if a.querybank == "none" else (
        QueryBank.find(loaded) if a.querybank == "auto" else QueryBank.load(loaded, a.querybank))
    if bank is not None and a.beta is not None:
        bank = bank.with_beta(a.beta)
    metrics = evaluate_items(loaded, items, bank=bank, betas=a.beta_sweep if bank is not None else (), views=a.views)
    metrics["runtime"], metrics["views"] = runtime_of(loaded), a.views
    print(f"{loaded.identity} ({metrics['runtime']}, {a.views} views) on {a.data} [{a.split}]: {metrics['n_images']} images, "
          f"{metrics['n_captions']} captions, {len(report.skipped)} skipped rows")
    print(format_table({a.split: metrics}))
    if bank is not None:
        print(f"*_qb: text->image ranked by cosine - offset, query bank of {bank.size} captions, beta {bank.beta:g}")
        if bank.expands:
            print(f"*_qbx: the same with queries expanded through the bank's training images {bank.expansion} "
                  "(what search ranks by)")
        for row in metrics.get("qb_sweep", []):
            print(f"  beta {row['beta']:6g}: t2i R@1/5/10 {row['t2i_r1_qb']:.2f} / {row['t2i_r5_qb']:.2f} / "
                  f"{row['t2i_r10_qb']:.2f}, mR_qb {row['mR_qb']:.2f}")
    if a.json:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
