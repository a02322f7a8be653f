#!/usr/bin/env python3
"""Every tile's search score as a GeoTIFF heatmap, one per raster of the collection(s): exact over all tiles
(not the index's top-k), on the raster's own grid at the tile stride (one pixel per stride cell, the best tile
covering it; NaN where no tile). Band 1 is the score search ranks by, band 2 the cosine.

Example: python tools/heatmap.py --store stores demo "a river through forest" --out river.tif
         python tools/heatmap.py --store stores demo --tile-id 12 --out like12.tif
         python tools/heatmap.py --store stores demo --positive 12 40 --negative 7 --out fb.tif
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import _bootstrap


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, score every tile, write the heatmaps."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="store folder")
    ap.add_argument("collection", help="collection name; several as a comma-separated list")
    ap.add_argument("text", nargs="?", help="what to find, e.g. \"a river through forest\"")
    ap.add_argument("--tile-id", type=int, help="search by this example tile of the (first) collection")
    ap.add_argument("--positive", type=int, nargs="+", help="relevance feedback: tiles that match")
    ap.add_argument("--negative", type=int, nargs="+", help="relevance feedback: tiles that do not")
    ap.add_argument("--ranking", default="auto", choices=("auto", "cosine", "querybank"),
                    help="text scoring as in search (default auto: calibrated relevance where the model has it)")
    ap.add_argument("--out", required=True, help="GeoTIFF to write; with several rasters OUT_<n>_<raster>.tif")
    ap.add_argument("--model", default="harma-lite", help="model the collection was built with")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args(argv)

    from server.errors import InvalidRequest

    if not args.out.lower().endswith((".tif", ".tiff")):
        raise InvalidRequest(f"--out {args.out}: use a .tif file name")
    names = [c for c in args.collection.split(",") if c]
    body: dict[str, Any] = {"collections": names, "ranking": args.ranking}
    if args.text:
        body["text"] = args.text
    if args.positive or args.negative:
        body.update(positive=args.positive or [], negative=args.negative or [], collection=names[0])
    elif args.tile_id is not None:
        body.update(tile_id=args.tile_id, collection=names[0])
    from server.search.search_request import SearchRequest

    req = SearchRequest.from_json(body)  # bad input fails before the model loads

    from harma_core.serving import load_model
    from server.cli import check_collections
    from server.maps_run import write_heatmaps
    from server.search.exact import score_tiles
    from server.search.search import TextEmbedder
    from server.store.store import Store

    check_collections(args.store, names)
    model = load_model(args.model, device=args.device)
    scored = score_tiles(Store(args.store, create=False), model, TextEmbedder(model), req)
    files = write_heatmaps(scored, out=args.out)
    print(f"scored by {scored.scoring['ranked_by']}: {scored.scoring['score']}")
    for f in files:
        print(f"{f['path']}: {f['width']}x{f['height']} cells of {f['stride_px']} px from {f['tiles']} tiles of "
              f"{f['raster']}, score {f['min']} to {f['max']}")
    for s in scored.skipped:
        print(f"skipped {s.get('raster') or s.get('collection')}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
