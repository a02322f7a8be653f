"""Zero-shot land-cover maps: each tile's best class among text prompts, and "unknown" below a threshold.

Every class prompt is a text query as search builds it (keyword phrasings of harma_core.prompts, query-bank
expansion, text gate), scored exactly over all tiles (server.search.exact). A tile's class is the one with the
highest relevance (the calibrated P(match) when the model ships a calibration; ties, such as 0 for every class,
broken by the querybank-corrected cosine), or the highest corrected cosine when the model has no relevance.
The tile is "unknown" when that best class's relevance is below `min_relevance` (default: the calibration's
no-match threshold, 0.5, a principled rule: less likely a match than not) or its cosine below `min_cosine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from server.errors import InvalidRequest
from server.search.calibrated import probability
from server.search.exact import cosines, searched
from server.search.relevance import Relevance
from server.search.search import _query, ranking_for
from server.search.search_request import SearchRequest
from server.store.store import Collection, Store

MAX_CLASSES = 250  # class values 2..251 of a uint8 map (0 = no tile, 1 = unknown)
UNKNOWN = "unknown"
# The 21 UC Merced land-use classes, labels as in the dataset's classes.txt, prompts as words a caption uses
UCM21 = (("agricultural", "agricultural"), ("airplane", "airplane"), ("baseballdiamond", "baseball diamond"),
         ("beach", "beach"), ("buildings", "buildings"), ("chaparral", "chaparral"),
         ("denseresidential", "dense residential"), ("forest", "forest"), ("freeway", "freeway"),
         ("golfcourse", "golf course"), ("harbor", "harbor"), ("intersection", "intersection"),
         ("mediumresidential", "medium residential"), ("mobilehomepark", "mobile home park"),
         ("overpass", "overpass"), ("parkinglot", "parking lot"), ("river", "river"), ("runway", "runway"),
         ("sparseresidential", "sparse residential"), ("storagetanks", "storage tanks"),
         ("tenniscourt", "tennis court"))
PRESETS = {"ucm21": UCM21}


@dataclass(frozen=True)
class ClassSet:
    """Class labels and the text prompt each is searched by."""

    labels: tuple[str, ...]
    prompts: tuple[str, ...]

    @classmethod
    def parse(cls, classes: Any = None, preset: str | None = None) -> ClassSet:
        """From a preset name or a list of classes: "label", "label=prompt" or {"label": .., "prompt": ..}."""
        if (classes is None) == (preset is None):
            raise InvalidRequest("give 'classes' (a list such as [\"forest\", \"water=a lake or river\"]) or "
                                 f"'preset' (one of {sorted(PRESETS)}), not both and not neither")
        if preset is not None:
            if preset not in PRESETS:
                raise InvalidRequest(f"preset={preset!r} is unknown; use one of {sorted(PRESETS)} or give 'classes'")
            pairs = list(PRESETS[preset])
        else:
            if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
                raise InvalidRequest(f"classes must be a list of 2 to {MAX_CLASSES} class names or "
                                     "\"label=prompt\" strings, e.g. [\"forest\", \"water=a lake or river\"]")
            pairs = [_pair(c) for c in classes]
        labels = [label for label, _ in pairs]
        dup = sorted({x for x in labels if labels.count(x) > 1} | ({UNKNOWN} & set(labels)))
        if dup:
            raise InvalidRequest(f"class label(s) {dup} are repeated or reserved ('{UNKNOWN}' marks tiles below the "
                                 "threshold); give each class once under another name")
        return cls(tuple(labels), tuple(prompt for _, prompt in pairs))


def _pair(c: Any) -> tuple[str, str]:
    if isinstance(c, dict) and set(c) <= {"label", "prompt"} and isinstance(c.get("label"), str):
        label, prompt = c["label"], c.get("prompt", c["label"])
    elif isinstance(c, str):
        label, _, prompt = c.partition("=")
        prompt = prompt or label
    else:
        raise InvalidRequest(f"class {c!r} must be a name, \"label=prompt\" or {{\"label\": .., \"prompt\": ..}}")
    label, prompt = " ".join(str(label).split()), " ".join(str(prompt).split())
    if not label or not prompt or len(prompt) > 1000:
        raise InvalidRequest(f"class {c!r} has an empty label or prompt (or one over 1000 characters)")
    return label, prompt


@dataclass
class CollectionClasses:
    """One collection's tiles (sorted ids) with their best class (-1 unknown), its relevance and cosine."""

    collection: Collection
    ids: np.ndarray
    best: np.ndarray
    relevance: np.ndarray  # of the best class (its corrected cosine when the model has no relevance)
    cosine: np.ndarray


