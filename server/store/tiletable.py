"""The tile and raster tables of a collection, kept in one GeoPackage (tiles.gpkg) that QGIS can open."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from server.store import gpkg
from server.store.records import TileRecord

_TABLES = """
CREATE TABLE IF NOT EXISTS tiles (
  fid INTEGER PRIMARY KEY AUTOINCREMENT,
  geom MULTIPOLYGON,
  raster TEXT NOT NULL,
  col_off INTEGER NOT NULL, row_off INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
  crs TEXT,
  minx REAL, miny REAL, maxx REAL, maxy REAL,
  lon_min REAL, lat_min REAL, lon_max REAL, lat_max REAL,
  added_at TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS tiles_raster_idx ON tiles (raster, deleted);
CREATE INDEX IF NOT EXISTS tiles_lonlat_idx ON tiles (lon_min, lon_max, lat_min, lat_max);
CREATE TABLE IF NOT EXISTS rasters (
  fid INTEGER PRIMARY KEY AUTOINCREMENT,
  path TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  state TEXT NOT NULL,
  tiles INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
  info TEXT,
  added_at TEXT NOT NULL, updated_at TEXT NOT NULL);
"""
# lon/lat envelopes of the tiles for area queries: an SQLite R*Tree, not a GeoPackage layer (GDAL skips rtree_*)
_RTREE = "rtree_tiles_lonlat"
_TILE_COLUMNS = ("fid", "raster", "col_off", "row_off", "width", "height", "crs", "minx", "miny", "maxx", "maxy",
                 "added_at", "deleted", "geom")


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RasterRow:
    """One row of the rasters table."""

    path: str
    size: int
    mtime_ns: int
    state: str  # indexing | complete | deleted
    tiles: int
    skipped: int
    info: dict[str, Any] | None


def _ensure_rtree(conn: sqlite3.Connection) -> None:
    """Create and fill the envelope R*Tree if missing (collections made before it), in one transaction."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (_RTREE,)).fetchone():
        return
    if not conn.in_transaction:  # sqlite3 opens none before DDL: a crash must not leave an empty tree behind
        conn.execute("BEGIN")
    conn.execute(f"CREATE VIRTUAL TABLE {_RTREE} USING rtree(id, lon_min, lon_max, lat_min, lat_max)")
    conn.execute(f"INSERT INTO {_RTREE} SELECT fid, lon_min, lon_max, lat_min, lat_max FROM tiles "  # noqa: S608
                 "WHERE lon_min IS NOT NULL")


def _multi(geom: BaseGeometry | None) -> BaseGeometry | None:
    """Footprints are stored as MULTIPOLYGON so the layer has one geometry type."""
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


class TileTable:
    """Transactional access to tiles.gpkg; one short-lived sqlite connection per operation (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rtree = False  # seen the envelope R*Tree (it is never dropped)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose changes commit on success and roll back on error."""
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def create(self) -> None:
        """Create the GeoPackage with empty tables."""
        with self.connect() as conn:
            gpkg.init_geopackage(conn)
            conn.executescript(_TABLES)
            gpkg.register_features(conn, "tiles", "geom", "MULTIPOLYGON", 4326,
                                   "HarMA Search tiles: footprints in EPSG:4326, window on the raster grid")
            gpkg.register_attributes(conn, "rasters", "rasters of the collection and their indexing state")
            _ensure_rtree(conn)

    # -- tiles -------------------------------------------------------------------------------------------
    def insert_tiles(self, records: Iterable[TileRecord]) -> list[int]:
        """Insert tile rows in one transaction; returns their new ids (never reused, AUTOINCREMENT)."""
        now = utc_now()
        ids, envelopes = [], []
        with self.connect() as conn:
            if not self._has_rtree(conn):  # checked in SQL only until the tree is seen, not on every batch
                _ensure_rtree(conn)
            for r in records:
                lonlat = r.footprint.bounds if r.footprint is not None else (None, None, None, None)
                cur = conn.execute(
                    "INSERT INTO tiles (geom, raster, col_off, row_off, width, height, crs, minx, miny, maxx, maxy,"
                    " lon_min, lat_min, lon_max, lat_max, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (gpkg.encode_geometry(_multi(r.footprint), 4326), r.raster, *r.window, r.crs, *r.bounds,
                     *lonlat, now))
                ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
                if lonlat[0] is not None and not math.isnan(lonlat[0]):  # no footprint, or an empty one
                    envelopes.append((ids[-1], lonlat[0], lonlat[2], lonlat[1], lonlat[3]))
            conn.executemany(f"INSERT INTO {_RTREE} VALUES (?,?,?,?,?)", envelopes)  # noqa: S608
        return ids

    def live_ids(self) -> set[int]:
        """Ids of tiles not marked deleted."""
        with self.connect() as conn:
            return {row[0] for row in conn.execute("SELECT fid FROM tiles WHERE deleted = 0")}

    def delete_rows(self, ids: Iterable[int]) -> None:
        """Drop rows outright (used for rows whose vectors never reached a saved index); a complete raster that
        loses tiles so goes back to 'indexing', so that re-adding it recomputes them."""
        ids = [(i,) for i in ids]
        with self.connect() as conn:
            conn.executemany("UPDATE rasters SET state = 'indexing' WHERE state = 'complete' AND path = "
                             "(SELECT raster FROM tiles WHERE fid = ?)", ids)
            conn.executemany("DELETE FROM tiles WHERE fid = ?", ids)
            if self._has_rtree(conn):
                conn.executemany(f"DELETE FROM {_RTREE} WHERE id = ?", ids)  # noqa: S608

    def mark_raster_tiles_deleted(self, raster: str) -> list[int]:
        """Mark every live tile of a raster deleted; returns their ids."""
        with self.connect() as conn:
            ids = [r[0] for r in conn.execute("SELECT fid FROM tiles WHERE raster = ? AND deleted = 0", (raster,))]
            conn.execute("UPDATE tiles SET deleted = 1 WHERE raster = ? AND deleted = 0", (raster,))
        return ids

    def windows_of(self, raster: str) -> set[tuple[int, int, int, int]]:
        """Windows already indexed for a raster (live tiles only)."""
        with self.connect() as conn:
            return {tuple(r) for r in conn.execute(  # type: ignore[misc]
                "SELECT col_off, row_off, width, height FROM tiles WHERE raster = ? AND deleted = 0", (raster,))}

    def raster_windows(self, raster: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live tiles of one raster as arrays: ids (n,), windows (n, 4) [col, row, width, height] and bounds
        (n, 4) [minx, miny, maxx, maxy] in the raster CRS; in id order."""
        with self.connect() as conn:
            rows = conn.execute("SELECT fid, col_off, row_off, width, height, minx, miny, maxx, maxy FROM tiles "
                                "WHERE raster = ? AND deleted = 0 ORDER BY fid", (raster,)).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        windows = np.array([r[1:5] for r in rows], dtype=np.int64).reshape(-1, 4)
        bounds = np.array([r[5:9] for r in rows], dtype=np.float64).reshape(-1, 4)
        return ids, windows, bounds

    def rows(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Live tile rows by id, footprint decoded; missing or deleted ids are absent."""
        ids = list(ids)
        out: dict[int, dict[str, Any]] = {}
        with self.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {', '.join(_TILE_COLUMNS)} FROM tiles WHERE deleted = 0 AND fid IN ({marks})"  # noqa: S608
                for row in conn.execute(query, chunk):
                    d = dict(zip(_TILE_COLUMNS, row))
                    d["geom"] = gpkg.decode_geometry(d["geom"])
                    out[d["fid"]] = d
        return out

    def footprints_in_lonlat_box(self, west: float, south: float, east: float, north: float
                                 ) -> tuple[np.ndarray, np.ndarray, list[bytes | None]]:
        """Live tiles whose WGS84 envelope overlaps the box (a coarse filter; refine with the footprint): their
        ids, envelopes as (n, 4) [lon_min, lat_min, lon_max, lat_max] and GeoPackage footprint blobs."""
        box = (east, west, north, south)
        where = "t.deleted = 0 AND t.lon_min <= ? AND t.lon_max >= ? AND t.lat_min <= ? AND t.lat_max >= ?"
        with self.connect() as conn:
            if self._has_rtree(conn):  # the tree's float32 boxes are rounded outwards: `where` makes it exact
                query = (f"SELECT t.fid, t.lon_min, t.lat_min, t.lon_max, t.lat_max, t.geom FROM {_RTREE} r CROSS "  # noqa: S608
                         "JOIN tiles t ON t.fid = r.id WHERE r.lon_min <= ? AND r.lon_max >= ? AND r.lat_min <= ? "
                         f"AND r.lat_max >= ? AND {where}")
                rows = conn.execute(query, box + box).fetchall()
            else:  # a collection from before the tree, until its next write session
                query = f"SELECT t.fid, t.lon_min, t.lat_min, t.lon_max, t.lat_max, t.geom FROM tiles t WHERE {where}"  # noqa: S608
                rows = conn.execute(query, box).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        envelopes = np.array([r[1:5] for r in rows], dtype=np.float64).reshape(-1, 4)
        return ids, envelopes, [r[5] for r in rows]

    def _has_rtree(self, conn: sqlite3.Connection) -> bool:
        if not self._rtree:
            self._rtree = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (_RTREE,)).fetchone() is not None
        return self._rtree

    def lonlat_extent(self) -> tuple[float, float, float, float] | None:
        """Envelope of all live footprints, or None when there are none."""
        with self.connect() as conn:
            row = conn.execute("SELECT min(lon_min), min(lat_min), max(lon_max), max(lat_max) FROM tiles "
                               "WHERE deleted = 0").fetchone()
        return None if row[0] is None else tuple(row)  # type: ignore[return-value]

    def set_extent(self) -> None:
        """Store the live extent in gpkg_contents."""
        extent = self.lonlat_extent()
        with self.connect() as conn:
            gpkg.set_extent(conn, "tiles", extent)

    # -- rasters -----------------------------------------------------------------------------------------
    def raster(self, path: str) -> RasterRow | None:
        """The bookkeeping row of one raster, if any."""
        with self.connect() as conn:
            row = conn.execute("SELECT path, size, mtime_ns, state, tiles, skipped, info FROM rasters "
                               "WHERE path = ?", (path,)).fetchone()
        if row is None:
            return None
        return RasterRow(*row[:6], json.loads(row[6]) if row[6] else None)

    def rasters(self) -> list[RasterRow]:
        """All raster rows, in insertion order."""
        with self.connect() as conn:
            rows = conn.execute("SELECT path, size, mtime_ns, state, tiles, skipped, info FROM rasters "
                                "ORDER BY fid").fetchall()
        return [RasterRow(*r[:6], json.loads(r[6]) if r[6] else None) for r in rows]

    def set_raster(self, path: str, size: int, mtime_ns: int, state: str, info: dict[str, Any] | None,
                   tiles: int = 0, skipped: int = 0) -> None:
        """Insert or update a raster's bookkeeping row."""
        now = utc_now()
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO rasters (path, size, mtime_ns, state, tiles, skipped, info, added_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, state=excluded.state, tiles=excluded.tiles, "
                "skipped=excluded.skipped, info=COALESCE(excluded.info, rasters.info), "
                "updated_at=excluded.updated_at",
                (path, size, mtime_ns, state, tiles, skipped, json.dumps(info) if info else None, now, now))

    def counts(self) -> dict[str, int]:
        """Live tiles and rasters by state."""
        with self.connect() as conn:
            tiles = conn.execute("SELECT count(*) FROM tiles WHERE deleted = 0").fetchone()[0]
            states = dict(conn.execute("SELECT state, count(*) FROM rasters GROUP BY state").fetchall())
        return {"tiles": tiles, "rasters": states.get("complete", 0), "rasters_partial": states.get("indexing", 0)}
