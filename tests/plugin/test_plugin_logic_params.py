"""Plain tests of the plugin's parameter dataclasses (no QGIS needed)."""
import pytest
from harma_search.logic.errors import InputError, PluginError
from harma_search.logic.params import IndexParams, Scope, SearchParams, check_bbox


def test_text_search_defaults_and_label():
    params = SearchParams(collection="c", query="  a river  ")
    assert (params.k, params.scope, params.bbox, params.min_score) == (10, Scope.WHOLE, None, None)
    assert params.label == "a river"


def test_example_search_label_names_the_tile():
    assert SearchParams(collection="c", tile_id=7).label == "like tile 7"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"collection": " ", "query": "x"}, "No collection"),
    ({"collection": "c"}, "Type what to look for in Query"),
    ({"collection": "c", "query": "x", "tile_id": 3}, "not both"),
    ({"collection": "c", "query": "x", "k": 0}, "k=0"),
    ({"collection": "c", "query": "x", "k": 5000}, "k=5000"),
    ({"collection": "c", "query": "x", "scope": Scope.EXTENT}, "needs an area"),
    ({"collection": "c", "query": "x", "min_score": 1.5}, "min relevance 1.5"),
    ({"collection": "c", "tile_id": 0}, "tile id 0"),
])
def test_bad_search_params_name_the_problem(kwargs, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        SearchParams(**kwargs)
    assert isinstance(info.value, PluginError)


def test_bbox_is_checked_and_normalised_to_floats():
    params = SearchParams(collection="c", query="x", scope=Scope.EXTENT, bbox=(1, 2, 3, 4))
    assert params.bbox == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(InputError, match="empty"):
        check_bbox((3, 2, 1, 4))
    with pytest.raises(InputError, match="non-finite"):
        check_bbox((0, 0, float("inf"), 1))
    with pytest.raises(InputError, match="4 numbers"):
        check_bbox((0, 0, 1))  # type: ignore[arg-type]


def test_index_params_validate_and_keep_paths_as_tuple():
    params = IndexParams(collection="c", paths=["/a.tif", "/b.tif"], tile_size=128)  # type: ignore[arg-type]
    assert params.paths == ("/a.tif", "/b.tif")
    with pytest.raises(InputError, match="No rasters"):
        IndexParams(collection="c")
    with pytest.raises(InputError, match="tile size 8"):
        IndexParams(collection="c", paths=("/a.tif",), tile_size=8)
    with pytest.raises(InputError, match="collection name"):
        IndexParams(collection="", paths=("/a.tif",))
