"""Answers drawn as rasters: a search's score heatmaps, a zero-shot land-cover map (class GeoTIFFs with their
legend and class polygons), and the change between two dates; the server conversations that fetch them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import api
from .change import ChangeAnswer, ChangeParams, parse_change, polygon_wkt
from .errors import InputError, ServerResponseError

PRESETS = {"ucm21": "UC Merced land use (21 classes)"}
MAX_CLASSES = 64
UNKNOWN_LABEL = "unknown"


@dataclass(frozen=True)
class HeatmapFile:
    """One heatmap GeoTIFF of an answer: where to fetch it, which raster it covers, its colour ramp range."""

    url: str
    raster: str
    collection: str
    low: float
    high: float
    path: str = ""  # where it was downloaded

    @property
    def name(self) -> str:
        """The raster's file name (without folders)."""
        return Path(self.raster.replace("\\", "/")).name or self.url.rsplit("/", 1)[-1]


def parse_heatmaps(body: Any) -> list[HeatmapFile]:
    """The files of a heatmap answer; a calibrated relevance keeps its 0-1 range so colours mean the same
    in every search, other scores use the file's own range."""
    if not isinstance(body, dict) or body.get("type") != "heatmaps":
        raise ServerResponseError("The server did not answer with heatmaps: update it (search \"as\": "
                                  "\"heatmap\" is new)")
    relevance = (body.get("scoring") or {}).get("ranked_by") == "relevance"
    files = []
    for item in body.get("heatmaps") or []:
        low, high = (0.0, 1.0) if relevance else (item.get("min"), item.get("max"))
        low = 0.0 if low is None else float(low)
        high = low + 1.0 if high is None or float(high) <= low else float(high)
        files.append(HeatmapFile(str(item["url"]), str(item.get("raster") or ""),
                                 str(item.get("collection") or ""), low, high))
    return files


def fetch_heatmaps(client: Any, search_body: dict[str, Any], folder: str, cancelled: Any = None,
                   progress: Any = None) -> list[HeatmapFile]:
    """Ask for a search's heatmaps and download each GeoTIFF into folder."""
    files = parse_heatmaps(client.call(api.heatmap(search_body)))
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = []
    for number, item in enumerate(files, start=1):
        dest = str(Path(folder) / item.url.rsplit("/", 1)[-1])
        out.append(HeatmapFile(item.url, item.raster, item.collection, item.low, item.high,
                               client.download(api.server_file(item.url), dest)))
        if progress is not None:
            progress(number, len(files))
    return out


@dataclass(frozen=True)
class MapParams:
    """A zero-shot map of one collection: class lines ('name' or 'name=prompt') or a preset."""

    collection: str
    classes: tuple[str, ...] = ()
    preset: str = ""
    forced: bool = False  # every tile gets a class (no 'unknown')

    def __post_init__(self) -> None:
        if not self.collection.strip():
            raise InputError("Choose the collection to map (index rasters first in the Index tab)")
        if self.preset and self.preset not in PRESETS:
            raise InputError(f"Preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        if not self.preset and len(self.classes) < 2:
            raise InputError("Give at least two classes, one per line (e.g. 'forest' or 'water=a lake or "
                             "river'), or choose a preset")
        if len(self.classes) > MAX_CLASSES:
            raise InputError(f"{len(self.classes)} classes is more than {MAX_CLASSES}: merge some")

    @property
    def label(self) -> str:
        """A short name for the layers."""
        names = [line.split("=", 1)[0].strip() for line in self.classes]
        what = self.preset or ", ".join(names[:4]) + (" …" if len(names) > 4 else "")
        return f"{what} in {self.collection}"

    def body(self) -> dict[str, Any]:
        """The JSON body of POST /map."""
        body: dict[str, Any] = {"collections": [self.collection.strip()]}
        if self.preset:
            body["preset"] = self.preset
        else:
            body["classes"] = list(self.classes)
        if self.forced:
            body["min_relevance"] = 0.0
        return body


def class_lines(text: str) -> tuple[str, ...]:
    """Non-empty lines of a classes box, stripped."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class LegendEntry:
    """One value of a class map: its label and colour ('#rrggbb')."""

    value: int
    label: str
    color: str
    prompt: str = ""


@dataclass
class MapAnswer:
    """A class map: legend, the class GeoTIFFs (url, downloaded path), the class polygons and the run."""

    legend: list[LegendEntry]
    rasters: list[dict[str, Any]]
    polygons: list[tuple[dict[str, Any], str]]  # (properties, WKT in EPSG:4326)
    run: dict[str, Any] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)


def parse_map(body: Any) -> MapAnswer:
    """The server's /map GeoJSON; raises ServerResponseError when it is something else."""
    if not isinstance(body, dict) or "legend" not in body or not isinstance(body.get("features"), list):
        raise ServerResponseError("The server's /map answer has no legend: update the server (POST /api/v1/map "
                                  "is new)")
    try:
        legend = [LegendEntry(int(e["value"]), str(e["label"]), str(e["color"]), str(e.get("prompt") or ""))
                  for e in body["legend"]]
        polygons = [(dict(f["properties"]), polygon_wkt(f["geometry"])) for f in body["features"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ServerResponseError(f"The map's legend or polygons are malformed ({exc})") from exc
    return MapAnswer(legend, list(body.get("rasters") or []), polygons, dict(body.get("map") or {}))


def fetch_map(client: Any, params: MapParams, folder: str, progress: Any = None) -> MapAnswer:
    """POST /map, then download each class GeoTIFF with its QGIS style (.qml) beside it."""
    answer = parse_map(client.call(api.zero_shot_map(params.body())))
    Path(folder).mkdir(parents=True, exist_ok=True)
    for number, raster in enumerate(answer.rasters, start=1):
        tif = str(Path(folder) / str(raster["url"]).rsplit("/", 1)[-1])
        answer.paths.append(client.download(api.server_file(str(raster["url"])), tif))
        if raster.get("qml"):
            client.download(api.server_file(str(raster["qml"])), str(Path(tif).with_suffix(".qml")))
        if progress is not None:
            progress(number, len(answer.rasters))
    return answer


def fetch_change(client: Any, params: ChangeParams) -> ChangeAnswer:
    """POST /change: every cell covered by both dates, most change first."""
    return parse_change(client.call(api.change(params.body())))
