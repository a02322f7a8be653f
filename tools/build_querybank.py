#!/usr/bin/env python3
"""Build a model's query bank (harma_core.querybank) from the captions of training splits.

Example (the shipped bank of harma-lite; beta chosen on val with tools/evaluate.py --beta-sweep):
    python tools/build_querybank.py --model harma-lite \\
        --data ../shared/data/captions/rsicd ../shared/data/captions/ucm_captions --beta 20
Writes querybank.safetensors into --out (default: the model's adapter folder). Never use val or test captions.
"""

from __future__ import annotations

import argparse
import logging

import _bootstrap  # noqa: F401

from harma_core import create_model
from harma_core.data import flatten_captions, load_dataset
from harma_core.querybank import QueryBank


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name or training run folder")
    ap.add_argument("--data", nargs="+", required=True, help="dataset folders whose --split captions form the bank")
    ap.add_argument("--split", default="train")
    ap.add_argument("--beta", type=float, required=True, help="inverted-softmax beta stored with the bank")
    ap.add_argument("--out", help="folder to write querybank.safetensors into (default: the model's adapter folder)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loaded = create_model(a.model, device=a.device)
    out = a.out or loaded.adapter_dir
    if out is None:
        ap.error(f"{a.model} has no adapter folder; give --out")
    captions, sources = [], {}
    for folder in a.data:
        items = load_dataset(folder, a.split).items
        caps, _ = flatten_captions(items)
        captions += caps
        sources[f"{folder.rstrip('/').rsplit('/', 1)[-1]}/{a.split}"] = len(caps)
    bank = QueryBank.build(loaded, captions, a.beta, sources)
    path = bank.save(out)
    print(f"{path}: {bank.size} distinct captions of {len(captions)} ({sources}), beta {bank.beta:g}, "
          f"model {bank.identity}, digest {bank.digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