@dataclass
class ClassMap:
    """A classified collection set: classes, tiles per collection, the threshold used and what it reads."""

    classes: ClassSet
    collections: list[CollectionClasses]
    min_relevance: float | None
    min_cosine: float | None
    scoring: dict[str, Any]
    skipped: list[dict[str, Any]]


def classify(store: Store, model: Any, embed_text: Any, classes: ClassSet, collections: list[str] | None = None,
             min_relevance: float | None = None, min_cosine: float | None = None, expand: bool = True,
             relevance: Relevance | None = None) -> ClassMap:
    """Each tile's best class of `classes` (see the module docstring); unknown below the thresholds."""
    cols, skipped = searched(store, model, collections)
    rel, reranker = (relevance, None) if relevance is not None else ranking_for(model)
    names = [c.name for c in cols]
    queries = [_query(store, model, embed_text, SearchRequest(text=p, expand=expand), names, rel)
               for p in classes.prompts]
    calibrated = rel.calibration is not None and reranker is not None
    has_relevance = calibrated or all(q.gate is not None for q in queries)
    if min_relevance is None and calibrated:
        assert rel.calibration is not None
        min_relevance = rel.calibration.no_match_below
    if min_relevance is not None and not has_relevance:
        raise InvalidRequest("min_relevance needs the query bank shipped with a model and this model has none; "
                             "give min_cosine (-1 to 1) instead")
    out = []
    q_mat = np.stack([q.vector for q in queries])
    for col in cols:
        ids, cos = cosines(col, q_mat)
        cos = np.round(cos.astype(np.float64), 6)
        corr = cos
        if reranker is not None and len(ids):
            corr = np.round(cos - reranker.offsets(col).of(col, ids)[:, None].astype(np.float64), 6)
        primary = corr
        if calibrated and len(ids):
            assert rel.calibration is not None
            primary = np.stack([probability(rel.calibration, corr[:, c], q.text or p, q.gate)
                                for c, (q, p) in enumerate(zip(queries, classes.prompts))], axis=1)
        elif has_relevance and len(ids):
            primary = np.stack([rel.of_text(col, cos[:, c], q.gate, q.expanded) for c, q in enumerate(queries)],
                               axis=1)
        top = primary.max(axis=1, keepdims=True) if len(ids) else primary[:, :1]
        best = np.argmax(np.where(primary >= top, corr, -np.inf), axis=1) if len(ids) else np.zeros(0, np.int64)
        rows = np.arange(len(ids))
        best_rel, best_cos = primary[rows, best], cos[rows, best]
        unknown = np.zeros(len(ids), dtype=bool)
        if min_relevance is not None:
            unknown |= best_rel < min_relevance
        if min_cosine is not None:
            unknown |= best_cos < min_cosine
        out.append(CollectionClasses(col, ids, np.where(unknown, -1, best), best_rel, best_cos))
    reads = "calibrated relevance (P(match))" if calibrated else \
        "relevance (collection percentile x text gate)" if has_relevance else "querybank-corrected cosine"
    scoring = {"best_class_by": reads, "ties_by": "querybank-corrected cosine" if reranker else "cosine",
               "calibrated": calibrated, "expanded": any(q.expanded for q in queries),
               "text_gates": {label: None if q.gate is None else round(q.gate, 4)
                              for label, q in zip(classes.labels, queries)}}
    return ClassMap(classes, out, min_relevance, min_cosine, scoring, skipped)
