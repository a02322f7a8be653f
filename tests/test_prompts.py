"""Keyword queries phrased through caption templates (harma_core.prompts), on the real shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from harma_core import embed_texts
from harma_core.prompts import MAX_WORDS, TEMPLATES, embed_queries, is_keyword


def test_keywords_are_short_non_empty_queries() -> None:
    assert MAX_WORDS == 3
    assert is_keyword("overpass") and is_keyword("  mobile  home park ")
    assert not is_keyword("airport with two runways") and not is_keyword("   ")


def test_keywords_embed_as_the_unit_mean_of_their_phrasings_and_sentences_as_typed(lite) -> None:
    texts = ["dense  residential", "many planes are parked next to a long building", "river"]
    got = embed_queries(lite, texts)
    plain = embed_texts(lite, texts)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got[1], plain[1])  # a sentence is searched as typed
    for i, word in ((0, "dense residential"), (2, "river")):
        mean = embed_texts(lite, [t.format(word) for t in TEMPLATES]).mean(axis=0)
        np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), atol=1e-5)
        assert got[i] @ plain[i] < 0.999, "a keyword's search vector is its ensemble, not the bare word"
    np.testing.assert_allclose(embed_queries(lite, texts, plain), got, atol=1e-6)  # precomputed plain rows


def test_empty_queries_are_refused_with_the_fix(lite) -> None:
    with pytest.raises(Exception, match="is empty; give a non-empty query"):
        embed_queries(lite, ["river", " "])
