"""Relevance-feedback logic: marks across rounds, the refined search's validation and request body."""
import pytest
from harma_search.logic import api
from harma_search.logic.errors import InputError
from harma_search.logic.feedback import BAD, GOOD, FeedbackParams, Marks
from harma_search.logic.hits import Hit

RING = (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)),)


def hit(tile_id: int, collection: str = "coast") -> Hit:
    return Hit(tile_id, 0.5, tile_id, "/r.tif", collection, "q", RING)


def test_marks_toggle_and_split_into_positive_and_negative():
    marks = Marks()
    assert marks.toggle(hit(3), GOOD) == GOOD
    assert marks.toggle(hit(1), GOOD) == GOOD
    assert marks.toggle(hit(7), BAD) == BAD
    assert marks.positive == (1, 3) and marks.negative == (7,)
    assert marks.toggle(hit(3), GOOD) is None  # the same mark again unmarks
    assert marks.toggle(hit(1), BAD) == BAD  # the other mark replaces it
    assert marks.positive == () and marks.negative == (1, 7)
    assert marks.describe() == "0 good · 2 bad in 'coast'"
    marks.clear()
    assert not marks.labels and marks.collection == ""


def test_marks_refuse_a_second_collection():
    marks = Marks()
    marks.toggle(hit(1), GOOD)
    with pytest.raises(InputError, match="Clear marks"):
        marks.toggle(hit(2, "other"), GOOD)


def test_feedback_params_validate_with_the_fix():
    with pytest.raises(InputError, match="Mark at least one tile as good"):
        FeedbackParams("coast", negative=(2,))
    with pytest.raises(InputError, match="both good and bad"):
        FeedbackParams("coast", positive=(2,), negative=(2,))
    with pytest.raises(InputError, match="minimum relevance"):
        FeedbackParams("coast", positive=(1,), find_all=True)
    assert FeedbackParams("coast", negative=(2,), text="a river").label == "refined by 0 good, 1 bad + 'a river'"


def test_feedback_request_body():
    body = api.feedback_search(FeedbackParams("coast", (1, 2), (5,), " a river ", k=7)).body
    assert body == {"positive": [1, 2], "negative": [5], "collections": ["coast"], "text": "a river", "k": 7}
    body = api.feedback_search(FeedbackParams("coast", (1,), find_all=True, min_score=0.25)).body
    assert body == {"positive": [1], "negative": [], "collections": ["coast"], "all": True, "min_score": 0.25}
