"""The torch-free serving model against the torch runtime, in one process, cases interleaved round by round.

Rows: harma-lite served from its shipped folder (ONNX Runtime, numpy preprocessing, `tokenizers`) and the same
model in torch (`--runtime torch`). Columns: images/s embedding real UCM val tiles (1 view; what indexing
spends), and p50 ms of one uncached keyword query (the words and their 10 phrasings): in one encoder call
(what search does now) and in two calls (plain, then the phrasings: last round's path).
Usage: python bench/serving.py [--rounds 5] [--images 64]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from _common import UCM_DIR, cpu_model, interleaved, median, percentile

WORDS = ["overpass", "dense residential", "harbor", "golf course", "a river", "parking lot", "forest", "airport",
         "beach", "farmland", "tennis court", "storage tanks", "runway", "baseball diamond", "chaparral",
         "mobile home park", "intersection", "sparse residential", "medium residential", "buildings"]


def _two_calls(model: Any, text: str) -> None:
    from harma_core.embed import embed_texts
    from harma_core.prompts import embed_queries

    plain = embed_texts(model, [text])
    embed_queries(model, [text], plain)


def _one_call(model: Any, text: str) -> None:
    from harma_core.prompts import embed_query_pair

    embed_query_pair(model, text)


def keyword_p50(models: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    """p50 ms per (model, path) of uncached keyword queries, alternating model and path query by query."""
    secs: dict[tuple[str, str], list[float]] = {}
    for m in models.values():
        _one_call(m, "warm up")
    for r in range(rounds):
        for w in WORDS:
            text = f"{w} {r}" if r else w  # distinct texts: nothing is cached anywhere
            for name, m in models.items():
                for path, fn in (("one_call", _one_call), ("two_calls", _two_calls)):
                    t0 = time.perf_counter()
                    fn(m, text)
                    secs.setdefault((name, path), []).append(time.perf_counter() - t0)
    out: dict[str, dict[str, float]] = {}
    for (name, path), v in secs.items():
        out.setdefault(name, {})[path] = round(1000 * percentile(v, 50), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=64)
    a = ap.parse_args()
    from harma_core.data import decode_image, load_dataset
    from harma_core.embed import embed_images
    from harma_core.serving import load_model

    models = {"serving (no torch)": load_model("harma-lite"),
              "torch runtime": load_model("harma-lite", runtime="torch")}
    images = [np.array(decode_image(it.image).convert("RGB")) for it in load_dataset(UCM_DIR, "val").items[:a.images]]
    secs = interleaved({n: (lambda m=m: embed_images(m, images, batch_size=32)) for n, m in models.items()}, a.rounds)
    text = keyword_p50(models, a.rounds)
    print(f"CPU: {cpu_model()}; {a.images} UCM val images (256 px -> 224), 1 view; {len(WORDS)} keywords x {a.rounds}")
    print(f"{'model':<22}{'images/s':>10}{'kw p50 one call':>17}{'kw p50 two calls':>18}")
    rows = {}
    for n in models:
        rows[n] = {"images_per_s": round(len(images) / median(secs[n]), 1), **text[n]}
        print(f"{n:<22}{rows[n]['images_per_s']:>10}{rows[n]['one_call']:>14} ms{rows[n]['two_calls']:>15} ms")
    print(json.dumps({"cpu": cpu_model(), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
