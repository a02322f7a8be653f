#!/usr/bin/env python3
"""Build a model's query bank (harma_core.querybank) from the captions of training splits.

Example (the shipped bank of harma-lite; beta chosen on val with tools/evaluate.py --beta-sweep):
    python tools/build_querybank.py --model harma-lite \\
        --data ../shared/data/captions/rsicd ../shared/data/captions/ucm_captions --beta 20
Writes querybank.safetensors into --out (default: the model's adapter folder). Never use val or test captions.
The bank also holds, per caption, the mean embedding of the training images it describes (query expansion;
--no-images leaves them out). --keep-captions adds them to an existing bank without re-embedding its captions,
so its digest, and every collection's stored offsets, stay valid.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import _bootstrap

from harma_core.data import flatten_captions, load_dataset
from harma_core.embed import embed_items
from harma_core.querybank import QueryBank, bank_texts, caption_image_means
from harma_core.serving import load_model
from harma_core.views import DEFAULT_VIEWS, VIEWS


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name or training run folder")
    ap.add_argument("--data", nargs="+", required=True, help="dataset folders whose --split captions form the bank")
    ap.add_argument("--split", default="train")
    ap.add_argument("--beta", type=float, required=True, help="inverted-softmax beta stored with the bank")
    ap.add_argument("--out", help="folder to write querybank.safetensors into (default: the model's adapter folder)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-images", action="store_true", help="captions only: no query expansion")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=VIEWS,
                    help="embed the training images as the mean over this many rotations/mirrorings")
    ap.add_argument("--keep-captions", action="store_true",
                    help="keep the caption embeddings of the bank already in --out; only add the image means")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loaded = load_model(a.model, device=a.device)
    out = a.out or loaded.adapter_dir
    if out is None:
        ap.error(f"{a.model} has no adapter folder; give --out")
    items, captions, owners, sources = [], [], [], {}
    for folder in a.data:
        part = load_dataset(folder, a.split).items
        caps, own = flatten_captions(part)
        owners += [len(items) + o for o in own]  # owners index the images of all folders, in order
        captions += caps
        items += part
        sources[f"{folder.rstrip('/').rsplit('/', 1)[-1]}/{a.split}"] = len(caps)
    texts = bank_texts(captions)
    if a.keep_captions:
        bank = QueryBank.load(loaded, out).with_beta(a.beta)
        if bank.size != len(texts):
            ap.error(f"the bank in {out} holds {bank.size} captions, these splits give {len(texts)}; "
                     "build it anew without --keep-captions")
    else:
        bank = QueryBank.build(loaded, captions, a.beta, sources)
    if not a.no_images:
        bank = bank.with_images(caption_image_means(texts, captions, owners, embed_items(loaded, items, views=a.views)))
        bank = dataclasses.replace(bank, sources={**bank.sources, "image_views": a.views})
    path = bank.save(out)
    print(f"{path}: {bank.size} distinct captions of {len(captions)} ({sources}), beta {bank.beta:g}, "
          f"images {'yes' if bank.images is not None else 'no'}, model {bank.identity}, digest {bank.digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
