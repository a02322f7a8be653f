"""Querybank normalisation (QB-Norm, Bogolin et al., CVPR 2022): hubness-aware text->image ranking.

Contrastive embeddings have "hubs": gallery items (tiles) close to many queries, which then crowd the top of
every ranking. A bank of caption embeddings (training captions, shipped with the model) measures how close
each gallery item is to typical queries; items close to all of them are pushed down.

For a gallery item with unit vector v, its OFFSET is the soft maximum of its cosine to the bank captions b:

    offset(v) = (1/beta) * log( mean_b exp(beta * cos(b, v)) )       (between the mean and the max cosine)

computed once per item (for search: once per tile, at index time). The CORRECTED score of a query q is

    corrected(q, v) = cos(q, v) - offset(v)

Per query it ranks exactly as QB-Norm's inverted softmax beta*cos - logsumexp_b(beta*cos_b), which differs
by the factor beta and the constant log(bank size). It can be searched as an inner product:
corrected = [q, 1] . [v, -offset]. Offsets depend on the bank, beta and the model: `QueryBank.digest`
names all three; offsets stored with a collection are stale when the digest differs.

EXPANSION (pseudo-relevance through the training pairs): a bank may also hold, per caption, the mean unit
embedding of the training images it describes. A text query is then moved toward the images of its nearest
bank captions, q' = unit(q + alpha * unit(sum_topk softmax(cos/temp) * image)), before it is scored:
image-image similarity is stronger than text-image similarity, so queries borrow what the described scenes
look like. Offsets do not depend on it (the digest ignores the images).

File: `querybank.safetensors` in the model's adapter folder (harma_core/weights/harma-lite/ for the default),
float16 embeddings, with the model identity, beta and the bank's sources in its metadata. Loading refuses a
bank built by another model (another identity), since its offsets would be meaningless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from harma_core.errors import HarmaError

if TYPE_CHECKING:
    from harma_core.zoo import LoadedModel

BANK_FILE = "querybank.safetensors"
FORMAT = "harma-querybank"
CHUNK = 1024  # gallery rows per matrix product (bank x CHUNK floats in memory)
# Expansion defaults, chosen on RSICD + UCM val (MODEL_CARD.md): a flat plateau over k 5-50, temp 0.01-0.05
EXPANSION = {"k": 10, "temp": 0.02, "alpha": 0.35}


class QueryBankError(HarmaError, ValueError):
    """A query bank that is missing, unreadable or built by another model."""


@dataclass(frozen=True)
class QueryBank:
    """Unit caption embeddings (float16, [N, dim]) of one model, and the beta of the inverted softmax."""

    embeddings: np.ndarray
    identity: str  # LoadedModel.identity of the model that embedded the bank
    beta: float
    sources: dict = field(default_factory=dict)  # e.g. {"rsicd/train": 24000}
    images: np.ndarray | None = None  # float16 [N, dim]: unit mean embedding of each caption's training images
    expansion: dict = field(default_factory=lambda: dict(EXPANSION))  # k, temp, alpha of `expand`

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or not len(self.embeddings):
            raise QueryBankError(f"a query bank needs a non-empty [N, dim] array, got {self.embeddings.shape}")
        if not self.beta > 0:
            raise QueryBankError(f"beta={self.beta} must be positive (a typical value is 10-40)")
        if self.images is not None and self.images.shape != self.embeddings.shape:
            raise QueryBankError(f"bank images {self.images.shape} must pair one-to-one with its captions "
                                 f"{self.embeddings.shape}; rebuild it with tools/build_querybank.py")
        if set(self.expansion) != set(EXPANSION) or not (self.expansion["k"] >= 1 and self.expansion["temp"] > 0):
            raise QueryBankError(f"expansion {self.expansion} needs k >= 1, temp > 0 and alpha (keys {sorted(EXPANSION)})")

    @cached_property
    def vectors(self) -> np.ndarray:
        """The bank as float32 unit rows [N, dim] (what searches and calibrations multiply with)."""
        return self.embeddings.astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def size(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def digest(self) -> str:
        """Short sha256 of identity, beta and the bank's bytes: record it beside stored offsets."""
        h = hashlib.sha256(f"{self.identity}|{self.beta!r}|".encode())
        h.update(np.ascontiguousarray(self.embeddings, dtype=np.float16).tobytes())
        return h.hexdigest()[:12]

    @property
    def expands(self) -> bool:
        """True when the bank can expand text queries (it holds training-image means)."""
        return self.images is not None and self.expansion["alpha"] > 0

    @cached_property
    def image_vectors(self) -> np.ndarray:
        assert self.images is not None
        return self.images.astype(np.float32)

    def with_beta(self, beta: float) -> QueryBank:
        """The same bank with another beta (for sweeps)."""
        return dataclasses.replace(self, beta=float(beta))

    def with_images(self, images: np.ndarray, **expansion: float) -> QueryBank:
        """The same bank with training-image means per caption (and expansion settings over the defaults)."""
        return dataclasses.replace(self, images=np.asarray(images, dtype=np.float16),
                                   expansion={**self.expansion, **expansion})

    def expand(self, text_vectors: np.ndarray, bank_cosines: np.ndarray | None = None) -> np.ndarray:
        """Text query vectors [N, dim] (or one [dim]) moved toward their nearest captions' images; unit rows.

        `bank_cosines` (vectors @ self.vectors.T), when the caller has them, saves the bank-size product.
        The vectors come back unchanged when the bank holds no images.
        """
        q = np.asarray(text_vectors, dtype=np.float32)
        if not self.expands:
            return q
        single = q.ndim == 1
        qt = np.atleast_2d(q)
        sims = np.atleast_2d(np.asarray(q @ self.vectors.T if bank_cosines is None else bank_cosines,
                                        dtype=np.float32))
        k, temp, alpha = int(self.expansion["k"]), float(self.expansion["temp"]), float(self.expansion["alpha"])
        k = min(k, self.size)
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < self.size else np.argsort(-sims, axis=1)
        top = np.take_along_axis(sims, idx, axis=1) / temp
        w = np.exp(top - top.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)  # softmax over the k nearest captions
        e = _unit((w[..., None] * self.image_vectors[idx]).sum(1))
        out = _unit(qt + alpha * e)
        return out[0] if single else out

    def offsets(self, image_vectors: np.ndarray) -> np.ndarray:
        """offset(v) for each row of image_vectors ([N, dim], unit rows, as stored in an index) -> float32 [N].

        Subtract from the cosine of any query to get the corrected score (`corrected`). Cost: one
        bank-size dot product and log-sum-exp per row, about 1 % of the cost of embedding the same tiles
        (bench/querybank.py).
        """
        vecs = np.asarray(image_vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise QueryBankError(f"image vectors of shape {vecs.shape} do not fit this {self.dim}-d bank; "
                                 "pass [N, dim] unit vectors from the bank's model")
        bank = self.vectors
        out = np.empty(len(vecs), dtype=np.float32)
        for start in range(0, len(vecs), CHUNK):
            z = bank @ vecs[start:start + CHUNK].T  # [bank, chunk] cosines
            z *= self.beta
            top = z.max(axis=0)
            z -= top
            np.exp(z, out=z)
            lme = top + np.log(z.sum(axis=0, dtype=np.float64)) - math.log(self.size)  # log-mean-exp
            out[start:start + CHUNK] = lme / self.beta
        return out

    @staticmethod
    def corrected(cosines: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Corrected scores cos - offset; cosines [..., N] against the N items whose offsets are given."""
        return np.asarray(cosines, dtype=np.float32) - np.asarray(offsets, dtype=np.float32)

    @classmethod
    def build(cls, loaded: LoadedModel, captions: Sequence[str], beta: float,
              sources: dict | None = None) -> QueryBank:
        """Embed captions (normalised as in training; duplicates dropped) with `loaded` into a bank."""
        from harma_core.embed import embed_texts

        texts = bank_texts(captions)
        emb = embed_texts(loaded, texts).astype(np.float16)
        return cls(emb, loaded.identity, float(beta), dict(sources or {}))

    def save(self, folder: str | Path) -> Path:
        """Write `querybank.safetensors` into folder (created if needed); returns the file."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / BANK_FILE
        meta = {"format": FORMAT, "identity": self.identity, "beta": repr(self.beta),
                "sources": json.dumps(self.sources, sort_keys=True), "digest": self.digest,
                "expansion": json.dumps(self.expansion, sort_keys=True)}
        tensors = {"embeddings": np.ascontiguousarray(self.embeddings, dtype=np.float16)}
        if self.images is not None:
            tensors["images"] = np.ascontiguousarray(self.images, dtype=np.float16)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        path.chmod(0o644)  # safetensors writes owner-only files; a shipped bank is read by every user
        return path

    @classmethod
    def read(cls, path: str | Path) -> QueryBank:
        """Read a bank file (or the bank file of a folder) without checking which model it belongs to."""
        path = Path(path)
        path = path / BANK_FILE if path.is_dir() else path
        if not path.is_file():
            raise QueryBankError(f"no query bank at {path}; build one with "
                                 "QueryBank.build(model, train_captions, beta).save(folder)")
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings")
                images = f.get_tensor("images") if "images" in f.keys() else None
            expansion = json.loads(meta.get("expansion", json.dumps(EXPANSION)))
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
            raise QueryBankError(f"{path} is not a readable query bank ({e}); rebuild it") from e
        if meta.get("format") != FORMAT or "identity" not in meta or "beta" not in meta:
            raise QueryBankError(f"{path} is not a HarMA query bank (metadata format should be '{FORMAT}')")
        return cls(emb, meta["identity"], float(meta["beta"]), json.loads(meta.get("sources", "{}")), images,
                   expansion)

    @classmethod
    def load(cls, loaded: LoadedModel, path: str | Path | None = None) -> QueryBank:
        """The bank shipped with `loaded` (in its adapter folder), or the one at path; refused if another model's."""
        if path is None:
            if loaded.adapter_dir is None:
                raise QueryBankError(f"{loaded.identity} has no adapter folder, so no shipped query bank; "
                                     "pass the bank's path")
            path = loaded.adapter_dir
        bank = cls.read(path)
        if bank.identity != loaded.identity:
            raise QueryBankError(f"the query bank at {path} was built by {bank.identity}, not by {loaded.identity}; "
                                 "rebuild it with this model (its offsets would be meaningless)")
        if bank.dim != loaded.dim:
            raise QueryBankError(f"the query bank at {path} is {bank.dim}-d but the model embeds in {loaded.dim}-d")
        return bank

    @classmethod
    def find(cls, loaded: LoadedModel) -> QueryBank | None:
        """The shipped bank of `loaded`, or None when its adapter folder has none (rank by plain cosine then)."""
        if loaded.adapter_dir is None or not (Path(loaded.adapter_dir) / BANK_FILE).is_file():
            return None
        return cls.load(loaded)


def bank_texts(captions: Sequence[str]) -> list[str]:
    """The bank's rows: distinct normalised non-empty captions, sorted (row i of a bank embeds texts[i])."""
    from harma_core.data import normalize_caption

    texts = sorted({c for c in (normalize_caption(t) for t in captions) if c.strip()})
    if not texts:
        raise QueryBankError("no non-empty captions to build a query bank from")
    return texts


def caption_image_means(texts: Sequence[str], captions: Sequence[str], owners: Sequence[int],
                        image_vectors: np.ndarray) -> np.ndarray:
    """Per bank text, the unit mean of the images whose captions normalise to it ([len(texts), dim], float16).

    `captions[j]` describes image `owners[j]` (a row of image_vectors); an image counts once per text.
    """
    from harma_core.data import normalize_caption

    row = {t: i for i, t in enumerate(texts)}
    pairs = {(row[c], int(o)) for c, o in zip((normalize_caption(t) for t in captions), owners) if c in row}
    if {r for r, _ in pairs} != set(range(len(texts))):
        raise QueryBankError("some bank captions have no image among the given ones; pass the images of the "
                             "same splits the bank was built from")
    rows, imgs = np.array(sorted(pairs)).T
    out = np.zeros((len(texts), image_vectors.shape[1]), dtype=np.float64)
    np.add.at(out, rows, np.asarray(image_vectors, dtype=np.float64)[imgs])
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float16)


def load_querybank(loaded: LoadedModel) -> QueryBank:
    """The bank shipped with `loaded` (QueryBankError when it has none or it belongs to another model)."""
    return QueryBank.load(loaded)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
