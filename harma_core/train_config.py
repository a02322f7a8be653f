"""TrainConfig: everything that defines a training run, with the help text every front end shows.

One source of truth: tools/train.py builds its flags from these fields (name, type, default, `help` and
`choices` metadata), the server's POST /train takes the same keys. Unknown keys fail.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from harma_core.errors import ConfigError
from harma_core.readers.polygons import DEFAULT_TEMPLATE, MIN_COVER, PolygonSource

MODES = ("harma", "heads", "full")
DEFAULT_TILE = 256  # pixels, when neither tile_size nor tile_size_m is given
TURNS = (1, 4)  # orientations an augmented training view may take: upright only, or any quarter turn


def _opt(default: Any = None, help: str = "", factory: Any = None, **meta: Any) -> Any:
    """A dataclass field carrying its CLI help (and optional choices / flag) as metadata."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as run_config.json so the run can be reproduced."""

    data: list[str] = _opt(factory=list, help="caption dataset folder(s) with <name>_train.json/<name>_val.json, "
                                              "or captions tables")
    out: str = _opt("runs/latest", "run folder (resumes if it holds last.pt)")
    raster: list[str] = _opt(factory=list, help="GeoTIFF(s) to cut labelled tiles from (with --labels)")
    labels: str | None = _opt(None, "polygons with a class field over the rasters: GeoPackage, GeoJSON, Shapefile")
    layer: str | None = _opt(None, "layer of the labels file (default: its first)")
    label_field: str | None = _opt(None, "field of the polygons holding the class, e.g. landuse")
    caption_template: str = _opt(DEFAULT_TEMPLATE, "caption of a labelled tile, with one {label} placeholder")
    tile_size: int | None = _opt(None, f"tile side in pixels for labelled tiles (default {DEFAULT_TILE}); "
                                       "index with the same size")
    tile_size_m: float | None = _opt(None, "tile side in metres instead of pixels")
    split_field: str | None = _opt(None, "polygon field with train/val per polygon (default: held-out blocks)")
    min_cover: float = _opt(MIN_COVER, "share of a tile a label's polygons must cover to label it")
    model: str = _opt("harma-lite", "model name or checkpoint (default harma-lite)")
    mode: str = _opt("harma", "what is trained: HarMA adapters, heads only, or everything", choices=MODES)
    share: str = _opt("both", "share the mini-adapter across towers (paper) or text tower only (reference code)",
                      choices=("both", "text_only", "none"))
    image_stages: list[int] = _opt(factory=lambda: [5, 6], help="CNN stages that get adapters")
    epochs: int = _opt(10, "passes over the training tiles/images")
    batch_size: int = _opt(128, "images per step")
    lr: float = _opt(4e-4, "peak learning rate")
    weight_decay: float = _opt(0.04, "AdamW weight decay (not on biases, gates, norms)")
    warmup: float = _opt(0.1, "fraction of steps of linear warm-up")
    seed: int = _opt(0, "random seed")
    device: str = _opt("auto", "auto|cpu|cuda")
    views: int = _opt(2, "cached views per image (CNN towers): 1 = no augmentation")
    turns: int = _opt(1, "orientations of the augmented cached views: 1 = upright, 4 = a random quarter turn each "
                         "(overhead scenes have no up)", choices=TURNS)
    feature_crop: float = _opt(1.0, "smallest area of a random crop of cached feature maps, drawn every step "
                                    "(1 = off)")
    captions_per_image: int = _opt(1, "distinct captions of each image per batch (rows of one image are "
                                      "positives)")
    cache_dir: str | None = _opt(None, "where frozen-stage features are cached (default OUT/cache)")
    steps_per_epoch: int | None = _opt(None, "steps per epoch (default: one pass over the training items)")
    num_workers: int = _opt(2, "image decoding worker processes", flag="--workers")
    init: str | None = _opt(None, "start from this adapter: an adapter or run folder, or a model name with a "
                                  "shipped adapter (harma-lite); same --mode and stages. With --raster the "
                                  "default is the model's own shipped adapter (fine-tune what you search with)")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode '{self.mode}' is not one of {MODES}")
        if self.turns not in TURNS:
            raise ConfigError(f"turns {self.turns} must be 1 (upright views) or 4 (random quarter turns)")
        if not 0 < self.feature_crop <= 1:
            raise ConfigError(f"feature_crop {self.feature_crop} must lie in (0, 1]: the smallest crop area kept")
        if self.captions_per_image < 1:
            raise ConfigError(f"captions_per_image {self.captions_per_image} must be at least 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs {self.epochs} and batch_size {self.batch_size} must be at least 1")
        if self.raster and (not self.labels or not self.label_field):
            raise ConfigError("--raster needs --labels (polygons file) and --label-field (their class field)")
        if not self.raster and (self.labels or self.label_field or self.split_field):
            raise ConfigError("--labels/--label-field/--split-field need --raster: the GeoTIFF(s) they label")
        if self.tile_size is not None and self.tile_size_m is not None:
            raise ConfigError(f"give --tile-size ({self.tile_size} px) or --tile-size-m ({self.tile_size_m} m), "
                              "not both")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a JSON-like dict (e.g. a POST /train body); unknown keys fail, naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        for key, value in d.items():
            kind, many = field_kind(key)
            values = value if many and isinstance(value, list) else [value]
            ok = (value is None or not many or isinstance(value, list)) and all(
                v is None or (isinstance(v, kind) and not isinstance(v, bool)) or (kind is float and
                                                                                isinstance(v, int)) for v in values)
            if not ok:
                raise ConfigError(f"{key}={value!r} must be {'a list of ' if many else ''}{kind.__name__}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"bad training settings ({exc})") from exc

    def polygon_source(self) -> PolygonSource | None:
        """The labelled-polygon source of this run, if it has rasters."""
        if not self.raster:
            return None
        return PolygonSource(rasters=tuple(self.raster), labels=str(self.labels), label_field=str(self.label_field),
                             layer=self.layer, template=self.caption_template,
                             tile_size=self.tile_size or DEFAULT_TILE, tile_size_m=self.tile_size_m,
                             split_field=self.split_field, min_cover=self.min_cover)


def field_kind(name: str) -> tuple[type, bool]:
    """(element type, is a list) of a TrainConfig field, read from its annotation (`X | None` gives X)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) is not list and type(None) in typing.get_args(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False
