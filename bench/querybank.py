#!/usr/bin/env python3
"""Index-time cost of query-bank offsets against embedding the same tiles, in the same run (interleaved).

Run `python bench/querybank.py [--tiles N]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import emit, interleaved, machine, median, quiet_logs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    quiet_logs()
    from harma_core import create_model
    from harma_core.embed import embed_images
    from harma_core.querybank import load_querybank

    loaded = create_model("harma-lite", device="cpu")
    bank = load_querybank(loaded)
    tiles = list(np.random.default_rng(0).integers(0, 256, (a.tiles, 256, 256, 3), dtype=np.uint8))
    vecs = embed_images(loaded, tiles)
    secs = interleaved({"embed": lambda: embed_images(loaded, tiles), "offsets": lambda: bank.offsets(vecs)},
                       a.rounds)
    embed_s, off_s = median(secs["embed"]), median(secs["offsets"])
    print(f"{a.tiles} tiles of 256 px: embedding {embed_s:.3f} s, offsets over a bank of {bank.size} captions "
          f"{off_s:.4f} s ({100 * off_s / embed_s:.1f} % of embedding)")
    emit({"bench": "querybank", "machine": machine(), "tiles": a.tiles, "bank": bank.size, "embed_s": embed_s,
          "offsets_s": off_s, "offsets_vs_embed": off_s / embed_s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
