"""GeoParquet 1.1 shards: one row per tile with its footprint (WKB, EPSG:4326), a bbox covering column and the
embedding; the model identity, tiling parameters and raster description live in the file metadata.

Both indexing engines write these and the collection is built from them (server/indexing/shard_import.py), so any
Parquet or GeoParquet reader (pyarrow, geopandas, GDAL) can take the embeddings elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS as ProjCRS

from server.errors import InvalidRequest, ModelMismatch
from server.store.records import RasterInfo, TileRecord, TilingParams
from server.store.tiletable import utc_now

SHARD_FORMAT = "harma-shard"
SHARD_VERSION = 1
GEO_KEY, HARMA_KEY = b"geo", b"harma"
_WGS84_PROJJSON = ProjCRS.from_epsg(4326).to_json_dict()
_BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def shard_schema(dim: int) -> pa.Schema:
    """Columns of a shard; `geometry` is WKB, `bbox` the GeoParquet 1.1 covering column."""
    f64 = pa.float64()
    return pa.schema([
        ("tile_id", pa.string()),  # "<raster key>:<position in the raster's window plan>", stable across runs
        ("raster", pa.string()),
        ("window", pa.struct([(k, pa.int32()) for k in ("col_off", "row_off", "width", "height")])),
        ("crs", pa.string()),  # the raster's own CRS
        ("raster_bounds", pa.struct([(k, f64) for k in ("left", "bottom", "right", "top")])),
        ("geometry", pa.binary()),
        ("bbox", pa.struct([(k, f64) for k in _BBOX_FIELDS])),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])


@dataclass(frozen=True)
class ShardMeta:
    """What a shard says about itself: who made the vectors, how tiles were cut, which part of which raster."""

    model: dict[str, Any]  # identity, name, dim
    tiling: dict[str, Any]  # TilingParams.to_dict()
    raster: dict[str, Any]  # RasterInfo as a dict
    part: int
    parts: int
    planned: int  # windows of the raster plan in this part (tiles + nodata)
    nodata: int  # windows of this part skipped as all nodata
    created_at: str = ""

    @property
    def info(self) -> RasterInfo:
        """The raster description as the tiling module's RasterInfo."""
        return raster_info_from_dict(self.raster)

    def to_json(self) -> dict[str, Any]:
        """The file-metadata form."""
        return {"format": SHARD_FORMAT, "version": SHARD_VERSION, **asdict(self)}


def raster_info_from_dict(d: dict[str, Any]) -> RasterInfo:
    """Rebuild a RasterInfo from its JSON form (lists back to tuples)."""
    d = dict(d)
    d["transform"] = tuple(d["transform"])
    d["bands"] = tuple(d["bands"])
    d["block"] = tuple(d["block"]) if d.get("block") else None
    d["stretch"] = tuple(tuple(s) for s in d["stretch"]) if d.get("stretch") else None
    return RasterInfo(**d)


