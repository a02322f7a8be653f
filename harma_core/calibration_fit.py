"""Fit and report calibrated relevance on labelled val pairs (harma_core.calibration; tools/calibrate.py).

A pair is (query, image), scored exactly as search ranks a text query: phrased when a keyword
(harma_core.prompts), expanded and corrected by the model's query bank. Its label says whether the image is a
match for what was asked:
- class-name queries ("dense residential"): the images of that land-use class;
- caption queries: the caption's own image and every image of the same class, where classes are known.
Classes come from the dataset file (`landuse_class`, UCM) or from image file names such as `airport_12.jpg`
(RSICD); images without a class are left out of class-name pairs and match only their own captions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harma_core.calibration import (
    KINDS,
    NO_MATCH_BELOW,
    Calibration,
    Curve,
    auc,
    expected_calibration_error,
    reliability,
)
from harma_core.readers.items import normalize_caption

_NAMED = re.compile(r"^([a-z]+)_\d+\.(jpg|png|tif)$")
TOP = 50  # hits per class-name query the reliability report reads


@dataclass
class ValSet:
    """One dataset split: image paths, their class (or None), and captions with the image they describe."""

    name: str
    images: list[str]
    classes: list[str | None]
    captions: list[str]
    owners: list[int]


def split_words(name: str, vocab: set[str]) -> str:
    """A class name such as 'baseballdiamond' split into caption words ('baseball diamond'), else as is."""
    best: list[list[str] | None] = [[]] + [None] * len(name)
    for end in range(1, len(name) + 1):
        for start in range(end):
            word = name[start:end]
            if best[start] is not None and word in vocab:
                cand = [*best[start], word]  # type: ignore[misc]
                if best[end] is None or len(cand) < len(best[end]):  # type: ignore[arg-type]
                    best[end] = cand
    return " ".join(best[-1]) if best[-1] else name


def load_val_set(folder: str | Path, split: str = "val") -> ValSet:
    """A HarMA-format dataset folder's split (`<name>_<split>.json`, images under `images/`), with classes."""
    folder = Path(folder)
    files = sorted(folder.glob(f"*_{split}.json"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one *_{split}.json in {folder}, found {[f.name for f in files]}")
    rows = json.loads(files[0].read_text(encoding="utf-8"))
    images, classes, captions, owners = [], [], [], []
    for i, row in enumerate(rows):
        images.append(str(folder / "images" / row["image"]))
        named = _NAMED.match(Path(row["image"]).name)
        classes.append(row.get("landuse_class") or (named.group(1) if named else None))
        for text in dict.fromkeys(normalize_caption(c) for c in row["caption"]):  # RSICD repeats sentences
            if text.strip():
                captions.append(text)
                owners.append(i)
    return ValSet(folder.name, images, classes, captions, owners)


def vocabulary(sets: Sequence[ValSet]) -> set[str]:
    """Words of the sets' captions (two letters or more): what class names are split into."""
    return {w for vs in sets for c in vs.captions for w in c.split() if len(w) > 1}


def class_queries(vs: ValSet, vocab: set[str] | None = None) -> dict[str, str]:
    """Each class of the set -> its name in caption words ('denseresidential' -> 'dense residential'), split by
    the set's own caption words, else by `vocab` (the words of every set)."""
    own = vocabulary([vs])
    out = {}
    for c in sorted({c for c in vs.classes if c}):
        words = split_words(c, own)  # the set's own words first ('freeway' stays one word in UCM)
        out[c] = split_words(c, vocab) if words == c and vocab is not None else words
    return out


@dataclass
class Pairs:
    """Scores and labels of one query kind on one set: scores[q, i], labels[q, i] (-1 = unknown), and the
    class of each query (class-name queries) or of its image (captions; None when unknown)."""

    scores: np.ndarray
    labels: np.ndarray
    query_class: list[str | None]
    texts: list[str]
    cross_prob: np.ndarray | None = None  # probabilities from curves fitted on the other fold (cross_fit)


def score_pairs(model: Any, bank: Any, image_vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """[len(texts), n_images] ranking scores as search computes them: phrased, expanded, bank-corrected."""
    from harma_core.embed import embed_texts
    from harma_core.prompts import embed_queries

    plain = embed_texts(model, list(texts))
    queries = bank.expand(embed_queries(model, list(texts), plain))
    return (queries @ image_vectors.T - bank.offsets(image_vectors)[None, :]).astype(np.float32)


def build_pairs(model: Any, bank: Any, vs: ValSet, image_vectors: np.ndarray, vocab: set[str] | None = None
                ) -> dict[str, Pairs]:
    """Keyword (class-name) and sentence (caption) pairs of one val set."""
    classes = np.array([c or "" for c in vs.classes])
    known = classes != ""
    names = class_queries(vs, vocab)
    kw_scores = score_pairs(model, bank, image_vectors, list(names.values()))
    kw_labels = np.where(known[None, :], (classes[None, :] == np.array(list(names))[:, None]).astype(np.int8), -1)
    owners = np.asarray(vs.owners)
    own_class = classes[owners]
    same = (own_class[:, None] == classes[None, :]) & (own_class[:, None] != "")
    own = owners[:, None] == np.arange(len(vs.images))[None, :]
    cap_labels = (same | own).astype(np.int8)
    cap_labels[(own_class[:, None] == "") & ~own & known[None, :]] = -1  # unknown class: only its own image is sure
    cap_scores = score_pairs(model, bank, image_vectors, vs.captions)
    return {"keyword": Pairs(kw_scores, kw_labels.astype(np.int8), list(names), list(names.values())),
            "sentence": Pairs(cap_scores, cap_labels, [c or None for c in own_class], list(vs.captions))}


def _flat(pairs: Sequence[Pairs], rows: Sequence[np.ndarray] | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels and weights of labelled pairs; each set weighs the same in total."""
    xs, ys, ws = [], [], []
    for n, p in enumerate(pairs):
        s, lab = (p.scores, p.labels) if rows is None else (p.scores[rows[n]], p.labels[rows[n]])
        ok = lab >= 0
        if ok.any():
            xs.append(s[ok])
            ys.append(lab[ok])
            ws.append(np.full(int(ok.sum()), 1.0 / ok.sum()))
    return np.concatenate(xs), np.concatenate(ys).astype(np.float64), np.concatenate(ws)


def fit_curves(sets: dict[str, dict[str, Pairs]], rows: dict[str, dict[str, np.ndarray]] | None = None
               ) -> dict[str, Curve]:
    """One isotonic curve per query kind over all sets (optionally only the given query rows)."""
    curves = {}
    for kind in KINDS:
        names = list(sets)
        pick = None if rows is None else [rows[n][kind] for n in names]
        curves[kind] = Curve.fit(*_flat([sets[n][kind] for n in names], pick))
    return curves


def _folds(pairs: Pairs) -> np.ndarray:
    """Fold (0/1) of each query, by its class, so a class is never fitted and reported in the same fold."""
    order = {c: i for i, c in enumerate(sorted({c for c in pairs.query_class if c}))}
    return np.array([order[c] % 2 if c else q % 2 for q, c in enumerate(pairs.query_class)])


def _top(p: Pairs, prob: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of each query's top-k labelled images by score."""
    ps, ys = [], []
    for q in range(len(p.scores)):
        ok = np.flatnonzero(p.labels[q] >= 0)
        best = ok[np.argsort(-p.scores[q, ok], kind="stable")[:k]]
        ps.append(prob[q, best])
        ys.append(p.labels[q, best])
    return np.concatenate(ps), np.concatenate(ys).astype(np.float64)


def _separation(p: Pairs, prob: np.ndarray, threshold: float) -> dict[str, Any]:
    """Best-hit probability of each class-name query with its class present vs with its images removed."""
    present, absent = [], []
    for q in range(len(p.scores)):
        ok = p.labels[q] >= 0
        present.append(prob[q, ok].max())
        rest = ok & (p.labels[q] == 0)
        absent.append(prob[q, rest].max())
    pr, ab = np.asarray(present), np.asarray(absent)
    return {"queries": len(pr), "present_best_mean": round(float(pr.mean()), 4),
            "absent_best_mean": round(float(ab.mean()), 4), "auc": round(float(auc(pr, ab) or 0.0), 4),
            "present_no_match": round(float((pr < threshold).mean()), 4),
            "absent_no_match": round(float((ab < threshold).mean()), 4)}


def report(sets: dict[str, dict[str, Pairs]], curves: dict[str, Curve], cross: dict[str, Curve] | None,
           threshold: float = NO_MATCH_BELOW) -> dict[str, Any]:
    """Reliability of class-name queries' top 50 (ECE), all pairs per kind, and present vs absent separation;
    with `cross`, the same read through curves fitted on the other fold of classes (honest numbers)."""
    out: dict[str, Any] = {"top": TOP, "threshold": threshold, "sets": {}}
    for label, use in (("in_sample", curves), ("cross_fitted", cross)):
        if use is None:
            continue
        kw_p, kw_y, sep = [], [], {}
        kinds: dict[str, Any] = {}
        for name, by_kind in sets.items():
            for kind in KINDS:
                prob = use[kind](by_kind[kind].scores) if label == "in_sample" else by_kind[kind].cross_prob
                s, y, _ = _flat([Pairs(prob, by_kind[kind].labels, [], [])])
                kinds.setdefault(kind, [[], []])
                kinds[kind][0].append(s)
                kinds[kind][1].append(y)
                if kind == "keyword":
                    tp, ty = _top(by_kind[kind], prob, TOP)
                    kw_p.append(tp)
                    kw_y.append(ty)
                    sep[name] = _separation(by_kind[kind], prob, threshold)
        p, y = np.concatenate(kw_p), np.concatenate(kw_y)
        out[label] = {"class_top50_ece": round(expected_calibration_error(p, y), 4),
                      "class_top50_reliability": reliability(p, y),
                      "pairs_ece": {k: round(expected_calibration_error(np.concatenate(v[0]), np.concatenate(v[1])), 4)
                                    for k, v in kinds.items()},
                      "separation": sep}
    for name, by_kind in sets.items():
        out["sets"][name] = {k: {"queries": int(v.scores.shape[0]), "images": int(v.scores.shape[1]),
                                 "positives": int((v.labels == 1).sum()), "negatives": int((v.labels == 0).sum())}
                             for k, v in by_kind.items()}
    return out


def cross_fit(sets: dict[str, dict[str, Pairs]]) -> dict[str, Curve]:
    """Attach each pair set's probabilities from curves fitted on the other fold of classes (`cross_prob`)."""
    folds = {n: {k: _folds(p) for k, p in by.items()} for n, by in sets.items()}
    for f in (0, 1):
        train = {n: {k: folds[n][k] != f for k in KINDS} for n in sets}
        curves = fit_curves(sets, train)
        for n, by in sets.items():
            for k, p in by.items():
                if p.cross_prob is None:
                    p.cross_prob = np.zeros(p.scores.shape)
                mine = folds[n][k] == f
                p.cross_prob[mine] = curves[k](p.scores[mine])
    return fit_curves(sets)


def calibrate(model: Any, bank: Any, sets: dict[str, ValSet], image_vectors: dict[str, np.ndarray],
              threshold: float = NO_MATCH_BELOW) -> Calibration:
    """Fit the curves on every set's pairs and attach the val report (with cross-fitted numbers)."""
    vocab = vocabulary(list(sets.values()))
    pairs = {n: build_pairs(model, bank, vs, image_vectors[n], vocab) for n, vs in sets.items()}
    curves = cross_fit(pairs)
    rep = report(pairs, curves, curves, threshold)
    rep["data"] = {n: {"images": len(vs.images), "captions": len(vs.captions),
                       "classes": class_queries(vs, vocab)} for n, vs in sets.items()}
    return Calibration(model.identity, bank.digest, curves, threshold, rep)
