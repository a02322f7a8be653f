"""Retrieval evaluation: R@1/5/10 image->text and text->image, and their mean mR (HARMA.md protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)


def _ranks(sims: np.ndarray, t2i_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text->image ranks, image->text best ranks) from a [n_img, n_txt] score matrix; 0 = first."""
    n_img, n_txt = sims.shape
    # text -> image: how many images score strictly higher than the true one
    true_t = sims[t2i_idx, np.arange(n_txt)]
    t2i_rank = (sims > true_t[None, :]).sum(axis=0)
    # image -> text: best (lowest) rank among the image's captions
    order = np.argsort(-sims, axis=1, kind="stable")
    is_gt = t2i_idx[order] == np.arange(n_img)[:, None]
    has_gt = is_gt.any(axis=1)
    return t2i_rank, np.where(has_gt, is_gt.argmax(axis=1), n_txt)[has_gt]


def _recalls(t2i_rank: np.ndarray, i2t_rank: np.ndarray, suffix: str = "") -> dict:
    out = {}
    for k in KS:
        out[f"i2t_r{k}{suffix}"] = float(100.0 * (i2t_rank < k).mean()) if len(i2t_rank) else 0.0
        out[f"t2i_r{k}{suffix}"] = float(100.0 * (t2i_rank < k).mean()) if len(t2i_rank) else 0.0
    out[f"mR{suffix}"] = float(np.mean([out[f"{d}_r{k}{suffix}"] for d in ("i2t", "t2i") for k in KS]))
    return out


def retrieval_metrics(image_emb: np.ndarray, text_emb: np.ndarray, text_to_image: Sequence[int],
                      image_offsets: np.ndarray | None = None) -> dict:
    """Recall percentages from unit embeddings; `text_to_image[j]` is the image of caption j.

    Image->text: an image's rank is the best rank among its ground-truth captions.
    Text->image: the rank of the caption's own image.
    With `image_offsets` (QueryBank.offsets of the images) the text->image ranking is also scored on the
    corrected scores cos - offset, as keys `t2i_r{k}_qb`; a caption bank corrects text->image only, so
    `i2t_r{k}_qb` equal the plain ones and `mR_qb` is their mean with the corrected t2i recalls.
    """
    t2i_idx = np.asarray(text_to_image, dtype=np.int64)
    n_img, n_txt = len(image_emb), len(text_emb)
    if n_txt != len(t2i_idx) or (n_txt and (t2i_idx.min() < 0 or t2i_idx.max() >= n_img)):
        raise ValueError("text_to_image must give one valid image index per caption")
    sims = image_emb.astype(np.float32) @ text_emb.astype(np.float32).T  # (n_img, n_txt)
    t2i_rank, i2t_rank = _ranks(sims, t2i_idx)
    out = _recalls(t2i_rank, i2t_rank)
    if image_offsets is not None:
        offsets = np.asarray(image_offsets, dtype=np.float32)
        if offsets.shape != (n_img,):
            raise ValueError(f"image_offsets must hold one value per image ({n_img}), got shape {offsets.shape}")
        out.update(_recalls(_ranks(sims - offsets[:, None], t2i_idx)[0], i2t_rank, "_qb"))
    out["n_images"], out["n_captions"] = int(n_img), int(n_txt)
    return out


def format_table(results: dict[str, dict]) -> str:
    """A human table: one row per named result."""
    cols = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]
    if results and all("mR_qb" in m for m in results.values()):
        cols += ["t2i_r1_qb", "t2i_r5_qb", "t2i_r10_qb", "mR_qb"]
    if results and all("mR_qbx" in m for m in results.values()):
        cols += ["t2i_r1_qbx", "t2i_r5_qbx", "t2i_r10_qbx", "mR_qbx"]
    width = max([len(n) for n in results] + [8])
    lines = [f"{'':<{width}} " + " ".join(f"{c:>{max(8, len(c))}}" for c in cols)]
    for name, m in results.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{m[c]:{max(8, len(c))}.2f}" for c in cols))
    return "\n".join(lines)


def evaluate_items(loaded, items, batch_size: int = 64, bank=None, betas: Sequence[float] = (),
                   views: int = 1) -> dict:
    """Embed a split's images (each the mean of `views` views, harma_core.views) and normalised captions with
    `loaded` and score retrieval.

    With a QueryBank `bank`, also the corrected text->image ranking at bank.beta (keys `*_qb`, `qb_beta`,
    `qb_bank_size`), for a bank that expands queries the ranking search uses: keyword captions phrased
    (harma_core.prompts), expanded and corrected (keys `*_qbx`, i2t plain), and, for each of `betas`, a row of
    `qb_sweep`.
    """
    from harma_core.data import flatten_captions, normalize_caption
    from harma_core.embed import embed_items, embed_texts

    captions, owner = flatten_captions(items)
    img = embed_items(loaded, items, batch_size, views=views)
    texts = [normalize_caption(c) for c in captions]
    txt = embed_texts(loaded, texts)
    if bank is None:
        return retrieval_metrics(img, txt, owner)
    offsets = bank.offsets(img)
    out = retrieval_metrics(img, txt, owner, offsets)
    out["qb_beta"], out["qb_bank_size"] = bank.beta, bank.size
    if bank.expands:  # what search ranks by: keywords phrased, expanded, corrected scores (keys *_qbx)
        from harma_core.prompts import embed_queries

        queries = embed_queries(loaded, texts, txt)
        x = retrieval_metrics(img, bank.expand(queries), owner, offsets)
        out.update({f"t2i_r{k}_qbx": x[f"t2i_r{k}_qb"] for k in KS}, qb_expansion=dict(bank.expansion))
        out["mR_qbx"] = float(np.mean([out[f"{d}_r{k}{'_qbx' if d == 't2i' else ''}"]
                                       for d in ("i2t", "t2i") for k in KS]))
    if betas:
        out["qb_sweep"] = [{"beta": float(b), **{k: v for k, v in retrieval_metrics(
            img, txt, owner, bank.with_beta(b).offsets(img)).items() if k.endswith("_qb")}} for b in betas]
    return out
