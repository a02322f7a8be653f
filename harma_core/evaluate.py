"""Retrieval evaluation: R@1/5/10 image->text and text->image, and their mean mR (HARMA.md protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)


def retrieval_metrics(image_emb: np.ndarray, text_emb: np.ndarray, text_to_image: Sequence[int]) -> dict:
    """Recall percentages from unit embeddings; `text_to_image[j]` is the image of caption j.

    Image->text: an image's rank is the best rank among its ground-truth captions.
    Text->image: the rank of the caption's own image.
    """
    t2i_idx = np.asarray(text_to_image, dtype=np.int64)
    n_img, n_txt = len(image_emb), len(text_emb)
    if n_txt != len(t2i_idx) or (n_txt and (t2i_idx.min() < 0 or t2i_idx.max() >= n_img)):
        raise ValueError("text_to_image must give one valid image index per caption")
    sims = image_emb.astype(np.float32) @ text_emb.astype(np.float32).T  # (n_img, n_txt)

    # text -> image: how many images score strictly higher than the true one
    true_t = sims[t2i_idx, np.arange(n_txt)]
    t2i_rank = (sims > true_t[None, :]).sum(axis=0)

    # image -> text: best (lowest) rank among the image's captions
    order = np.argsort(-sims, axis=1, kind="stable")
    is_gt = t2i_idx[order] == np.arange(n_img)[:, None]
    has_gt = is_gt.any(axis=1)
    i2t_rank = np.where(has_gt, is_gt.argmax(axis=1), n_txt)[has_gt]

    out = {}
    for k in KS:
        out[f"i2t_r{k}"] = float(100.0 * (i2t_rank < k).mean()) if len(i2t_rank) else 0.0
        out[f"t2i_r{k}"] = float(100.0 * (t2i_rank < k).mean()) if n_txt else 0.0
    out["mR"] = float(np.mean([out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in KS]))
    out["n_images"], out["n_captions"] = int(n_img), int(n_txt)
    return out


def format_table(results: dict[str, dict]) -> str:
    """A human table: one row per named result."""
    cols = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]
    width = max([len(n) for n in results] + [8])
    lines = [f"{'':<{width}} " + " ".join(f"{c:>8}" for c in cols)]
    for name, m in results.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{m[c]:8.2f}" for c in cols))
    return "\n".join(lines)


def evaluate_items(loaded, items, batch_size: int = 64) -> dict:
    """Embed a split's images and normalised captions with `loaded` and score retrieval."""
    from harma_core.data import decode_image, flatten_captions, normalize_caption
    from harma_core.embed import embed_images, embed_texts

    captions, owner = flatten_captions(items)
    img = np.concatenate([embed_images(loaded, [decode_image(it.image) for it in items[s:s + 256]], batch_size)
                          for s in range(0, len(items), 256)]) if items else np.zeros((0, loaded.dim))
    txt = embed_texts(loaded, [normalize_caption(c) for c in captions])
    return retrieval_metrics(img, txt, owner)
