"""Keyword queries read as captions (prompt ensembling, Radford et al. 2021).

The towers were trained on sentences ("many planes are parked near a terminal"); a user often types a keyword
("overpass", "dense residential"). A query of at most MAX_WORDS words is embedded as the unit mean of its
embeddings in TEMPLATES, caption-like phrasings fixed before measuring; longer queries are embedded as they are.
Measured on val only (MODEL_CARD.md, "Keyword queries"): UCM class-name P@10 +1.4, caption recall unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from harma_core.embed import embed_texts

if TYPE_CHECKING:
    from harma_core.zoo import LoadedModel

MAX_WORDS = 3
TEMPLATES = ("{}", "a {}", "an aerial image of {}", "there is a {}", "this is a {}", "a {} area", "many {}",
             "a satellite image of {}", "an aerial photo of {}", "a scene of {}")


def is_keyword(text: str) -> bool:
    """True for a query short enough to be phrased through the templates."""
    return 0 < len(text.split()) <= MAX_WORDS


def embed_queries(loaded: LoadedModel, texts: Sequence[str], plain: np.ndarray | None = None) -> np.ndarray:
    """Search vectors of text queries -> (N, dim) float32, unit rows: keywords ensembled over TEMPLATES.

    `plain` (embed_texts of the same texts), when the caller has it, saves embedding the long queries again.
    """
    out = np.array(embed_texts(loaded, texts) if plain is None else plain, dtype=np.float32, copy=True)
    short = [i for i, t in enumerate(texts) if is_keyword(t)]
    if short:
        phrased = [tpl.format(" ".join(texts[i].split())) for i in short for tpl in TEMPLATES]
        mean = embed_texts(loaded, phrased).reshape(len(short), len(TEMPLATES), -1).mean(axis=1)
        out[short] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    return out


def embed_query_pair(loaded: LoadedModel, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(plain, search) unit vectors of one query in ONE encoder call: the words as typed and, for a keyword,
    its template ensemble (whose "{}" phrasing is the plain text itself, embedded once)."""
    words = " ".join(text.split())
    if not is_keyword(words):
        plain = embed_texts(loaded, [words])[0]
        return plain, plain
    phrased = [tpl.format(words) for tpl in TEMPLATES]
    vecs = embed_texts(loaded, [words, *phrased])
    mean = vecs[1:].mean(axis=0)
    return vecs[0], (mean / np.linalg.norm(mean)).astype(np.float32)
