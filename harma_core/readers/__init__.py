"""Readers of training and evaluation data: every one returns a ReadReport of Items.

- `captions`: caption datasets (HarMA JSON, Karpathy JSON, CSV/JSONL tables) and `load_dataset`;
- `polygons`: labelled tiles cut from GeoTIFFs by polygons with a class field;
- `items`: Item, ReadReport and the clean-up they share.
"""

from harma_core.readers.captions import load_dataset, read_harma_json, read_karpathy, read_table
from harma_core.readers.items import SPLIT_COLUMN, Item, ReadReport, assign_splits, normalize_caption
from harma_core.readers.polygons import PolygonSource, read_polygon_tiles

__all__ = [
    "SPLIT_COLUMN", "Item", "PolygonSource", "ReadReport", "assign_splits", "load_dataset", "normalize_caption",
    "read_harma_json", "read_karpathy", "read_polygon_tiles", "read_table",
]