def _geo_metadata(geoms: list[Any]) -> dict[str, Any]:
    """The GeoParquet 1.1 `geo` file metadata for the footprints written."""
    present = [g for g in geoms if g is not None and not g.is_empty]
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": sorted({g.geom_type for g in present}),
        "crs": _WGS84_PROJJSON,
        "covering": {"bbox": {k: ["bbox", k] for k in _BBOX_FIELDS}},
    }
    if present:
        column["bbox"] = [float(v) for v in shapely.total_bounds(np.array(present, dtype=object))]
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def shard_table(records: list[TileRecord], keys: list[str], vectors: np.ndarray, dim: int) -> pa.Table:
    """Arrow table of tiles in shard layout."""
    geoms = [r.footprint for r in records]
    wkb = [None if g is None else shapely.to_wkb(g) for g in geoms]
    bbox = [None if g is None or g.is_empty else dict(zip(_BBOX_FIELDS, map(float, g.bounds))) for g in geoms]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(records), dim)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    window_keys = ("col_off", "row_off", "width", "height")
    bounds_keys = ("left", "bottom", "right", "top")
    schema = shard_schema(dim)
    columns = [
        pa.array(keys, pa.string()),
        pa.array([r.raster for r in records], pa.string()),
        pa.array([dict(zip(window_keys, r.window)) for r in records], schema.field("window").type),
        pa.array([r.crs for r in records], pa.string()),
        pa.array([dict(zip(bounds_keys, r.bounds)) for r in records], schema.field("raster_bounds").type),
        pa.array(wkb, pa.binary()),
        pa.array(bbox, schema.field("bbox").type),
        embedding,
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_shard(path: Path, records: list[TileRecord], keys: list[str], vectors: np.ndarray,
                meta: ShardMeta) -> None:
    """Write one shard atomically (temporary file, fsync, rename): a shard file on disk is always whole."""
    dim = int(meta.model["dim"])
    table = shard_table(records, keys, vectors, dim)
    meta = ShardMeta(**{**asdict(meta), "created_at": meta.created_at or utc_now()})
    table = table.replace_schema_metadata({
        GEO_KEY: json.dumps(_geo_metadata([r.footprint for r in records])).encode(),
        HARMA_KEY: json.dumps(meta.to_json()).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, row_group_size=8192, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _line(e: BaseException) -> str:
    """An exception's message on one line (Arrow's span several)."""
    return " ".join(str(e).split())


def read_meta(path: Path) -> ShardMeta:
    """The harma metadata of a shard (footer only); files that are not shards are refused by name."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as e:
        raise InvalidRequest(f"{path} is not a readable Parquet file ({_line(e)}); remove it or re-run indexing") from e
    raw = md.get(HARMA_KEY)
    if raw is None or GEO_KEY not in md:
        raise InvalidRequest(f"{path} is Parquet but not a HarMA shard (no 'harma' and 'geo' metadata)")
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"{path}: its 'harma' metadata is not JSON ({e}); re-write the shard") from None
    if not isinstance(d, dict) or d.get("format") != SHARD_FORMAT or d.get("version") != SHARD_VERSION:
        got = (d.get("format"), d.get("version")) if isinstance(d, dict) else (type(d).__name__, None)
        raise InvalidRequest(f"{path} is shard format {got[0]!r} version {got[1]}; this "
                             f"build reads {SHARD_FORMAT!r} version {SHARD_VERSION}")
    d.pop("format")
    d.pop("version")
    try:
        meta = ShardMeta(**d)
        _check_meta(meta)
    except (TypeError, ValueError, KeyError, InvalidRequest) as e:
        raise InvalidRequest(f"{path}: its 'harma' metadata is not a valid shard description ({e}); re-write "
                             "the shard with tools/index.py --shards") from None
    return meta


def _check_meta(m: ShardMeta) -> None:
    """Raise ValueError/TypeError/KeyError/InvalidRequest unless every metadata field has its type and range."""
    ints = {"part": m.part, "parts": m.parts, "planned": m.planned, "nodata": m.nodata}
    for key, v in ints.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key}={v!r} must be a whole number >= 0")
    if not m.part < m.parts:
        raise ValueError(f"part {m.part} of {m.parts}")
    if not isinstance(m.model, dict) or not isinstance(m.model.get("identity"), str) \
            or not isinstance(m.model.get("name"), str):
        raise ValueError("model must hold an identity and a name")
    dim = m.model.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= 65536:
        raise ValueError(f"model dim={dim!r} must be a positive whole number")
    if not isinstance(m.tiling, dict) or not isinstance(m.raster, dict):
        raise ValueError("tiling and raster must be objects")
    TilingParams.recorded(m.tiling)
    info = m.info
    if not isinstance(info.path, str) or not info.path:
        raise ValueError(f"raster path {info.path!r}")


def check_compatible(meta: ShardMeta, path: Path, identity: str, params: TilingParams) -> None:
    """Refuse a shard made with another model or tiling than the collection's, naming both."""
    if meta.model["identity"] != identity:
        raise ModelMismatch(f"shard {path} was made with model {meta.model['identity']!r} but the collection "
                            f"uses {identity!r}; import it into a collection of that model, or re-index")
    theirs = TilingParams.recorded(meta.tiling)
    if theirs != params:
        raise ModelMismatch(f"shard {path} was cut with tiling {theirs.to_dict()} but the collection uses "
                            f"{params.to_dict()}; import it into a collection with that tiling, or re-index")


def read_tiles(path: Path) -> tuple[list[TileRecord], list[str], np.ndarray]:
    """Tile records, tile keys and (n, dim) float32 vectors of a shard, in file order; a file that does not
    decode as a shard (corrupt pages, missing or mistyped columns, nulls, bad WKB) raises InvalidRequest."""
    try:
        table = pq.read_table(path)
        kind = table.schema.field("embedding").type
        if not pa.types.is_fixed_size_list(kind) or not pa.types.is_floating(kind.value_type):
            raise TypeError(f"embedding column is {kind}, not a fixed-size list of floats")
        dim = kind.list_size
        n = table.num_rows
        emb = table.column("embedding").combine_chunks()
        if emb.null_count or emb.flatten().null_count:
            raise ValueError("embedding column holds nulls")
        vectors = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)
        geoms = shapely.from_wkb(np.array(table.column("geometry").to_pylist(), dtype=object))
        records = []
        for i, row in enumerate(table.select(["raster", "window", "crs", "raster_bounds"]).to_pylist()):
            w, b = row["window"], row["raster_bounds"]
            records.append(TileRecord(row["raster"], (w["col_off"], w["row_off"], w["width"], w["height"]),
                                      row["crs"], (b["left"], b["bottom"], b["right"], b["top"]), geoms[i]))
        keys = table.column("tile_id").to_pylist()
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError, shapely.errors.GEOSException) as e:
        raise InvalidRequest(f"{path} does not read back as a HarMA shard ({type(e).__name__}: {_line(e)}); re-write "
                             "it with tools/index.py --shards, or leave it out") from None
    return records, keys, vectors
