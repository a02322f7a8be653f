#!/usr/bin/env python3
"""Search a collection with a text query and print the top hits (optionally as GeoJSON or a GeoPackage)."""

from __future__ import annotations

import argparse
import sys

import _bootstrap


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the search."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True, help="store folder")
    ap.add_argument("collection", help="collection name; several as a comma-separated list")
    ap.add_argument("text", help="what to find, e.g. \"a river through forest\"")
    ap.add_argument("--k", type=int, default=10, help="number of hits (default 10)")
    ap.add_argument("--min-score", type=float, help="drop hits with a lower cosine score")
    ap.add_argument("--bbox", type=float, nargs=4, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
                    help="only tiles intersecting this box")
    ap.add_argument("--bbox-crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326)")
    ap.add_argument("--json", action="store_true", help="print the GeoJSON FeatureCollection as the last line")
    ap.add_argument("--out", help="also write the hits to a .geojson or .gpkg file")
    ap.add_argument("--model", default="harma-lite", help="model the collection was built with")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args(argv)

    from harma_core.serving import load_model
    from server.cli import check_collections, run_search

    names = [c for c in args.collection.split(",") if c]
    check_collections(args.store, names)
    model = load_model(args.model, device=args.device)
    run_search(args.store, names, args.text, model, k=args.k,
               min_score=args.min_score, bbox=args.bbox, bbox_crs=args.bbox_crs, as_json=args.json,
               out_path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
