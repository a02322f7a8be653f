"""The acquisition date of a raster, and where it came from: a value the user gave, the file's metadata, or its
name.

Order (first that yields a date wins): the explicit value; the TIFF tag TIFFTAG_DATETIME; GDAL metadata
ACQUISITIONDATETIME / ACQUISITIONDATE / ACQUISITION_DATE / DATE_ACQUIRED / DATE (default and IMAGERY domains);
a YYYYMMDD, YYYY-MM-DD (or _ / . separated) or lone YYYY (1900-2099) in the file name. Dates are ISO
strings: "2011-05-24", or "2011" when only the year is known.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from server.errors import InvalidRequest

METADATA_KEYS = ("ACQUISITIONDATETIME", "ACQUISITIONDATE", "ACQUISITION_DATE", "DATE_ACQUIRED", "DATE")
_FULL = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_.]?(\d{2})[-_.]?(\d{2})(?!\d)")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


@dataclass(frozen=True)
class RasterDate:
    """An ISO date (None when unknown) and its source: 'given', 'tiff tag TIFFTAG_DATETIME', 'metadata KEY',
    'file name' or 'unknown'."""

    value: str | None
    source: str


def _iso(year: str, month: str, day: str) -> str | None:
    """'YYYY-MM-DD' when the parts make a real calendar day, else None."""
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def parse_date(text: str) -> str | None:
    """The first date in a string (full dates before lone years), as ISO; None when there is none."""
    for m in _FULL.finditer(text):
        iso = _iso(*m.groups())
        if iso:
            return iso
    m = _YEAR.search(text)
    return m.group(1) if m else None


def check_given(value: str) -> str:
    """A user-given date as ISO ('YYYY', 'YYYY-MM' or 'YYYY-MM-DD'); anything else raises InvalidRequest."""
    v = str(value).strip()
    for fmt, out in (("%Y-%m-%d", "%Y-%m-%d"), ("%Y-%m", "%Y-%m"), ("%Y", "%Y")):
        try:
            return dt.datetime.strptime(v, fmt).strftime(out)
        except ValueError:
            continue
    raise InvalidRequest(f"date {value!r} is not a date; give YYYY-MM-DD, YYYY-MM or YYYY, e.g. 2011-05-24")


def _from_metadata(path: str) -> RasterDate | None:
    """A date from the file's TIFF tag or GDAL metadata, or None."""
    try:
        with rasterio.open(path) as ds:
            domains = [ds.tags(), ds.tags(ns="IMAGERY") if "IMAGERY" in (ds.tag_namespaces() or []) else {}]
    except RasterioIOError:
        return None
    tags = {k.upper(): v for d in domains for k, v in d.items()}
    if "TIFFTAG_DATETIME" in tags:
        iso = parse_date(tags["TIFFTAG_DATETIME"].replace(":", "-", 2))
        if iso:
            return RasterDate(iso, "tiff tag TIFFTAG_DATETIME")
    for key in METADATA_KEYS:
        iso = parse_date(tags.get(key, ""))
        if iso:
            return RasterDate(iso, f"metadata {key}")
    return None


def raster_date(path: str, given: str | None = None) -> RasterDate:
    """The date of a raster: `given` > TIFF tag / metadata > file name > unknown."""
    if given:
        return RasterDate(check_given(given), "given")
    found = _from_metadata(path)
    if found:
        return found
    iso = parse_date(Path(path).name)
    return RasterDate(iso, "file name") if iso else RasterDate(None, "unknown")


def scene_date(paths: list[str], given: str | None = None) -> RasterDate:
    """The date of a scene made of several files: `given`, else the first file's date that is known."""
    if given:
        return RasterDate(check_given(given), "given")
    for p in paths:
        d = raster_date(p)
        if d.value:
            return d
    return RasterDate(None, "unknown")
