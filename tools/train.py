"""Fine-tune a model with HarMA adapters (or heads only, or fully) on caption datasets and/or on tiles of your
own GeoTIFFs labelled by polygons with a class field.

Examples:
  python tools/train.py --data ../shared/data/captions/ucm_captions --epochs 1
  python tools/train.py --raster A.tif B.tif --labels landuse.gpkg --label-field class --out runs/mine
Then: python tools/index.py --model runs/mine --tile-size 256 ... (index with the tile size trained on)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

import _bootstrap

from harma_core.train import TrainConfig, TrainingCancelled, train
from harma_core.train_config import field_kind


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field: name, type, default, help and choices all come from the dataclass."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        kind, many = field_kind(f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        ap.add_argument(flag, dest=f.name, type=kind, nargs="+" if many else None, default=default,
                        choices=f.metadata.get("choices"), help=f"{f.metadata['help']} (default: {default})")
    return ap


@_bootstrap.tool(interrupted="interrupted; run the same command again to resume from the last finished epoch")
def main(argv: list[str] | None = None) -> int:
    """Parse the flags, train, print the summary as one JSON line."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        metrics = train(TrainConfig(**vars(a)))
    except TrainingCancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    keys = ("mode", "trainable", "total", "best_epoch", "best_val", "init_val")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
