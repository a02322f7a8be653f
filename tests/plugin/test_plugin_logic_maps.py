"""The plugin's change / heatmap / land-cover logic without QGIS: parameters, request bodies, answers, grids."""
import pytest
from harma_search.logic import api
from harma_search.logic.change import ChangeParams, change_breaks, heat_grid, parse_change, polygon_wkt
from harma_search.logic.errors import InputError, ServerResponseError
from harma_search.logic.maps import MapParams, class_lines, fetch_heatmaps, fetch_map, parse_heatmaps

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def _cell(rank, ix, iy, change):
    return {"type": "Feature", "geometry": SQUARE,
            "properties": {"rank": rank, "cell": f"{ix}_{iy}", "ix": ix, "iy": iy, "change": change,
                           "distance": 0.5, "date_before": "2009-08-18", "date_after": None}}


CHANGE = {"type": "FeatureCollection", "features": [_cell(1, 11, 21, 3.0), _cell(2, 10, 20, 1.0)],
          "change_run": {"grid": {"crs": "EPSG:26914", "cell": 500.0}, "before": {"date": "2009-08-18"},
                         "after": {"date": None}}}


def test_change_params_body_label_and_refusals():
    params = ChangeParams(("/d/a_2009.tif",), ("/d/b_2020.tif",), 250, "ponds", "disappear")
    assert params.body() == {"before": ["/d/a_2009.tif"], "after": ["/d/b_2020.tif"], "tile_size_m": 250.0,
                             "text": "ponds", "direction": "disappear"}
    assert params.label == "a_2009 → b_2020 · ponds disappears"
    assert "text" not in ChangeParams(("/a.tif",), ("/b.tif",)).body()
    with pytest.raises(InputError, match="same"):
        ChangeParams(("/a.tif",), ("/a.tif",))
    with pytest.raises(InputError, match="before"):
        ChangeParams((), ("/a.tif",))
    with pytest.raises(InputError, match="Tile size"):
        ChangeParams(("/a.tif",), ("/b.tif",), 0)
    with pytest.raises(InputError, match="Direction"):
        ChangeParams(("/a.tif",), ("/b.tif",), 300, "x", "grow")


def test_change_answer_cells_and_their_heat_grid():
    answer = parse_change(CHANGE)
    assert answer.dates == ("2009-08-18", "?") and answer.grid_crs == "EPSG:26914"
    assert answer.cells[0].value("change") == 3.0 and answer.cells[0].value("date_after") is None
    assert answer.cells[0].wkt.startswith("POLYGON ((0.0 0.0, 1.0 0.0")
    grid = heat_grid(answer)
    # ix 10..11, iy 20..21: top-left corner (10 * 500, 22 * 500), row 0 = the northern row (iy 21)
    assert (grid.width, grid.height, grid.left, grid.top) == (2, 2, 5000.0, 11000.0)
    assert grid.pixels == {(0, 1): 3.0, (1, 0): 1.0}
    assert grid.bounds == (5000.0, 10000.0, 6000.0, 11000.0)
    with pytest.raises(ServerResponseError):
        parse_change({"features": []})


def test_change_breaks_cover_the_range():
    breaks = change_breaks([0.0, 1.0, 5.0])
    assert len(breaks) == 5 and breaks[0][0] == 0.0 and breaks[-1][1] == 5.0
    assert change_breaks([2.0, 2.0]) == [(2.0, 2.0)] and change_breaks([]) == []


def test_polygon_wkt_of_a_multipolygon():
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}
    assert polygon_wkt(multi).startswith("MULTIPOLYGON (((0.0 0.0")
    with pytest.raises(ServerResponseError):
        polygon_wkt({"type": "Point", "coordinates": [0, 0]})


def test_heatmap_request_drops_what_does_not_apply_and_files_stay_on_the_api():
    request = api.heatmap({"text": "a pond", "k": 10, "all": True, "collections": ["nd"]})
    assert request.body == {"text": "a pond", "collections": ["nd"], "as": "heatmap"}
    assert api.server_file("/api/v1/heatmaps/ab.tif").path == "/heatmaps/ab.tif"
    for bad in ("/etc/passwd", "/api/v1/../x", "http://elsewhere/x.tif"):
        with pytest.raises(ServerResponseError):
            api.server_file(bad)


class FakeClient:
    """Answers like the server; records what was sent and downloaded."""

    def __init__(self, answer):
        self.answer, self.sent, self.downloads = answer, [], []

    def call(self, request):
        self.sent.append(request)
        return self.answer

    def download(self, request, dest):
        self.downloads.append((request.path, dest))
        return dest


def test_heatmaps_use_the_relevance_range_or_the_files_own(tmp_path):
    body = {"type": "heatmaps", "scoring": {"ranked_by": "relevance"},
            "heatmaps": [{"url": "/api/v1/heatmaps/a.tif", "raster": "/d/x.tif", "min": 0.1, "max": 0.4}]}
    (item,) = fetch_heatmaps(FakeClient(body), {"text": "x"}, str(tmp_path))
    assert (item.low, item.high, item.name, item.path) == (0.0, 1.0, "x.tif", str(tmp_path / "a.tif"))
    body["scoring"] = {"ranked_by": "cosine"}
    assert [(h.low, h.high) for h in parse_heatmaps(body)] == [(0.1, 0.4)]
    with pytest.raises(ServerResponseError, match="heatmap"):
        parse_heatmaps({"type": "FeatureCollection"})


def test_map_params_and_answer(tmp_path):
    assert class_lines(" forest\n\nwater=a lake \n") == ("forest", "water=a lake")
    params = MapParams("nd", ("forest", "water=a lake"), forced=True)
    assert params.body() == {"collections": ["nd"], "classes": ["forest", "water=a lake"], "min_relevance": 0.0}
    assert MapParams("nd", preset="ucm21").body() == {"collections": ["nd"], "preset": "ucm21"}
    with pytest.raises(InputError, match="two classes"):
        MapParams("nd", ("forest",))
    with pytest.raises(InputError, match="collection"):
        MapParams(" ", preset="ucm21")
    answer = {"type": "FeatureCollection", "legend": [{"value": 1, "label": "unknown", "color": "#bebebe"},
                                                      {"value": 2, "label": "forest", "color": "#1f77b4"}],
              "features": [{"geometry": SQUARE, "properties": {"value": 2, "label": "forest"}}],
              "rasters": [{"url": "/api/v1/maps/m.tif", "qml": "/api/v1/maps/m.qml"}], "map": {"tiles": 4}}
    client = FakeClient(answer)
    result = fetch_map(client, params, str(tmp_path))
    assert [e.label for e in result.legend] == ["unknown", "forest"] and result.paths == [str(tmp_path / "m.tif")]
    assert client.downloads[1] == ("/maps/m.qml", str(tmp_path / "m.qml"))
    assert client.sent[0].path == "/map"
